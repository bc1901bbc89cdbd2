//! Tests of per-sibling metadata: expiry (TTL) and `lww` resolution.

use super::tests::arb_object;
use super::*;
use crate::context::Context;
use proptest::prelude::*;
use serde::Serialize;

fn actor(node: &str) -> Actor {
    Actor::new(node, 1)
}

fn expiring(at: u64) -> WriteMeta {
    WriteMeta {
        expires_ms: Some(at),
        ts: None,
    }
}

fn stamped(ts: u64) -> WriteMeta {
    WriteMeta {
        expires_ms: None,
        ts: Some(ts),
    }
}

fn merged_as(a: &Object, b: &Object, c: Conflicts) -> Object {
    let mut out = a.clone();
    out.merge_as(b, c);
    out
}

#[test]
fn siblings_without_metadata_encode_as_before_metadata_existed() {
    // The encoding from before siblings had metadata: only `dot` and `value`.
    #[derive(Serialize)]
    struct OldSibling<'a> {
        dot: &'a Dot,
        #[serde(with = "serde_bytes")]
        value: &'a Option<Vec<u8>>,
    }
    #[derive(Serialize)]
    struct OldObject<'a> {
        clock: &'a VersionVector,
        siblings: Vec<OldSibling<'a>>,
    }
    let a = actor("a");
    let mut obj = Object::new();
    obj.update(&Context::default(), &a, 0, Some(b"v".to_vec()));
    obj.update(&Context::default(), &a, 0, None);
    let old = OldObject {
        clock: obj.clock(),
        siblings: obj
            .siblings()
            .iter()
            .map(|s| OldSibling {
                dot: &s.dot,
                value: &s.value,
            })
            .collect(),
    };
    let mut bytes = vec![OBJECT_FORMAT_V1];
    write_msgpack(&mut bytes, &old);
    assert_eq!(obj.encode(), bytes);
    assert_eq!(Object::decode(&bytes).ok(), Some(obj.clone()));

    // With metadata the encoding differs and round-trips.
    let mut meta = Object::new();
    meta.update_with(
        &Context::default(),
        &a,
        0,
        Some(b"v".to_vec()),
        WriteMeta {
            expires_ms: Some(5),
            ts: Some(9),
        },
    );
    assert_ne!(meta.encode(), {
        let mut plain = Object::new();
        plain.update(&Context::default(), &a, 0, Some(b"v".to_vec()));
        plain.encode()
    });
    let back = Object::decode(&meta.encode()).expect("decodes");
    assert_eq!(back, meta);
    assert_eq!(back.siblings()[0].expires_ms, Some(5));
    assert_eq!(back.siblings()[0].ts, Some(9));
}

#[test]
fn an_expired_value_reads_like_a_deleted_one() {
    let a = actor("a");
    let mut obj = Object::new();
    let dot = obj.update_with(
        &Context::default(),
        &a,
        0,
        Some(b"v".to_vec()),
        expiring(1000),
    );
    assert_eq!(obj.values_at(999), vec![&b"v"[..]]);
    assert!(obj.is_found_at(999) && !obj.is_dead_at(999));
    assert!(obj.values_at(1000).is_empty(), "expired at its expiry time");
    assert!(!obj.is_found_at(1000));
    assert_eq!(obj.dead_count_at(1000), 1);
    assert!(obj.is_dead_at(1000));
    assert_eq!(obj.dead_from(), Some(1000));
    // The read's context still covers the expired dot: a write with it supersedes it.
    let ctx = obj.context();
    assert!(ctx.covers(&dot));
    obj.update(&ctx, &a, 0, Some(b"w".to_vec()));
    assert_eq!(obj.values_at(5000), vec![&b"w"[..]]);
    assert_eq!(obj.sibling_count(), 1);
    assert_eq!(obj.dead_from(), None, "a value without expiry never dies");
}

