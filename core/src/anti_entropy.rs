//! Key repair after a tree exchange: for a key whose digests differ, what each side takes.
//!
//! Each differing key is merged both ways: this node pulls the peer's version and merges it
//! in, and pushes the merge back where the peer lacks part of it. Pulling is always safe
//! (merge is a join); pushing is not, from a node whose data may be incomplete or stale, so
//! only a whole replica pushes, and only keys it replicates in its current ring: a node that
//! lost or gave away a partition must not spread what it still holds of it.

use crate::version::{Conflicts, Object};

/// Whether this node may push its version of a key: it is whole (not recovering, not
/// removed) and is one of the key's replicas in its current ring.
pub fn may_push(whole: bool, replicas: &[&str], me: &str) -> bool {
    whole && replicas.contains(&me)
}

/// What to do about one key, from both sides' versions.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Repair {
    /// Merge the peer's version into this node's copy.
    pub take: Option<Object>,
    /// Send this merged version to the peer.
    pub push: Option<Object>,
}

impl Repair {
    /// Whether either side changes.
    pub fn changes_anything(&self) -> bool {
        self.take.is_some() || self.push.is_some()
    }
}

/// Decides a key's repair. `may_push` is [`may_push`] for this key. A key this node doesn't
/// hold is only pulled: the peer already has everything this side could send.
pub fn repair(mine: Option<&Object>, theirs: Option<Object>, may_push: bool) -> Repair {
    repair_as(mine, theirs, may_push, Conflicts::Siblings)
}

/// [`repair`] for a bucket with conflict policy `conflicts`.
pub fn repair_as(
    mine: Option<&Object>,
    theirs: Option<Object>,
    may_push: bool,
    conflicts: Conflicts,
) -> Repair {
    let mut merged = mine.cloned().unwrap_or_default();
    if let Some(t) = &theirs {
        merged.merge_as(t, conflicts);
    }
    let push =
        (theirs.as_ref() != Some(&merged) && mine.is_some() && may_push).then(|| merged.clone());
    let take = if mine != Some(&merged) { theirs } else { None };
    Repair { take, push }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::Context;
    use crate::version::Actor;

    fn written(by: &str, v: &[u8]) -> Object {
        let mut o = Object::new();
        o.update(&Context::default(), &Actor::new(by, 1), 0, Some(v.to_vec()));
        o
    }

    fn merged(a: &Object, b: &Object) -> Object {
        let mut m = a.clone();
        m.merge(b);
        m
    }

    #[test]
    fn concurrent_versions_are_merged_both_ways() {
        let (a, b) = (written("a", b"x"), written("b", b"y"));
        let r = repair(Some(&a), Some(b.clone()), true);
        assert_eq!(r.take, Some(b.clone()));
        assert_eq!(r.push, Some(merged(&a, &b)));
        assert!(r.changes_anything());
    }

    #[test]
    fn only_the_side_that_lacks_something_gets_it() {
        let old = written("a", b"x");
        let mut new = old.clone();
        new.update(&old.context(), &Actor::new("b", 1), 0, Some(b"y".to_vec()));
        // The peer is behind: push only.
        let r = repair(Some(&new), Some(old.clone()), true);
        assert_eq!((r.take, r.push), (None, Some(new.clone())));
        // This node is behind: take only.
        let r = repair(Some(&old), Some(new.clone()), true);
        assert_eq!((r.take, r.push), (Some(new.clone()), None));
        // The peer has nothing: push; this node has nothing: take.
        let r = repair(Some(&new), None, true);
        assert_eq!((r.take, r.push), (None, Some(new.clone())));
        let r = repair(None, Some(new.clone()), true);
        assert_eq!((r.take, r.push), (Some(new.clone()), None));
        // Equal: nothing.
        assert!(!repair(Some(&new), Some(new.clone()), true).changes_anything());
        assert!(!repair(None, None, true).changes_anything());
    }

    #[test]
    fn a_node_that_may_not_push_only_pulls() {
        let (a, b) = (written("a", b"x"), written("b", b"y"));
        let r = repair(Some(&a), Some(b.clone()), false);
        assert_eq!((r.take, r.push), (Some(b), None));
        let r = repair(Some(&a), None, false);
        assert!(!r.changes_anything(), "nothing to pull, and no push");
    }

    #[test]
    fn only_a_whole_replica_of_the_key_pushes() {
        let replicas = ["a", "b", "c"];
        assert!(may_push(true, &replicas, "b"));
        assert!(
            !may_push(true, &replicas, "d"),
            "not a replica in the current ring"
        );
        assert!(!may_push(false, &replicas, "b"), "recovering or removed");
    }
}
