//! Example-based tests: errors, key hashing, accessors, serialization.

use chorus_ring::{
    partition_for, rendezvous_score, Member, Ring, RingError, DEFAULT_PARTITIONS, MAX_MEMBERS,
    MAX_PARTITIONS,
};

fn nodes(n: usize) -> Vec<Member> {
    (0..n).map(|i| Member::new(format!("node-{i}"))).collect()
}

#[test]
fn rejects_bad_input() {
    assert_eq!(Ring::new(0, 3, nodes(3)), Err(RingError::ZeroPartitions));
    assert_eq!(
        Ring::new(100, 3, nodes(3)),
        Err(RingError::PartitionsNotPowerOfTwo(100))
    );
    assert_eq!(
        Ring::new(MAX_PARTITIONS * 2, 3, nodes(3)),
        Err(RingError::TooManyPartitions {
            count: MAX_PARTITIONS * 2,
            max: MAX_PARTITIONS
        })
    );
    assert_eq!(Ring::new(256, 0, nodes(3)), Err(RingError::ZeroReplicas));
    assert_eq!(Ring::new(256, 3, vec![]), Err(RingError::NoMembers));
    assert_eq!(
        Ring::new(256, 3, vec![Member::new("")]),
        Err(RingError::EmptyMemberId)
    );
    let dup = vec![
        Member::new("a"),
        Member::with_zone("a", "z1"),
        Member::new("b"),
    ];
    assert_eq!(
        Ring::new(256, 3, dup.clone()),
        Err(RingError::DuplicateMember("a".into()))
    );
    assert_eq!(
        Ring::new(16, 3, nodes(MAX_MEMBERS + 1)),
        Err(RingError::TooManyMembers {
            count: MAX_MEMBERS + 1,
            max: MAX_MEMBERS
        })
    );
    let ring = Ring::new(256, 3, nodes(3)).unwrap();
    assert_eq!(
        ring.rebalance(dup),
        Err(RingError::DuplicateMember("a".into()))
    );
    assert_eq!(ring.rebalance(vec![]), Err(RingError::NoMembers));
    // Messages are meant for operators.
    assert_eq!(
        RingError::PartitionsNotPowerOfTwo(100).to_string(),
        "partition count 100 is not a power of two"
    );
}

#[test]
fn key_hashing_is_stable_and_nested() {
    // Pinned: changing the key hash would re-home every key of a live cluster.
    assert_eq!(partition_for(256, b"users", b"alice"), 183);
    assert_eq!(partition_for(65536, b"users", b"alice"), 47101);
    assert_eq!(partition_for(1024, b"", b""), 944);
    // Doubling the partition count splits each partition in two.
    for i in 0..1000u32 {
        let key = i.to_le_bytes();
        let mut prev = partition_for(1, b"b", &key);
        assert_eq!(prev, 0);
        for bits in 1..=16 {
            let p = partition_for(1 << bits, b"b", &key);
            assert_eq!(p >> 1, prev);
            prev = p;
        }
    }
    // The bucket/key boundary is part of the hash.
    assert_ne!(
        partition_for(65536, b"ab", b"c"),
        partition_for(65536, b"a", b"bc")
    );
    // Any count yields an in-range partition, even non-powers of two.
    for count in [0u32, 1, 3, 100, 255, 257, u32::MAX] {
        let p = partition_for(count, b"bucket", b"key");
        assert!(p < count.max(1), "{p} for {count}");
    }
}

#[test]
fn keys_spread_evenly() {
    let mut hits = vec![0u32; 256];
    for i in 0..256_000u32 {
        hits[partition_for(256, b"bucket", &i.to_be_bytes()) as usize] += 1;
    }
    // Expected 1000 per partition, standard deviation about 32.
    assert!(hits.iter().all(|&h| (850..=1150).contains(&h)), "{hits:?}");
}

