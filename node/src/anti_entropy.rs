//! Anti-entropy: replicas of each partition compare their Merkle trees on an interval,
//! descend only into what differs, and merge the differing keys in both directions. The
//! purging of tombstones is in [`crate::tombstone_gc`]; the replica side of a purge
//! (`Purge`) is served here with the other sync requests.
//!
//! A round asks each peer for the roots of every tree the two share in one message, so a
//! clean round costs one round trip per peer. Only trees whose roots differ are walked
//! (branches, then leaves, then key listings of the differing segments), as the sans-I/O
//! [`crate::merkle::Exchange`] directs. Rounds pause between trees and use low-priority
//! streams, so client traffic keeps priority. What a differing key's repair does (who sends
//! what) is `chorus_core::anti_entropy`.

use std::collections::BTreeMap;

use chorus_core::anti_entropy::repair_as;

use crate::batch::{item_bytes, Budget, ITEM_OVERHEAD};
use crate::call::{self, PeerCall, Roots};
use crate::merkle::{Exchange, Hash, Need, BRANCHES};
use crate::replica::{Change, TreeId};
use crate::rpc::{digest_of, pack_hashes, Item, KeyDigest, PeerError, PeerRequest, PeerResponse};
use crate::server::Node;
use crate::stats::Stats;
use crate::transport::Priority;
use crate::version::Object;
use crate::worker::{Worker, WorkerError, WorkerState};

/// Most keys or segments one anti-entropy message may ask for.
const MAX_LISTING: usize = 4096;

type Key = (Vec<u8>, Vec<u8>);

/// Anti-entropy rounds as a background worker: one round every `anti_entropy.interval`,
/// the first one interval after start, or at once on `chorus repair`. Switched off, it is
/// done at once and says so.
pub(crate) struct AntiEntropy {
    node: Node,
    last: Option<Exchanged>,
}

impl AntiEntropy {
    pub(crate) fn new(node: Node) -> AntiEntropy {
        AntiEntropy { node, last: None }
    }

    fn enabled(&self) -> bool {
        self.node.inner.cfg.anti_entropy.enabled
    }
}

impl Worker for AntiEntropy {
    fn name(&self) -> &'static str {
        "anti-entropy"
    }

    fn progress(&self) -> String {
        match &self.last {
            _ if !self.enabled() => "off (anti_entropy.enabled = false)".into(),
            None => "no round yet".into(),
            Some(x) => format!(
                "last round compared {} trees, repaired {} keys",
                x.compared, x.repaired
            ),
        }
    }

    fn waits_first(&self) -> bool {
        self.enabled()
    }

    async fn step(&mut self) -> Result<WorkerState, WorkerError> {
        if !self.enabled() {
            return Ok(WorkerState::Done);
        }
        let (x, failed) = self.node.anti_entropy_round().await;
        self.last = Some(x);
        if failed.is_empty() {
            Ok(WorkerState::Idle)
        } else {
            Err(failed.join("; ").into())
        }
    }

    async fn wait_for_work(&mut self) {
        tokio::select! {
            _ = tokio::time::sleep(self.node.inner.cfg.anti_entropy.interval) => {}
            _ = self.node.inner.repair_now.notified() => {}
        }
    }
}

impl Node {
    /// The trees this node shares with each peer: for every N in use and every partition
    /// where both are among the first N. A tree is named by the configured N (replicas
    /// file keys under it), while the peers are the real preference list, which has only
    /// min(N, members) nodes when the ring is smaller than N.
    pub(crate) fn shared_trees(&self) -> BTreeMap<String, Vec<TreeId>> {
        let state = self.cluster();
        let Some(ring) = state.ring.as_ref() else {
            return BTreeMap::new();
        };
        let me = self.inner.cfg.id.as_str();
        let mut out: BTreeMap<String, Vec<TreeId>> = BTreeMap::new();
        for n in self.n_classes() {
            for p in ring.partitions_of(me, n) {
                for peer in ring.preference_list(p, n) {
                    if peer != me {
                        out.entry(peer.to_string())
                            .or_default()
                            .push(tree_ref(p, n));
                    }
                }
            }
        }
        out
    }

