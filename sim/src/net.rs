//! The simulated network: latency, and the faults the nemesis sets: per node pair
//! partitions, loss (for all messages or one kind), extra delay, duplication. Reordering
//! comes from random latency. Client links are never partitioned (clients sit next to the
//! node they ask), but they see latency like everything else.

use std::collections::{BTreeMap, BTreeSet};

use rand::Rng;

use crate::engine::{SimRng, Time, MS};

/// Who sends or receives a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Addr {
    /// Storage node by index.
    Node(usize),
    /// Client process by index.
    Client(usize),
}

/// Message classes faults can target.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MsgKind {
    /// Client requests and replies.
    Client,
    /// A coordinator's write fan-out and its acknowledgements.
    Replicate,
    /// Replica reads and their answers.
    Read,
    /// Read repair pushes.
    Repair,
    /// Hint replay.
    Hint,
    /// Anti-entropy and recovery exchanges.
    AntiEntropy,
    /// Tombstone purge coordination.
    Purge,
    /// Failure-detector pings.
    Ping,
    /// Membership gossip.
    Gossip,
}

impl MsgKind {
    /// Kinds between nodes, the ones a targeted loss fault may pick.
    pub const PEER: [MsgKind; 7] = [
        MsgKind::Replicate,
        MsgKind::Read,
        MsgKind::Repair,
        MsgKind::Hint,
        MsgKind::AntiEntropy,
        MsgKind::Purge,
        MsgKind::Ping,
    ];

    /// The peer kinds of a run with membership changes: gossip too.
    pub const PEER_WITH_GOSSIP: [MsgKind; 8] = [
        MsgKind::Replicate,
        MsgKind::Read,
        MsgKind::Repair,
        MsgKind::Hint,
        MsgKind::AntiEntropy,
        MsgKind::Purge,
        MsgKind::Ping,
        MsgKind::Gossip,
    ];
}

/// The network's current faults.
#[derive(Clone, Debug, Default)]
pub struct Network {
    /// Directed node pairs `(from, to)` that can't talk.
    blocked: BTreeSet<(usize, usize)>,
    /// Loss probability for every peer message.
    pub loss: f64,
    /// Loss probability per kind, on top of `loss`.
    pub kind_loss: BTreeMap<MsgKind, f64>,
    /// Extra latency added to every peer message, drawn up to this.
    pub extra_delay: Time,
    /// Probability that a peer message is delivered twice.
    pub duplicate: f64,
}

impl Network {
    /// Cuts every link between `a` and `b`, both ways.
    pub fn cut(&mut self, a: &[usize], b: &[usize]) {
        for &x in a {
            for &y in b {
                if x != y {
                    self.blocked.insert((x, y));
                    self.blocked.insert((y, x));
                }
            }
        }
    }

    /// Heals every partition.
    pub fn heal_partitions(&mut self) {
        self.blocked.clear();
    }

    /// Removes every fault.
    pub fn heal(&mut self) {
        *self = Network::default();
    }

    /// Whether `from` can reach `to` at all now.
    pub fn connected(&self, from: usize, to: usize) -> bool {
        !self.blocked.contains(&(from, to))
    }

    /// The delivery delays of one send: empty when it is lost, two entries when duplicated.
    pub fn route(&self, rng: &mut SimRng, from: Addr, to: Addr, kind: MsgKind) -> Vec<Time> {
        let latency = |rng: &mut SimRng, extra: Time| {
            let l = rng.random_range(200..3 * MS);
            l + if extra > 0 {
                rng.random_range(0..extra)
            } else {
                0
            }
        };
        let (Addr::Node(f), Addr::Node(t)) = (from, to) else {
            return vec![latency(rng, 0)];
        };
        if f == t {
            return vec![0];
        }
        if !self.connected(f, t) {
            return Vec::new();
        }
        let p = self.loss + self.kind_loss.get(&kind).copied().unwrap_or(0.0);
        if p > 0.0 && rng.random_bool(p.min(1.0)) {
            return Vec::new();
        }
        let mut out = vec![latency(rng, self.extra_delay)];
        if self.duplicate > 0.0 && rng.random_bool(self.duplicate.min(1.0)) {
            out.push(latency(rng, self.extra_delay));
        }
        out
    }
}
