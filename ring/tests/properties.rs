//! Property tests for the placement guarantees listed in the crate docs.

use chorus_ring::{rendezvous_score, Member, Ring};
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};

/// How zones are assigned to a generated member list.
#[derive(Clone, Debug)]
enum Zones {
    /// No member has a zone.
    None,
    /// Members (sorted by id) are dealt round-robin into `z` equal zones;
    /// `z` is reduced to a divisor of the member count.
    Equal(usize),
    /// Each member gets zone `Some(i)` or none, arbitrarily.
    Random(Vec<Option<u8>>),
}

fn zones_strategy() -> impl Strategy<Value = Zones> {
    prop_oneof![
        Just(Zones::None),
        (1usize..=6).prop_map(Zones::Equal),
        prop::collection::vec(prop::option::weighted(0.8, 0u8..4), 12).prop_map(Zones::Random),
    ]
}

fn build(ids: &BTreeSet<String>, zones: &Zones) -> Vec<Member> {
    let m = ids.len();
    ids.iter()
        .enumerate()
        .map(|(i, id)| {
            let zone = match zones {
                Zones::None => None,
                Zones::Equal(z) => {
                    let z = (1..=*z).rev().find(|d| m % d == 0).unwrap_or(1);
                    Some(format!("zone-{}", i % z))
                }
                Zones::Random(v) => v[i % v.len()].map(|z| format!("zone-{z}")),
            };
            Member {
                id: id.clone(),
                zone,
            }
        })
        .collect()
}

fn ids(range: std::ops::RangeInclusive<usize>) -> impl Strategy<Value = BTreeSet<String>> {
    prop::collection::btree_set("[a-z][a-z0-9-]{0,7}", range)
}

fn partitions() -> impl Strategy<Value = u32> {
    (4u32..=10).prop_map(|b| 1 << b)
}

/// Zone key the way the crate documents it: a zoneless member is its own zone.
fn zone_key(m: &Member) -> String {
    match &m.zone {
        Some(z) => format!("z:{z}"),
        None => format!("n:{}", m.id),
    }
}

fn zone_sizes(members: &[Member]) -> BTreeMap<String, usize> {
    let mut sizes = BTreeMap::new();
    for m in members {
        *sizes.entry(zone_key(m)).or_insert(0) += 1;
    }
    sizes
}

fn equal_zones(members: &[Member]) -> bool {
    let sizes = zone_sizes(members);
    let first = sizes.values().next().copied();
    sizes.values().all(|&s| Some(s) == first)
}

fn count(ring: &Ring, n: usize) -> BTreeMap<String, usize> {
    ring.shares(n).into_iter().collect()
}

fn gained(a: &Ring, b: &Ring, n: usize) -> usize {
    a.diff(b, n).iter().map(|m| m.gained.len()).sum()
}

/// Every placement property that holds for any single ring.
fn check_ring(ring: &Ring) -> Result<(), TestCaseError> {
    prop_assert_eq!(ring.check_invariants(), Ok(()));
    let members = ring.members();
    let m = members.len();
    let k = ring.balanced_slots();
    let parts = ring.partition_count() as usize;
    let zone_of: BTreeMap<&str, String> = members
        .iter()
        .map(|x| (x.id.as_str(), zone_key(x)))
        .collect();
    let z = zone_sizes(members).len();

    for p in 0..ring.partition_count() {
        // 1. Distinctness: the order is a permutation of the members.
        let order = ring.order(p);
        let set: BTreeSet<&str> = order.iter().copied().collect();
        prop_assert_eq!(order.len(), m);
        prop_assert_eq!(set.len(), m);
        prop_assert!(order.iter().all(|id| ring.contains(id)));
        // Accessors agree with each other.
        for n in [0, 1, k, m, m + 3] {
            let mut joined = ring.preference_list(p, n);
            joined.extend(ring.fallbacks(p, n));
            prop_assert_eq!(&joined, &order);
            prop_assert_eq!(ring.preference_list(p, n).len(), n.min(m));
        }
        // 4. Zones: the first k span min(k, z) zones.
        let spanned: BTreeSet<&String> = order[..k].iter().map(|id| &zone_of[id]).collect();
        prop_assert_eq!(spanned.len(), k.min(z), "partition {}", p);
        // 6. Fallbacks after the balanced slots follow rendezvous scores.
        let scores: Vec<u64> = order[k..]
            .iter()
            .map(|id| rendezvous_score(p, id))
            .collect();
        prop_assert!(scores.windows(2).all(|w| w[0] >= w[1]));
    }
    prop_assert!(ring.order(ring.partition_count()).is_empty());

    // 3. Balance, for k and for the coordinator position.
    let sizes = zone_sizes(members);
    let total = |n: usize| -> (usize, usize) { ((parts * n) / m, (parts * n).div_ceil(m)) };
    if equal_zones(members) {
        for n in [1, k] {
            let (lo, hi) = total(n);
            for (id, c) in count(ring, n) {
                prop_assert!(
                    lo <= c && c <= hi,
                    "{} holds {} of first {}, expected {}..={}",
                    id,
                    c,
                    n,
                    lo,
                    hi
                );
            }
        }
        // Intermediate prefixes are aimed at, not guaranteed: allow one more.
        for n in 2..k {
            let (lo, hi) = total(n);
            for (id, c) in count(ring, n) {
                prop_assert!(
                    lo <= c + 1 && c <= hi + 1,
                    "{} holds {} of first {}",
                    id,
                    c,
                    n
                );
            }
        }
    } else {
        // Loose bound with unequal zones: within a zone counts differ by at
        // most one, and a zone's total never exceeds one slot per member per
        // partition (which is what any placement can do).
        let counts = count(ring, k);
        let mut per_zone: BTreeMap<&String, Vec<usize>> = BTreeMap::new();
        for x in members {
            per_zone
                .entry(&zone_of[x.id.as_str()])
                .or_default()
                .push(counts[&x.id]);
        }
        for (zk, cs) in per_zone {
            let (lo, hi) = (cs.iter().min().unwrap(), cs.iter().max().unwrap());
            prop_assert!(hi - lo <= 1);
            prop_assert!(cs.iter().sum::<usize>() <= parts * sizes[zk].min(k));
        }
    }
    // Partitions per node agree with shares.
    for (id, c) in count(ring, k) {
        prop_assert_eq!(ring.partitions_of(&id, k).len(), c);
    }
    Ok(())
}

