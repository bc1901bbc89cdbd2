use super::*;
use crate::context::Context;
use crate::context::MAX_CONTEXT_DOTS;
use proptest::prelude::*;
use std::collections::BTreeSet;

fn actor(node: &str) -> Actor {
    Actor::new(node, 1)
}

fn put(obj: &mut Object, ctx: &Context, who: &Actor, v: &str) -> Dot {
    obj.update(ctx, who, 0, Some(v.as_bytes().to_vec()))
}

fn merged(a: &Object, b: &Object) -> Object {
    let mut out = a.clone();
    out.merge(b);
    out
}

fn vals(obj: &Object) -> Vec<&str> {
    obj.values()
        .into_iter()
        .map(|v| std::str::from_utf8(v).unwrap_or("<bin>"))
        .collect()
}

#[test]
fn put_without_context_adds_sibling() {
    let a = actor("a");
    let mut obj = Object::new();
    let d1 = put(&mut obj, &Context::default(), &a, "v1");
    let d2 = put(&mut obj, &Context::default(), &a, "v2");
    assert_eq!((d1.counter, d2.counter), (1, 2));
    assert_eq!(vals(&obj), ["v1", "v2"]);
    assert_eq!(obj.clock().get(&a), 2);
    assert!(obj.is_found());
}

#[test]
fn put_with_read_context_replaces_covered_values() {
    let (a, b) = (actor("a"), actor("b"));
    let mut obj = Object::new();
    put(&mut obj, &Context::default(), &a, "v1");
    put(&mut obj, &Context::default(), &b, "v2");
    assert_eq!(obj.sibling_count(), 2);
    let ctx = obj.context();
    let dot = put(&mut obj, &ctx, &a, "v3");
    assert_eq!(vals(&obj), ["v3"]);
    assert_eq!(dot, Dot::new(a.clone(), 2));
    assert!(obj.clock().descends(&ctx.vv));
}

#[test]
fn a_context_for_a_cut_reply_never_covers_a_value_left_out() {
    let (a, b) = (actor("a"), actor("b"));
    let mut obj = Object::new();
    for v in ["a1", "a2", "a3"] {
        put(&mut obj, &Context::default(), &a, v);
    }
    put(&mut obj, &Context::default(), &b, "b1");
    // The reply showed a1, a3 and b1; a2 (a's second dot) didn't fit.
    let ctx = obj.context_showing(|v| v != b"a2");
    assert!(!ctx.covers(&Dot::new(a.clone(), 2)));
    for d in [
        Dot::new(a.clone(), 1),
        Dot::new(a.clone(), 3),
        Dot::new(b.clone(), 1),
    ] {
        assert!(ctx.covers(&d), "{d:?} was shown and must be covered");
    }
    put(&mut obj, &ctx, &b, "merged");
    assert_eq!(vals(&obj), ["a2", "merged"]);
    // Everything shown: the same as the full context.
    let mut whole = obj.clone();
    let full = whole.context_showing(|_| true);
    assert_eq!(full, whole.context());
    put(&mut whole, &full, &a, "last");
    assert_eq!(vals(&whole), ["last"]);
}

#[test]
fn partial_context_keeps_unseen_sibling() {
    let (a, b) = (actor("a"), actor("b"));
    let mut obj = Object::new();
    put(&mut obj, &Context::default(), &a, "v1");
    let ctx = obj.context(); // the client read before b's write
    put(&mut obj, &Context::default(), &b, "v2");
    put(&mut obj, &ctx, &a, "v3");
    assert_eq!(vals(&obj), ["v3", "v2"]);
}

#[test]
fn concurrent_puts_from_two_actors_merge_to_siblings() {
    let (a, b) = (actor("a"), actor("b"));
    let mut base = Object::new();
    put(&mut base, &Context::default(), &a, "v0");
    let ctx = base.context();
    let (mut ra, mut rb) = (base.clone(), base.clone());
    put(&mut ra, &ctx, &a, "from-a");
    put(&mut rb, &ctx, &b, "from-b");
    let m = merged(&ra, &rb);
    assert_eq!(vals(&m), ["from-a", "from-b"]);
    assert_eq!(m, merged(&rb, &ra));
    // A read-modify-write with the merged context resolves the conflict.
    let mut resolved = m.clone();
    put(&mut resolved, &m.context(), &b, "resolved");
    assert_eq!(vals(&resolved), ["resolved"]);
    assert_eq!(vals(&merged(&ra, &resolved)), ["resolved"]);
}

