//! Where a request goes: a key's replica set, the second set a write must also reach while
//! its partition moves, the fallbacks that stand in for down replicas, and the number of
//! answers the request's level needs. Also whether a node coordinates a write itself or
//! hands it to a replica. Pure functions of the ring(s); the caller resolves the level.

use chorus_ring::Ring;

/// A partition in a ring change, as one node's state sees it.
#[derive(Clone, Copy, Debug)]
pub struct Moving<'a> {
    /// The ring it moves away from.
    pub from: &'a Ring,
    /// Every gainer of the partition confirmed its transfer. Reads then go to the new set
    /// (which holds all of the data), but writes still reach both sets: a node that hasn't
    /// heard of the confirmation yet still reads the old set alone.
    pub confirmed: bool,
}

/// Where a key lives and what a request needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    pub partition: u32,
    /// The replicas that coordinate writes and answer reads. While the partition moves to
    /// new owners and some haven't confirmed their transfer, this is the old replica set,
    /// which holds all of its data; once all have, the new set.
    pub pref: Vec<String>,
    /// During a transition, the other replica set, which writes must also reach.
    pub also: Option<Vec<String>>,
    /// Answers needed from each set.
    pub needed: usize,
    /// The rest of the partition's order in the current ring: stand-ins for down replicas.
    pub fallbacks: Vec<String>,
}

impl Plan {
    /// The key's plan. `n` is the bucket's replica count (capped at the ring's size);
    /// `needed_for` resolves the request's level against that capped N. `moving` is set
    /// while a ring change is in progress.
    pub fn new<E>(
        ring: &Ring,
        moving: Option<Moving<'_>>,
        partition: u32,
        n: usize,
        needed_for: impl FnOnce(usize) -> Result<usize, E>,
    ) -> Result<Plan, E> {
        let n = n.min(ring.members().len());
        let needed = needed_for(n)?;
        let list = |r: &Ring, n: usize| -> Vec<String> {
            r.preference_list(partition, n)
                .into_iter()
                .map(str::to_string)
                .collect()
        };
        let new = list(ring, n);
        let (pref, also) = match moving {
            Some(m) => {
                let old_pref = list(m.from, n.min(m.from.members().len()));
                // An old set too small for the level can't coordinate: use the new one.
                if old_pref == new || needed > old_pref.len() {
                    (new, None)
                } else if m.confirmed {
                    (new, Some(old_pref))
                } else {
                    (old_pref, Some(new))
                }
            }
            None => (new, None),
        };
        Ok(Plan {
            partition,
            pref,
            also,
            needed,
            fallbacks: ring
                .fallbacks(partition, n)
                .into_iter()
                .map(str::to_string)
                .collect(),
        })
    }

    /// Every replica a write goes to: the replica set, then the new set's others.
    pub fn write_targets(&self) -> Vec<String> {
        let mut targets = self.pref.clone();
        for n in self.also.iter().flatten() {
            if !targets.contains(n) {
                targets.push(n.clone());
            }
        }
        targets
    }
}

/// Who handles a write that arrived at a node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WriteRoute {
    /// This node is a replica that takes writes: it issues the version.
    Coordinate,
    /// Hand it to the first of these (live replicas, in preference order) that takes it.
    /// Empty: no replica is reachable.
    Forward(Vec<String>),
    /// A forwarded write reached a replica that doesn't take writes now (recovering).
    NotTakingWrites,
    /// A forwarded write reached a node outside the replica set: the two disagree about
    /// the ring. It is never forwarded twice.
    RingMismatch,
}

