use super::*;
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};

type Key = (Vec<u8>, Vec<u8>);
type Model = BTreeMap<Key, Hash>;

fn digest(seed: u8) -> Hash {
    *blake3::hash(&[seed]).as_bytes()
}

/// Key number i of a small universe spread over three buckets.
fn key(i: u16) -> Key {
    (
        format!("b{}", i % 3).into_bytes(),
        format!("k{i}").into_bytes(),
    )
}

fn build<'a>(entries: impl IntoIterator<Item = (&'a Key, &'a Hash)>) -> Tree {
    let mut t = Tree::new();
    for ((b, k), d) in entries {
        t.update(b, k, None, Some(d));
    }
    t
}

/// A side's listing of the given segments.
fn listing(m: &Model, segs: &BTreeSet<u16>) -> Vec<(Key, Hash)> {
    m.iter()
        .filter(|((b, k), _)| segs.contains(&segment_of(b, k)))
        .map(|(k, d)| (k.clone(), *d))
        .collect()
}

/// Runs a full exchange of `a`'s tree against `b`'s tree; returns the segments reported
/// (empty if the exchange finished clean).
fn walk(a: &Tree, b: &Tree) -> Result<Vec<u16>, String> {
    let mut ex = Exchange::new(a.clone());
    match ex.start_with_root(b.root()) {
        Need::Done { clean: true } => return Ok(Vec::new()),
        Need::Branches => {}
        other => return Err(format!("after root: {other:?}")),
    }
    let bs = match ex.branches(b.branches()) {
        Need::Leaves(bs) => bs,
        other => return Err(format!("after branches: {other:?}")),
    };
    let answer: Vec<(usize, Vec<Hash>)> = bs
        .iter()
        .map(|&i| (i, b.branch_leaves(i).to_vec()))
        .collect();
    match ex.leaves(&answer) {
        Need::Keys(segs) => Ok(segs),
        other => Err(format!("after leaves: {other:?}")),
    }
}

/// Segments holding a key whose presence or digest differs between the maps.
fn truth(a: &Model, b: &Model) -> (BTreeSet<Key>, BTreeSet<u16>) {
    let keys: BTreeSet<Key> = a
        .keys()
        .chain(b.keys())
        .filter(|k| a.get(*k) != b.get(*k))
        .cloned()
        .collect();
    let segs = keys.iter().map(|(b, k)| segment_of(b, k)).collect();
    (keys, segs)
}

/// The diff-exactness oracle: the walk reports exactly the truly differing segments,
/// diff_keys on their listings exactly the differing keys, and repairing makes the trees
/// equal.
fn check_exchange(a: &Model, b: &Model) -> Result<(), String> {
    check_exchange_with(a, b, |m| build(m))
}

fn check_exchange_with(a: &Model, b: &Model, build: fn(&Model) -> Tree) -> Result<(), String> {
    let (ta, tb) = (build(a), build(b));
    let (want_keys, want_segs) = truth(a, b);
    let segs = walk(&ta, &tb)?;
    let got: BTreeSet<u16> = segs.iter().copied().collect();
    if got != want_segs || got.len() != segs.len() {
        return Err(format!("segments: got {segs:?}, want {want_segs:?}"));
    }
    let d = diff_keys(&listing(a, &got), &listing(b, &got));
    let only_local: Vec<Key> = want_keys
        .iter()
        .filter(|k| !b.contains_key(*k))
        .cloned()
        .collect();
    let only_remote: Vec<Key> = want_keys
        .iter()
        .filter(|k| !a.contains_key(*k))
        .cloned()
        .collect();
    let different: Vec<Key> = want_keys
        .iter()
        .filter(|k| a.contains_key(*k) && b.contains_key(*k))
        .cloned()
        .collect();
    let want = KeyDiff {
        only_local,
        only_remote,
        different,
    };
    if d != want {
        return Err(format!("key diff: got {d:?}, want {want:?}"));
    }
    // Repair: push local-only keys to the remote, take the remote's version otherwise.
    let (mut ra, mut rb) = (ta.clone(), tb.clone());
    for k in &d.only_local {
        rb.update(&k.0, &k.1, None, a.get(k));
    }
    for k in d.only_remote.iter().chain(&d.different) {
        ra.update(&k.0, &k.1, a.get(k), b.get(k));
    }
    if ra != rb {
        return Err("trees differ after repair".into());
    }
    Ok(())
}