#[test]
fn delete_then_put_with_tombstone_context_resurrects_cleanly() {
    let a = actor("a");
    let mut obj = Object::new();
    put(&mut obj, &Context::default(), &a, "v1");
    let ctx = obj.context();
    obj.update(&ctx, &a, 0, None);
    assert!(!obj.is_found());
    assert!(obj.is_tombstone_only());
    assert!(obj.values().is_empty());
    assert_eq!(obj.sibling_count(), 1);
    let ctx = obj.context();
    put(&mut obj, &ctx, &a, "v2");
    assert_eq!(vals(&obj), ["v2"]);
    assert_eq!(obj.sibling_count(), 1);
    assert!(!obj.is_tombstone_only());
}

#[test]
fn blind_delete_keeps_values() {
    let a = actor("a");
    let mut obj = Object::new();
    put(&mut obj, &Context::default(), &a, "v1");
    obj.update(&Context::default(), &a, 0, None);
    assert_eq!(vals(&obj), ["v1"]);
    assert_eq!(obj.sibling_count(), 2);
    assert!(!obj.is_tombstone_only());
    assert!(!Object::new().is_tombstone_only());
}

#[test]
fn stale_replica_converges_after_merge() {
    let (a, b) = (actor("a"), actor("b"));
    let mut fresh = Object::new();
    put(&mut fresh, &Context::default(), &a, "v1");
    let stale = fresh.clone();
    for v in ["v2", "v3"] {
        let ctx = fresh.context();
        put(&mut fresh, &ctx, &b, v);
    }
    assert!(fresh.descends(&stale));
    assert!(!stale.descends(&fresh));
    assert!(stale.merge_changes(&fresh));
    assert!(!fresh.merge_changes(&stale));
    let mut repaired = stale.clone();
    repaired.merge(&fresh);
    assert_eq!(repaired, fresh);
    assert_eq!(vals(&repaired), ["v3"]);
    assert_eq!(repaired.digest(), fresh.digest());
    // Merging the stale copy back in is a no-op.
    let mut again = fresh.clone();
    again.merge(&stale);
    assert_eq!(again, fresh);
}

#[test]
fn overwritten_sibling_dropped_concurrent_one_survives() {
    let (a, b, c) = (actor("a"), actor("b"), actor("c"));
    let mut r1 = Object::new();
    put(&mut r1, &Context::default(), &a, "old");
    let mut r2 = r1.clone();
    // r2 overwrites "old" having seen it.
    let ctx = r2.context();
    put(&mut r2, &ctx, &b, "new");
    // r1 meanwhile gets a blind concurrent write.
    put(&mut r1, &Context::default(), &c, "concurrent");
    assert_eq!(vals(&r1), ["old", "concurrent"]);
    let m = merged(&r1, &r2);
    assert_eq!(vals(&m), ["new", "concurrent"]);
    assert_eq!(m, merged(&r2, &r1));
    // r2 has seen "old" and dropped it, so r1 (which still holds it) does
    // not descend r2 even though it is not missing any value of r2's clock
    // for a.
    assert!(!r1.descends(&r2));
    assert!(m.descends(&r1) && m.descends(&r2));
}

#[test]
fn context_from_another_replica_overwrites_late_arrivals() {
    // The client read a dot the coordinator has not received yet.
    let (a, b) = (actor("a"), actor("b"));
    let mut ra = Object::new();
    put(&mut ra, &Context::default(), &a, "seen-by-client");
    let mut rb = Object::new();
    put(&mut rb, &ra.context(), &b, "replacement");
    assert_eq!(vals(&merged(&rb, &ra)), ["replacement"]);
    assert_eq!(vals(&merged(&ra, &rb)), ["replacement"]);
}