#[test]
fn fresh_ring_is_pinned() {
    // Pinned so that any change to placement is a deliberate one: nodes
    // computing the next ring independently must all run the same algorithm.
    let members = vec![
        Member::with_zone("a", "east"),
        Member::with_zone("b", "west"),
        Member::new("c"),
        Member::with_zone("d", "east"),
        Member::new("e"),
    ];
    let ring = Ring::new(64, 3, members).unwrap();
    let json = serde_json::to_string(&ring).unwrap();
    assert_eq!(
        blake3::hash(json.as_bytes()).to_hex().as_str(),
        "7a68b4fc6d0958cdc4b710779259a43cb2cd8853649ee236b291d352ceb31e9c"
    );
    assert_eq!(rendezvous_score(7, "node-a"), 17455613395719214427);
}

#[test]
fn accessors() {
    let ring = Ring::new(DEFAULT_PARTITIONS, 3, nodes(5)).unwrap();
    assert_eq!(ring.version(), 1);
    assert_eq!(ring.partition_count(), 256);
    assert_eq!(ring.replicas(), 3);
    assert_eq!(ring.balanced_slots(), 3);
    assert_eq!(ring.members().len(), 5);
    assert!(ring.contains("node-3"));
    assert!(!ring.contains("node-9"));
    assert_eq!(ring.member("node-1"), Some(&Member::new("node-1")));

    let p = ring.partition_of(b"bucket", b"key");
    assert_eq!(p, partition_for(256, b"bucket", b"key"));
    let order = ring.order(p);
    assert_eq!(order.len(), 5);
    assert_eq!(ring.preference_list(p, 0), Vec::<&str>::new());
    assert_eq!(ring.preference_list(p, 2), order[..2]);
    assert_eq!(ring.preference_list(p, 99), order);
    assert_eq!(ring.fallbacks(p, 2), order[2..]);
    assert_eq!(ring.fallbacks(p, 0), order);
    assert!(ring.fallbacks(p, 99).is_empty());

    // Out-of-range partitions give empty answers, never a panic.
    for bad in [256, 257, u32::MAX] {
        assert!(ring.order(bad).is_empty());
        assert!(ring.preference_list(bad, 3).is_empty());
        assert!(ring.fallbacks(bad, 3).is_empty());
    }
    assert!(ring.partitions_of("nobody", 3).is_empty());

    let shares = ring.shares(3);
    let ids: Vec<&str> = shares.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids, ["node-0", "node-1", "node-2", "node-3", "node-4"]);
    for (id, c) in &shares {
        assert!((153..=154).contains(c));
        let parts = ring.partitions_of(id, 3);
        assert_eq!(parts.len(), *c);
        assert!(parts.windows(2).all(|w| w[0] < w[1]));
        assert!(parts
            .iter()
            .all(|&p| ring.preference_list(p, 3).contains(&id.as_str())));
    }
    // Coordinators are balanced too.
    assert!(ring.shares(1).iter().all(|(_, c)| (51..=52).contains(c)));
    assert!(ring.shares(0).iter().all(|(_, c)| *c == 0));
    assert!(ring.shares(10).iter().all(|(_, c)| *c == 256));
}

#[test]
fn small_clusters() {
    // One member, one partition.
    let ring = Ring::new(1, 3, nodes(1)).unwrap();
    assert_eq!(ring.balanced_slots(), 1);
    assert_eq!(ring.order(0), ["node-0"]);
    assert_eq!(ring.partition_of(b"any", b"key"), 0);
    // More replicas than members: everyone everywhere.
    let ring = Ring::new(16, 5, nodes(2)).unwrap();
    assert!(ring.shares(5).iter().all(|(_, c)| *c == 16));
    assert!(ring.shares(1).iter().all(|(_, c)| *c == 8));
    // Growing past `replicas` from below.
    let next = ring.rebalance(nodes(7)).unwrap();
    assert_eq!(next.balanced_slots(), 5);
    next.check_invariants().unwrap();
}