#[test]
fn empty_tree_is_zero() {
    let t = Tree::new();
    assert!(t.is_empty());
    assert_eq!(t.root(), ZERO);
    assert_eq!(t.branches().len(), BRANCHES);
    assert_eq!(t.leaves().len(), LEAVES);
    assert!(t.branches().iter().all(|h| *h == ZERO));
    assert_eq!(t, Tree::default());
    assert_eq!(t.encode(), vec![FORMAT_V1]);
}

#[test]
fn insert_then_remove_is_empty() {
    let mut t = Tree::new();
    let d = digest(1);
    t.update(b"b", b"k", None, Some(&d));
    assert!(!t.is_empty());
    assert_ne!(t.root(), ZERO);
    let s = segment_of(b"b", b"k");
    assert_eq!(t.leaf(s), key_hash(b"b", b"k", &d));
    assert_eq!(t.branches()[branch_of(s)], key_hash(b"b", b"k", &d));
    t.update(b"b", b"k", Some(&d), None);
    assert!(t.is_empty());
    assert_eq!(t, Tree::new());
}

#[test]
fn update_equals_remove_then_insert() {
    let (d1, d2) = (digest(1), digest(2));
    let mut base = Tree::new();
    base.update(b"x", b"other", None, Some(&d1));
    base.update(b"b", b"k", None, Some(&d1));
    let mut a = base.clone();
    a.update(b"b", b"k", Some(&d1), Some(&d2));
    let mut b = base.clone();
    b.update(b"b", b"k", Some(&d1), None);
    b.update(b"b", b"k", None, Some(&d2));
    assert_eq!(a, b);
    assert_ne!(a, base);
    // No-op updates change nothing.
    let mut c = a.clone();
    c.update(b"b", b"k", Some(&d2), Some(&d2));
    c.update(b"b", b"nope", None, None);
    assert_eq!(c, a);
}

#[test]
fn segment_of_in_range_and_deterministic() {
    let mut seen = BTreeSet::new();
    for i in 0..5000u16 {
        let (b, k) = key(i);
        let s = segment_of(&b, &k);
        assert!(usize::from(s) < LEAVES);
        assert_eq!(s, segment_of(&b, &k));
        seen.insert(s);
    }
    // 5000 keys over 1024 segments leave ~8 empty on average; a skewed hash would leave many.
    assert!(seen.len() > 990, "only {} segments used", seen.len());
    assert!(usize::from(segment_of(b"", b"")) < LEAVES);
    // The length prefix keeps ("ab","c") and ("a","bc") apart.
    assert_ne!(key_hash(b"ab", b"c", &ZERO), key_hash(b"a", b"bc", &ZERO));
}

/// Pins the hash functions: persisted trees and mixed-version clusters depend on them, so
/// a change must be deliberate (with a new format byte).
#[test]
fn hashes_are_pinned() {
    let mut h = blake3::Hasher::new();
    h.update(b"chorus-keyhash");
    h.update(&6u32.to_le_bytes());
    h.update(b"bucket");
    h.update(&3u32.to_le_bytes());
    h.update(b"key");
    h.update(&[7; 32]);
    assert_eq!(
        key_hash(b"bucket", b"key", &[7; 32]),
        *h.finalize().as_bytes()
    );
    let mut h = blake3::Hasher::new();
    h.update(b"chorus-segment");
    h.update(&6u32.to_le_bytes());
    h.update(b"bucket");
    h.update(&3u32.to_le_bytes());
    h.update(b"key");
    let b = *h.finalize().as_bytes();
    assert_eq!(
        segment_of(b"bucket", b"key"),
        u16::from_le_bytes([b[0], b[1]]) % 1024
    );
}