    /// One full round with every live peer: what was exchanged, and the exchanges that
    /// failed.
    pub(crate) async fn anti_entropy_round(&self) -> (Exchanged, Vec<String>) {
        Stats::add(&self.inner.stats.aae_rounds, "chorus_aae_rounds_total", 1);
        let started = std::time::Instant::now();
        let mut total = Exchanged::default();
        let mut failed = Vec::new();
        for (peer, trees) in self.shared_trees() {
            if !self.inner.members.is_up(&peer) {
                continue;
            }
            match self.exchange_with(&peer, &trees).await {
                Ok(x) => {
                    if !x.unknown.is_empty() {
                        tracing::warn!(
                            %peer,
                            trees = x.unknown.len(),
                            n = ?x.unknown_ns(),
                            "peer keeps no anti-entropy tree for this N, so those partitions \
                             were not compared; is cluster.n (or a bucket's n) configured \
                             differently there?"
                        );
                    }
                    total.absorb(x);
                }
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "anti-entropy exchange failed");
                    failed.push(format!("exchange with {peer}: {e}"));
                }
            }
        }
        tracing::debug!(
            compared = total.compared,
            not_compared = total.unknown.len(),
            repaired = total.repaired,
            ms = started.elapsed().as_millis() as u64,
            "anti-entropy round"
        );
        (total, failed)
    }

    async fn sync_call<C: PeerCall>(&self, peer: &str, call: C) -> Result<C::Reply, String> {
        let deadline = self.inner.cfg.timeouts.request * 2;
        let (reply, bytes) = self
            .call_metered(peer, call, deadline, Priority::Background)
            .await
            .map_err(|e| e.to_string())?;
        Stats::add(&self.inner.stats.aae_bytes, "chorus_aae_bytes_total", bytes);
        Ok(reply)
    }

    /// Compares `trees` with `peer` and repairs what differs. Only trees the peer also
    /// keeps are compared (and reported clean); the others come back in `unknown`.
    pub(crate) async fn exchange_with(
        &self,
        peer: &str,
        trees: &[TreeId],
    ) -> Result<Exchanged, String> {
        let pause = self.inner.cfg.anti_entropy.pause;
        let default_n = tree_ref(0, self.inner.cfg.cluster.n).1;
        let mut out = Exchanged::default();
        let era = self.recovery_era();
        for chunk in trees.chunks(MAX_LISTING) {
            let Roots { roots, unknown } = self
                .sync_call(peer, call::TreeRoots(chunk.to_vec()))
                .await?;
            if roots.len() != chunk.len() {
                return Err("root count mismatch".into());
            }
            for (i, (tree, remote_root)) in chunk.iter().zip(roots).enumerate() {
                if unknown.contains(&(i as u32)) {
                    out.unknown.push(*tree);
                    continue;
                }
                let mut ex = Exchange::new(self.inner.replica.trees().snapshot(*tree));
                match ex.start_with_root(remote_root) {
                    Need::Done { .. } => {}
                    _ => {
                        let repaired = self.walk(peer, *tree, ex).await?;
                        self.inner.stats.partition_repaired(tree.0, repaired);
                        out.repaired += repaired;
                        tokio::time::sleep(pause).await;
                    }
                }
                out.compared += 1;
                // Status reports convergence for the default N's replica sets.
                if tree.1 == default_n {
                    self.inner.stats.partition_clean(tree.0, peer);
                }
                self.recovery_exchanged(*tree, peer, era);
            }
        }
        metrics::counter!("chorus_aae_trees_compared_total").increment(out.compared as u64);
        metrics::counter!("chorus_aae_trees_not_compared_total")
            .increment(out.unknown.len() as u64);
        Ok(out)
    }

    /// [`Self::exchange_with`], failing unless every tree was compared: for steps (a
    /// transfer's catch-up, the exchange before a drop) that must not go on otherwise.
    pub(crate) async fn sync_all(&self, peer: &str, trees: &[TreeId]) -> Result<(), String> {
        let x = self.exchange_with(peer, trees).await?;
        if x.unknown.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "{peer} keeps no anti-entropy tree for N in {:?}; check cluster.n and the buckets' n there",
                x.unknown_ns()
            ))
        }
    }

    /// Walks one differing tree down to the keys, and repairs them. Returns how many keys
    /// changed on either side.
    async fn walk(&self, peer: &str, tree: TreeId, mut ex: Exchange) -> Result<u64, String> {
        let mut need = Need::Branches;
        let mut repaired = 0;
        loop {
            need = match need {
                Need::Branches => {
                    ex.branches(&self.sync_call(peer, call::TreeBranches(tree)).await?)
                }
                Need::Leaves(branches) => {
                    let req = call::TreeLeaves {
                        tree,
                        branches: branches.iter().map(|b| *b as u16).collect(),
                    };
                    ex.leaves(&self.sync_call(peer, req).await?)
                }
                Need::Keys(segments) => {
                    let local = self
                        .inner
                        .replica
                        .segment_keys(tree, segments.clone())
                        .await
                        .map_err(|e| e.to_string())?;
                    let req = call::SegmentKeys { tree, segments };
                    let remote = self.sync_call(peer, req).await?;
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
                    repaired += self.repair_keys(peer, keys).await?;
                    next
                }
                Need::Done { .. } => return Ok(repaired),
            };
        }
    }

    /// Merges each key both ways between this node and `peer`, except that a node pushes
    /// only what [`Node::may_push`] allows (a recovering node only pulls; see
    /// `chorus_core::anti_entropy`). Returns how many
    /// keys changed on either side. Reads and pushes are cut by count and by bytes: the peer
    /// answers as many of the keys asked for as fit its byte budget, and the rest are asked
    /// again.
    async fn repair_keys(&self, peer: &str, keys: Vec<Key>) -> Result<u64, String> {
        let max_count = self.inner.cfg.anti_entropy.batch.max(1);
        let max_bytes = self.inner.cfg.limits.batch_bytes();
        let mut repaired = 0;
        let mut push = Vec::new();
        let mut push_budget = Budget::new(max_count, max_bytes);
        let mut rest = &keys[..];
        while !rest.is_empty() {
            let chunk = &rest[..rest.len().min(max_count)];
            let remote = self.sync_call(peer, call::ReadMany(chunk.to_vec())).await?;
            if remote.is_empty() || remote.len() > chunk.len() {
                return Err(format!(
                    "{} versions for {} keys asked for",
                    remote.len(),
                    chunk.len()
                ));
            }
            rest = &rest[remote.len()..];
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
                let may_push = mine.is_some() && self.may_push(bucket, key);
                let conflicts = self.inner.cfg.conflicts_for(bucket);
                let plan = repair_as(mine.as_ref(), theirs, may_push, conflicts);
                if plan.changes_anything() {
                    repaired += 1;
                }
                if let Some(t) = plan.take {
                    self.inner
                        .replica
                        .apply(skey, Change::Merge(t))
                        .await
                        .map_err(|e| e.to_string())?;
                }
                if let Some(merged) = plan.push {
                    let item = Item {
                        bucket: bucket.clone(),
                        key: key.clone(),
                        object: merged.encode(),
                    };
                    let size = item_bytes(&item);
                    if !push_budget.admits(size) {
                        self.push_merged(peer, std::mem::take(&mut push)).await?;
                        push_budget.reset();
                    }
                    push_budget.add(size);
                    push.push(item);
                }
            }
        }
        if !push.is_empty() {
            self.push_merged(peer, push).await?;
        }
        Ok(repaired)
    }

    async fn push_merged(&self, peer: &str, items: Vec<Item>) -> Result<(), String> {
        let (n, bytes) = (items.len(), items.iter().map(item_bytes).sum::<usize>());
        match self.sync_call(peer, call::MergeMany(items)).await {
            Ok(()) => Ok(()),
            Err(e) => {
                tracing::warn!(%peer, items = n, bytes, error = %e, "anti-entropy repair refused");
                Err(e)
            }
        }
    }

    /// The peer side of anti-entropy and purging.
    pub(crate) async fn handle_sync(&self, req: PeerRequest) -> PeerResponse {
        let trees = self.inner.replica.trees();
        match req {
            PeerRequest::TreeRoots(ids) if ids.len() <= MAX_LISTING => {
                let unknown =
                    unknown_trees(&ids, &self.n_classes(), self.inner.cfg.cluster.partitions);
                let roots: Vec<Hash> = ids
                    .iter()
                    .enumerate()
                    .map(|(i, id)| {
                        if unknown.contains(&(i as u32)) {
                            [0; 32]
                        } else {
                            trees.root(*id)
                        }
                    })
                    .collect();
                PeerResponse::Roots {
                    hashes: pack_hashes(&roots),
                    unknown,
                }
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
                    Err(e) => PeerResponse::Error(e.into()),
                }
            }
            // Answers the longest prefix of the keys that fits the byte budget (at least
            // one key); the requester asks again for the rest.
            PeerRequest::ReadMany(keys) if keys.len() <= MAX_LISTING => {
                let mut budget = Budget::new(keys.len(), self.inner.cfg.limits.batch_bytes());
                let mut out = Vec::with_capacity(keys.len());
                for (bucket, key) in keys {
                    match self.read_local(&bucket, &key).await {
                        Ok(o) => {
                            let size = bucket.len()
                                + key.len()
                                + o.as_ref().map_or(0, Vec::len)
                                + ITEM_OVERHEAD;
                            if !budget.take(size) {
                                break;
                            }
                            out.push(o.map(serde_bytes::ByteBuf::from));
                        }
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
                    return PeerResponse::Error(e.into());
                }
                let Some(d) = digest_of(&digest) else {
                    return PeerResponse::Error(PeerError::BadRequest(
                        "digest must be 32 bytes".into(),
                    ));
                };
                match self
                    .inner
                    .replica
                    .apply(self.storage_key(&bucket, &key), Change::Purge(d))
                    .await
                {
                    Ok(_) => PeerResponse::Ack,
                    Err(e) => PeerResponse::Error(e.into()),
                }
            }
            other => PeerResponse::Error(PeerError::BadRequest(format!(
                "request too large or not a sync request: {}",
                short(&other)
            ))),
        }
    }
}