#[test]
fn new_epoch_never_reuses_counters() {
    let a1 = Actor::new("a", 1);
    let a2 = Actor::new("a", 2);
    let mut other = Object::new();
    put(&mut other, &Context::default(), &a1, "before-crash");
    // Node a lost its data and came back as epoch 2 with an empty object.
    let mut fresh = Object::new();
    let d = put(&mut fresh, &Context::default(), &a2, "after-crash");
    assert_eq!(d, Dot::new(a2.clone(), 1));
    assert_eq!(
        vals(&merged(&other, &fresh)),
        ["before-crash", "after-crash"]
    );
    // Lost data without an epoch bump: the client's context still stops
    // the counter going backwards.
    let mut lost = Object::new();
    let d = put(&mut lost, &other.context(), &a1, "x");
    assert_eq!(d.counter, 2);
}

#[test]
fn floor_never_reissues_a_dot_after_a_purge() {
    let a = actor("a");
    let mut obj = Object::new();
    let d1 = obj.update(&Context::default(), &a, 0, Some(b"v0".to_vec()));
    let before_delete = obj.context();
    let d2 = obj.update(&before_delete, &a, d1.counter, None);
    // Purged: the key's clock is gone, the writer's counter isn't.
    let mut obj = Object::new();
    let d3 = obj.update(
        &Context::default(),
        &a,
        d2.counter + 5,
        Some(b"new".to_vec()),
    );
    assert_eq!(d3.counter, d2.counter + 6);
    // A write with the context read before the delete keeps `new`.
    let d4 = obj.update(&before_delete, &a, d3.counter, Some(b"late".to_vec()));
    assert!(d4.counter > d3.counter);
    assert_eq!(vals(&obj), ["new", "late"]);
}

#[test]
fn written_context_is_what_the_writer_saw_plus_its_write() {
    let (a, b) = (actor("a"), actor("b"));
    // No concurrency: the context stays a plain vector, the clock.
    let mut obj = Object::new();
    put(&mut obj, &Context::default(), &a, "v0");
    let r0 = obj.context();
    let d = put(&mut obj, &r0, &a, "v1");
    let w = obj.written_context(&r0, &d);
    assert_eq!(w, obj.context());

    // A concurrent blind write through the same coordinator: the writer
    // never saw it, so its chain of writes must keep it.
    let mut obj = Object::new();
    put(&mut obj, &Context::default(), &a, "v0");
    let r0 = obj.context();
    put(&mut obj, &Context::default(), &a, "unseen");
    let d1 = put(&mut obj, &r0, &a, "a1");
    let c1 = obj.written_context(&r0, &d1);
    assert_eq!((c1.vv.clone(), c1.dots.clone()), (r0.vv.clone(), vec![d1]));
    let d2 = put(&mut obj, &c1, &a, "a2");
    assert_eq!(vals(&obj), ["unseen", "a2"]);
    let c2 = obj.written_context(&c1, &d2);
    put(&mut obj, &c2, &a, "a3");
    assert_eq!(vals(&obj), ["unseen", "a3"]);

    // Through another actor, the unseen sibling isn't in the folded range.
    let mut obj = Object::new();
    put(&mut obj, &Context::default(), &a, "v0");
    let r0 = obj.context();
    put(&mut obj, &Context::default(), &b, "unseen");
    let d1 = put(&mut obj, &r0, &a, "a1");
    let c1 = obj.written_context(&r0, &d1);
    assert!(c1.dots.is_empty() && c1.covers(&d1));
    put(&mut obj, &c1, &a, "a2");
    assert_eq!(vals(&obj), ["a2", "unseen"]);
}

