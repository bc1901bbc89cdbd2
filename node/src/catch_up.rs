//! The node side of [`crate::recovery`]: reads the data directory's past at start, feeds
//! the state machine what gossip and anti-entropy see, drops a restored copy, announces
//! this run's generation, and runs the exchanges that end a recovery.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chorus_client::proto::RecoveryStatus;

use crate::config::NodeConfig;
use crate::membership::{ClusterState, MemberState};
use crate::recovery::{
    self, split_restored, Action, OtherReplica, Phase, Previous, Recovery, RestoredSplit,
};
use crate::replica::TreeId;
use crate::server::Node;
use crate::storage::{Storage, StorageError, Table};
use crate::worker::{Worker, WorkerError, WorkerState};

/// How long the drop of a restored copy waits for every replica to answer a ping.
const DROP_DECISION_WAIT: Duration = Duration::from_secs(10);

/// The recovery state of this node and what peers last said of theirs.
pub(crate) struct Tracker {
    machine: Mutex<Recovery>,
    peers: Mutex<BTreeMap<String, RecoveryStatus>>,
    /// Peers that have answered a ping since this start (their recovery state is known).
    answered: Mutex<BTreeSet<String>>,
    /// When a restored copy was recognised, while its drop is pending.
    drop_since: Mutex<Option<Instant>>,
    /// When the directory was last marked alive before this start (the age of a copy).
    copy_alive: Option<u64>,
    /// When this run last marked it alive.
    marked: Mutex<Instant>,
}

