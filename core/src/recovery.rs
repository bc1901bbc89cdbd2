//! Recovery: a replica whose data may be incomplete (a wiped, restored or power-cut data
//! directory) doesn't count toward R, and doesn't spread its data, until it has exchanged
//! with the other replicas of each of its partitions.
//!
//! # Which starts need recovery
//!
//! Every run of a node picks a random *generation* and announces it in its own gossiped
//! [`MemberInfo`] (raising its incarnation so the announcement wins). The data directory
//! keeps the entry of the run that last wrote it. At start a node compares what its
//! directory says about itself, `(incarnation, generation)`, with what each peer says about
//! it, *before* its own announcement can overwrite the peer's view:
//!
//! - the peer holds exactly the directory's entry: confirmed, the directory is the latest;
//! - the peer holds a newer entry (incarnation at least the directory's, another
//!   generation): some run of this node that the directory doesn't know happened, so the
//!   directory is an older copy (restored), or has no past at all (wiped);
//! - the peer holds an older entry, no entry, or an entry without a generation: no news.
//!
//! Until a peer confirms or contradicts, the start is *unconfirmed*: it answers reads as
//! recovering, refuses replicated writes (coordinators keep hints for it) and serves no
//! data to anti-entropy or transfers. A fresh directory is confirmed by a peer that has
//! never seen a generation of this node (a new cluster, a new node), and contradicted by one
//! that has. A node without peers confirms itself by having nothing to exchange.
//!
//! An unclean shutdown with `storage.sync = false` loses the log's tail only if the machine
//! went down too: a killed process leaves its writes in the page cache. A marker holding the
//! boot id is written at start and removed at a clean shutdown; a start that finds it with
//! another boot id (or none readable) recovers once confirmed (it may still turn out to be a
//! restored copy). With `storage.sync = true` nothing is lost.
//!
//! The price of the unconfirmed phase: a node restarted while every other replica of its
//! partitions is down serves no reads and coordinates no writes until one comes back, since
//! it can't tell its directory from an older copy.
//!
//! # Restored data
//!
//! A copy older than the cluster's view may hold keys that were deleted and purged since:
//! no replica still holds a tombstone to cover them, so merging them anywhere brings them
//! back. When a restore is recognised while the start is still unconfirmed (nothing has been
//! written to the directory since it started), the node drops the copy, partition by
//! partition, where that loses nothing: where every other replica of the partition is up and
//! whole, so everything acknowledged there is held elsewhere. What the other replicas hold
//! comes back by exchange; what none holds is not re-introduced. A partition with another
//! replica down or itself recovering is kept: the copy may then be the only one left of
//! what it holds (two neighbours wiped, then this restore, lost every older write of theirs
//! when the copy was dropped whole). Kept data is served to no one until the node has
//! recovered; keys purged after the copy was taken may then come back, the price of never
//! dropping a last copy. A restore recognised later (the only peers that knew were down at
//! start) can't drop data any more, since writes counted toward W have landed since: the
//! node then recovers without serving its data to anyone; keys purged elsewhere may survive
//! on it.
//!
//! # Leaving recovery
//!
//! For every tree it replicates (every N class, current ring), one completed anti-entropy
//! exchange with every other replica of the partition, begun after the start. Exchanges of
//! a recovering node only pull. A replica that is down blocks its partitions: the data may
//! exist only there. The way out when it will not come back is `chorus remove` of the dead
//! node, which takes it out of the ring and so out of the obligations.
//!
//! # While recovering
//!
//! The node stores writes (a write is durable there, so it may count toward W) but its read
//! answers are marked recovering: the coordinator neither counts nor merges them. Reads
//! stay correct by quorum intersection among whole replicas: a write acknowledged by W
//! replicas of which k are recovering is on W - k whole ones, and a read of R whole
//! replicas among at most N - k whole ones meets it, since R + W - k > N - k. Not merging
//! keeps a restored copy's purged keys out of reads and read repair.
//!
//! # Removed nodes and stale rings
//!
//! A node pushes data (anti-entropy repairs) only while whole and only for partitions it
//! replicates in its current ring. A node whose own entry says `left` (it left, or was
//! removed while down) logs it and serves and pushes nothing; its data stays on disk for
//! the operator. A node that restarts with an old ring is unconfirmed until gossip brings
//! the current one, so a stale ring never directs a push.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::membership::MemberInfo;
use crate::merkle::TreeId;