/// `cases` unless `PROPTEST_CASES` asks for a longer (or shorter) run.
fn config(cases: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(cases);
    ProptestConfig {
        cases,
        // Shrunk failures are printed; don't write regression files.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config(256))]

    /// Properties 1, 3, 4, 6 for fresh rings, and 2 (determinism).
    #[test]
    fn fresh_rings(ids in ids(1..=12), zones in zones_strategy(), parts in partitions(), replicas in 1usize..=5, seed in any::<u64>()) {
        let members = build(&ids, &zones);
        let ring = Ring::new(parts, replicas, members.clone()).unwrap();
        prop_assert_eq!(ring.version(), 1);
        check_ring(&ring)?;
        // 2. Determinism: input order is irrelevant.
        let mut shuffled = members;
        let len = shuffled.len();
        shuffled.rotate_left((seed as usize) % len);
        if seed & 1 == 1 { shuffled.reverse(); }
        prop_assert_eq!(Ring::new(parts, replicas, shuffled).unwrap(), ring);
    }

    /// Property 5 (adding one member) plus 1-4, 6 on the result.
    #[test]
    fn add_one_member(ids in ids(2..=12), zones in zones_strategy(), parts in partitions(), replicas in 1usize..=5, pick in any::<prop::sample::Index>()) {
        let all = build(&ids, &zones);
        let newcomer = pick.index(all.len());
        let before: Vec<Member> = all.iter().enumerate().filter(|&(i, _)| i != newcomer).map(|(_, x)| x.clone()).collect();
        let prev = Ring::new(parts, replicas, before).unwrap();
        let next = prev.rebalance(all.clone()).unwrap();
        prop_assert_eq!(next.version(), 2);
        check_ring(&next)?;
        let mut reversed = all.clone();
        reversed.reverse();
        prop_assert_eq!(&prev.rebalance(reversed).unwrap(), &next);

        let m = all.len();
        let k = next.balanced_slots();
        let moved = gained(&prev, &next, k);
        let new_id = &all[newcomer].id;
        let new_share = count(&next, k)[new_id];
        if matches!(zones, Zones::None) {
            prop_assert!(moved <= (parts as usize * k).div_ceil(m) + k, "moved {}", moved);
            // Everything that moves goes to the newcomer.
            prop_assert_eq!(moved, new_share);
        } else {
            prop_assert!(moved <= zoned_bound(&prev, &next, k));
        }
    }

    /// Property 5 (removing one member) plus 1-4, 6 on the result.
    #[test]
    fn remove_one_member(ids in ids(2..=12), zones in zones_strategy(), parts in partitions(), replicas in 1usize..=5, pick in any::<prop::sample::Index>()) {
        let all = build(&ids, &zones);
        let gone = pick.index(all.len());
        let after: Vec<Member> = all.iter().enumerate().filter(|&(i, _)| i != gone).map(|(_, x)| x.clone()).collect();
        let prev = Ring::new(parts, replicas, all.clone()).unwrap();
        let next = prev.rebalance(after).unwrap();
        check_ring(&next)?;
        let k = next.balanced_slots();
        let moved = gained(&prev, &next, k);
        if matches!(zones, Zones::None) {
            let departed = count(&prev, prev.balanced_slots())[&all[gone].id];
            let k_changed = next.balanced_slots() != prev.balanced_slots();
            if !k_changed {
                prop_assert!(moved <= departed + k, "moved {} for {} departed slots", moved, departed);
            }
        } else {
            prop_assert!(moved <= zoned_bound(&prev, &next, k));
        }
    }

    /// A random walk of membership changes (joins, leaves, zone moves): every
    /// ring keeps all properties, versions count up, and a rebalance to the
    /// same members moves nothing.
    #[test]
    fn membership_walk(ids in ids(1..=12), zones in zones_strategy(), parts in (4u32..=8).prop_map(|b| 1 << b), replicas in 1usize..=5, steps in prop::collection::vec((any::<prop::sample::Index>(), 0u8..3, 0u8..4), 1..6)) {
        let pool = build(&ids, &zones);
        let mut current: Vec<Member> = pool.iter().take(pool.len().div_ceil(2)).cloned().collect();
        let mut ring = Ring::new(parts, replicas, current.clone()).unwrap();
        for (i, (pick, action, zone)) in steps.into_iter().enumerate() {
            let x = pool[pick.index(pool.len())].clone();
            match action {
                0 if !current.iter().any(|c| c.id == x.id) => current.push(x),
                1 if current.len() > 1 => { current.retain(|c| c.id != x.id); }
                _ => if let Some(c) = current.iter_mut().find(|c| c.id == x.id) {
                    c.zone = (zone > 0).then(|| format!("zone-{zone}"));
                },
            }
            let next = ring.rebalance(current.clone()).unwrap();
            prop_assert_eq!(next.version(), i as u64 + 2);
            check_ring(&next)?;
            ring = next;
        }
        let same = ring.rebalance(current).unwrap();
        for n in 1..=replicas + 1 {
            prop_assert!(ring.diff(&same, n).is_empty());
        }
        for p in 0..parts {
            prop_assert_eq!(ring.order(p), same.order(p));
        }
    }
}

/// Movement allowance with zones. Three things force data to move:
/// * members whose slot count grows (each new slot is a move);
/// * partitions that must take in members because a departure left a hole or
///   what they kept breaks the new zone rule (every zone present when there
///   are at most `k`; per-zone caps);
/// * slots that change zone because zone totals shift: the partitions where
///   a zone can give way need not contain the members of that zone that must
///   shrink, and each such mismatch costs a swap between two members.
///
/// These overlap only partly, so the allowance is their sum plus `k`; the
/// fair-share bound used without zones does not apply.
fn zoned_bound(prev: &Ring, next: &Ring, k: usize) -> usize {
    let before = count(prev, k);
    let grown: usize = count(next, k)
        .into_iter()
        .map(|(id, c)| c.saturating_sub(before.get(&id).copied().unwrap_or(0)))
        .sum();
    let sizes = zone_sizes(next.members());
    let cap = zone_cap(&sizes, k);
    let z = sizes.len();
    let refill: usize = (0..prev.partition_count())
        .map(|p| {
            let mut kept: BTreeMap<String, usize> = BTreeMap::new();
            for id in prev.preference_list(p, prev.balanced_slots()) {
                if let Some(m) = next.member(id) {
                    *kept.entry(zone_key(m)).or_insert(0) += 1;
                }
            }
            let keepable = kept
                .iter()
                .map(|(zk, &c)| c.min(cap[zk]))
                .sum::<usize>()
                .min(k);
            let missing = if z <= k { z - kept.len() } else { 0 };
            (k - keepable).max(missing)
        })
        .sum();
    let zone_total = |ring: &Ring| -> BTreeMap<String, usize> {
        let mut t = BTreeMap::new();
        for (id, c) in count(ring, k) {
            if let Some(m) = next.member(&id) {
                *t.entry(zone_key(m)).or_insert(0) += c;
            }
        }
        t
    };
    let (zt_prev, zt_next) = (zone_total(prev), zone_total(next));
    let shift: usize = zt_next
        .iter()
        .map(|(z, &t)| t.saturating_sub(zt_prev.get(z).copied().unwrap_or(0)))
        .sum();
    grown + refill + shift + k
}

/// Per-zone cap on members among a partition's first `k`, as documented in
/// `Ring::check_invariants`.
fn zone_cap(sizes: &BTreeMap<String, usize>, k: usize) -> BTreeMap<String, usize> {
    let mut t = 1;
    while t < k && sizes.values().map(|&s| s.min(t)).sum::<usize>() < k {
        t += 1;
    }
    sizes.iter().map(|(z, &s)| (z.clone(), s.min(t))).collect()
}