#[test]
fn single_dots_are_not_absorbed_where_unseen() {
    let (a, b) = (actor("a"), actor("b"));
    let mut ra = Object::new();
    put(&mut ra, &Context::default(), &a, "v0");
    let r0 = ra.context();
    let rb = ra.clone();
    put(&mut ra, &Context::default(), &a, "unseen");
    let d1 = put(&mut ra, &r0, &a, "a1");
    let c1 = ra.written_context(&r0, &d1);
    assert_eq!(c1.dots, vec![d1.clone()]);
    // rb has not received `a1` yet: the write doesn't claim it, so when it
    // arrives it stays as a (spurious) sibling; nothing is lost.
    let mut rb = rb;
    put(&mut rb, &c1, &b, "b1");
    assert!(!rb.clock().covers(&d1));
    let m = merged(&ra, &rb);
    assert_eq!(vals(&m), ["unseen", "a1", "b1"]);
    assert_eq!(m, merged(&rb, &ra));
}

#[test]
fn written_context_keeps_the_own_dot_within_the_bound() {
    let a = actor("a");
    let mut obj = Object::new();
    let mut carried: Vec<Dot> = (0..MAX_CONTEXT_DOTS as u64)
        .map(|i| Dot::new(Actor::new(format!("x{i}"), 1), 1000 + i))
        .collect();
    carried.sort();
    let ctx = Context {
        vv: VersionVector::new(),
        dots: carried,
    };
    // An unseen sibling of the same actor keeps the own dot single.
    put(&mut obj, &Context::default(), &a, "unseen");
    let d = put(&mut obj, &ctx, &a, "v");
    let w = obj.written_context(&ctx, &d);
    assert_eq!(w.dots.len(), MAX_CONTEXT_DOTS);
    assert!(w.dots.contains(&d));
    assert!(
        !w.covers(&Dot::new(Actor::new("x0", 1), 1000)),
        "oldest dropped"
    );
}

#[test]
fn counter_saturates_without_panic() {
    let a = actor("a");
    let ctx = Context::from(
        [(a.clone(), u64::MAX)]
            .into_iter()
            .collect::<VersionVector>(),
    );
    let mut obj = Object::new();
    let d1 = put(&mut obj, &ctx, &a, "x");
    let d2 = put(&mut obj, &Context::default(), &a, "y");
    assert_eq!((d1.counter, d2.counter), (u64::MAX, u64::MAX));
    assert_eq!(vals(&obj), ["y"]);
    assert!(Object::from_parts(obj.clock().clone(), obj.siblings().to_vec()).is_ok());
}

#[test]
fn version_vector_basics() {
    let (a, b) = (actor("a"), actor("b"));
    let mut v: VersionVector = [(a.clone(), 2), (b.clone(), 0), (a.clone(), 1)]
        .into_iter()
        .collect();
    assert_eq!((v.len(), v.get(&a), v.get(&b)), (1, 2, 0));
    assert!(v.covers(&Dot::new(a.clone(), 2)) && !v.covers(&Dot::new(a.clone(), 3)));
    let w: VersionVector = [(b.clone(), 1)].into_iter().collect();
    assert!(!v.descends(&w) && !w.descends(&v));
    v.join(&w);
    assert!(v.descends(&w) && v.descends(&VersionVector::new()));
    assert_eq!(v.iter().collect::<Vec<_>>(), [(&a, 2), (&b, 1)]);
    assert!(VersionVector::new().is_empty());
}

#[test]
fn encode_decode_round_trip() {
    let (a, b) = (actor("a"), Actor::new("b", 7));
    let mut obj = Object::new();
    assert_eq!(Object::decode(&obj.encode()).ok(), Some(obj.clone()));
    put(&mut obj, &Context::default(), &a, "v1");
    obj.update(&Context::default(), &b, 0, None);
    obj.update(&Context::default(), &b, 0, Some(Vec::new()));
    let bytes = obj.encode();
    assert_eq!(bytes[0], OBJECT_FORMAT_V1);
    let back = Object::decode(&bytes).expect("round trip");
    assert_eq!(back, obj);
    assert_eq!(back.encode(), bytes);
    assert_eq!(back.values(), [b"v1".as_slice(), b"".as_slice()]);
}

/// Encode an arbitrary (possibly invalid) object shape.
fn raw_encode(clock: &[(Actor, u64)], siblings: &[Sibling]) -> Vec<u8> {
    #[derive(Serialize)]
    struct Raw<'a> {
        clock: &'a [(Actor, u64)],
        siblings: &'a [Sibling],
    }
    let mut out = vec![OBJECT_FORMAT_V1];
    write_msgpack(&mut out, &Raw { clock, siblings });
    out
}

