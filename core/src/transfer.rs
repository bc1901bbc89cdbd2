//! Planning partition transfers after a ring change: which partitions this node must pull,
//! from whom, whom it must compare trees with afterwards, and which partitions it may drop
//! once the transition is over. Pulling, persisting the cursor and dropping are the node's.

use chorus_ring::Ring;

use crate::membership::ClusterState;

/// Partitions `me` gained in the current transition and hasn't confirmed yet.
pub fn to_pull(state: &ClusterState, me: &str) -> Vec<u32> {
    state
        .pending()
        .into_iter()
        .filter(|(_, gainer)| gainer == me)
        .map(|(p, _)| p)
        .collect()
}

/// Where to pull partition `p` from: the first live replica of the old ring other than
/// `me`. The old ring holds the partition's complete data while it moves.
pub fn source(prev: &Ring, p: u32, me: &str, is_up: impl Fn(&str) -> bool) -> Option<String> {
    prev.preference_list(p, prev.replicas())
        .into_iter()
        .find(|s| *s != me && is_up(s))
        .map(str::to_string)
}

/// The old replicas of `p`'s tree of class `n` to compare with after pulling from `source`:
/// the source may have missed writes that they took. Down ones are skipped (the transfer
/// still confirms; anti-entropy covers them later).
pub fn compare_with(
    prev: &Ring,
    p: u32,
    n: usize,
    me: &str,
    source: &str,
    is_up: impl Fn(&str) -> bool,
) -> Vec<String> {
    prev.preference_list(p, n)
        .into_iter()
        .filter(|o| *o != me && *o != source && is_up(o))
        .map(str::to_string)
        .collect()
}

/// Partitions `me` no longer replicates once no transition is in progress: each may be
/// dropped after a tree exchange with every current replica succeeds. None while partitions
/// still move (the old ring's replicas are sources until every gainer confirmed).
pub fn to_drop(state: &ClusterState, me: &str) -> Vec<u32> {
    let (Some(ring), None) = (&state.ring, &state.prev) else {
        return Vec::new();
    };
    (0..ring.partition_count())
        .filter(|p| !ring.preference_list(*p, ring.replicas()).contains(&me))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::membership::{MemberInfo, MemberState};
    use chorus_ring::Member;

    fn state(ids: &[&str]) -> ClusterState {
        let members = ids
            .iter()
            .map(|id| {
                let m = MemberInfo {
                    id: id.to_string(),
                    address: format!("{id}:1"),
                    zone: None,
                    state: MemberState::Up,
                    incarnation: 0,
                    generation: 0,
                };
                (id.to_string(), m)
            })
            .collect();
        let ring = Ring::new(16, 3, ids.iter().map(|i| Member::new(*i)).collect()).expect("ring");
        let mut s = ClusterState {
            members,
            ring: Some(ring),
            ..Default::default()
        };
        for id in ids.iter().chain(ids) {
            s.acknowledge(id);
        }
        s
    }

    /// Adds `d` as joining and lets the planner start the transition.
    fn joined(ids: &[&str]) -> ClusterState {
        let mut s = state(ids);
        s.members.insert(
            "d".into(),
            MemberInfo {
                id: "d".into(),
                address: "d:1".into(),
                zone: None,
                state: MemberState::Joining,
                incarnation: 0,
                generation: 0,
            },
        );
        for id in ids.iter().chain(&["d"]).chain(ids).chain(&["d"]) {
            s.acknowledge(id);
        }
        s.plan().expect("plan").expect("a transition")
    }

    #[test]
    fn a_joiner_pulls_what_it_gained_until_it_confirms() {
        let s = joined(&["a", "b", "c"]);
        let gained = to_pull(&s, "d");
        assert!(!gained.is_empty(), "the joiner gains partitions");
        assert!(to_pull(&s, "a").is_empty(), "the old members gain nothing");
        let mut confirmed = s.clone();
        confirmed.done.insert((gained[0], "d".into()));
        assert_eq!(to_pull(&confirmed, "d"), gained[1..].to_vec());
    }

    #[test]
    fn the_source_is_a_live_old_replica_and_the_others_are_compared() {
        let s = joined(&["a", "b", "c"]);
        let prev = s.prev.as_ref().expect("old ring");
        let p = to_pull(&s, "d")[0];
        let all_up = |_: &str| true;
        let first = prev.preference_list(p, 3)[0].to_string();
        assert_eq!(
            source(prev, p, "d", all_up).as_deref(),
            Some(first.as_str())
        );
        let second = source(prev, p, "d", |id| id != first).expect("another");
        assert_ne!(second, first);
        assert_eq!(source(prev, p, "d", |_| false), None, "no live source");
        let others = compare_with(prev, p, 3, "d", &first, all_up);
        assert_eq!(others.len(), 2);
        assert!(!others.contains(&first));
        let down = others[0].clone();
        let fewer = compare_with(prev, p, 3, "d", &first, |id| id != down);
        assert_eq!(fewer, others[1..].to_vec());
    }

    #[test]
    fn partitions_are_dropped_only_after_the_transition() {
        let s = joined(&["a", "b", "c"]);
        for m in ["a", "b", "c", "d"] {
            assert!(
                to_drop(&s, m).is_empty(),
                "{m} drops nothing mid-transition"
            );
        }
        let mut done = s.clone();
        for t in done.pending() {
            done.done.insert(t);
        }
        for m in ["a", "b", "c", "d", "a", "b", "c", "d"] {
            done.acknowledge(m);
        }
        let finished = done.plan().expect("plan").expect("finishes");
        assert!(finished.prev.is_none());
        let ring = finished.ring.as_ref().expect("ring");
        let lost: Vec<u32> = (0..16)
            .filter(|p| !ring.preference_list(*p, 3).contains(&"a"))
            .collect();
        assert!(!lost.is_empty(), "a gave partitions to d");
        assert_eq!(to_drop(&finished, "a"), lost);
        assert_eq!(to_drop(&finished, "d").len(), 16 - to_pull(&s, "d").len());
    }
}
