//! The nemesis: which fault comes next, drawn from the run's RNG. Process faults (kill,
//! power loss, wipe, restore from an older copy), network faults (an isolated node, a
//! split, loss of all or of one kind of message, delay, duplication) and clock skew. Each
//! fault is healed after a while, and everything heals at the end of the fault period.
//! As in `chorus-verify`, a disk fault (power loss, wipe, restore) is injected only while
//! no other node has lost its disk and not yet recovered: one lost disk at a time is the
//! fault model N=3, W=2 promises to survive.

use rand::Rng;

use crate::engine::{SimRng, Time, MS, SEC};
use crate::net::MsgKind;

/// A fault, or the end of one.
#[derive(Clone, Debug)]
pub enum Fault {
    /// The process dies; the disk is intact.
    Kill(usize),
    /// The machine loses power: unsynced writes are gone.
    PowerLoss(usize),
    /// The process dies and its disk is replaced by an empty one.
    Wipe(usize),
    /// The process dies and its disk is put back to an older copy.
    Restore(usize),
    /// The node's process starts again.
    Restart(usize),
    /// A backup of the node's synced disk is taken (for a later restore).
    Snapshot(usize),
    /// The node can't reach any other node.
    Isolate(usize),
    /// The nodes split into these two sides.
    Split(Vec<usize>, Vec<usize>),
    HealPartitions,
    /// Every peer message is lost with this probability.
    Loss(f64),
    /// Messages of one kind are lost with this probability.
    KindLoss(MsgKind, f64),
    /// Peer messages take up to this much longer.
    Delay(Time),
    /// Peer messages are delivered twice with this probability.
    Duplicate(f64),
    /// The node's clock is off by this many microseconds.
    Skew(usize, i64),
}

/// What the nemesis needs to know about the cluster to pick a fault.
pub struct View {
    pub nodes: usize,
    pub up: Vec<bool>,
    /// A disk fault is under way (a node lost its disk and hasn't recovered yet).
    pub disk_fault: bool,
    pub has_snapshot: Vec<bool>,
    /// The message kinds a targeted loss may pick.
    pub kinds: &'static [MsgKind],
}

/// The next fault to inject now, and the faults that undo it with their delays.
pub fn next(rng: &mut SimRng, v: &View) -> (Fault, Vec<(Time, Fault)>) {
    let node = rng.random_range(0..v.nodes);
    let dur = rng.random_range(2 * SEC..8 * SEC);
    let down = rng.random_range(500 * MS..5 * SEC);
    let all_up = v.up.iter().all(|u| *u);
    loop {
        match rng.random_range(0..14) {
            0 | 1 if v.up[node] => return (Fault::Kill(node), vec![(down, Fault::Restart(node))]),
            2 if v.up[node] && !v.disk_fault => {
                return (Fault::PowerLoss(node), vec![(down, Fault::Restart(node))])
            }
            3 if v.up[node] && !v.disk_fault => {
                return (Fault::Wipe(node), vec![(down, Fault::Restart(node))])
            }
            // Only while every node is up and whole: the copy is then dropped where that
            // loses nothing. (A restore while a neighbour is down keeps the copy, and keys
            // purged since may come back: a documented limit, not what this checks.)
            4 if all_up && !v.disk_fault && v.has_snapshot[node] => {
                return (Fault::Restore(node), vec![(down, Fault::Restart(node))])
            }
            5 => return (Fault::Isolate(node), vec![(dur, Fault::HealPartitions)]),
            6 => {
                let mut side: Vec<usize> = (0..v.nodes).filter(|_| rng.random_bool(0.5)).collect();
                if side.is_empty() || side.len() == v.nodes {
                    side = vec![node];
                }
                let other = (0..v.nodes).filter(|n| !side.contains(n)).collect();
                return (
                    Fault::Split(side, other),
                    vec![(dur, Fault::HealPartitions)],
                );
            }
            7 => return (Fault::Loss(0.2), vec![(dur, Fault::Loss(0.0))]),
            8 => {
                let kind = v.kinds[rng.random_range(0..v.kinds.len())];
                let p = if rng.random_bool(0.5) { 1.0 } else { 0.5 };
                return (
                    Fault::KindLoss(kind, p),
                    vec![(dur, Fault::KindLoss(kind, 0.0))],
                );
            }
            9 => return (Fault::Delay(50 * MS), vec![(dur, Fault::Delay(0))]),
            10 => return (Fault::Duplicate(0.3), vec![(dur, Fault::Duplicate(0.0))]),
            11 => {
                let skew = rng.random_range(-90 * SEC as i64..=90 * SEC as i64);
                let back = rng.random_range(5 * SEC..20 * SEC);
                return (Fault::Skew(node, skew), vec![(back, Fault::Skew(node, 0))]);
            }
            12 if v.up[node] => return (Fault::Snapshot(node), Vec::new()),
            // Wipe-while-down: a replica misses writes while down, another loses its disk,
            // and the two come back together, so the only up-to-date copies are on the
            // third replica and in its hints.
            13 if all_up && !v.disk_fault => {
                let other = (node + rng.random_range(1..v.nodes)) % v.nodes;
                let wipe_at = rng.random_range(SEC..3 * SEC);
                let back = wipe_at + rng.random_range(100 * MS..500 * MS);
                return (
                    Fault::Kill(node),
                    vec![
                        (wipe_at, Fault::Wipe(other)),
                        (back, Fault::Restart(other)),
                        (back + rng.random_range(0..300 * MS), Fault::Restart(node)),
                    ],
                );
            }
            _ => continue,
        }
    }
}