/// Why a node is recovering.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// Its data directory had no past, but the cluster knew an earlier run.
    Wiped,
    /// Its data directory is older than what the cluster last saw of it.
    Restored,
    /// The machine went down with writes not yet synced (`storage.sync = false`).
    PowerLoss,
}

impl Reason {
    pub fn name(self) -> &'static str {
        match self {
            Reason::Wiped => "wiped",
            Reason::Restored => "restored",
            Reason::PowerLoss => "power_loss",
        }
    }
}

/// Where the node stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// No peer has yet confirmed or contradicted this start.
    Unconfirmed,
    Recovering(Reason),
    Whole,
}

/// The node's own member entry as its data directory last stored it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Previous {
    pub incarnation: u64,
    pub generation: u64,
}

/// What one peer's view of this node says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    NoNews,
    Confirms,
    /// A run this directory doesn't know; `certain` when it can't be our own echo or a
    /// late refutation within the directory's own run.
    Contradicts {
        certain: bool,
    },
}

/// What the caller must do after an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    None,
    /// Drop every data key: the directory is a restored copy and nothing was written since.
    DropData,
}

/// Progress of a recovery, for status and the peers' view.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    pub partitions_exchanged: u32,
    pub partitions_total: u32,
}

/// The recovery state machine. Pure: the node feeds it peers' views, completed exchanges
/// and its obligations; it says what counts and what to do.
#[derive(Clone, Debug)]
pub struct Recovery {
    previous: Option<Previous>,
    generation: u64,
    phase: Phase,
    /// The log's tail may be lost: recover even once the start is confirmed.
    power_loss: bool,
    /// The data may predate a purge and must not be served (a late-recognised restore).
    stale: bool,
    removed: bool,
    /// Some peer's view of the cluster has been merged (the ring is the cluster's).
    heard: bool,
    /// Data is being dropped: take nothing in, serve nothing, count no exchange.
    dropping: bool,
    /// Bumped when data is dropped, so exchanges begun before don't count.
    era: u64,
    exchanged: BTreeSet<(TreeId, String)>,
}

impl Recovery {
    /// `previous`: the directory's own entry (`None` for a fresh directory); `resumed`: a
    /// recovery the previous run didn't finish; `power_loss`: see [`power_loss`].
    pub fn new(
        previous: Option<Previous>,
        generation: u64,
        resumed: Option<Reason>,
        power_loss: bool,
    ) -> Recovery {
        // A power cut not yet confirmed is still only that: it may turn out restored.
        let power_loss = power_loss || resumed == Some(Reason::PowerLoss);
        let phase = match resumed {
            Some(r) if r != Reason::PowerLoss => Phase::Recovering(r),
            _ => Phase::Unconfirmed,
        };
        Recovery {
            previous,
            generation,
            phase,
            power_loss,
            // A restore recovery resumed after a restart may not have finished dropping.
            stale: resumed == Some(Reason::Restored),
            removed: false,
            heard: false,
            dropping: false,
            era: 0,
            exchanged: BTreeSet::new(),
        }
    }

    /// Tags exchanges: one begun in an older era doesn't count.
    pub fn era(&self) -> u64 {
        self.era
    }

    /// The data was dropped after [`Action::DropData`] (all of it, or, with `kept_some`,
    /// only the partitions whose other replicas were all whole: the rest is kept, unserved,
    /// as the only copy there may be).
    pub fn dropped(&mut self, kept_some: bool) {
        self.dropping = false;
        self.stale |= kept_some;
    }

    /// [`Action::DropData`] was returned and the drop hasn't happened yet.
    pub fn dropping(&self) -> bool {
        self.dropping
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }

    pub fn generation(&self) -> u64 {
        self.generation
    }

    pub fn removed(&self) -> bool {
        self.removed
    }

    /// Its read answers count toward R.
    pub fn counts_for_reads(&self) -> bool {
        self.phase == Phase::Whole && !self.removed
    }

    /// It may send its data to others: anti-entropy repairs of partitions it replicates.
    pub fn may_push(&self) -> bool {
        self.counts_for_reads()
    }

    /// It may answer anti-entropy listings and transfer scans (others pull from it).
    pub fn serves_data(&self) -> bool {
        !self.removed && !self.stale && !self.dropping && self.phase != Phase::Unconfirmed
    }

