use super::*;
use crate::context::Context;
use crate::merkle::Tree;
use crate::storage::{data_key, MemStorage};

fn opts(max_siblings: usize) -> ReplicaOptions {
    ReplicaOptions {
        max_batch: 16,
        max_siblings,
        max_object_bytes: 1 << 20,
        n_of: Arc::new(|_| 3),
        layout: "test".into(),
        conflicts_of: Arc::new(|b: &[u8]| {
            if b == b"lww" {
                Conflicts::Lww
            } else {
                Conflicts::Siblings
            }
        }),
        max_clock_offset: std::time::Duration::from_secs(10),
    }
}

fn put(v: &[u8]) -> Change {
    Change::Update {
        ctx: Context::default(),
        value: Some(v.to_vec()),
        expires_ms: None,
    }
}

#[tokio::test]
async fn update_merge_and_epoch() {
    let mem = MemStorage::default();
    let r = Replica::open(Arc::new(mem.clone()), "n1", opts(4)).expect("open");
    let epoch = r.actor().epoch;
    let k = data_key(0, b"b", b"k");
    let a = r.apply(k.clone(), put(b"v1")).await.expect("update");
    assert_eq!(a.values(), vec![&b"v1"[..]]);
    let b = r.apply(k.clone(), put(b"v2")).await.expect("update");
    assert_eq!(b.sibling_count(), 2);
    let stored = r.get(k.clone()).await.expect("get").expect("present");
    assert_eq!(stored, b);
    // Too many siblings is refused, and the stored state is unchanged.
    for _ in 0..2 {
        r.apply(k.clone(), put(b"x")).await.expect("within limit");
    }
    let err = r.apply(k.clone(), put(b"x")).await;
    assert!(matches!(err, Err(ReplicaError::TooManySiblings { .. })));
    let stored = r.get(k.clone()).await.expect("get").expect("present");
    assert_eq!(stored.sibling_count(), 4);
    // Same storage, same node: a new epoch all the same (the storage may be an older
    // copy). Another node id is refused.
    let again = Replica::open(Arc::new(mem.clone()), "n1", opts(4)).expect("reopen");
    assert_ne!(again.actor().epoch, epoch);
    assert_eq!(again.actor().node, "n1");
    assert!(matches!(
        Replica::open(Arc::new(mem), "n2", opts(4)),
        Err(ReplicaError::WrongNode { .. })
    ));
    // Empty storage: a new epoch.
    let fresh = Replica::open(Arc::new(MemStorage::default()), "n1", opts(4)).expect("fresh");
    assert_ne!(fresh.actor().epoch, epoch);
}

#[tokio::test]
async fn a_key_over_the_limits_takes_only_writes_that_shrink_it() {
    let r = Replica::open(Arc::new(MemStorage::default()), "n1", opts(4)).expect("open");
    let k = data_key(0, b"b", b"k");
    // Concurrent writes elsewhere: merging is never refused, so the key grows past 4.
    let mut grown = crate::version::Object::new();
    for i in 0..6u64 {
        let who = crate::version::Actor::new(format!("w{i}"), 1);
        grown.update(&Context::default(), &who, 0, Some(vec![b'a' + i as u8; 10]));
    }
    r.apply(k.clone(), Change::Merge(grown.clone()))
        .await
        .expect("merge");
    let err = r.apply(k.clone(), put(b"blind")).await;
    assert!(matches!(err, Err(ReplicaError::TooManySiblings { .. })));
    // A read that showed two of the six (a cut reply): replacing them shrinks the key,
    // though it stays over the limit; the four unseen values are kept.
    let shown = grown.context_showing(|v| v[0] < b'c');
    let cut = grown.context_showing(|_| false);
    assert!(cut.vv.is_empty() && cut.dots.is_empty());
    let out = r
        .apply(
            k.clone(),
            Change::Update {
                ctx: shown,
                value: Some(b"resolved".to_vec()),
                expires_ms: None,
            },
        )
        .await
        .expect("a shrinking write is taken");
    assert_eq!(out.sibling_count(), 5);
    assert!(out.values().contains(&&b"resolved"[..]));
    assert!(!out.values().iter().any(|v| v[0] < b'c' && v.len() == 10));
}