#[test]
fn encode_decode_round_trip() {
    let mut t = Tree::new();
    for i in 0..300 {
        let (b, k) = key(i);
        t.update(&b, &k, None, Some(&digest(i as u8)));
    }
    let bytes = t.encode();
    assert_eq!(bytes[0], FORMAT_V1);
    let nonzero = t.leaves().iter().filter(|l| **l != ZERO).count();
    assert_eq!(bytes.len(), 1 + nonzero * ENTRY_LEN);
    assert_eq!(Tree::decode(&bytes), Ok(t.clone()));
    assert_eq!(Tree::decode(&Tree::new().encode()), Ok(Tree::new()));
    assert_eq!(Tree::from_leaves(t.leaves().to_vec()), Ok(t));
}

fn entry(seg: u16, fill: u8) -> Vec<u8> {
    let mut v = seg.to_be_bytes().to_vec();
    v.extend_from_slice(&[fill; 32]);
    v
}

#[test]
fn decode_rejects_bad_input() {
    use MerkleError::*;
    assert_eq!(Tree::decode(&[]), Err(Empty));
    assert_eq!(Tree::decode(&[2]), Err(UnknownFormat(2)));
    assert_eq!(Tree::decode(&[0, 1, 2]), Err(UnknownFormat(0)));
    let good = [vec![1], entry(3, 9), entry(700, 5)].concat();
    assert!(Tree::decode(&good).is_ok());
    // cut 1 is the format byte alone: a valid empty tree.
    for cut in 2..good.len() {
        if cut == 1 + ENTRY_LEN {
            continue; // a whole-entry prefix is itself valid
        }
        assert_eq!(
            Tree::decode(&good[..cut]),
            Err(BadLength { len: cut }),
            "cut {cut}"
        );
    }
    assert_eq!(
        Tree::decode(&[good.clone(), vec![0]].concat()),
        Err(BadLength {
            len: good.len() + 1
        })
    );
    let out_of_range = [vec![1], entry(LEAVES as u16, 9)].concat();
    assert_eq!(
        Tree::decode(&out_of_range),
        Err(SegmentOutOfRange(LEAVES as u16))
    );
    assert_eq!(
        Tree::decode(&[vec![1], entry(0xffff, 1)].concat()),
        Err(SegmentOutOfRange(0xffff))
    );
    let dup = [vec![1], entry(3, 9), entry(3, 8)].concat();
    assert_eq!(Tree::decode(&dup), Err(DuplicateSegment(3)));
    let unordered = [vec![1], entry(9, 9), entry(3, 8)].concat();
    assert_eq!(
        Tree::decode(&unordered),
        Err(UnorderedSegment { prev: 9, next: 3 })
    );
    let zero = [vec![1], entry(4, 0)].concat();
    assert_eq!(Tree::decode(&zero), Err(ZeroLeaf(4)));
    assert!(Tree::decode(b"garbage that is not a tree").is_err());
    // Messages say what is wrong.
    assert!(DuplicateSegment(3).to_string().contains("segment 3 twice"));
    assert_eq!(
        Tree::from_leaves(vec![ZERO; 3]),
        Err(WrongLeafCount {
            expected: LEAVES,
            got: 3
        })
    );
}

#[test]
fn out_of_range_arguments_are_harmless() {
    let mut t = Tree::new();
    t.toggle(LEAVES as u16, &[1; 32]);
    t.toggle(u16::MAX, &[1; 32]);
    t.set_leaf(u16::MAX, [1; 32]);
    assert!(t.is_empty());
    assert_eq!(t.leaf(u16::MAX), ZERO);
    assert!(t.branch_leaves(BRANCHES).is_empty());
    assert!(t.branch_leaves(usize::MAX).is_empty());
    assert_eq!(t.branch_leaves(BRANCHES - 1).len(), LEAVES_PER_BRANCH);
    assert_eq!(branch_of(LEAVES as u16 - 1), BRANCHES - 1);
    assert!(diff_branch_leaves(BRANCHES, &[ZERO], &[[1; 32]]).is_empty());
    assert!(diff_branch_leaves(usize::MAX, &[ZERO], &[[1; 32]]).is_empty());
}

#[test]
fn set_leaf_fixes_inner_nodes() {
    let mut t = Tree::new();
    t.update(b"b", b"k", None, Some(&digest(1)));
    let s = segment_of(b"b", b"k");
    t.set_leaf(s, ZERO);
    assert!(t.is_empty());
    t.set_leaf(5, [3; 32]);
    assert_eq!(Tree::from_leaves(t.leaves().to_vec()), Ok(t));
}

