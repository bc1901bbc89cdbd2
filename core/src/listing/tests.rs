use std::collections::{BTreeMap, BTreeSet};

use chorus_ring::{Member, Ring};
use proptest::prelude::*;

use super::*;

const PARTITIONS: u32 = 64;

fn ring(ids: &[&str]) -> Ring {
    Ring::new(PARTITIONS, 3, ids.iter().map(|i| Member::new(*i)).collect()).expect("ring")
}

fn steady(ids: &[&str]) -> ClusterState {
    ClusterState {
        ring: Some(ring(ids)),
        ..ClusterState::default()
    }
}

/// A state in the middle of adding `d` to `a`, `b`, `c`: nothing confirmed yet.
fn moving() -> ClusterState {
    let old = ring(&["a", "b", "c"]);
    let new = old
        .rebalance(
            ["a", "b", "c", "d"]
                .iter()
                .map(|i| Member::new(*i))
                .collect(),
        )
        .expect("rebalance");
    ClusterState {
        ring: Some(new),
        prev: Some(old),
        ..ClusterState::default()
    }
}

/// Partition → the nodes a plan asks for it.
fn by_partition(plan: &BTreeMap<String, Vec<u32>>) -> BTreeMap<u32, Vec<String>> {
    let mut out: BTreeMap<u32, Vec<String>> = BTreeMap::new();
    for (node, parts) in plan {
        for p in parts {
            out.entry(*p).or_default().push(node.clone());
        }
    }
    out
}

#[test]
fn every_partition_gets_one_replica_of_its_preference_list() {
    let state = steady(&["a", "b", "c", "d", "e"]);
    let r = state.ring.as_ref().expect("ring");
    let plan = cover(&state, 3, 0..PARTITIONS, |_| true).expect("cover");
    let parts = by_partition(&plan);
    assert_eq!(parts.len(), PARTITIONS as usize);
    for (p, nodes) in parts {
        assert_eq!(nodes.len(), 1, "partition {p} asked twice");
        assert!(r.preference_list(p, 3).contains(&nodes[0].as_str()));
    }
}

#[test]
fn the_scans_spread_over_the_nodes() {
    // Every node holds every partition: each is still asked for about a third of them.
    let state = steady(&["a", "b", "c"]);
    let plan = cover(&state, 3, 0..PARTITIONS, |_| true).expect("cover");
    assert_eq!(plan.len(), 3);
    for (node, parts) in &plan {
        assert!(
            parts.len() >= PARTITIONS as usize / 4,
            "{node}: {}",
            parts.len()
        );
    }
}