fn sib(who: &Actor, counter: u64, v: &str) -> Sibling {
    Sibling::new(Dot::new(who.clone(), counter), Some(v.as_bytes().to_vec()))
}

#[test]
fn decode_rejects_bad_input() {
    let a = actor("a");
    let mut obj = Object::new();
    put(&mut obj, &Context::default(), &a, "value");
    let good = obj.encode();

    let err = |bytes: &[u8]| match Object::decode(bytes) {
        Ok(o) => panic!("decoded {o:?} from {bytes:?}"),
        Err(e) => e,
    };
    assert!(matches!(err(&[]), VersionError::Empty { .. }));
    let mut wrong = good.clone();
    wrong[0] = 9;
    let e = err(&wrong);
    assert!(matches!(e, VersionError::UnknownFormat { found: 9, .. }));
    assert!(e.to_string().contains("format version 9"), "{e}");
    for cut in 1..good.len() {
        assert!(
            matches!(err(&good[..cut]), VersionError::Malformed { .. }),
            "cut at {cut}"
        );
    }
    let mut trailing = good.clone();
    trailing.push(0);
    assert!(matches!(
        err(&trailing),
        VersionError::TrailingBytes { count: 1, .. }
    ));
    assert!(matches!(
        err(b"\x01garbage here"),
        VersionError::Malformed { .. }
    ));
    // Huge declared lengths fail on EOF rather than allocating.
    for absurd in [
        &[1, 0xdd, 0xff, 0xff, 0xff, 0xff][..],
        &[1, 0xdf, 0xff, 0xff, 0xff, 0xff][..],
        &[1, 0xc6, 0xff, 0xff, 0xff, 0xff][..],
        &[
            1, 0x82, 0xa5, b'c', b'l', b'o', b'c', b'k', 0xdd, 0xff, 0xff, 0xff, 0xff,
        ][..],
    ] {
        let _ = err(absurd);
    }
    // Deep nesting inside an ignored field is refused cheaply.
    let mut deep = vec![1, 0x83, 0xa1, b'x'];
    deep.extend(vec![0x91; 10_000]);
    let _ = err(&deep);

    // Invariant violations.
    let e = err(&raw_encode(&[(a.clone(), 1)], &[sib(&a, 2, "x")]));
    assert!(matches!(e, VersionError::UncoveredDot(_)), "{e}");
    let e = err(&raw_encode(
        &[(a.clone(), 2)],
        &[sib(&a, 1, "x"), sib(&a, 1, "y")],
    ));
    assert!(matches!(e, VersionError::DuplicateDot(_)), "{e}");
    let e = err(&raw_encode(&[(a.clone(), 2)], &[sib(&a, 0, "x")]));
    assert!(matches!(e, VersionError::ZeroCounter(_)), "{e}");
    let e = err(&raw_encode(&[(a.clone(), 2), (a.clone(), 3)], &[]));
    assert!(e.to_string().contains("more than once"), "{e}");
}

#[test]
fn decode_sorts_and_normalizes() {
    let (a, b) = (actor("a"), actor("b"));
    let bytes = raw_encode(
        &[(b.clone(), 1), (a.clone(), 2), (actor("z"), 0)],
        &[sib(&b, 1, "b"), sib(&a, 2, "a")],
    );
    let obj = Object::decode(&bytes).expect("valid but unsorted");
    let dots: Vec<_> = obj.siblings().iter().map(|s| s.dot.clone()).collect();
    assert_eq!(dots, [Dot::new(a.clone(), 2), Dot::new(b.clone(), 1)]);
    assert_eq!(obj.clock().len(), 2);
    assert_eq!(Object::decode(&obj.encode()).ok(), Some(obj));
}