/// A tree's name: the partition and the configured N of its buckets.
pub(crate) fn tree_ref(partition: u32, n: usize) -> TreeId {
    (partition, n.min(u8::MAX as usize) as u8)
}

/// Positions in `ids` of trees this node keeps no keys under: a partition it doesn't have,
/// or an N that is neither the default nor any bucket's here. An empty root for those would
/// say "no keys" when the truth is "not compared".
pub(crate) fn unknown_trees(ids: &[TreeId], classes: &[usize], partitions: u32) -> Vec<u32> {
    ids.iter()
        .enumerate()
        .filter(|(_, (p, n))| *p >= partitions || !classes.iter().any(|c| tree_ref(0, *c).1 == *n))
        .map(|(i, _)| i as u32)
        .collect()
}

/// What one exchange with a peer found.
#[derive(Debug, Default)]
pub(crate) struct Exchanged {
    /// Trees compared on both sides (and repaired where they differed).
    pub compared: usize,
    /// Trees the peer keeps no keys under: not compared, not clean.
    pub unknown: Vec<TreeId>,
    /// Keys that changed on either side.
    pub repaired: u64,
}

impl Exchanged {
    fn absorb(&mut self, other: Exchanged) {
        self.compared += other.compared;
        self.unknown.extend(other.unknown);
        self.repaired += other.repaired;
    }

    fn unknown_ns(&self) -> Vec<u8> {
        let mut ns: Vec<u8> = self.unknown.iter().map(|t| t.1).collect();
        ns.sort_unstable();
        ns.dedup();
        ns
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trees_are_named_by_the_configured_n_and_others_are_unknown() {
        // N = 3 and a bucket with N = 5: a tree for N = 2 (what min(N, members) gave
        // with two members) is not one this node keeps, nor is a partition past the count.
        let ids = [(0, 3), (1, 2), (2, 5), (64, 3), (7, 3)];
        assert_eq!(unknown_trees(&ids, &[3, 5], 64), vec![1, 3]);
        assert_eq!(tree_ref(9, 3), (9, 3));
        assert_eq!(tree_ref(9, 1000), (9, u8::MAX));
    }
}
