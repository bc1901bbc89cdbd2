//! What a run simulates: cluster shape, levels, timings, and the negative controls
//! ([`Bug`]) that put known bugs back into the node driver.

use std::fmt;
use std::str::FromStr;

use crate::engine::{Time, MS, SEC};

/// A known bug the node driver can be told to reintroduce, so tests can show the checkers
/// catch it. Off in every normal run: the driver then calls the real core code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Bug {
    /// A process start keeps its predecessor's actor and mints from the key's own clock
    /// only, so a purged or wiped key counts again from 1 and dots are issued twice.
    CounterRestart,
    /// A replica that lost or restored its disk counts toward R at once.
    WipedCounts,
    /// Replica merges keep only one sibling (last-writer-wins by dot).
    DropSiblings,
    /// Reads and writes ask one replica (R = W = 1).
    R1W1,
    /// The tombstone index keeps the time a key *first* became tombstones only when a newer
    /// tombstone replaces an older one, as `chorus-node`'s replica writer does today: the
    /// newer delete can then be purged before its grace, while hints older than it are
    /// still live (seed 397 resurrects a deleted key this way).
    TombstoneAgeKept,
    /// During a transition writes plan with the new ring only (no dual quorum): a write
    /// acknowledged by the new replica set can be missed by reads, which still go to the
    /// old set until every gainer confirmed its transfer.
    TransitionNewOnly,
    /// A node drops a partition as soon as its ring no longer gives it one, before the
    /// gainers confirmed their transfers and without a last exchange with the replicas.
    EarlyDrop,
}

impl Bug {
    /// Every negative control.
    pub const ALL: [Bug; 7] = [
        Bug::CounterRestart,
        Bug::WipedCounts,
        Bug::DropSiblings,
        Bug::R1W1,
        Bug::TombstoneAgeKept,
        Bug::TransitionNewOnly,
        Bug::EarlyDrop,
    ];

    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Bug::CounterRestart => "counter-restart",
            Bug::WipedCounts => "wiped-counts",
            Bug::DropSiblings => "drop-siblings",
            Bug::R1W1 => "r1w1",
            Bug::TombstoneAgeKept => "tombstone-age-kept",
            Bug::TransitionNewOnly => "transition-new-only",
            Bug::EarlyDrop => "early-drop",
        }
    }
}

impl fmt::Display for Bug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A name that is not one of [`Bug::ALL`].
#[derive(Debug, thiserror::Error)]
#[error("unknown bug {0:?}; known: counter-restart, wiped-counts, drop-siblings, r1w1, tombstone-age-kept, transition-new-only, early-drop")]
pub struct UnknownBug(String);

impl FromStr for Bug {
    type Err = UnknownBug;

    fn from_str(s: &str) -> Result<Bug, UnknownBug> {
        Bug::ALL
            .into_iter()
            .find(|b| b.name() == s)
            .ok_or_else(|| UnknownBug(s.to_string()))
    }
}

/// Everything that shapes one run besides the seed.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Storage nodes.
    pub nodes: usize,
    /// Replicas per key.
    pub n: usize,
    /// Read level.
    pub r: usize,
    /// Write level.
    pub w: usize,
    /// Ring partitions.
    pub partitions: u32,
    /// How long clients run and the nemesis injects faults; then everything heals.
    pub fault_time: Time,
    /// The longest the cluster may take to converge after the heal.
    pub settle_limit: Time,
    /// Tombstones older than this (on the purging node's clock) may be purged.
    pub tombstone_grace: Time,
    /// Hints older than this (on the holder's clock) are dropped; shorter than the grace.
    pub hint_expiry: Time,
    /// Time between anti-entropy rounds of a node.
    pub anti_entropy_interval: Time,
    /// Time between tombstone purge passes of a node.
    pub gc_interval: Time,
    /// Unsynced writes reach the disk's synced state this often.
    pub sync_interval: Time,
    /// A coordinator gives up on replicas after this.
    pub request_timeout: Time,
    /// A client gives up on its coordinator after this (outcome unknown).
    pub client_timeout: Time,
    /// Membership changes (joins, leaves, removes) run in one seed of this many (the seeds
    /// `s` with `s % k == k - 1`); 1: every seed, 0: none. The other seeds keep one ring.
    pub membership_one_in: u64,
    /// Node slots beyond `nodes` that may join in a seed with membership changes.
    pub spares: usize,
    /// Time between membership gossip rounds of a node.
    pub gossip_interval: Time,
    /// The negative control switched on, if any.
    pub bug: Option<Bug>,
    /// Print every message, fault and replica change touching this key (for debugging a
    /// failing seed; doesn't change the run).
    pub watch: Option<String>,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            nodes: 5,
            n: 3,
            r: 2,
            w: 2,
            partitions: 16,
            fault_time: 60 * SEC,
            settle_limit: 60 * SEC,
            tombstone_grace: 12 * SEC,
            hint_expiry: 11 * SEC,
            anti_entropy_interval: 2 * SEC,
            gc_interval: SEC,
            sync_interval: 500 * MS,
            request_timeout: SEC,
            client_timeout: 2 * SEC,
            membership_one_in: 3,
            spares: 2,
            gossip_interval: SEC,
            bug: None,
            watch: None,
        }
    }
}

impl SimConfig {
    /// The configuration with `bug` switched on (levels follow it for [`Bug::R1W1`]).
    pub fn with_bug(mut self, bug: Option<Bug>) -> SimConfig {
        self.bug = bug;
        if bug == Some(Bug::R1W1) {
            self.r = 1;
            self.w = 1;
        }
        self
    }

    /// Whether `seed` runs membership changes.
    pub fn changes_membership(&self, seed: u64) -> bool {
        self.membership_one_in > 0 && seed % self.membership_one_in == self.membership_one_in - 1
    }

    /// Whether `bug` is switched on.
    pub fn has(&self, bug: Bug) -> bool {
        self.bug == Some(bug)
    }
}
