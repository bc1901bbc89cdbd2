//! What a replica does to one key: the apply rules for a coordinated update, a merge of a
//! peer's version and a tombstone purge, with the sibling and size limits.
//!
//! [`apply`] is pure: it takes the key's current state and a [`Change`] and returns the new
//! state. Reading the key, minting from the node-wide counter and writing the result in a
//! batch are the caller's (the node's writer thread).

use crate::context::Context;
use crate::merkle::Hash;
use crate::version::{Actor, Conflicts, Object, WriteMeta};

/// A mutation of one key.
#[derive(Clone, Debug)]
pub enum Change {
    /// A write coordinated here: replace what `ctx` covers with `value` (None deletes).
    Update {
        ctx: Context,
        value: Option<Vec<u8>>,
        /// When the value expires (wall-clock ms since the Unix epoch), set by the coordinator.
        expires_ms: Option<u64>,
    },
    /// A version from another replica, merged in.
    Merge(Object),
    /// Remove the key if its version is still exactly the one with this digest (a tombstone
    /// every replica holds).
    Purge(Hash),
}

/// The limits a coordinated write must respect. Merges from peers are never refused:
/// refusing one would lose a write another replica already acknowledged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Most siblings a coordinated write may leave.
    pub max_siblings: usize,
    /// Largest encoded version a coordinated write may leave.
    pub max_object_bytes: usize,
}

/// Why a coordinated write was refused. The key's stored state is left as it was.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("key has {count} siblings, more than the limit of {limit}; resolve them by writing with the read's context")]
    TooManySiblings { count: usize, limit: usize },
    #[error("the key's stored version would be {size} bytes, more than the limit of {limit} bytes (limits.max_object_bytes); write with the context of a read to replace its siblings, or write a smaller value")]
    TooLarge { size: usize, limit: usize },
}

/// The result of applying a change to a key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Applied {
    /// The key's new state; `None` once purged.
    pub object: Option<Object>,
    /// Whether it differs from what was stored (only then is there anything to write).
    pub changed: bool,
    /// The counter of the dot an update minted, for the caller's node-wide counter.
    pub minted: Option<u64>,
}

/// Who applies a change, and when: what an update mints and how the bucket resolves
/// conflicts.
#[derive(Clone, Copy, Debug)]
pub struct Local<'a> {
    /// The writer's actor.
    pub actor: &'a Actor,
    /// The highest counter the actor has minted for any key.
    pub floor: u64,
    /// The bucket's conflict policy.
    pub conflicts: Conflicts,
    /// The local wall clock, ms since the Unix epoch: expired siblings are dropped by an
    /// update and only objects dead at this time are purged.
    pub now_ms: u64,
    /// The hybrid logical clock timestamp for an update in an `lww` bucket.
    pub ts: u64,
}

/// [`apply_at`] in a `siblings` bucket, at time 0 (nothing has expired).
pub fn apply(
    current: Option<Object>,
    change: Change,
    limits: &Limits,
    actor: &Actor,
    floor: u64,
) -> Result<Applied, Refused> {
    let local = Local {
        actor,
        floor,
        conflicts: Conflicts::Siblings,
        now_ms: 0,
        ts: 0,
    };
    apply_at(current, change, limits, &local)
}