    /// It takes replicated writes. An unconfirmed start refuses them, so that a directory
    /// recognised as restored can still be dropped without losing an acknowledged write.
    pub fn accepts_writes(&self) -> bool {
        !self.removed && !self.dropping && self.phase != Phase::Unconfirmed
    }

    /// The reason to show, if not whole.
    pub fn reason(&self) -> Option<&'static str> {
        match self.phase {
            Phase::Whole => None,
            Phase::Unconfirmed => Some("unconfirmed"),
            Phase::Recovering(r) => Some(r.name()),
        }
    }

    /// The reason to persist, so a restart mid-recovery resumes it.
    pub fn persisted_reason(&self) -> Option<Reason> {
        match self.phase {
            Phase::Recovering(r) => Some(r),
            Phase::Unconfirmed if self.power_loss => Some(Reason::PowerLoss),
            _ => None,
        }
    }

    /// Classifies a peer's entry for this node; `announced` is our entry as we gossip it.
    pub fn verdict(&self, theirs: Option<&MemberInfo>, announced: Option<&MemberInfo>) -> Verdict {
        let Some(v) = theirs else {
            return match self.previous {
                // A peer that never heard of us: a new cluster or a new node.
                None => Verdict::Confirms,
                Some(_) => Verdict::NoNews,
            };
        };
        if v.generation == self.generation && v.generation != 0 {
            return Verdict::NoNews;
        }
        let Some(prev) = self.previous else {
            return if v.generation == 0 {
                Verdict::Confirms
            } else {
                Verdict::Contradicts { certain: true }
            };
        };
        if (v.incarnation, v.generation) == (prev.incarnation, prev.generation) {
            return Verdict::Confirms;
        }
        let echo = announced
            .is_some_and(|a| (a.incarnation, a.generation) == (v.incarnation, v.generation));
        if echo || v.incarnation < prev.incarnation || v.generation == 0 {
            return Verdict::NoNews;
        }
        Verdict::Contradicts {
            certain: v.generation != prev.generation && v.incarnation > prev.incarnation,
        }
    }

    /// A peer's entry for this node, before merging its state.
    pub fn observe(
        &mut self,
        theirs: Option<&MemberInfo>,
        announced: Option<&MemberInfo>,
    ) -> Action {
        let verdict = self.verdict(theirs, announced);
        self.heard = true;
        match (verdict, self.phase) {
            (Verdict::Confirms, Phase::Unconfirmed) => {
                self.phase = if self.power_loss {
                    Phase::Recovering(Reason::PowerLoss)
                } else {
                    Phase::Whole
                };
                Action::None
            }
            (Verdict::Contradicts { certain }, Phase::Unconfirmed) => {
                if self.previous.is_none() {
                    self.phase = Phase::Recovering(Reason::Wiped);
                    Action::None
                } else if certain {
                    self.phase = Phase::Recovering(Reason::Restored);
                    self.dropping = true;
                    self.era += 1;
                    self.exchanged.clear();
                    Action::DropData
                } else {
                    self.phase = Phase::Recovering(Reason::Restored);
                    self.stale = true;
                    Action::None
                }
            }
            (Verdict::Contradicts { .. }, _) => {
                // Writes have landed since the start: keep the data, but don't serve it.
                let reason = if self.previous.is_none() {
                    Reason::Wiped
                } else {
                    self.stale = true;
                    Reason::Restored
                };
                if self.phase == Phase::Whole || reason == Reason::Restored {
                    self.phase = Phase::Recovering(reason);
                }
                Action::None
            }
            _ => Action::None,
        }
    }

    /// Our entry after a merge; returns the incarnation to announce this run's generation
    /// with, if it must be (re)announced. Only once the start is decided, so that our
    /// announcement never hides a peer's older view before we have read it; the state stays
    /// whatever the cluster says (a removed node doesn't rejoin by announcing).
    pub fn announce(&self, mine: &MemberInfo) -> Option<u64> {
        if self.phase == Phase::Unconfirmed || mine.generation == self.generation {
            return None;
        }
        Some(mine.incarnation + 1)
    }

    /// Our own entry says we left or were removed.
    pub fn set_removed(&mut self, removed: bool) -> bool {
        let changed = self.removed != removed;
        self.removed = removed;
        changed
    }

    /// An exchange of `tree` with `peer`, begun in `era`, completed (this node pulled
    /// everything the peer had). Exchanges of an unconfirmed start don't count: its data may
    /// still be dropped.
    pub fn exchanged(&mut self, tree: TreeId, peer: &str, era: u64) {
        if era == self.era && !self.dropping && self.phase != Phase::Unconfirmed {
            self.exchanged.insert((tree, peer.to_string()));
        }
    }

    /// Progress against the obligations: every (tree, other replica) of the trees it
    /// replicates, grouped by peer as anti-entropy computes them.
    pub fn progress(&self, obligations: &BTreeMap<String, Vec<TreeId>>) -> Progress {
        let mut parts: BTreeMap<u32, bool> = BTreeMap::new();
        for (peer, trees) in obligations {
            for t in trees {
                let done = self.exchanged.contains(&(*t, peer.clone()));
                let e = parts.entry(t.0).or_insert(true);
                *e &= done;
            }
        }
        Progress {
            partitions_exchanged: parts.values().filter(|d| **d).count() as u32,
            partitions_total: parts.len() as u32,
        }
    }

    /// What is still to exchange, per peer.
    pub fn pending(
        &self,
        obligations: &BTreeMap<String, Vec<TreeId>>,
    ) -> BTreeMap<String, Vec<TreeId>> {
        obligations
            .iter()
            .map(|(peer, trees)| {
                let left: Vec<TreeId> = trees
                    .iter()
                    .filter(|t| !self.exchanged.contains(&(**t, peer.clone())))
                    .copied()
                    .collect();
                (peer.clone(), left)
            })
            .filter(|(_, t)| !t.is_empty())
            .collect()
    }

    /// Leaves recovery once every obligation is met; true if it just did. Until some peer's
    /// state has been heard, the ring (and so the obligations) may be stale: then only a
    /// node without peers settles.
    pub fn settle(&mut self, obligations: &BTreeMap<String, Vec<TreeId>>, has_peers: bool) -> bool {
        if self.phase == Phase::Whole {
            return false;
        }
        if (has_peers && !self.heard) || !self.pending(obligations).is_empty() {
            return false;
        }
        self.phase = Phase::Whole;
        self.stale = false;
        true
    }
}