/// Only a replica of the key may issue its version, and only while its data is whole
/// (`takes_writes`), since its local version carries into the new one.
pub fn route_write(
    plan: &Plan,
    me: &str,
    takes_writes: bool,
    forwarded: bool,
    is_up: impl Fn(&str) -> bool,
) -> WriteRoute {
    let replica = plan.pref.iter().any(|n| n == me);
    if replica && takes_writes {
        return WriteRoute::Coordinate;
    }
    if forwarded {
        return if replica {
            WriteRoute::NotTakingWrites
        } else {
            WriteRoute::RingMismatch
        };
    }
    WriteRoute::Forward(
        plan.pref
            .iter()
            .filter(|n| *n != me && is_up(n))
            .cloned()
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use chorus_ring::Member;

    fn ring(ids: &[&str]) -> Ring {
        Ring::new(16, 3, ids.iter().map(|i| Member::new(*i)).collect()).expect("ring")
    }

    fn quorum(n: usize) -> Result<usize, String> {
        Ok(n / 2 + 1)
    }

    fn moving(from: &Ring, confirmed: bool) -> Moving<'_> {
        Moving { from, confirmed }
    }

    #[test]
    fn a_plan_is_the_preference_list_and_the_rest_as_fallbacks() {
        let r = ring(&["a", "b", "c", "d", "e"]);
        let p = Plan::new(&r, None, 3, 3, quorum).expect("plan");
        assert_eq!(p.pref, r.preference_list(3, 3));
        assert_eq!(p.fallbacks, r.fallbacks(3, 3));
        assert_eq!((p.needed, p.also.clone(), p.partition), (2, None, 3));
        assert_eq!(p.write_targets(), p.pref);
    }

    #[test]
    fn n_is_capped_at_the_ring_size_before_the_level_resolves() {
        let r = ring(&["a", "b"]);
        let mut seen = 0;
        let p = Plan::new(&r, None, 0, 3, |n| {
            seen = n;
            Ok::<_, String>(n)
        })
        .expect("plan");
        assert_eq!((seen, p.pref.len(), p.needed), (2, 2, 2));
        assert_eq!(
            Plan::new(&r, None, 0, 3, |n| Err::<usize, _>(format!("n={n}"))),
            Err("n=2".to_string()),
            "the level's error comes back as is"
        );
    }

    #[test]
    fn a_moving_partition_plans_the_old_set_and_also_the_new_one() {
        let old = ring(&["a", "b", "c", "d"]);
        let new = old
            .rebalance(["a", "b", "c", "d", "e"].map(Member::new).to_vec())
            .expect("rebalance");
        let moved = (0..16)
            .find(|p| old.preference_list(*p, 3) != new.preference_list(*p, 3))
            .expect("some partition moves");
        let p = Plan::new(&new, Some(moving(&old, false)), moved, 3, quorum).expect("plan");
        assert_eq!(p.pref, old.preference_list(moved, 3));
        let new_pref: Vec<String> = new
            .preference_list(moved, 3)
            .into_iter()
            .map(str::to_string)
            .collect();
        assert_eq!(p.also.as_ref(), Some(&new_pref));
        let targets = p.write_targets();
        assert_eq!(&targets[..3], &p.pref[..], "the old set first");
        assert!(new_pref.iter().all(|n| targets.contains(n)));
        assert!(targets.len() > 3, "the new set adds a replica");
        // A partition that didn't move plans one set even while others move.
        let stayed = (0..16)
            .find(|p| old.preference_list(*p, 3) == new.preference_list(*p, 3))
            .expect("some partition stays");
        let p = Plan::new(&new, Some(moving(&old, false)), stayed, 3, quorum).expect("plan");
        assert_eq!(p.also, None);
    }

    #[test]
    fn a_confirmed_partition_reads_the_new_set_and_still_writes_both() {
        let old = ring(&["a", "b", "c", "d"]);
        let new = old
            .rebalance(["a", "b", "c", "d", "e"].map(Member::new).to_vec())
            .expect("rebalance");
        let moved = (0..16)
            .find(|p| old.preference_list(*p, 3) != new.preference_list(*p, 3))
            .expect("some partition moves");
        let names = |r: &Ring| -> Vec<String> {
            r.preference_list(moved, 3)
                .into_iter()
                .map(str::to_string)
                .collect()
        };
        let p = Plan::new(&new, Some(moving(&old, true)), moved, 3, quorum).expect("plan");
        assert_eq!(p.pref, names(&new), "reads and coordination: the new set");
        assert_eq!(p.also, Some(names(&old)), "writes also reach the old set");
        // Before the confirmation, the same partition the other way round.
        let q = Plan::new(&new, Some(moving(&old, false)), moved, 3, quorum).expect("plan");
        assert_eq!((q.pref, q.also), (names(&old), Some(names(&new))));
    }

    #[test]
    fn an_old_set_too_small_for_the_level_gives_way_to_the_new_one() {
        let old = ring(&["a", "b"]);
        let new = old
            .rebalance(["a", "b", "c"].map(Member::new).to_vec())
            .expect("rebalance");
        let p = Plan::new(&new, Some(moving(&old, false)), 0, 3, Ok::<_, String>).expect("plan");
        assert_eq!((p.pref.len(), p.needed, p.also), (3, 3, None));
    }

    fn plan(pref: &[&str]) -> Plan {
        Plan {
            partition: 0,
            pref: pref.iter().map(|s| s.to_string()).collect(),
            also: None,
            needed: 2,
            fallbacks: vec![],
        }
    }

    #[test]
    fn writes_are_coordinated_by_a_whole_replica_or_forwarded_once() {
        let p = plan(&["a", "b", "c"]);
        let up = |_: &str| true;
        assert_eq!(
            route_write(&p, "a", true, false, up),
            WriteRoute::Coordinate
        );
        assert_eq!(route_write(&p, "a", true, true, up), WriteRoute::Coordinate);
        assert_eq!(
            route_write(&p, "x", true, false, |n| n != "b"),
            WriteRoute::Forward(vec!["a".into(), "c".into()]),
            "live replicas in preference order"
        );
        assert_eq!(
            route_write(&p, "a", false, false, up),
            WriteRoute::Forward(vec!["b".into(), "c".into()]),
            "a recovering replica hands the write on"
        );
        assert_eq!(
            route_write(&p, "a", false, true, up),
            WriteRoute::NotTakingWrites
        );
        assert_eq!(
            route_write(&p, "x", true, true, up),
            WriteRoute::RingMismatch
        );
        assert_eq!(
            route_write(&p, "x", true, false, |_| false),
            WriteRoute::Forward(vec![])
        );
    }
}