#[test]
fn serde_deserialize_checks_invariants_too() {
    let a = actor("a");
    let bad = raw_encode(&[(a.clone(), 1)], &[sib(&a, 2, "x")]);
    assert!(rmp_serde::from_slice::<Object>(&bad[1..]).is_err());
    let good = raw_encode(&[(a.clone(), 2)], &[sib(&a, 2, "x")]);
    assert!(rmp_serde::from_slice::<Object>(&good[1..]).is_ok());
}

// ---------------------------------------------------------------------
// Property tests.

const ACTORS: usize = 3;

#[derive(Clone, Debug)]
enum Op {
    /// A client write at `replica` with the join of some known contexts
    /// (read contexts and contexts earlier writes returned), optionally with
    /// the entries of some actors dropped.
    Update {
        replica: usize,
        picks: Vec<usize>,
        drop_nodes: Option<u8>,
        delete: bool,
    },
    /// Replica `to` pulls the full state of `from`.
    Merge { from: usize, to: usize },
    /// Replica loses its data and restarts (a new process: a new epoch).
    Wipe { replica: usize },
    /// Replica's process restarts with its data (a new epoch all the same).
    Restart { replica: usize },
    /// Anti-entropy brings every replica to the same state; if that holds
    /// only tombstones, every replica forgets the key.
    Purge,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (
            0..ACTORS,
            prop::collection::vec(any::<usize>(), 0..3),
            prop::option::weighted(0.2, any::<u8>()),
            prop::bool::weighted(0.3),
        )
            .prop_map(|(replica, picks, drop_nodes, delete)| Op::Update {
                replica,
                picks,
                drop_nodes,
                delete,
            }),
        5 => (0..ACTORS, 0..ACTORS).prop_map(|(from, to)| Op::Merge { from, to }),
        1 => (0..ACTORS).prop_map(|replica| Op::Wipe { replica }),
        1 => (0..ACTORS).prop_map(|replica| Op::Restart { replica }),
        2 => Just(Op::Purge),
    ]
}

struct History {
    replicas: Vec<Object>,
    /// Every state any replica passed through.
    states: Vec<Object>,
    created: BTreeSet<Dot>,
    /// Contexts that updates actually used.
    used_ctxs: Vec<Context>,
    /// The part of each used context that took effect: its vector, and the
    /// single dots the coordinator's clock already covered.
    effective: Vec<Context>,
    /// Dots that existed only on a wiped replica.
    lost: BTreeSet<Dot>,
    /// Tombstone dots removed by purges.
    purged: BTreeSet<Dot>,
    wiped: bool,
    forgot: bool,
}

fn keep_nodes(ctx: &Context, mask: u8) -> Context {
    let keep = |a: &Actor| mask & (1 << (a.node.as_bytes()[1] - b'0')) == 0;
    Context {
        vv: ctx
            .vv
            .iter()
            .filter(|(a, _)| keep(a))
            .map(|(a, c)| (a.clone(), c))
            .collect(),
        dots: ctx
            .dots
            .iter()
            .filter(|d| keep(&d.actor))
            .cloned()
            .collect(),
    }
}