/// Whether a restored copy, last alive `age_ms` ago, can hold nothing purged since: a key
/// live in it must be deleted after the copy was taken, then wait out the grace, before any
/// replica purges it. Half the grace leaves room for the clocks of the node that purges and
/// of this one to disagree.
pub fn copy_predates_no_purge(age_ms: Option<u64>, grace_ms: u64) -> bool {
    age_ms.is_some_and(|a| a < grace_ms / 2)
}

/// What this node knows of another replica, for deciding where a restored copy may go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OtherReplica {
    Down,
    /// Up, but hasn't said (in a pong) whether it is recovering.
    Unanswered,
    Recovering,
    Whole,
}

/// Where a restored copy recognised while unconfirmed is dropped and where it is kept.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RestoredSplit {
    /// Every other replica is up and whole: everything acknowledged there is held elsewhere.
    pub drop: Vec<u32>,
    /// Some other replica is down or recovering: the copy may be the last one.
    pub keep: Vec<u32>,
}

/// Splits a restored copy's partitions, given each partition's other replicas (of every N
/// class). A replica that hasn't answered yet makes the decision wait, until `patience_over`
/// (then it counts as not whole); `None` means wait.
pub fn split_restored(
    partitions: impl IntoIterator<Item = (u32, Vec<OtherReplica>)>,
    patience_over: bool,
) -> Option<RestoredSplit> {
    let mut out = RestoredSplit::default();
    for (p, others) in partitions {
        if !patience_over && others.contains(&OtherReplica::Unanswered) {
            return None;
        }
        if others.iter().all(|r| *r == OtherReplica::Whole) {
            out.drop.push(p);
        } else {
            out.keep.push(p);
        }
    }
    Some(out)
}

/// Written at start, removed at a clean shutdown.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunMarker {
    pub boot: Option<String>,
    pub sync: bool,
}

/// Whether a start after `left` (the marker of a run that didn't shut down cleanly) may
/// have lost the log's tail: only unsynced writes across a machine restart are lost. Such a
/// start recovers once confirmed (it can still turn out to be a restored copy first).
pub fn power_loss(left: Option<&RunMarker>, boot_now: Option<&str>) -> bool {
    match left {
        None => false,
        Some(m) if m.sync => false,
        Some(m) => match (m.boot.as_deref(), boot_now) {
            (Some(a), Some(b)) => a != b,
            _ => true,
        },
    }
}

#[cfg(test)]
mod tests;