#[test]
fn a_value_without_expiry_is_unaffected_by_an_expiring_sibling() {
    let (a, b) = (actor("a"), actor("b"));
    let mut obj = Object::new();
    obj.update_with(
        &Context::default(),
        &a,
        0,
        Some(b"short".to_vec()),
        expiring(10),
    );
    obj.update(&Context::default(), &b, 0, Some(b"kept".to_vec()));
    assert_eq!(obj.values_at(100), vec![&b"kept"[..]]);
    assert!(!obj.is_dead_at(100));
    assert_eq!(obj.dead_from(), None);
    // A cut reply's context never treats the expired value as left out.
    let ctx = obj.context_showing_at(100, |v| v == b"kept");
    assert_eq!(ctx, obj.context());
    // At time 0 nothing has expired: the same cut keeps "short" uncovered.
    assert_ne!(obj.context_showing(|v| v == b"kept"), obj.context());
}

#[test]
fn expiry_never_lets_an_older_value_reappear() {
    let (a, b) = (actor("a"), actor("b"));
    let mut stale = Object::new();
    stale.update(&Context::default(), &a, 0, Some(b"old".to_vec()));
    // The newer write, with a TTL, replaces "old" on another replica.
    let mut fresh = stale.clone();
    fresh.update_with(&stale.context(), &b, 0, Some(b"new".to_vec()), expiring(50));
    let later = 100;
    assert!(fresh.values_at(later).is_empty());
    for conflicts in [Conflicts::Siblings, Conflicts::Lww] {
        let m = merged_as(&fresh, &stale, conflicts);
        assert!(m.values_at(later).is_empty(), "{conflicts:?}: {m:?}");
        assert!(
            m.values_at(0) == vec![&b"new"[..]],
            "{conflicts:?}: the expired write is what is held"
        );
        // The expired sibling dropped (as an update does): still covers "old".
        let mut dropped = fresh.clone();
        dropped.drop_expired(later);
        assert_eq!(dropped.sibling_count(), 0);
        let m = merged_as(&dropped, &stale, Conflicts::Siblings);
        assert!(m.values_at(0).is_empty(), "old came back: {m:?}");
    }
    // The negative control: a write that did not see "old" leaves it live.
    let mut blind = stale.clone();
    blind.update_with(
        &Context::default(),
        &b,
        0,
        Some(b"new".to_vec()),
        expiring(50),
    );
    assert_eq!(blind.values_at(later), vec![&b"old"[..]]);
}

#[test]
fn lww_updates_keep_the_newest_write_only() {
    let (a, b) = (actor("a"), actor("b"));
    let mut obj = Object::new();
    obj.update_lww(
        &Context::default(),
        &a,
        0,
        Some(b"first".to_vec()),
        stamped(10),
    );
    obj.update_lww(
        &Context::default(),
        &b,
        0,
        Some(b"second".to_vec()),
        stamped(20),
    );
    assert_eq!(obj.values_at(0), vec![&b"second"[..]]);
    assert_eq!(obj.sibling_count(), 1);
    // An older timestamp loses, even with a context that saw the newer write.
    let ctx = obj.context();
    obj.update_lww(&ctx, &a, 0, Some(b"late".to_vec()), stamped(15));
    assert_eq!(obj.values_at(0), vec![&b"second"[..]]);
    assert!(
        obj.clock().covers(&Dot::new(a.clone(), 2)),
        "the losing write is covered"
    );
    // A delete with a newer timestamp wins.
    obj.update_lww(&Context::default(), &a, 0, None, stamped(30));
    assert!(!obj.is_found_at(0));
    assert!(obj.is_tombstone_only());
    // The same writes under `siblings` keep siblings (the negative control).
    let mut sib = Object::new();
    sib.update(&Context::default(), &a, 0, Some(b"x".to_vec()));
    sib.update(&Context::default(), &b, 0, Some(b"y".to_vec()));
    assert_eq!(sib.sibling_count(), 2);
    let mut resolved = sib.clone();
    resolved.resolve_lww();
    assert_eq!(resolved.sibling_count(), 1);
}

