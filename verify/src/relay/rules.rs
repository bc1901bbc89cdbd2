//! The fault rules applied per datagram: which pairs a partition blocks, the verdict on one
//! datagram (drop or delay), who sent it, and the per-relay random source for loss.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::{Faults, Party};

/// The blocked pairs of [`RelayNet::partition`] over nodes `0..n`.
pub(super) fn partition_pairs(n: usize, groups: &[Vec<usize>]) -> HashSet<(Party, Party)> {
    let listed = |a: usize| groups.iter().any(|g| g.contains(&a));
    let together = |a: usize, b: usize| groups.iter().any(|g| g.contains(&a) && g.contains(&b));
    let mut blocked = HashSet::new();
    for a in (0..n).filter(|&a| listed(a)) {
        for b in (0..n).filter(|&b| b != a && listed(b)) {
            if !together(a, b) {
                blocked.insert((Party::Node(a), Party::Node(b)));
            }
        }
    }
    blocked
}

/// What the rules say about one datagram: `None` to drop it, else the delay before
/// sending it. `sample` draws a uniform number in `[0, 1)` and is only called when loss is
/// in play.
pub(super) fn decide(
    faults: &Faults,
    from: Party,
    to: Party,
    sample: impl FnOnce() -> f64,
) -> Option<Duration> {
    if faults.blocked.contains(&(from, to)) {
        return None;
    }
    match (from, to) {
        (Party::Node(_), Party::Node(_)) => {
            // `loss > 0.0` is false for NaN; a sample in [0,1) is always below a loss >= 1.
            if faults.loss > 0.0 && sample() < faults.loss {
                None
            } else {
                Some(faults.delay)
            }
        }
        _ => Some(Duration::ZERO),
    }
}

/// Whether `src` is the node whose real address is `real`. A node listening on an
/// unspecified address (0.0.0.0 / ::) matches by port alone; IPv4-mapped IPv6 addresses
/// compare equal to their IPv4 form.
pub(super) fn is_node_addr(real: SocketAddr, src: SocketAddr) -> bool {
    if real.port() != src.port() {
        return false;
    }
    let real_ip = real.ip().to_canonical();
    real_ip.is_unspecified() || real_ip == src.ip().to_canonical()
}

/// A cheap xorshift64 generator, shared by the tasks of one relay.
pub(super) struct Rng(AtomicU64);

impl Rng {
    pub(super) fn new(node: usize) -> Rng {
        // Spread the index over the bits (splitmix64 finaliser); never zero.
        let mut x = (node as u64)
            .wrapping_add(1)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15);
        x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        x ^= x >> 31;
        Rng(AtomicU64::new(if x == 0 {
            0x2545_F491_4F6C_DD1D
        } else {
            x
        }))
    }

    /// A uniform number in `[0, 1)`.
    pub(super) fn next_f64(&self) -> f64 {
        let step = |x: u64| Some(xorshift64(x));
        let prev = match self
            .0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, step)
        {
            Ok(prev) | Err(prev) => prev,
        };
        (xorshift64(prev) >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn xorshift64(mut x: u64) -> u64 {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    x
}