#[test]
fn diff_hashes_and_branch_leaves() {
    let (z, o) = (ZERO, [1; 32]);
    assert_eq!(diff_hashes(&[z, o, z], &[z, z, z]), vec![1]);
    assert_eq!(diff_hashes(&[z, o], &[z, o, z, z]), vec![2, 3]);
    assert_eq!(diff_hashes(&[o, z, z], &[z]), vec![0, 1, 2]);
    assert!(diff_hashes(&[], &[]).is_empty());
    let mut a = vec![z; LEAVES_PER_BRANCH];
    let b = a.clone();
    a[4] = o;
    a[31] = o;
    assert_eq!(diff_branch_leaves(2, &a, &b), vec![68, 95]);
    // Entries past a branch's width name no segment of it.
    let long = vec![o; LEAVES_PER_BRANCH + 5];
    assert_eq!(
        diff_branch_leaves(BRANCHES - 1, &b, &long).len(),
        LEAVES_PER_BRANCH
    );
}

#[test]
fn diff_keys_basic() {
    let (d1, d2) = (digest(1), digest(2));
    let local = [(5, d1), (1, d1), (3, d1), (7, d2)];
    let remote = [(3, d2), (9, d1), (7, d2), (2, d1)];
    let d = diff_keys(&local, &remote);
    assert_eq!(
        d,
        KeyDiff {
            only_local: vec![1, 5],
            only_remote: vec![2, 9],
            different: vec![3],
        }
    );
    assert!(diff_keys::<u8>(&[], &[]).is_empty());
    // A repeated key is not a panic; its first occurrence counts.
    let d = diff_keys(&[(1, d1), (1, d2)], &[(1, d1)]);
    assert!(d.is_empty());
}

#[test]
fn exchange_equal_trees_is_clean_in_one_step() {
    let mut m = Model::new();
    for i in 0..50 {
        m.insert(key(i), digest(i as u8));
    }
    let t = build(&m);
    let mut ex = Exchange::new(t.clone());
    assert_eq!(ex.start_with_root(t.root()), Need::Done { clean: true });
    assert!(ex.is_done());
    let mut ex = Exchange::new(Tree::new());
    assert_eq!(
        ex.start_with_root(Tree::new().root()),
        Need::Done { clean: true }
    );
}

#[test]
fn exchange_finds_the_one_differing_key() {
    let mut m = Model::new();
    for i in 0..500 {
        m.insert(key(i), digest(i as u8));
    }
    let mut r = m.clone();
    let odd = key(4242);
    r.insert(odd.clone(), digest(9));
    let (tl, tr) = (build(&m), build(&r));
    let seg = segment_of(&odd.0, &odd.1);

    let mut ex = Exchange::new(tl.clone());
    assert_eq!(ex.start_with_root(tr.root()), Need::Branches);
    assert_eq!(
        ex.branches(tr.branches()),
        Need::Leaves(vec![branch_of(seg)])
    );
    let b = branch_of(seg);
    assert_eq!(
        ex.leaves(&[(b, tr.branch_leaves(b).to_vec())]),
        Need::Keys(vec![seg])
    );
    let segs = BTreeSet::from([seg]);
    let (d, next) = ex.keys(&listing(&m, &segs), &listing(&r, &segs));
    assert_eq!(next, Need::Done { clean: false });
    assert_eq!(
        d,
        KeyDiff {
            only_local: vec![],
            only_remote: vec![odd],
            different: vec![]
        }
    );
    assert!(ex.is_done());
}

#[test]
fn exchange_out_of_order_calls_finish_unclean() {
    let t = build(&BTreeMap::from([(key(1), digest(1))]));
    let done = Need::Done { clean: false };
    let mut ex = Exchange::new(t.clone());
    assert_eq!(ex.branches(t.branches()), done);
    let mut ex = Exchange::new(t.clone());
    assert_eq!(ex.leaves(&[]), done);
    let mut ex = Exchange::new(t.clone());
    assert_eq!(ex.keys::<u8>(&[], &[]), (KeyDiff::default(), done.clone()));
    // After a clean finish, further calls do not restart it.
    let mut ex = Exchange::new(t.clone());
    assert_eq!(ex.start_with_root(t.root()), Need::Done { clean: true });
    assert_eq!(ex.start_with_root([1; 32]), done);
    assert_eq!(ex.branches(&[]), done);
    // Skipping a step aborts.
    let mut ex = Exchange::new(t.clone());
    assert_eq!(ex.start_with_root(ZERO), Need::Branches);
    assert_eq!(ex.leaves(&[]), done);
    assert_eq!(ex.keys::<u8>(&[], &[]).1, done);
}

