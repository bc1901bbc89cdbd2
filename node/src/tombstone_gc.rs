//! Tombstone purging. A key whose version is only tombstones is indexed with the time it
//! became so; once that is older than `tombstones.grace`, the first replica of the key's
//! preference list purges it, but only when every replica is up and holds the identical
//! tombstone (a replica that missed the delete would otherwise bring the value back).

use crate::replica::Change;
use crate::rpc::{PeerRequest, PeerResponse};
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
        let before = crate::hints::now_ms().saturating_sub(grace.as_millis() as u64);
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
        if state.old_ring_for(dk.partition).is_some() {
            return Err("partition is moving".into());
        }
        // The replicas as the ring has them now: min(N, members) nodes.
        let n = self.inner.cfg.n_for(&bucket);
        let pref: Vec<String> = ring
            .preference_list(dk.partition, n)
            .into_iter()
            .map(str::to_string)
            .collect();
        let me = &self.inner.cfg.id;
        if pref.first() != Some(me) {
            return Ok(false);
        }
        if let Some(down) = pref.iter().find(|p| !self.inner.members.is_up(p)) {
            return Err(format!("replica {down} is down"));
        }
        let mine = self
            .inner
            .replica
            .get(skey.to_vec())
            .await
            .map_err(|e| e.to_string())?
            .ok_or("already gone")?;
        if !mine.is_tombstone_only() {
            return Err("no longer a tombstone".into());
        }
        let deadline = self.inner.cfg.timeouts.request;
        for peer in pref.iter().filter(|p| *p != me) {
            let req = PeerRequest::Read {
                bucket: bucket.clone(),
                key: key.clone(),
            };
            match self.call_peer(peer, &req, deadline).await {
                Ok(PeerResponse::Object(Some(b))) if b == mine.encode() => {}
                _ => return Err(format!("{peer} doesn't hold the same tombstone")),
            }
        }
        let digest = mine.digest();
        for peer in pref.iter().filter(|p| *p != me) {
            let req = PeerRequest::Purge {
                bucket: bucket.clone(),
                key: key.clone(),
                digest: digest.to_vec(),
            };
            self.call_peer(peer, &req, deadline)
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
