//! Zones: failure domains, their per-partition bounds and each member's quota.
//!
//! Everything here follows from the member list alone, before any slot is
//! assigned; both placement and validation need it, so it sits below both.

use crate::Member;
use std::collections::BTreeMap;

/// Zones and their per-partition bounds, derived from the members alone.
pub(crate) struct Layout {
    pub(crate) zone_of: Vec<usize>,
    /// Member indices per zone (ascending); zones sorted by zone key.
    pub(crate) zones: Vec<Vec<usize>>,
    /// Minimum members of the zone among a partition's first `k`.
    pub(crate) lo: Vec<u32>,
    /// Maximum members of the zone among a partition's first `k`.
    pub(crate) hi: Vec<u32>,
}

impl Layout {
    pub(crate) fn new(members: &[Member], k: usize) -> Layout {
        // A zoneless member is its own failure domain; the enum keeps a node
        // id from colliding with a zone name.
        #[derive(PartialEq, Eq, PartialOrd, Ord)]
        enum Key<'a> {
            Named(&'a str),
            Solo(&'a str),
        }
        let mut map: BTreeMap<Key, Vec<usize>> = BTreeMap::new();
        for (i, m) in members.iter().enumerate() {
            let key = match &m.zone {
                Some(z) => Key::Named(z),
                None => Key::Solo(&m.id),
            };
            map.entry(key).or_default().push(i);
        }
        let zones: Vec<Vec<usize>> = map.into_values().collect();
        let mut zone_of = vec![0; members.len()];
        for (z, zm) in zones.iter().enumerate() {
            for &v in zm {
                zone_of[v] = z;
            }
        }
        // Every zone must appear when there are no more zones than slots.
        let lo = u32::from(zones.len() <= k);
        // The tightest per-zone cap that still lets k slots be filled: this
        // spreads each partition over zones as evenly as zone sizes allow.
        let mut t = 1;
        while t < k && zones.iter().map(|zm| zm.len().min(t)).sum::<usize>() < k {
            t += 1;
        }
        Layout {
            zone_of,
            lo: vec![lo; zones.len()],
            hi: zones.iter().map(|zm| zm.len().min(t) as u32).collect(),
            zones,
        }
    }
}

/// Slot quotas: how many of the `parts·k` balanced slots each member holds.
///
/// Water-filling: every member gets the same share `λ`, except that a zone's
/// total is clamped to `[parts·lo, parts·hi]` (what its per-partition bounds
/// permit). Integer rounding hands the leftover units, one per member, to the
/// members ranked first by `rank` (for a rebalance: those holding the most
/// now, so nobody gives up a slot it would only get back).
pub(crate) fn quotas(parts: u64, k: u64, lay: &Layout, rank: &[usize]) -> Vec<i64> {
    let total = parts * k;
    let bounds: Vec<(u64, u64, u64)> = lay
        .zones
        .iter()
        .enumerate()
        .map(|(z, zm)| {
            (
                zm.len() as u64,
                parts * u64::from(lay.lo[z]),
                parts * u64::from(lay.hi[z]),
            )
        })
        .collect();
    let fill = |lam: u64| -> u64 {
        bounds
            .iter()
            .map(|&(s, lo, hi)| (s * lam).clamp(lo, hi))
            .sum()
    };
    // Largest λ with fill(λ) ≤ total; fill(0) = Σ lo ≤ total by construction.
    let (mut a, mut b) = (0u64, parts);
    while a < b {
        let mid = (a + b).div_ceil(2);
        if fill(mid) <= total {
            a = mid;
        } else {
            b = mid - 1;
        }
    }
    let lam = a;
    let mut q = vec![0i64; rank.len()];
    let mut base_sum = 0;
    let mut extra: Vec<usize> = Vec::new();
    for (z, zm) in lay.zones.iter().enumerate() {
        let (s, lo, hi) = bounds[z];
        let base = (s * lam).clamp(lo, hi);
        let room = if lam < parts {
            (s * (lam + 1)).clamp(lo, hi) - base
        } else {
            0
        };
        base_sum += base;
        let mut ms = zm.clone();
        ms.sort_by_key(|&v| rank[v]);
        let ex = (base % s) as usize;
        for (i, &v) in ms.iter().enumerate() {
            q[v] = (base / s) as i64 + i64::from(i < ex);
        }
        extra.extend(ms.iter().skip(ex).take(room as usize));
    }
    extra.sort_by_key(|&v| rank[v]);
    for &v in extra.iter().take(total.saturating_sub(base_sum) as usize) {
        q[v] += 1;
    }
    q
}
