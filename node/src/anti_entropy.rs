//! Anti-entropy: replicas of each partition compare their Merkle trees on an interval,
//! descend only into what differs, and merge the differing keys in both directions. Also
//! the purging of tombstones that every replica holds.
//!
//! A round asks each peer for the roots of every tree the two share in one message, so a
//! clean round costs one round trip per peer. Only trees whose roots differ are walked
//! (branches, then leaves, then key listings of the differing segments), as the sans-I/O
//! [`crate::merkle::Exchange`] directs. Rounds pause between trees and use low-priority
//! streams, so client traffic keeps priority.

use std::collections::BTreeMap;

use crate::merkle::{Exchange, Hash, Need, BRANCHES};
use crate::replica::{Change, TreeId};
use crate::rpc::{
    digest_of, pack_hashes, unpack_hashes, Item, KeyDigest, PeerRequest, PeerResponse,
};
use crate::server::Node;
use crate::stats::Stats;
use crate::storage::split_data_key;
use crate::transport::Priority;
use crate::version::Object;

/// Most keys or segments one anti-entropy message may ask for.
const MAX_LISTING: usize = 4096;

type Key = (Vec<u8>, Vec<u8>);

impl Node {
    pub(crate) async fn anti_entropy_loop(self) {
        let interval = self.inner.cfg.anti_entropy.interval;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = self.inner.repair_now.notified() => {}
            }
            self.anti_entropy_round().await;
        }
    }

    /// The trees this node shares with each peer: for every N in use and every partition
    /// where both are among the first N.
    pub(crate) fn shared_trees(&self) -> BTreeMap<String, Vec<TreeId>> {
        let state = self.cluster();
        let Some(ring) = state.ring.as_ref() else {
            return BTreeMap::new();
        };
        let me = self.inner.cfg.id.as_str();
        let mut out: BTreeMap<String, Vec<TreeId>> = BTreeMap::new();
        for n in self.n_classes(ring.members().len()) {
            for p in ring.partitions_of(me, n) {
                for peer in ring.preference_list(p, n) {
                    if peer != me {
                        out.entry(peer.to_string())
                            .or_default()
                            .push((p, n.min(u8::MAX as usize) as u8));
                    }
                }
            }
        }
        out
    }

    /// One full round with every live peer.
    pub(crate) async fn anti_entropy_round(&self) {
        Stats::add(&self.inner.stats.aae_rounds, "chorus_aae_rounds_total", 1);
        for (peer, trees) in self.shared_trees() {
            if !self.inner.members.is_up(&peer) {
                continue;
            }
            if let Err(e) = self.exchange_with(&peer, &trees).await {
                tracing::debug!(%peer, error = %e, "anti-entropy exchange failed");
            }
        }
    }

    async fn sync_call(&self, peer: &str, req: &PeerRequest) -> Result<PeerResponse, String> {
        let deadline = self.inner.cfg.timeouts.request * 2;
        let (resp, bytes) = self
            .call_peer_metered(peer, req, deadline, Priority::Background)
            .await
            .map_err(|e| e.to_string())?;
        Stats::add(&self.inner.stats.aae_bytes, "chorus_aae_bytes_total", bytes);
        match resp {
            PeerResponse::Error(e) => Err(e),
            other => Ok(other),
        }
    }

    pub(crate) async fn exchange_with(&self, peer: &str, trees: &[TreeId]) -> Result<(), String> {
        let pause = self.inner.cfg.anti_entropy.pause;
        let era = self.recovery_era();
        for chunk in trees.chunks(MAX_LISTING) {
            let roots = match self
                .sync_call(peer, &PeerRequest::TreeRoots(chunk.to_vec()))
                .await?
            {
                PeerResponse::Hashes(h) => unpack_hashes(&h).ok_or("malformed roots")?,
                other => return Err(format!("unexpected answer {other:?}")),
            };
            if roots.len() != chunk.len() {
                return Err("root count mismatch".into());
            }
            for (tree, remote_root) in chunk.iter().zip(roots) {
                let mut ex = Exchange::new(self.inner.replica.trees().snapshot(*tree));
                match ex.start_with_root(remote_root) {
                    Need::Done { .. } => {}
                    _ => {
                        self.walk(peer, *tree, ex).await?;
                        tokio::time::sleep(pause).await;
                    }
                }
                self.inner.stats.partition_clean(tree.0, peer);
                self.recovery_exchanged(*tree, peer, era);
            }
        }
        Ok(())
    }

    /// Walks one differing tree down to the keys, and repairs them.
    async fn walk(&self, peer: &str, tree: TreeId, mut ex: Exchange) -> Result<(), String> {
        let mut need = Need::Branches;
        loop {
            need = match need {
                Need::Branches => match self
                    .sync_call(peer, &PeerRequest::TreeBranches(tree))
                    .await?
                {
                    PeerResponse::Hashes(h) => {
                        ex.branches(&unpack_hashes(&h).ok_or("malformed branches")?)
                    }
                    other => return Err(format!("unexpected answer {other:?}")),
                },
                Need::Leaves(branches) => {
                    let req = PeerRequest::TreeLeaves {
                        tree,
                        branches: branches.iter().map(|b| *b as u16).collect(),
                    };
                    match self.sync_call(peer, &req).await? {
                        PeerResponse::Leaves(list) => {
                            let list: Vec<(usize, Vec<Hash>)> = list
                                .into_iter()
                                .filter_map(|(b, l)| Some((b as usize, unpack_hashes(&l)?)))
                                .collect();
                            ex.leaves(&list)
                        }
                        other => return Err(format!("unexpected answer {other:?}")),
                    }
                }
                Need::Keys(segments) => {
                    let local = self
                        .inner
                        .replica
                        .segment_keys(tree, segments.clone())
                        .await
                        .map_err(|e| e.to_string())?;
                    let req = PeerRequest::SegmentKeys { tree, segments };
                    let remote = match self.sync_call(peer, &req).await? {
                        PeerResponse::Keys(k) => k,
                        other => return Err(format!("unexpected answer {other:?}")),
                    };
                    let local: Vec<(Key, Hash)> =
                        local.into_iter().map(|(b, k, d)| ((b, k), d)).collect();
                    let remote: Vec<(Key, Hash)> = remote
                        .into_iter()
                        .filter_map(|kd| Some(((kd.bucket, kd.key), digest_of(&kd.digest)?)))
                        .collect();
                    let (diff, next) = ex.keys(&local, &remote);
                    let keys: Vec<Key> = diff
                        .only_local
                        .into_iter()
                        .chain(diff.only_remote)
                        .chain(diff.different)
                        .collect();
                    let repaired = self.repair_keys(peer, keys).await?;
                    self.inner.stats.partition_repaired(tree.0, repaired);
                    next
                }
                Need::Done { .. } => return Ok(()),
            };
        }
    }

    /// Merges each key both ways between this node and `peer`, except that a node pushes
    /// only what [`Node::may_push`] allows (a recovering node only pulls). Returns how many
    /// keys changed on either side.
    async fn repair_keys(&self, peer: &str, keys: Vec<Key>) -> Result<u64, String> {
        let mut repaired = 0;
        for chunk in keys.chunks(self.inner.cfg.anti_entropy.batch.max(1)) {
            let req = PeerRequest::ReadMany(
                chunk
                    .iter()
                    .map(|(b, k)| {
                        (
                            serde_bytes::ByteBuf::from(b.clone()),
                            serde_bytes::ByteBuf::from(k.clone()),
                        )
                    })
                    .collect(),
            );
            let remote = match self.sync_call(peer, &req).await? {
                PeerResponse::Objects(o) if o.len() == chunk.len() => o,
                other => return Err(format!("unexpected answer {other:?}")),
            };
            let mut push = Vec::new();
            for ((bucket, key), theirs) in chunk.iter().zip(remote) {
                let theirs = match theirs {
                    Some(b) => Some(Object::decode(&b).map_err(|e| e.to_string())?),
                    None => None,
                };
                let skey = self.storage_key(bucket, key);
                let mine = self
                    .inner
                    .replica
                    .get(skey.clone())
                    .await
                    .map_err(|e| e.to_string())?;
                let mut merged = mine.clone().unwrap_or_default();
                if let Some(t) = &theirs {
                    merged.merge(t);
                }
                let mut changed = false;
                if mine.as_ref() != Some(&merged) {
                    if let Some(t) = theirs.clone() {
                        self.inner
                            .replica
                            .apply(skey, Change::Merge(t))
                            .await
                            .map_err(|e| e.to_string())?;
                        changed = true;
                    }
                }
                if theirs.as_ref() != Some(&merged) && mine.is_some() && self.may_push(bucket, key)
                {
                    push.push(Item {
                        bucket: bucket.clone(),
                        key: key.clone(),
                        object: merged.encode(),
                    });
                    changed = true;
                }
                if changed {
                    repaired += 1;
                }
            }
            if !push.is_empty() {
                match self.sync_call(peer, &PeerRequest::MergeMany(push)).await? {
                    PeerResponse::Ack => {}
                    other => return Err(format!("unexpected answer {other:?}")),
                }
            }
        }
        Ok(repaired)
    }

    /// The peer side of anti-entropy and purging.
    pub(crate) async fn handle_sync(&self, req: PeerRequest) -> PeerResponse {
        let trees = self.inner.replica.trees();
        match req {
            PeerRequest::TreeRoots(ids) if ids.len() <= MAX_LISTING => {
                let roots: Vec<Hash> = ids.iter().map(|id| trees.root(*id)).collect();
                PeerResponse::Hashes(pack_hashes(&roots))
            }
            PeerRequest::TreeBranches(id) => {
                PeerResponse::Hashes(pack_hashes(trees.snapshot(id).branches()))
            }
            PeerRequest::TreeLeaves { tree, branches } if branches.len() <= BRANCHES => {
                let snap = trees.snapshot(tree);
                PeerResponse::Leaves(
                    branches
                        .into_iter()
                        .map(|b| {
                            (
                                b,
                                serde_bytes::ByteBuf::from(pack_hashes(
                                    snap.branch_leaves(b as usize),
                                )),
                            )
                        })
                        .collect(),
                )
            }
            PeerRequest::SegmentKeys { tree, segments } if segments.len() <= MAX_LISTING => {
                match self.inner.replica.segment_keys(tree, segments).await {
                    Ok(keys) => PeerResponse::Keys(
                        keys.into_iter()
                            .map(|(bucket, key, d)| KeyDigest {
                                bucket,
                                key,
                                digest: d.to_vec(),
                            })
                            .collect(),
                    ),
                    Err(e) => PeerResponse::Error(e.to_string()),
                }
            }
            PeerRequest::ReadMany(keys) if keys.len() <= MAX_LISTING => {
                let mut out = Vec::with_capacity(keys.len());
                for (bucket, key) in keys {
                    match self.read_local(&bucket, &key).await {
                        Ok(o) => out.push(o.map(serde_bytes::ByteBuf::from)),
                        Err(e) => return PeerResponse::Error(e),
                    }
                }
                PeerResponse::Objects(out)
            }
            PeerRequest::Purge {
                bucket,
                key,
                digest,
            } => {
                if let Err(e) = self.check_key(&bucket, &key) {
                    return PeerResponse::Error(e.message);
                }
                let Some(d) = digest_of(&digest) else {
                    return PeerResponse::Error("digest must be 32 bytes".into());
                };
                match self
                    .inner
                    .replica
                    .apply(self.storage_key(&bucket, &key), Change::Purge(d))
                    .await
                {
                    Ok(_) => PeerResponse::Ack,
                    Err(e) => PeerResponse::Error(e.to_string()),
                }
            }
            other => PeerResponse::Error(format!(
                "request too large or not a sync request: {}",
                short(&other)
            )),
        }
    }

    /// Purges old tombstones once every replica holds the same one. The first replica of a
    /// key's preference list decides, so replicas don't race each other; a replica that is
    /// down, or holds anything else, blocks the purge until repair has made them equal.
    pub(crate) async fn tombstone_loop(self) {
        let cfg = &self.inner.cfg.tombstones;
        let (grace, every) = (cfg.grace, cfg.gc_interval);
        loop {
            tokio::time::sleep(every).await;
            let before = crate::hints::now_ms().saturating_sub(grace.as_millis() as u64);
            let keys = match self.inner.replica.old_tombstones(before, 1024).await {
                Ok(k) => k,
                Err(e) => {
                    tracing::error!(error = %e, "listing tombstones failed");
                    continue;
                }
            };
            for skey in keys {
                if let Err(e) = self.try_purge(&skey).await {
                    tracing::debug!(error = %e, "tombstone not purged yet");
                }
            }
        }
    }

    async fn try_purge(&self, skey: &[u8]) -> Result<(), String> {
        let dk = split_data_key(skey).ok_or("malformed key")?;
        let (bucket, key) = (dk.bucket.to_vec(), dk.key.to_vec());
        let state = self.cluster();
        let ring = state.ring.as_ref().ok_or("no ring")?;
        if state.old_ring_for(dk.partition).is_some() {
            return Err("partition is moving".into());
        }
        let n = self.inner.cfg.n_for(&bucket).min(ring.members().len());
        let pref: Vec<String> = ring
            .preference_list(dk.partition, n)
            .into_iter()
            .map(str::to_string)
            .collect();
        let me = &self.inner.cfg.id;
        if pref.first() != Some(me) {
            return Ok(());
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
        Ok(())
    }
}

fn short(req: &PeerRequest) -> &'static str {
    match req {
        PeerRequest::TreeRoots(_) => "tree roots",
        PeerRequest::TreeLeaves { .. } => "tree leaves",
        PeerRequest::SegmentKeys { .. } => "segment keys",
        PeerRequest::ReadMany(_) => "read many",
        _ => "other",
    }
}