#[test]
fn exchange_handles_odd_remote_answers() {
    let t = build(&BTreeMap::from([(key(1), digest(1))]));
    let seg = segment_of(&key(1).0, &key(1).1);
    let b = branch_of(seg);
    // Remote's branches equal ours although its root differed (race): unclean, no work.
    let mut ex = Exchange::new(t.clone());
    assert_eq!(ex.start_with_root(ZERO), Need::Branches);
    assert_eq!(ex.branches(t.branches()), Need::Done { clean: false });
    // A short branch list counts the missing ones as differing.
    let mut ex = Exchange::new(t.clone());
    ex.start_with_root(ZERO);
    assert_eq!(
        ex.branches(&[]),
        Need::Leaves((0..BRANCHES).collect::<Vec<_>>())
    );
    // A requested branch missing from the leaves answer: all its segments are listed;
    // unrequested entries are ignored.
    let mut ex = Exchange::new(t.clone());
    ex.start_with_root(ZERO);
    assert_eq!(ex.branches(Tree::new().branches()), Need::Leaves(vec![b]));
    let other = (b + 1) % BRANCHES;
    let want: Vec<u16> = (b * LEAVES_PER_BRANCH..(b + 1) * LEAVES_PER_BRANCH)
        .map(|s| s as u16)
        .collect();
    assert_eq!(
        ex.leaves(&[(other, vec![[1; 32]; LEAVES_PER_BRANCH])]),
        Need::Keys(want)
    );
}

/// Negative control: a single flipped digest bit among many keys is found, and the
/// checker used by the property tests does fail when handed wrong expectations.
#[test]
fn negative_control_single_flipped_digest() {
    let mut a = Model::new();
    for i in 0..2000 {
        a.insert(key(i), digest(i as u8));
    }
    let mut b = a.clone();
    let victim = key(1234);
    if let Some(d) = b.get_mut(&victim) {
        d[17] ^= 0x04;
    }
    let (ta, tb) = (build(&a), build(&b));
    assert_ne!(ta.root(), tb.root());
    let seg = segment_of(&victim.0, &victim.1);
    assert_eq!(walk(&ta, &tb), Ok(vec![seg]));
    let segs = BTreeSet::from([seg]);
    let d = diff_keys(&listing(&a, &segs), &listing(&b, &segs));
    assert_eq!(d.different, vec![victim.clone()]);
    assert!(d.only_local.is_empty() && d.only_remote.is_empty());
    assert_eq!(check_exchange(&a, &b), Ok(()));
    // The checker can fail: trees that ignore digests (a plausible bug) miss the flip,
    // and check_exchange reports it.
    fn ignoring_digests(m: &Model) -> Tree {
        let mut t = Tree::new();
        for (b, k) in m.keys() {
            t.update(b, k, None, Some(&ZERO));
        }
        t
    }
    assert!(check_exchange_with(&a, &b, ignoring_digests).is_err());
}