/// Applies `change` to a key whose stored state is `current`. An update is minted by
/// `actor` above `floor`, the highest counter the actor has minted for any key (so a purged
/// and re-created key never gets a dot it had before).
///
/// An update that would take the key over a limit is refused, except one that shrinks it
/// (no more siblings and no more value bytes than before): that is how a key grown past the
/// limits by concurrent writes (merges aren't refused) is resolved, possibly in steps when a
/// read could show only part of it.
///
/// In a `siblings` bucket an update also drops the siblings that have expired by `now_ms`
/// (they stay covered by the clock, so they count as overwritten), so blind writes with a
/// TTL don't pile up expired siblings. In an `lww` bucket an update stamps the new sibling
/// with `ts`, and updates and merges keep one sibling (see [`Object::merge_as`]).
pub fn apply_at(
    current: Option<Object>,
    change: Change,
    limits: &Limits,
    local: &Local,
) -> Result<Applied, Refused> {
    let (actor, floor) = (local.actor, local.floor);
    match change {
        Change::Update {
            ctx,
            value,
            expires_ms,
        } => {
            let mut obj = current.unwrap_or_default();
            let (siblings_before, bytes_before) = (obj.sibling_count(), value_bytes(&obj));
            let dot = match local.conflicts {
                Conflicts::Siblings => {
                    obj.drop_expired(local.now_ms);
                    let meta = WriteMeta {
                        expires_ms,
                        ts: None,
                    };
                    obj.update_with(&ctx, actor, floor, value, meta)
                }
                Conflicts::Lww => {
                    let meta = WriteMeta {
                        expires_ms,
                        ts: Some(local.ts),
                    };
                    obj.update_lww(&ctx, actor, floor, value, meta)
                }
            };
            let shrinks =
                obj.sibling_count() <= siblings_before && value_bytes(&obj) <= bytes_before;
            if !shrinks {
                let count = obj.sibling_count();
                if count > limits.max_siblings {
                    return Err(Refused::TooManySiblings {
                        count,
                        limit: limits.max_siblings,
                    });
                }
                check_size(&obj, limits.max_object_bytes)?;
            }
            Ok(Applied {
                object: Some(obj),
                changed: true,
                minted: Some(dot.counter),
            })
        }
        Change::Merge(other) => {
            let (object, changed) = match current {
                None => {
                    let mut fresh = Object::new();
                    fresh.merge_as(&other, local.conflicts);
                    (fresh, true)
                }
                Some(obj) if !obj.merge_changes_as(&other, local.conflicts) => (obj, false),
                Some(mut obj) => {
                    obj.merge_as(&other, local.conflicts);
                    (obj, true)
                }
            };
            Ok(Applied {
                object: Some(object),
                changed,
                minted: None,
            })
        }
        Change::Purge(digest) => {
            let (object, changed) = match current {
                Some(obj) if obj.is_dead_at(local.now_ms) && obj.digest() == digest => (None, true),
                other => (other, false),
            };
            Ok(Applied {
                object,
                changed,
                minted: None,
            })
        }
    }
}

/// Bytes of live values.
pub fn value_bytes(obj: &Object) -> usize {
    obj.siblings()
        .iter()
        .map(|s| s.value.as_ref().map_or(0, Vec::len))
        .sum()
}