/// Blind writes at random replicas (each with its own timestamp), then the replicas merged
/// in some order.
#[derive(Clone, Debug)]
struct LwwRun {
    writes: Vec<(usize, usize, u64)>,
    order: Vec<usize>,
}

fn lww_run() -> impl Strategy<Value = LwwRun> {
    let writes = prop::collection::vec((0usize..3, 0usize..3, 0u64..8), 1..20);
    (writes, Just((0..3usize).collect::<Vec<_>>()).prop_shuffle())
        .prop_map(|(writes, order)| LwwRun { writes, order })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn lww_merge_is_a_join_on_arbitrary_objects(
        states in prop::collection::vec(arb_object(), 1..6)
    ) {
        let lww = Conflicts::Lww;
        for a in &states {
            let mut a = a.clone();
            a.resolve_lww();
            prop_assert_eq!(&merged_as(&a, &a, lww), &a);
            prop_assert!(!a.merge_changes_as(&a, lww));
        }
        for a in &states {
            for b in &states {
                let ab = merged_as(a, b, lww);
                prop_assert_eq!(&ab, &merged_as(b, a, lww));
                prop_assert!(ab.sibling_count() <= 1);
                prop_assert_eq!(a.merge_changes_as(b, lww), &ab != a);
                for c in &states {
                    prop_assert_eq!(
                        merged_as(&ab, c, lww),
                        merged_as(a, &merged_as(b, c, lww), lww)
                    );
                }
            }
        }
    }

    #[test]
    fn lww_replicas_converge_to_the_newest_write_in_any_merge_order(run in lww_run()) {
        let actors: Vec<Actor> = (0..3).map(|i| Actor::new(format!("n{i}"), 1)).collect();
        let mut replicas = vec![Object::new(); 3];
        let mut newest = None;
        for (i, (at, by, ts)) in run.writes.iter().enumerate() {
            let value = Some(vec![i as u8]);
            let dot = replicas[*at].update_lww(
                &Context::default(),
                &actors[*by],
                i as u64,
                value.clone(),
                stamped(*ts),
            );
            let key = (*ts, dot);
            if newest.as_ref().is_none_or(|(k, _)| key > *k) {
                newest = Some((key, value));
            }
        }
        let fold = |order: &[usize]| {
            let mut m = Object::new();
            for &i in order {
                m.merge_as(&replicas[i], Conflicts::Lww);
            }
            m
        };
        let a = fold(&run.order);
        let b = fold(&[2, 1, 0]);
        prop_assert_eq!(&a, &b);
        prop_assert_eq!(a.sibling_count(), 1);
        let want = newest.map(|(_, v)| v);
        prop_assert_eq!(a.siblings().first().map(|s| s.value.clone()), want);
    }
}

/// Found by `lww_merge_is_a_join_on_arbitrary_objects`: two copies of one dot, one with a
/// zero timestamp and one with none, tied in the lww order, so the merge kept whichever
/// came second and two replicas could differ.
#[test]
fn lww_merge_of_one_dot_with_and_without_a_timestamp_is_commutative() {
    let dot = Dot::new(actor("n2"), 1);
    let with = |ts: Option<u64>| {
        let s = Sibling {
            dot: dot.clone(),
            value: Some(vec![1]),
            expires_ms: Some(0),
            ts,
        };
        Object::from_parts(
            VersionVector::from_entries(vec![(actor("n2"), 1)]).expect("vv"),
            vec![s],
        )
        .expect("object")
    };
    let (a, b) = (with(Some(0)), with(None));
    let mut ab = a.clone();
    ab.merge_as(&b, Conflicts::Lww);
    let mut ba = b.clone();
    ba.merge_as(&a, Conflicts::Lww);
    assert_eq!(ab, ba);
}