#[tokio::test]
async fn trees_follow_writes_survive_restarts_and_match_a_rebuild() {
    let mem = MemStorage::default();
    let r = Replica::open(Arc::new(mem.clone()), "n1", opts(8)).expect("open");
    let mut objs = Vec::new();
    for i in 0..50u32 {
        let p = i % 4;
        let key = format!("k{i}");
        let o = r
            .apply(data_key(p, b"b", key.as_bytes()), put(b"v"))
            .await
            .expect("put");
        objs.push((p, key, o));
    }
    // Delete a few: tombstones are indexed.
    for (p, key, o) in objs.iter().take(5) {
        r.apply(
            data_key(*p, b"b", key.as_bytes()),
            Change::Update {
                ctx: o.context(),
                value: None,
                expires_ms: None,
            },
        )
        .await
        .expect("delete");
    }
    assert_eq!(
        r.old_tombstones(u64::MAX, 100)
            .await
            .expect("tombstones")
            .len(),
        5
    );
    let id = r.tree_of(1, b"b");
    let before = r.trees().snapshot(id);
    assert!(!before.is_empty());
    // Keys listed per segment match the tree.
    let segs: Vec<u16> = (0..crate::merkle::LEAVES as u16).collect();
    let listed = r.segment_keys(id, segs).await.expect("keys");
    let mut rebuilt = Tree::new();
    for (b, k, d) in &listed {
        rebuilt.update(b, k, None, Some(d));
    }
    assert_eq!(rebuilt, before);

    // Reopen: loaded from the leaves, equal.
    drop(r);
    let again = Replica::open(Arc::new(mem.clone()), "n1", opts(8)).expect("reopen");
    assert_eq!(again.trees().snapshot(id), before);
    // A different layout forces a rebuild from data, still equal.
    let mut o = opts(8);
    o.layout = "other".into();
    let rebuilt = Replica::open(Arc::new(mem), "n1", o).expect("rebuild");
    assert_eq!(rebuilt.trees().snapshot(id), before);
    assert_eq!(
        rebuilt
            .old_tombstones(u64::MAX, 100)
            .await
            .expect("tombstones")
            .len(),
        5
    );
}

#[tokio::test]
async fn purge_removes_only_the_expected_tombstone() {
    let r = Replica::open(Arc::new(MemStorage::default()), "n1", opts(8)).expect("open");
    let k = data_key(0, b"b", b"k");
    let o = r.apply(k.clone(), put(b"v")).await.expect("put");
    // A live value is never purged.
    r.apply(k.clone(), Change::Purge(o.digest()))
        .await
        .expect("purge");
    assert!(r.get(k.clone()).await.expect("get").is_some());
    let t = r
        .apply(
            k.clone(),
            Change::Update {
                ctx: o.context(),
                value: None,
                expires_ms: None,
            },
        )
        .await
        .expect("delete");
    let id = r.tree_of(0, b"b");
    assert!(!r.trees().snapshot(id).is_empty());
    // A stale digest doesn't purge; the right one does, and the tree empties.
    r.apply(k.clone(), Change::Purge([7; 32]))
        .await
        .expect("purge");
    assert!(r.get(k.clone()).await.expect("get").is_some());
    r.apply(k.clone(), Change::Purge(t.digest()))
        .await
        .expect("purge");
    assert!(r.get(k.clone()).await.expect("get").is_none());
    assert!(r.trees().snapshot(id).is_empty());
    assert!(r
        .old_tombstones(u64::MAX, 10)
        .await
        .expect("index")
        .is_empty());
}

#[tokio::test]
async fn purge_and_recreate_never_reuse_a_dot() {
    let r = Replica::open(Arc::new(MemStorage::default()), "n1", opts(8)).expect("open");
    let k = data_key(0, b"b", b"k");
    let other = data_key(0, b"b", b"other");
    let v0 = r.apply(k.clone(), put(b"v0")).await.expect("put");
    let before_delete = v0.context();
    let t = r
        .apply(
            k.clone(),
            Change::Update {
                ctx: before_delete.clone(),
                value: None,
                expires_ms: None,
            },
        )
        .await
        .expect("delete");
    r.apply(k.clone(), Change::Purge(t.digest()))
        .await
        .expect("purge");
    assert!(r.get(k.clone()).await.expect("get").is_none());
    // Writes to another key share the node-wide counter.
    r.apply(other, put(b"x")).await.expect("put");
    let old_max = t.clock().get(r.actor());
    let new = r.apply(k.clone(), put(b"new")).await.expect("put");
    let new_dot = new.siblings()[0].dot.clone();
    assert!(new_dot.counter > old_max + 1, "{new_dot} after {old_max}");
    // A context read before the delete doesn't cover the re-created value.
    let late = r
        .apply(
            k.clone(),
            Change::Update {
                ctx: before_delete,
                value: Some(b"late".to_vec()),
                expires_ms: None,
            },
        )
        .await
        .expect("late put");
    assert_eq!(late.values(), vec![&b"new"[..], &b"late"[..]]);
}