#[test]
fn rebalance_moves_only_to_the_newcomer() {
    let ring = Ring::new(256, 3, nodes(4)).unwrap();
    let next = ring.rebalance(nodes(5)).unwrap();
    let moves = ring.diff(&next, 3);
    let gained: usize = moves.iter().map(|m| m.gained.len()).sum();
    assert_eq!(gained, 153); // ⌊256·3/5⌋ or ⌈…⌉
    assert!(moves
        .iter()
        .all(|m| m.gained == ["node-4"] && m.lost.len() == 1));
    // And back: only node-4's slots move.
    let back = next.rebalance(nodes(4)).unwrap();
    let moves = next.diff(&back, 3);
    assert!(moves
        .iter()
        .all(|m| m.lost == ["node-4"] && m.gained.len() == 1));
    assert_eq!(moves.len(), 153);
    assert_eq!(back.version(), 3);
}

#[test]
fn zone_change_keeps_zone_spread() {
    let members = vec![
        Member::with_zone("a", "x"),
        Member::with_zone("b", "x"),
        Member::with_zone("c", "y"),
        Member::with_zone("d", "y"),
    ];
    let ring = Ring::new(128, 2, members.clone()).unwrap();
    for p in 0..128 {
        let pref = ring.preference_list(p, 2);
        let zones: Vec<_> = pref
            .iter()
            .map(|id| ring.member(id).unwrap().zone.clone())
            .collect();
        assert_ne!(zones[0], zones[1], "partition {p}");
    }
    // d moves to zone x: now three in x, one in y, and every partition still
    // needs both zones, so c (alone in y) is in every partition.
    let mut moved = members;
    moved[3].zone = Some("x".into());
    let next = ring.rebalance(moved).unwrap();
    assert_eq!(next.partitions_of("c", 2).len(), 128);
    next.check_invariants().unwrap();
}

#[test]
fn serde_round_trip_and_validation() {
    let ring = Ring::new(64, 3, nodes(4)).unwrap();
    let json = serde_json::to_string(&ring).unwrap();
    let back: Ring = serde_json::from_str(&json).unwrap();
    assert_eq!(back, ring);

    let mut value: serde_json::Value = serde_json::from_str(&json).unwrap();
    // A duplicated member index within a partition.
    value["orders"][1] = value["orders"][0].clone();
    assert!(serde_json::from_value::<Ring>(value.clone()).is_err());
    // Wrong number of entries.
    let mut short: serde_json::Value = serde_json::from_str(&json).unwrap();
    short["orders"].as_array_mut().unwrap().pop();
    assert!(serde_json::from_value::<Ring>(short).is_err());
    // An index past the member list.
    let mut big: serde_json::Value = serde_json::from_str(&json).unwrap();
    big["orders"][0] = 9.into();
    assert!(serde_json::from_value::<Ring>(big).is_err());
    // Unsorted members.
    let mut unsorted: serde_json::Value = serde_json::from_str(&json).unwrap();
    unsorted["members"].as_array_mut().unwrap().swap(0, 1);
    assert!(serde_json::from_value::<Ring>(unsorted).is_err());
    // Bad partition count.
    let mut parts: serde_json::Value = serde_json::from_str(&json).unwrap();
    parts["partition_count"] = 63.into();
    let err = serde_json::from_value::<Ring>(parts)
        .unwrap_err()
        .to_string();
    assert!(err.contains("not a power of two"), "{err}");

    // The version saturates instead of overflowing.
    let mut old: serde_json::Value = serde_json::from_str(&json).unwrap();
    old["version"] = u64::MAX.into();
    let old: Ring = serde_json::from_value(old).unwrap();
    assert_eq!(old.rebalance(nodes(5)).unwrap().version(), u64::MAX);
}

#[test]
fn diff_between_different_sizes_does_not_panic() {
    let a = Ring::new(16, 2, nodes(3)).unwrap();
    let b = Ring::new(32, 2, nodes(3)).unwrap();
    let moves = a.diff(&b, 2);
    // Partitions 16..32 exist only in b.
    assert!(moves
        .iter()
        .filter(|m| m.partition >= 16)
        .all(|m| m.lost.is_empty() && m.gained.len() == 2));
    assert!(a.diff(&a, 2).is_empty());
}
