//! Tombstone purging. A key whose version is only tombstones is indexed with the time it
//! became so; once that is older than `tombstones.grace`, the first replica of the key's
//! preference list purges it, but only when every replica is up and holds the identical
//! tombstone (a replica that missed the delete would otherwise bring the value back). A
//! value written with a TTL is indexed with its expiry and purged the same way once it has
//! expired and the grace period has passed. The rules are `chorus_core::tombstone`; this
//! lists candidates, asks the replicas and purges.

use std::time::Duration;

use chorus_core::tombstone::{cutoff, whose_turn, Agreement, Turn};

use crate::call::{Held, Purge, Read};
use crate::network::Priority;
use crate::replica::Change;
use crate::server::Node;
use crate::stats::Stats;
use crate::storage::split_data_key;
use crate::worker::{Worker, WorkerError, WorkerState};

/// Tombstone purging as a background worker: a pass every `tombstones.gc_interval`, the
/// first one interval after start.
pub(crate) struct TombstoneGc {
    node: Node,
    /// Candidates and purges of the last pass.
    last: Option<(usize, u64)>,
}

impl TombstoneGc {
    pub(crate) fn new(node: Node) -> TombstoneGc {
        TombstoneGc { node, last: None }
    }
}

impl Worker for TombstoneGc {
    fn name(&self) -> &'static str {
        "tombstone-gc"
    }

    fn progress(&self) -> String {
        match self.last {
            None => "no pass yet".into(),
            Some((old, purged)) => {
                format!("last pass purged {purged} of {old} tombstones past the grace period")
            }
        }
    }

    fn waits_first(&self) -> bool {
        true
    }

    async fn step(&mut self) -> Result<WorkerState, WorkerError> {
        self.last = Some(self.node.purge_tombstones().await?);
        Ok(WorkerState::Idle)
    }

    async fn wait_for_work(&mut self) {
        tokio::time::sleep(self.node.inner.cfg.tombstones.gc_interval).await;
    }
}

impl Node {
    /// Purges old tombstones once every replica holds the same one. The first replica of a
    /// key's preference list decides, so replicas don't race each other; a replica that is
    /// down, or holds anything else, blocks the purge until repair has made them equal.
    /// Returns the tombstones past the grace period looked at and how many were purged.
    async fn purge_tombstones(&self) -> Result<(usize, u64), String> {
        let grace = self.inner.cfg.tombstones.grace;
        let now = Duration::from_millis(crate::hints::now_ms());
        let before = cutoff(now, grace).as_millis() as u64;
        let keys = match self.inner.replica.old_tombstones(before, 1024).await {
            Ok(k) => k,
            Err(e) => {
                tracing::error!(error = %e, "listing tombstones failed");
                return Err(format!("listing tombstones failed: {e}"));
            }
        };
        let mut purged = 0;
        for skey in &keys {
            match self.try_purge(skey).await {
                Ok(true) => purged += 1,
                Ok(false) => {}
                Err(e) => tracing::debug!(error = %e, "tombstone not purged yet"),
            }
        }
        Ok((keys.len(), purged))
    }

    /// Purges one tombstone if this node decides for it and every replica agrees; `false`
    /// when another replica decides.
    async fn try_purge(&self, skey: &[u8]) -> Result<bool, String> {
        let dk = split_data_key(skey).ok_or("malformed key")?;
        let (bucket, key) = (dk.bucket.to_vec(), dk.key.to_vec());
        let state = self.cluster();
        let ring = state.ring.as_ref().ok_or("no ring")?;
        // The replicas as the ring has them now: min(N, members) nodes.
        let n = self.inner.cfg.n_for(&bucket);
        let pref: Vec<String> = ring
            .preference_list(dk.partition, n)
            .into_iter()
            .map(str::to_string)
            .collect();
        let me = &self.inner.cfg.id;
        let moving = state.moving(dk.partition).is_some();
        let members = &self.inner.members;
        let peers = match whose_turn(me, &pref, moving, |p| members.is_up(p)) {
            Ok(Turn::Mine { peers }) => peers,
            Ok(Turn::Theirs) => return Ok(false),
            Err(blocked) => return Err(blocked.to_string()),
        };
        let mine = self
            .inner
            .replica
            .get(skey.to_vec())
            .await
            .map_err(|e| e.to_string())?
            .ok_or("already gone")?;
        let now = crate::hints::now_ms();
        let mut agreement = Agreement::new_at(&mine, &peers, now).map_err(|e| e.to_string())?;
        let deadline = self.inner.cfg.timeouts.request;
        for peer in &peers {
            let req = Read {
                bucket: bucket.clone(),
                key: key.clone(),
            };
            let held = match self.call(peer, req, deadline, Priority::Client).await {
                Ok(Held {
                    object,
                    recovering: false,
                }) => object,
                _ => return Err(format!("{peer} doesn't hold the same tombstone")),
            };
            agreement
                .answer(peer, held.as_deref())
                .map_err(|e| e.to_string())?;
        }
        let digest = agreement.digest().ok_or("not every replica answered")?;
        for peer in &peers {
            let req = Purge {
                bucket: bucket.clone(),
                key: key.clone(),
                digest,
            };
            self.call(peer, req, deadline, Priority::Client)
                .await
                .map_err(|e| e.to_string())?;
        }
        self.inner
            .replica
            .apply(skey.to_vec(), Change::Purge(digest))
            .await
            .map_err(|e| e.to_string())?;
        Stats::add(
            &self.inner.stats.tombstones_purged,
            "chorus_tombstones_purged_total",
            1,
        );
        Ok(true)
    }
}