#[tokio::test]
async fn reopening_older_storage_never_reuses_a_dot() {
    let mem = MemStorage::default();
    let k = data_key(0, b"b", b"k");
    let r = Replica::open(Arc::new(mem.clone()), "n1", opts(8)).expect("open");
    let first = r.apply(k.clone(), put(b"aaa")).await.expect("put");
    drop(r);
    // The same (or an older) directory opened again: same node, new dots.
    let again = Replica::open(Arc::new(MemStorage::default()), "n1", opts(8)).expect("open");
    let second = again.apply(k.clone(), put(b"zzz")).await.expect("put");
    assert_ne!(first.siblings()[0].dot, second.siblings()[0].dot);
    let mut merged = first.clone();
    merged.merge(&second);
    let mut values = merged.values();
    values.sort();
    assert_eq!(values, vec![&b"aaa"[..], &b"zzz"[..]]);
}

#[tokio::test]
async fn writes_past_the_size_cap_are_refused_but_merges_are_not() {
    let mut o = opts(64);
    o.max_object_bytes = 10_000;
    let r = Replica::open(Arc::new(MemStorage::default()), "n1", o).expect("open");
    let k = data_key(0, b"b", b"k");
    for _ in 0..3 {
        r.apply(k.clone(), put(&[1; 3000]))
            .await
            .expect("under the cap");
    }
    let err = r.apply(k.clone(), put(&[1; 3000])).await;
    match err {
        Err(e @ ReplicaError::TooLarge { .. }) => {
            assert!(e.to_string().contains("limits.max_object_bytes"), "{e}")
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }
    let stored = r.get(k.clone()).await.expect("get").expect("present");
    assert_eq!(
        stored.sibling_count(),
        3,
        "a refused write leaves nothing behind"
    );
    // A version from a peer over the cap is still merged: refusing it would lose data.
    let mut theirs = Object::new();
    let peer = Actor::new("n2", 1);
    for floor in 0..4 {
        theirs.update(&Context::default(), &peer, floor, Some(vec![2; 3000]));
    }
    let merged = r
        .apply(k.clone(), Change::Merge(theirs))
        .await
        .expect("merge");
    assert_eq!(merged.sibling_count(), 7);
    // A write with the context of everything shrinks it back under the cap.
    let resolved = r
        .apply(
            k.clone(),
            Change::Update {
                ctx: merged.context(),
                value: Some(vec![3; 10]),
                expires_ms: None,
            },
        )
        .await
        .expect("resolving write");
    assert_eq!(resolved.values(), vec![&[3u8; 10][..]]);
}

/// A newer tombstone over an older one restarts the key's tombstone age: otherwise the newer
/// delete could be purged at once, and a hint written before it (still live elsewhere) would
/// bring the value back. Found by the simulator (seed 397, `--bug tombstone-age-kept`).
#[tokio::test]
async fn a_newer_tombstone_restarts_the_tombstone_age() {
    let mem = MemStorage::default();
    let r = Replica::open(Arc::new(mem), "n1", opts(8)).expect("open");
    let key = data_key(0, b"b", b"k");
    let written = r.apply(key.clone(), put(b"v")).await.expect("put");
    let first = r
        .apply(
            key.clone(),
            Change::Update {
                ctx: written.context(),
                value: None,
                expires_ms: None,
            },
        )
        .await
        .expect("delete");
    assert!(first.is_tombstone_only());
    // The clock must move on between the two deletes (millisecond resolution).
    let start = crate::hints::now_ms();
    while crate::hints::now_ms() <= start + 1 {
        std::thread::yield_now();
    }
    let between = crate::hints::now_ms();
    while crate::hints::now_ms() <= between {
        std::thread::yield_now();
    }
    let second = r
        .apply(
            key.clone(),
            Change::Update {
                ctx: first.context(),
                value: None,
                expires_ms: None,
            },
        )
        .await
        .expect("second delete");
    assert!(second.is_tombstone_only());
    assert_ne!(first, second);
    assert!(
        r.old_tombstones(between, 10)
            .await
            .expect("tombstones")
            .is_empty(),
        "the newer tombstone is younger than `between`"
    );
    assert_eq!(
        r.old_tombstones(u64::MAX, 10)
            .await
            .expect("tombstones")
            .len(),
        1
    );
}