fn run(ops: &[Op]) -> Result<History, TestCaseError> {
    let mut epochs = [1u64; ACTORS];
    // Each replica's node-wide counter (the writer's).
    let mut counters = [0u64; ACTORS];
    let mut h = History {
        replicas: vec![Object::new(); ACTORS],
        states: vec![Object::new()],
        created: BTreeSet::new(),
        used_ctxs: Vec::new(),
        effective: Vec::new(),
        lost: BTreeSet::new(),
        purged: BTreeSet::new(),
        wiped: false,
        forgot: false,
    };
    // Contexts clients have held: replica clocks and write results.
    let mut known = vec![Context::default()];
    for (step, op) in ops.iter().enumerate() {
        let touched = match op {
            Op::Update {
                replica,
                picks,
                drop_nodes,
                delete,
            } => {
                let mut ctx = Context::default();
                for p in picks {
                    ctx.join(&known[p % known.len()]);
                }
                if let Some(mask) = drop_nodes {
                    ctx = keep_nodes(&ctx, *mask);
                }
                let who = Actor::new(format!("n{replica}"), epochs[*replica]);
                let value = (!delete).then(|| step.to_le_bytes().to_vec());
                let obj = &mut h.replicas[*replica];
                let before = obj.clock().clone();
                let dot = obj.update(&ctx, &who, counters[*replica], value.clone());
                counters[*replica] = dot.counter;
                prop_assert!(h.created.insert(dot.clone()), "dot {} reused", dot);
                prop_assert!(!ctx.covers(&dot));
                prop_assert!(obj
                    .siblings()
                    .iter()
                    .all(|s| s.dot == dot || !ctx.covers(&s.dot)));
                let made = Sibling::new(dot.clone(), value);
                prop_assert!(obj.siblings().contains(&made));
                prop_assert!(obj.clock().descends(&ctx.vv));
                // The returned context covers the write and no sibling the
                // writer didn't see.
                let written = obj.written_context(&ctx, &dot);
                prop_assert!(written.covers(&dot));
                for s in obj.siblings() {
                    prop_assert!(s.dot == dot || !written.covers(&s.dot));
                }
                h.effective.push(Context {
                    vv: ctx.vv.clone(),
                    dots: ctx
                        .dots
                        .iter()
                        .filter(|d| before.covers(d))
                        .cloned()
                        .collect(),
                });
                h.used_ctxs.push(ctx);
                known.push(written);
                *replica
            }
            Op::Merge { from, to } => {
                let src = h.replicas[*from].clone();
                let before = h.replicas[*to].clone();
                h.replicas[*to].merge(&src);
                let after = &h.replicas[*to];
                prop_assert_eq!(before.merge_changes(&src), after != &before);
                prop_assert!(after.descends(&src) && after.descends(&before));
                *to
            }
            Op::Wipe { replica } => {
                for s in h.replicas[*replica].siblings() {
                    let elsewhere = h
                        .replicas
                        .iter()
                        .enumerate()
                        .any(|(i, r)| i != *replica && r.clock().covers(&s.dot));
                    if !elsewhere {
                        h.lost.insert(s.dot.clone());
                    }
                }
                h.replicas[*replica] = Object::new();
                epochs[*replica] += 1;
                counters[*replica] = 0;
                h.wiped = true;
                *replica
            }
            Op::Restart { replica } => {
                epochs[*replica] += 1;
                counters[*replica] = 0;
                *replica
            }
            Op::Purge => {
                let all = h
                    .replicas
                    .iter()
                    .fold(Object::new(), |acc, r| merged(&acc, r));
                let purge = all.is_tombstone_only();
                if purge {
                    h.purged
                        .extend(all.siblings().iter().map(|s| s.dot.clone()));
                    h.forgot = true;
                }
                for r in &mut h.replicas {
                    *r = if purge { Object::new() } else { all.clone() };
                }
                0
            }
        };
        let obj = &h.replicas[touched];
        // Invariants hold after every step.
        let rebuilt = Object::from_parts(obj.clock().clone(), obj.siblings().to_vec());
        prop_assert_eq!(rebuilt.ok(), Some(obj.clone()));
        known.push(obj.context());
        h.states.push(obj.clone());
    }
    Ok(h)
}

/// A few states spread over the history plus the final replicas.
fn sample(h: &History) -> Vec<Object> {
    let n = h.states.len();
    let mut out: Vec<Object> = (0..5).map(|i| h.states[i * (n - 1) / 4].clone()).collect();
    out.extend(h.replicas.iter().cloned());
    out
}