impl Tracker {
    /// Reads what the data directory says about its past and marks this run as started.
    /// Blocking; call before anything else writes the directory.
    pub(crate) fn open(cfg: &NodeConfig, storage: &dyn Storage) -> Result<Tracker, StorageError> {
        let previous = storage
            .get(Table::Meta, crate::gossip::META_STATE)?
            .and_then(|b| ClusterState::decode(&b))
            .and_then(|s| s.members.get(&cfg.id).cloned())
            .map(|m| Previous {
                incarnation: m.incarnation,
                generation: m.generation,
            });
        let (left, resumed) = recovery::begin_run(storage, cfg.storage.sync)?;
        let power_loss = recovery::power_loss(left.as_ref(), recovery::boot_id().as_deref());
        let machine = Recovery::new(
            previous,
            recovery::fresh_generation(&cfg.id),
            resumed,
            power_loss,
        );
        if power_loss {
            tracing::warn!(
                "the machine restarted while writes were not synced (storage.sync = false): \
                 the log's tail may be lost; recovering from the other replicas before counting toward R"
            );
        } else if let Some(r) = resumed {
            tracing::warn!(
                reason = r.name(),
                "resuming an unfinished recovery: not counting toward R until exchanged"
            );
        }
        recovery::store_reason(storage, machine.persisted_reason())?;
        let copy_alive = recovery::last_alive(storage)?;
        recovery::mark_alive(storage, crate::hints::now_ms())?;
        Ok(Tracker {
            copy_alive,
            marked: Mutex::new(Instant::now()),
            machine: Mutex::new(machine),
            peers: Mutex::new(BTreeMap::new()),
            answered: Mutex::new(BTreeSet::new()),
            drop_since: Mutex::new(None),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Recovery> {
        self.machine.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn peers(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, RecoveryStatus>> {
        self.peers.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn answered(&self) -> std::sync::MutexGuard<'_, BTreeSet<String>> {
        self.answered.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn drop_since(&self) -> std::sync::MutexGuard<'_, Option<Instant>> {
        self.drop_since.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Node {
    fn recovery<T>(&self, f: impl FnOnce(&mut Recovery) -> T) -> T {
        f(&mut self.inner.recovery.lock())
    }

    /// This node's read answers count toward R.
    pub(crate) fn is_whole(&self) -> bool {
        self.recovery(|r| r.counts_for_reads())
    }

    pub(crate) fn is_removed(&self) -> bool {
        self.recovery(|r| r.removed())
    }

    /// It takes replicated writes (and coordinates client writes).
    pub(crate) fn accepts_writes(&self) -> bool {
        self.recovery(|r| r.accepts_writes())
    }

    /// It coordinates client writes. Not while its data may be stale: its local version
    /// would carry the stale siblings into the new one.
    pub(crate) fn coordinates_writes(&self) -> bool {
        self.recovery(|r| r.accepts_writes() && r.serves_data())
    }

    /// Others may pull its data (anti-entropy listings, transfer scans).
    pub(crate) fn serves_data(&self) -> bool {
        self.recovery(|r| r.serves_data())
    }

    /// It may push its version of this key to other replicas: only while whole, and only
    /// for a partition it replicates in the current ring (a stale ring, or a partition it
    /// gave away, never directs a push).
    pub(crate) fn may_push(&self, bucket: &[u8], key: &[u8]) -> bool {
        let whole = self.recovery(|r| r.may_push());
        let state = self.cluster();
        let Some(ring) = state.ring.as_ref() else {
            return false;
        };
        let n = self.inner.cfg.n_for(bucket).min(ring.members().len());
        let replicas = ring.preference_list(self.partition_of(bucket, key), n);
        chorus_core::anti_entropy::may_push(whole, &replicas, &self.inner.cfg.id)
    }

    pub(crate) fn recovery_era(&self) -> u64 {
        self.recovery(|r| r.era())
    }

    /// An anti-entropy exchange of `tree` with `peer`, begun in `era`, completed.
    pub(crate) fn recovery_exchanged(&self, tree: TreeId, peer: &str, era: u64) {
        self.recovery(|r| r.exchanged(tree, peer, era));
    }

    /// This node's recovery, for status and for peers (in its pongs).
    pub(crate) fn recovery_report(&self) -> Option<RecoveryStatus> {
        self.recovery(|r| r.reason())?;
        let obligations = self.shared_trees();
        self.recovery(|r| {
            let reason = r.reason()?;
            let p = r.progress(&obligations);
            Some(RecoveryStatus {
                reason: reason.to_string(),
                partitions_exchanged: p.partitions_exchanged,
                partitions_total: p.partitions_total,
            })
        })
    }

    /// What a peer said of its recovery in its last pong.
    pub(crate) fn observe_peer_recovery(&self, peer: &str, report: Option<RecoveryStatus>) {
        self.inner.recovery.answered().insert(peer.to_string());
        let mut peers = self.inner.recovery.peers();
        match report {
            Some(r) => {
                if !peers.contains_key(peer) {
                    tracing::info!(%peer, reason = %r.reason, "peer is recovering");
                }
                peers.insert(peer.to_string(), r);
            }
            None => {
                if peers.remove(peer).is_some() {
                    tracing::info!(%peer, "peer recovered");
                }
            }
        }
    }

    /// A node's recovery as this node knows it: its own, or a peer's last pong.
    pub(crate) fn recovery_of(&self, id: &str) -> Option<RecoveryStatus> {
        if id == self.inner.cfg.id {
            self.recovery_report()
        } else {
            self.inner.recovery.peers().get(id).cloned()
        }
    }

    /// After merging a peer's state (`theirs`) into ours (`before` the merge): notices a
    /// removal, judges what the peer says about this node, drops the data of a directory
    /// recognised as a restored copy, and announces this run once the start is decided.
    /// Judged after the merge, so the ring and removal are the cluster's before this node
    /// can count as whole.
    pub(crate) async fn recovery_gossip(&self, theirs: &ClusterState, before: &ClusterState) {
        let me = self.inner.cfg.id.clone();
        for (id, m) in &theirs.members {
            let was = before.members.get(id);
            if *id != me
                && m.generation != 0
                && was
                    .is_some_and(|w| w.generation != m.generation && w.incarnation < m.incarnation)
            {
                tracing::info!(peer = %id, generation = m.generation, "peer started a new run");
            }
        }
        self.check_removed();
        let (action, was, now) = self.recovery(|r| {
            let was = r.phase();
            let a = r.observe(theirs.members.get(&me), before.members.get(&me));
            (a, was, r.phase())
        });
        if now != was {
            match now {
                Phase::Whole => {
                    tracing::info!("start confirmed by a peer: this data directory is the latest")
                }
                Phase::Recovering(r) => tracing::warn!(
                    reason = r.name(),
                    "the cluster saw a later run of this node than its data directory holds: \
                     recovering from the other replicas before counting toward R"
                ),
                Phase::Unconfirmed => {}
            }
            self.store_recovery_reason().await;
        }
        if action == Action::DropData {
            tracing::warn!(
                "this data directory is a restored copy: it may hold keys deleted and purged \
                 since; dropping it where the other replicas are whole"
            );
            *self.inner.recovery.drop_since() = Some(std::time::Instant::now());
        }
        self.announce_run().await;
    }

    /// Notices that this node's own entry says it left or was removed.
    pub(crate) fn check_removed(&self) {
        let Some(mine) = self.cluster().members.get(&self.inner.cfg.id).cloned() else {
            return;
        };
        let left = mine.state == MemberState::Left;
        if self.recovery(|r| r.set_removed(left)) {
            if left {
                tracing::error!(
                    "this node has left or was removed from the cluster: it no longer serves or \
                     pushes data; wipe its data directory before it joins again"
                );
            } else {
                tracing::info!("this node is a member again");
            }
        }
    }

    /// Announces this run's generation once the start is decided. Persisted before it is
    /// gossiped, so a crash can't leave the cluster knowing a run the directory doesn't.
    async fn announce_run(&self) {
        let me = self.inner.cfg.id.clone();
        let state = self.cluster();
        let Some(mine) = state.members.get(&me) else {
            return;
        };
        let Some(incarnation) = self.recovery(|r| r.announce(mine)) else {
            return;
        };
        let generation = self.recovery(|r| r.generation());
        let set = move |s: &mut ClusterState| match s.members.get_mut(&me) {
            Some(m) if m.generation != generation || m.incarnation < incarnation => {
                m.incarnation = m.incarnation.max(incarnation);
                m.generation = generation;
                true
            }
            _ => false,
        };
        // Written under the persist lock, and gossiped only once on disk: a crash can't
        // leave the cluster knowing a run the directory doesn't, and no older snapshot can
        // overwrite it (the next start would take the directory for a restored copy).
        let members = &self.inner.members;
        let publish = set.clone();
        let written = self
            .inner
            .persist
            .write(
                || {
                    let mut next = (*self.cluster()).clone();
                    set(&mut next).then(|| next.encode())
                },
                || {
                    members.update(publish);
                },
            )
            .await;
        match written {
            Ok(true) => {}
            Ok(false) => return,
            Err(e) => {
                tracing::error!(error = %e, "could not persist this run's generation; not announcing it");
                return;
            }
        }
        tracing::info!(incarnation, generation, "announced this run");
    }

    async fn store_recovery_reason(&self) {
        let reason = self.recovery(|r| r.persisted_reason());
        let storage = self.inner.storage.clone();
        let r =
            tokio::task::spawn_blocking(move || recovery::store_reason(&*storage, reason)).await;
        if !matches!(r, Ok(Ok(()))) {
            tracing::error!("could not persist the recovery state");
        }
    }

    /// While recovering: exchanges with every other replica not yet exchanged with (only
    /// pulling), and leaves recovery once all are done. Runs whether or not periodic
    /// anti-entropy is on. Returns the exchanges that failed.
    async fn recovery_pass(&self) -> Vec<String> {
        let mut failed = Vec::new();
        self.mark_alive().await;
        if self.recovery(|r| r.dropping()) {
            self.drop_restored().await;
            return failed;
        }
        let phase = self.recovery(|r| r.phase());
        if phase == Phase::Whole {
            return failed;
        }
        if phase != Phase::Unconfirmed {
            let pending = {
                let obligations = self.shared_trees();
                self.recovery(|r| r.pending(&obligations))
            };
            for (peer, trees) in pending {
                if !self.inner.members.is_up(&peer) {
                    continue;
                }
                if let Err(e) = self.exchange_with(&peer, &trees).await {
                    tracing::debug!(%peer, error = %e, "recovery exchange failed");
                    failed.push(format!("exchange with {peer}: {e}"));
                }
            }
        }
        let obligations = self.shared_trees();
        let has_peers = self
            .cluster()
            .members
            .values()
            .any(|m| m.id != self.inner.cfg.id && m.state != MemberState::Left);
        if self.recovery(|r| r.settle(&obligations, has_peers)) {
            let partitions = self.recovery(|r| r.progress(&obligations).partitions_total);
            tracing::info!(
                partitions,
                "recovered: exchanged with every other replica of each partition; counting toward R again"
            );
            self.store_recovery_reason().await;
        }
        failed
    }

    /// Drops a restored copy, partition by partition, where that loses nothing: where every
    /// other replica of the partition is up and whole, so everything acknowledged there is
    /// held elsewhere. A partition with a replica down or itself recovering (wiped, restored)
    /// is kept: the copy may be the only one left of what it holds. Kept data is served to
    /// no one until this node has recovered; keys deleted and purged after the copy was
    /// taken may then come back, the price of never dropping a last copy. Waits (taking no
    /// writes) until every up replica has answered a ping since this start, at most
    /// [`DROP_DECISION_WAIT`]; one that hasn't by then counts as not whole.
    async fn drop_restored(&self) {
        let age = self
            .inner
            .recovery
            .copy_alive
            .map(|t| crate::hints::now_ms().saturating_sub(t));
        let grace = self.inner.cfg.tombstones.grace.as_millis() as u64;
        if recovery::copy_predates_no_purge(age, grace) {
            tracing::warn!(
                age_ms = age.unwrap_or_default(),
                grace_ms = grace,
                "the restored copy is younger than half the tombstone grace: nothing in it can \
                 have been purged since, so it is kept (unserved until recovered)"
            );
            *self.inner.recovery.drop_since() = None;
            self.recovery(|r| r.dropped(true));
            self.store_recovery_reason().await;
            return;
        }
        let since = (*self.inner.recovery.drop_since()).unwrap_or_else(Instant::now);
        let patience_over = since.elapsed() > DROP_DECISION_WAIT;
        let state = self.cluster();
        let Some(ring) = state.ring.as_ref() else {
            return;
        };
        let me = self.inner.cfg.id.as_str();
        let classes = self.n_classes();
        let recovery = &self.inner.recovery;
        let partitions = (0..ring.partition_count()).map(|p| {
            let mut others = BTreeSet::new();
            for n in &classes {
                others.extend(ring.preference_list(p, *n).into_iter().filter(|o| *o != me));
            }
            let others = others
                .into_iter()
                .map(|o| {
                    if !self.inner.members.is_up(o) {
                        OtherReplica::Down
                    } else if !recovery.answered().contains(o) {
                        OtherReplica::Unanswered
                    } else if recovery.peers().contains_key(o) {
                        OtherReplica::Recovering
                    } else {
                        OtherReplica::Whole
                    }
                })
                .collect();
            (p, others)
        });
        let Some(RestoredSplit { drop, keep }) = split_restored(partitions, patience_over) else {
            return;
        };
        let mut dropped = 0u64;
        for p in &drop {
            match self.inner.replica.drop_partition(*p).await {
                Ok(n) => dropped += n,
                Err(e) => {
                    // Stays "dropping": takes and serves nothing until restarted.
                    tracing::error!(partition = p, error = %e, "could not drop a restored partition");
                    return;
                }
            }
        }
        if keep.is_empty() {
            tracing::info!(keys = dropped, "restored data dropped");
        } else {
            tracing::warn!(
                keys = dropped,
                dropped = drop.len(),
                kept = keep.len(),
                "restored data dropped where the other replicas are whole; kept (unserved until \
                 recovered) where one is down or recovering, as it may be the only copy"
            );
        }
        *self.inner.recovery.drop_since() = None;
        self.recovery(|r| r.dropped(!keep.is_empty()));
        self.store_recovery_reason().await;
    }

    /// Marks a clean shutdown, so the next start doesn't assume a lost log tail.
    pub(crate) async fn end_run(&self) {
        let storage = self.inner.storage.clone();
        let now = crate::hints::now_ms();
        let _ = tokio::task::spawn_blocking(move || recovery::end_run(&*storage, now)).await;
    }

    /// Marks the directory alive about once a second, so a copy of it knows its age.
    async fn mark_alive(&self) {
        {
            let mut marked = self
                .inner
                .recovery
                .marked
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if marked.elapsed() < Duration::from_secs(1) {
                return;
            }
            *marked = Instant::now();
        }
        let storage = self.inner.storage.clone();
        let now = crate::hints::now_ms();
        let r = tokio::task::spawn_blocking(move || recovery::mark_alive(&*storage, now)).await;
        if !matches!(r, Ok(Ok(()))) {
            tracing::warn!("could not mark the data directory alive");
        }
    }
}

/// Recovery as a background worker: a pass every gossip interval (at least 200 ms), the
/// first one an interval after start. A whole node's pass does nothing, but the worker
/// keeps running: gossip can find later that the data directory is behind.
pub(crate) struct CatchUp {
    node: Node,
}

impl CatchUp {
    pub(crate) fn new(node: Node) -> CatchUp {
        CatchUp { node }
    }
}

impl Worker for CatchUp {
    fn name(&self) -> &'static str {
        "recovery"
    }

    fn progress(&self) -> String {
        match self.node.recovery_report() {
            None if self.node.is_removed() => "removed from the cluster".into(),
            None => "whole".into(),
            Some(r) => format!(
                "{}: exchanged {} of {} partitions",
                r.reason, r.partitions_exchanged, r.partitions_total
            ),
        }
    }

    fn waits_first(&self) -> bool {
        true
    }

    async fn step(&mut self) -> Result<WorkerState, WorkerError> {
        let failed = self.node.recovery_pass().await;
        if failed.is_empty() {
            Ok(WorkerState::Idle)
        } else {
            Err(failed.join("; ").into())
        }
    }

    async fn wait_for_work(&mut self) {
        let every = self
            .node
            .inner
            .cfg
            .gossip
            .interval
            .max(Duration::from_millis(200));
        tokio::time::sleep(every).await;
    }
}