/// A key universe of 3000 keys and maps of up to ~1500 entries put several keys into
/// many segments, so segments mixing equal and differing keys occur.
fn pair_strategy() -> impl Strategy<Value = (Model, Model)> {
    // kind: 0 only in A, 1 only in B, 2 in both with independent digests, else equal.
    let entries = |max_kind: u8| {
        prop::collection::btree_map(0u16..3000, (0..max_kind, any::<u8>(), any::<u8>()), 0..1500)
    };
    prop_oneof![entries(4), entries(200)].prop_map(|m| {
        let (mut a, mut b) = (Model::new(), Model::new());
        for (i, (kind, d1, d2)) in m {
            match kind {
                0 => {
                    a.insert(key(i), digest(d1));
                }
                1 => {
                    b.insert(key(i), digest(d1));
                }
                2 => {
                    a.insert(key(i), digest(d1));
                    b.insert(key(i), digest(d2));
                }
                _ => {
                    a.insert(key(i), digest(d1));
                    b.insert(key(i), digest(d1));
                }
            }
        }
        (a, b)
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Incremental updates give the tree built fresh from the final contents, in any order.
    #[test]
    fn prop_incremental_equals_rebuild(
        ops in prop::collection::vec((0u16..40, prop::option::of(0u8..6)), 0..300),
        order_seed in any::<u64>(),
    ) {
        let mut t = Tree::new();
        let mut model = Model::new();
        for (i, new) in ops {
            let k = key(i);
            let new = new.map(digest);
            t.update(&k.0, &k.1, model.get(&k), new.as_ref());
            match new {
                Some(d) => model.insert(k, d),
                None => model.remove(&k),
            };
        }
        prop_assert_eq!(&build(&model), &t);
        prop_assert_eq!(&build(model.iter().rev()), &t);
        // A seed-dependent shuffle: order by a keyed hash of each key.
        let mut shuffled: Vec<_> = model.iter().collect();
        shuffled.sort_by_key(|(k, _)| key_hash(&k.0, &k.1, &[order_seed as u8; 32]));
        prop_assert_eq!(&build(shuffled), &t);
        prop_assert_eq!(model.is_empty(), t.is_empty());
        prop_assert_eq!(&Tree::from_leaves(t.leaves().to_vec()).unwrap(), &t);
        prop_assert_eq!(&Tree::decode(&t.encode()).unwrap(), &t);
    }

    /// The walk reports exactly the differing segments and keys; repair equalises trees.
    #[test]
    fn prop_diff_is_exact((a, b) in pair_strategy()) {
        if let Err(e) = check_exchange(&a, &b) {
            return Err(TestCaseError::fail(e));
        }
    }

    /// Both sides of an exchange find the same segments, and mirrored key diffs.
    #[test]
    fn prop_diff_is_symmetric((a, b) in pair_strategy()) {
        let (ta, tb) = (build(&a), build(&b));
        let ab = walk(&ta, &tb).map_err(TestCaseError::fail)?;
        let ba = walk(&tb, &ta).map_err(TestCaseError::fail)?;
        prop_assert_eq!(&ab, &ba);
        let segs: BTreeSet<u16> = ab.into_iter().collect();
        let (la, lb) = (listing(&a, &segs), listing(&b, &segs));
        let (dab, dba) = (diff_keys(&la, &lb), diff_keys(&lb, &la));
        prop_assert_eq!(&dab.only_local, &dba.only_remote);
        prop_assert_eq!(&dab.only_remote, &dba.only_local);
        prop_assert_eq!(&dab.different, &dba.different);
    }

    /// decode never panics; whatever it accepts re-encodes to the same bytes.
    #[test]
    fn prop_decode_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        if let Ok(t) = Tree::decode(&bytes) {
            prop_assert_eq!(t.encode(), bytes);
        }
    }

    /// Near-valid encodings (format byte 1, plausible entries, then a corruption) reach
    /// decode's deeper checks without panicking.
    #[test]
    fn prop_decode_near_valid(
        entries in prop::collection::btree_map(0u16..1100, prop::array::uniform32(0u8..3), 0..40),
        corrupt in 0u8..4,
        at in any::<prop::sample::Index>(),
        val in any::<u8>(),
    ) {
        let mut bytes = vec![FORMAT_V1];
        for (s, h) in &entries {
            bytes.extend_from_slice(&s.to_be_bytes());
            bytes.extend_from_slice(h);
        }
        match corrupt {
            0 => {}
            1 => bytes.truncate(at.index(bytes.len())),
            2 => { let i = at.index(bytes.len()); bytes[i] = val; }
            _ => bytes.insert(at.index(bytes.len() + 1), val),
        }
        match Tree::decode(&bytes) {
            Ok(t) => {
                prop_assert_eq!(t.encode(), bytes);
                prop_assert_eq!(&Tree::from_leaves(t.leaves().to_vec()).unwrap(), &t);
            }
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
    }
}