/// Refuses a version larger than `limit` once encoded. Values are summed first, so the
/// encoding is only done for versions near the limit.
fn check_size(obj: &Object, limit: usize) -> Result<(), Refused> {
    // Generous per-sibling and per-actor overheads (ids, epochs, counters, field names).
    const PER_ENTRY: usize = 256;
    let values = value_bytes(obj);
    let entries = obj.siblings().len() + obj.clock().len();
    if values.saturating_add(entries.saturating_mul(PER_ENTRY)) <= limit {
        return Ok(());
    }
    let size = obj.encode().len();
    if size > limit {
        return Err(Refused::TooLarge { size, limit });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROOMY: Limits = Limits {
        max_siblings: 4,
        max_object_bytes: 1 << 20,
    };

    fn me() -> Actor {
        Actor::new("n1", 7)
    }

    fn put(v: &[u8]) -> Change {
        Change::Update {
            ctx: Context::default(),
            value: Some(v.to_vec()),
            expires_ms: None,
        }
    }

    fn applied(current: Option<Object>, change: Change, floor: u64) -> Applied {
        apply(current, change, &ROOMY, &me(), floor).expect("accepted")
    }

    #[test]
    fn an_update_mints_above_the_floor_and_reports_the_counter() {
        let a = applied(None, put(b"v1"), 41);
        assert_eq!(a.minted, Some(42));
        assert!(a.changed);
        let obj = a.object.expect("written");
        assert_eq!(obj.values(), vec![&b"v1"[..]]);
        assert_eq!(obj.siblings()[0].dot.counter, 42);
    }

    #[test]
    fn blind_writes_past_the_sibling_limit_are_refused() {
        let mut obj = None;
        for i in 0..4u64 {
            obj = applied(obj, put(b"x"), i).object;
        }
        let err = apply(obj.clone(), put(b"x"), &ROOMY, &me(), 10);
        assert_eq!(
            err,
            Err(Refused::TooManySiblings { count: 5, limit: 4 }),
            "the fifth blind write"
        );
        // With the read's context the same write replaces all four.
        let ctx = obj.as_ref().expect("stored").context();
        let out = applied(
            obj,
            Change::Update {
                ctx,
                value: Some(b"one".to_vec()),
                expires_ms: None,
            },
            10,
        );
        assert_eq!(out.object.expect("written").sibling_count(), 1);
    }

    #[test]
    fn a_write_that_shrinks_a_key_over_the_limits_is_taken() {
        let mut grown = Object::new();
        for i in 0..6u64 {
            let who = Actor::new(format!("w{i}"), 1);
            grown.update(&Context::default(), &who, 0, Some(vec![b'a' + i as u8; 10]));
        }
        let merged = applied(None, Change::Merge(grown.clone()), 0);
        assert_eq!(merged.object.as_ref().map(Object::sibling_count), Some(6));
        // Replacing two of the six shrinks the key, though it stays over the limit of 4.
        let shown = grown.context_showing(|v| v[0] < b'c');
        let out = applied(
            Some(grown.clone()),
            Change::Update {
                ctx: shown,
                value: Some(b"resolved".to_vec()),
                expires_ms: None,
            },
            0,
        );
        let obj = out.object.expect("written");
        assert_eq!(obj.sibling_count(), 5);
        // A write that adds bytes to a key over the limit is refused: the negative control.
        let bigger = grown.context_showing(|v| v[0] == b'a');
        let err = apply(
            Some(grown),
            Change::Update {
                ctx: bigger,
                value: Some(vec![b'z'; 11]),
                expires_ms: None,
            },
            &ROOMY,
            &me(),
            0,
        );
        assert!(matches!(
            err,
            Err(Refused::TooManySiblings { count: 6, .. })
        ));
    }

    #[test]
    fn writes_past_the_size_cap_are_refused_but_merges_are_not() {
        let tight = Limits {
            max_siblings: 64,
            max_object_bytes: 10_000,
        };
        let mut obj = None;
        for i in 0..3 {
            obj = apply(obj, put(&[1; 3000]), &tight, &me(), i)
                .expect("under the cap")
                .object;
        }
        let err = apply(obj.clone(), put(&[1; 3000]), &tight, &me(), 3);
        match err {
            Err(e @ Refused::TooLarge { .. }) => {
                assert!(e.to_string().contains("limits.max_object_bytes"), "{e}")
            }
            other => panic!("expected TooLarge, got {other:?}"),
        }
        let mut theirs = Object::new();
        let peer = Actor::new("n2", 1);
        for floor in 0..4 {
            theirs.update(&Context::default(), &peer, floor, Some(vec![2; 3000]));
        }
        let merged = apply(obj, Change::Merge(theirs), &tight, &me(), 3).expect("merged");
        assert_eq!(merged.object.map(|o| o.sibling_count()), Some(7));
    }

    #[test]
    fn a_merge_that_adds_nothing_changes_nothing() {
        let obj = applied(None, put(b"v"), 0).object.expect("written");
        let same = applied(Some(obj.clone()), Change::Merge(obj.clone()), 0);
        assert!(!same.changed);
        assert_eq!(same.object.as_ref(), Some(&obj));
        let mut newer = obj.clone();
        newer.update(&obj.context(), &Actor::new("n2", 1), 0, Some(b"w".to_vec()));
        let taken = applied(Some(obj), Change::Merge(newer.clone()), 0);
        assert!(taken.changed);
        assert_eq!(taken.object, Some(newer));
    }

    #[test]
    fn purge_removes_only_the_expected_tombstone() {
        let live = applied(None, put(b"v"), 0).object.expect("written");
        let kept = applied(Some(live.clone()), Change::Purge(live.digest()), 0);
        assert!(!kept.changed, "a live value is never purged");
        assert_eq!(kept.object.as_ref(), Some(&live));
        let tomb = applied(
            Some(live.clone()),
            Change::Update {
                ctx: live.context(),
                value: None,
                expires_ms: None,
            },
            1,
        )
        .object
        .expect("deleted");
        let stale = applied(Some(tomb.clone()), Change::Purge([7; 32]), 0);
        assert!(!stale.changed);
        let gone = applied(Some(tomb.clone()), Change::Purge(tomb.digest()), 0);
        assert!(gone.changed);
        assert_eq!(gone.object, None);
        let absent = applied(None, Change::Purge(tomb.digest()), 0);
        assert!(!absent.changed && absent.object.is_none());
    }
}