#[test]
fn down_replicas_are_skipped_and_a_partition_with_none_fails() {
    let state = steady(&["a", "b", "c", "d", "e"]);
    let r = state.ring.as_ref().expect("ring");
    let plan = cover(&state, 3, 0..PARTITIONS, |n| n != "a").expect("cover");
    assert!(!plan.contains_key("a"));
    assert_eq!(by_partition(&plan).len(), PARTITIONS as usize);
    // Take away every replica of partition 5.
    let gone: Vec<String> = r
        .preference_list(5, 3)
        .iter()
        .map(|s| s.to_string())
        .collect();
    let err = cover(&state, 3, 0..PARTITIONS, |n| !gone.iter().any(|g| g == n))
        .expect_err("partition 5 has no replica");
    match err {
        CoverError::Uncovered { replicas, .. } => {
            let (mut got, mut want) = (replicas, gone.clone());
            got.sort();
            want.sort();
            assert_eq!(got, want);
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn moving_partitions_also_ask_a_new_owner() {
    let state = moving();
    let (old, new) = (
        state.prev.clone().expect("prev"),
        state.ring.clone().expect("ring"),
    );
    let plan = cover(&state, 3, 0..PARTITIONS, |_| true).expect("cover");
    let parts = by_partition(&plan);
    let mut moved = 0;
    for p in 0..PARTITIONS {
        let nodes = &parts[&p];
        let o = old.preference_list(p, 3);
        let n = new.preference_list(p, 3);
        assert!(
            nodes.iter().any(|x| o.contains(&x.as_str())),
            "an old replica for {p}"
        );
        if o != n && !n.contains(&o[0]) {
            moved += 1;
            assert!(
                nodes.iter().any(|x| n.contains(&x.as_str())),
                "a new owner for {p}"
            );
        }
    }
    assert!(
        moved > 0,
        "the join moved no partition's first replica; test is vacuous"
    );
    // The new owner is optional: with `d` down the listing still covers every partition.
    let plan = cover(&state, 3, 0..PARTITIONS, |x| x != "d").expect("cover");
    assert_eq!(by_partition(&plan).len(), PARTITIONS as usize);
}

#[test]
fn owners_are_every_old_and_new_replica() {
    let state = moving();
    let (old, new) = (
        state.prev.clone().expect("prev"),
        state.ring.clone().expect("ring"),
    );
    let parts = by_partition(&owners(&state, 3, 0..PARTITIONS).expect("owners"));
    for p in 0..PARTITIONS {
        let want: BTreeSet<String> = old
            .preference_list(p, 3)
            .into_iter()
            .chain(new.preference_list(p, 3))
            .map(str::to_string)
            .collect();
        let got: BTreeSet<String> = parts[&p].iter().cloned().collect();
        assert_eq!(got, want, "partition {p}");
    }
    let steady = steady(&["a", "b", "c", "d"]);
    let r = steady.ring.clone().expect("ring");
    let parts = by_partition(&owners(&steady, 2, 0..PARTITIONS).expect("owners"));
    for p in 0..PARTITIONS {
        assert_eq!(parts[&p], {
            let mut v: Vec<String> = r
                .preference_list(p, 2)
                .iter()
                .map(|s| s.to_string())
                .collect();
            v.sort();
            v
        });
    }
}

#[test]
fn no_ring_is_an_error() {
    let state = ClusterState::default();
    assert_eq!(cover(&state, 3, 0..4, |_| true), Err(CoverError::NoRing));
    assert_eq!(owners(&state, 3, 0..4), Err(CoverError::NoRing));
}

#[test]
fn tokens_round_trip_and_malformed_ones_are_refused() {
    for key in [b"a".to_vec(), vec![0, 255, 16], b"user/42".to_vec()] {
        assert_eq!(decode_token(&encode_token(&key)), Ok(key));
    }
    for bad in ["", "k1.", "k1.0", "k1.zz", "k2.61", "61", "k1.6G", "K1.61"] {
        assert!(decode_token(bad).is_err(), "{bad:?} accepted");
    }
}

#[test]
fn start_key_is_past_after_and_not_before_the_prefix() {
    assert_eq!(start_key(b"ab", None), b"ab".to_vec());
    assert_eq!(start_key(b"ab", Some(b"aa")), b"ab".to_vec());
    assert_eq!(start_key(b"ab", Some(b"abc")), b"abc\0".to_vec());
    assert_eq!(start_key(b"", Some(b"x")), b"x\0".to_vec());
}

#[test]
fn a_node_that_stopped_early_bounds_the_page() {
    let a = Answer {
        keys: vec![b"a".to_vec(), b"c".to_vec()],
        more: true,
    };
    let b = Answer {
        keys: vec![b"b".to_vec(), b"d".to_vec(), b"e".to_vec()],
        more: false,
    };
    let page = merge(vec![a, b], 10, usize::MAX);
    // "d" and "e" wait: node a may hold something between "c" and them.
    assert_eq!(page.keys, vec![b"a".to_vec(), b"b".to_vec(), b"c".to_vec()]);
    assert_eq!(page.next, Some(b"c".to_vec()));
    let done = merge(
        vec![Answer {
            keys: vec![b"x".to_vec()],
            more: false,
        }],
        1,
        usize::MAX,
    );
    assert_eq!(
        done.next, None,
        "an exactly full last page ends the listing"
    );
    // The byte bound cuts a page (keeping one key) and the token resumes there.
    let all = Answer {
        keys: vec![b"aaaa".to_vec(), b"bbbb".to_vec(), b"cccc".to_vec()],
        more: false,
    };
    let page = merge(vec![all.clone()], 10, 2 * (4 + KEY_OVERHEAD));
    assert_eq!(page.keys.len(), 2);
    assert_eq!(page.next, Some(b"bbbb".to_vec()));
    let page = merge(vec![all], 10, 0);
    assert_eq!((page.keys.len(), page.next), (1, Some(b"aaaa".to_vec())));
}

/// Pages through `stores` (one sorted key set per node, which may overlap) the way the
/// coordinator and replicas do: each node answers at most `node_limit` keys past the
/// cursor.
fn page_all(
    stores: &[BTreeSet<Vec<u8>>],
    limit: usize,
    node_limit: usize,
    max_bytes: usize,
) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut after: Option<Vec<u8>> = None;
    for _ in 0..10_000 {
        let answers = stores
            .iter()
            .map(|s| {
                let mut keys: Vec<Vec<u8>> = s
                    .iter()
                    .filter(|k| after.as_ref().is_none_or(|a| *k > a))
                    .take(node_limit + 1)
                    .cloned()
                    .collect();
                let more = keys.len() > node_limit;
                keys.truncate(node_limit);
                Answer { keys, more }
            })
            .collect();
        let page = merge(answers, limit, max_bytes);
        assert!(page.keys.len() <= limit);
        out.extend(page.keys);
        match page.next {
            Some(n) => after = Some(decode_token(&encode_token(&n)).expect("token")),
            None => return out,
        }
    }
    panic!("listing never ended");
}

proptest! {
    #[test]
    fn paging_returns_every_key_once_in_order(
        stores in proptest::collection::vec(
            proptest::collection::btree_set(proptest::collection::vec(0u8..4, 1..4), 0..40),
            1..5,
        ),
        limit in 1usize..12,
        node_limit in 1usize..12,
        max_bytes in 0usize..40,
    ) {
        let want: Vec<Vec<u8>> = stores.iter().flatten().cloned().collect::<BTreeSet<_>>()
            .into_iter().collect();
        prop_assert_eq!(page_all(&stores, limit, node_limit, max_bytes), want);
    }

    #[test]
    fn every_partition_is_covered_by_its_replicas(
        n in 1usize..4,
        down in proptest::collection::btree_set(0usize..5, 0..2),
    ) {
        let ids = ["a", "b", "c", "d", "e"];
        let state = moving();
        let usable = |x: &str| !down.iter().any(|d| ids[*d] == x);
        let plan = match cover(&state, n, 0..PARTITIONS, usable) {
            Ok(plan) => plan,
            // Only when every replica of some set could be down.
            Err(CoverError::Uncovered { .. }) if down.len() >= n => return Ok(()),
            Err(e) => return Err(TestCaseError::fail(e.to_string())),
        };
        let old = state.prev.clone().expect("prev");
        let new = state.ring.clone().expect("ring");
        let parts = by_partition(&plan);
        prop_assert_eq!(parts.len(), PARTITIONS as usize);
        for (p, nodes) in parts {
            prop_assert!(nodes.iter().all(|x| usable(x)));
            let o = old.preference_list(p, n);
            let w = new.preference_list(p, n);
            // With fewer than N down, a usable replica of the data-holding set exists.
            prop_assert!(nodes.iter().any(|x| o.contains(&x.as_str()) || w.contains(&x.as_str())));
            prop_assert!(nodes.iter().all(|x| o.contains(&x.as_str()) || w.contains(&x.as_str())));
            prop_assert!(nodes.len() <= 2);
        }
    }
}