fn check_lattice(states: &[Object]) -> Result<(), TestCaseError> {
    for a in states {
        prop_assert_eq!(&merged(a, a), a);
        prop_assert!(a.descends(a));
        let bytes = a.encode();
        let back = Object::decode(&bytes);
        prop_assert_eq!(back.ok(), Some(a.clone()));
        for b in states {
            let ab = merged(a, b);
            let ba = merged(b, a);
            prop_assert_eq!(&ab, &ba);
            prop_assert_eq!(ab.encode(), ba.encode());
            prop_assert_eq!(a.descends(b), &ab == a);
            prop_assert_eq!(a.merge_changes(b), &ab != a);
            prop_assert!(ab.descends(a) && ab.descends(b));
            prop_assert_eq!(a.digest() == b.digest(), a.encode() == b.encode());
            prop_assert_eq!(a.encode() == b.encode(), a == b);
            for c in states {
                prop_assert_eq!(merged(&ab, c), merged(a, &merged(b, c)));
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn histories_converge_without_losing_writes(ops in prop::collection::vec(op(), 1..60)) {
        let h = run(&ops)?;
        check_lattice(&sample(&h))?;

        let full = h.replicas.iter().fold(Object::new(), |acc, r| merged(&acc, r));
        let full_rev = h.replicas.iter().rev().fold(Object::new(), |acc, r| merged(&acc, r));
        prop_assert_eq!(full.encode(), full_rev.encode());
        for r in &h.replicas {
            prop_assert!(full.descends(r));
        }
        let present: BTreeSet<Dot> = full.siblings().iter().map(|s| s.dot.clone()).collect();
        prop_assert!(present.is_subset(&h.created));
        for dot in &h.created {
            let overwritten = h.used_ctxs.iter().any(|c| c.covers(dot));
            prop_assert!(h.wiped || h.forgot || full.clock().covers(dot));
            if !overwritten && !h.lost.contains(dot) && !h.purged.contains(dot) {
                prop_assert!(present.contains(dot), "write {} was lost", dot);
            }
            // Without data loss the converse holds too: exactly the writes
            // that a context overwrote where it took effect are gone.
            if !h.wiped && h.effective.iter().any(|c| c.covers(dot)) {
                prop_assert!(!present.contains(dot), "overwritten {} survived", dot);
            }
        }
    }
}

/// An arbitrary valid object over a small dot space, reachable or not.
pub(super) fn arb_object() -> impl Strategy<Value = Object> {
    let clock = prop::collection::vec(0u64..4, ACTORS);
    let meta = (prop::option::of(0u64..3), prop::option::of(0u64..3));
    let sibs = prop::collection::vec((0..ACTORS, 1u64..4, prop::option::of(0u8..3), meta), 0..6);
    (clock, sibs).prop_map(|(counts, sibs)| {
        let actors: Vec<Actor> = (0..ACTORS)
            .map(|i| Actor::new(format!("n{i}"), 1))
            .collect();
        let clock: VersionVector = actors.iter().cloned().zip(counts).collect();
        let mut seen = BTreeSet::new();
        let siblings = sibs
            .into_iter()
            .map(|(i, c, v, (expires_ms, ts))| Sibling {
                dot: Dot::new(actors[i].clone(), c),
                value: v.map(|v| vec![v]),
                expires_ms,
                ts,
            })
            .filter(|s| clock.covers(&s.dot) && seen.insert(s.dot.clone()))
            .collect();
        Object::from_parts(clock, siblings).unwrap_or_default()
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    // Holds for any valid objects, not only reachable ones (including
    // equal dots with different values).
    #[test]
    fn merge_is_a_join_on_arbitrary_objects(
        states in prop::collection::vec(arb_object(), 1..6)
    ) {
        check_lattice(&states)?;
    }

    #[test]
    fn decoders_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
        let mut with_format = vec![OBJECT_FORMAT_V1];
        with_format.extend_from_slice(&bytes);
        for input in [&bytes, &with_format] {
            if let Ok(obj) = Object::decode(input) {
                prop_assert_eq!(Object::decode(&obj.encode()).ok(), Some(obj));
            }
        }
    }

    #[test]
    fn mutated_encodings_decode_to_valid_objects_or_fail(
        obj in arb_object(),
        flips in prop::collection::vec((any::<usize>(), any::<u8>()), 1..4),
    ) {
        let mut bytes = obj.encode();
        for (at, x) in flips {
            let i = at % bytes.len();
            bytes[i] ^= x;
        }
        if let Ok(obj) = Object::decode(&bytes) {
            let rebuilt = Object::from_parts(obj.clock().clone(), obj.siblings().to_vec());
            prop_assert_eq!(rebuilt.ok(), Some(obj));
        }
    }
}
