//! The gossiped cluster state: members, the ring and the transition in progress, its merge,
//! and the pure ring-change planner.
//!
//! The member list is keyed by node id (not address), and each entry carries an
//! incarnation: a node that comes back on a new address bumps it, so its new address wins.
//! Merging two states is a join: per member the higher incarnation wins, and at equal
//! incarnation the later state (joining < up < leaving < left). Rings carry a version; the
//! higher one wins, and two different rings of the same version (two claimants acting at
//! once) are ordered by digest, so every node settles on the same one.
//!
//! One node at a time, the claimant (the lowest id among live members in the ring), turns
//! member changes into a new ring with [`ClusterState::plan`]: it rebalances with minimal
//! movement and keeps the previous ring until every node that gained a partition has
//! confirmed its transfer. Until then, writes go to both replica sets and reads to the old
//! one.
//!
//! Nodes learn of a ring and of its confirmations at different times, so each step waits
//! until every member has taken the one before (acknowledgements ride on gossip): a
//! partition's reads move to the new set once its gainers have all confirmed *and* every
//! member holds the new ring (`holds`), and the ring changes again (the transition
//! finishes, or a new one starts) only once every member reads from the new set
//! everywhere (`seen`). Two nodes' views of a partition are then never more than one step
//! apart (before the change, moving, reading the new set, finished), and any two adjacent
//! steps share a replica set that both a write quorum and a read quorum use.
//!
//! The planner is pure, so its rules are unit-tested without a network.

use std::collections::{BTreeMap, BTreeSet};

use chorus_ring::{Member, Ring};
use serde::{Deserialize, Serialize};

use crate::plan::Moving;

/// Where a member is in its life. Ordered: a later state wins a merge at equal incarnation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MemberState {
    /// Announced, not yet owning its share (transfers in flight).
    Joining,
    Up,
    /// Asked to leave; its partitions are moving away.
    Leaving,
    /// Out of the ring.
    Left,
}

impl MemberState {
    pub fn name(self) -> &'static str {
        match self {
            MemberState::Joining => "joining",
            MemberState::Up => "up",
            MemberState::Leaving => "leaving",
            MemberState::Left => "left",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberInfo {
    pub id: String,
    pub address: String,
    pub zone: Option<String>,
    pub state: MemberState,
    pub incarnation: u64,
    /// The random generation of the member's current run (0: none announced), so a
    /// restored data directory can tell that the cluster saw a later run of it.
    #[serde(default)]
    pub generation: u64,
}

/// What nodes gossip: members, the ring, and the transition in progress.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterState {
    pub members: BTreeMap<String, MemberInfo>,
    pub ring: Option<Ring>,
    /// The ring before `ring`, kept while partitions move to their new owners.
    pub prev: Option<Ring>,
    /// Transfers into `ring` that the gaining node confirmed: (partition, node).
    pub done: BTreeSet<(u32, String)>,
    /// Per member, the highest ring version it holds (see [`ClusterState::acknowledge`]).
    /// Merged by maximum.
    #[serde(default)]
    pub holds: BTreeMap<String, u64>,
    /// Per member, the highest ring version it has held with every transfer into it
    /// confirmed and every member holding it: it reads from the new sets everywhere.
    /// Merged by maximum.
    #[serde(default)]
    pub seen: BTreeMap<String, u64>,
    /// The cluster's id and settings (see `identity`): fixed, never merged. Gossip from a
    /// state with other ones is refused.
    #[serde(default)]
    pub cluster_id: String,
    #[serde(default)]
    pub settings: String,
}

const STATE_FORMAT: u8 = 1;

/// Raises `map[id]` to `v`; true if it was lower.
fn raise(map: &mut BTreeMap<String, u64>, id: &str, v: u64) -> bool {
    let e = map.entry(id.to_string()).or_insert(0);
    let lower = *e < v;
    *e = (*e).max(v);
    lower
}

fn ring_digest(r: &Ring) -> [u8; 32] {
    let bytes = rmp_serde::to_vec(r).unwrap_or_default();
    *blake3::hash(&bytes).as_bytes()
}

impl ClusterState {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![STATE_FORMAT];
        // Encoding plain data into a Vec can't fail; an empty state is the safe fallback.
        out.extend(rmp_serde::to_vec_named(self).unwrap_or_default());
        out
    }

    pub fn decode(bytes: &[u8]) -> Option<ClusterState> {
        match bytes.split_first() {
            Some((&STATE_FORMAT, rest)) => rmp_serde::from_slice(rest).ok(),
            _ => None,
        }
    }

    /// Joins another node's state into this one; true if anything changed.
    pub fn merge(&mut self, other: &ClusterState) -> bool {
        let before = self.clone();
        for (id, theirs) in &other.members {
            match self.members.get_mut(id) {
                None => {
                    self.members.insert(id.clone(), theirs.clone());
                }
                Some(mine) => {
                    if (theirs.incarnation, theirs.state) > (mine.incarnation, mine.state) {
                        *mine = theirs.clone();
                    }
                }
            }
        }
        for (mine, theirs) in [
            (&mut self.holds, &other.holds),
            (&mut self.seen, &other.seen),
        ] {
            for (id, v) in theirs {
                let m = mine.entry(id.clone()).or_insert(0);
                *m = (*m).max(*v);
            }
        }
        match (&self.ring, &other.ring) {
            (_, None) => {}
            (None, Some(_)) => self.adopt_ring(other),
            (Some(a), Some(b)) => {
                if b.version() > a.version()
                    || (b.version() == a.version() && a != b && ring_digest(b) > ring_digest(a))
                {
                    self.adopt_ring(other);
                } else if a == b {
                    // Same ring: confirmations add up.
                    self.done.extend(other.done.iter().cloned());
                }
            }
        }
        *self != before
    }

    fn adopt_ring(&mut self, other: &ClusterState) {
        self.ring = other.ring.clone();
        self.prev = other.prev.clone();
        self.done = other.done.clone();
    }

    /// Every (partition, node) that gains a replica slot from `prev` to `ring`.
    pub fn transfers(&self) -> Vec<(u32, String)> {
        let (Some(ring), Some(prev)) = (&self.ring, &self.prev) else {
            return Vec::new();
        };
        let n = ring.replicas();
        prev.diff(ring, n)
            .into_iter()
            .flat_map(|m| m.gained.into_iter().map(move |g| (m.partition, g)))
            .collect()
    }

    fn pending_with(&self, done: &BTreeSet<(u32, String)>) -> Vec<(u32, String)> {
        self.transfers()
            .into_iter()
            .filter(|t| !done.contains(t) && !self.done.contains(t))
            .collect()
    }

    /// Transfers not yet confirmed.
    pub fn pending(&self) -> Vec<(u32, String)> {
        self.pending_with(&BTreeSet::new())
    }

    /// Where a partition stands in the ring change in progress, if one is: the ring it
    /// moves from, and whether its reads go to the new set yet (every gainer of it has
    /// confirmed its transfer and every member holds the new ring, so none still writes
    /// to the old set alone).
    pub fn moving(&self, partition: u32) -> Option<Moving<'_>> {
        let from = self.prev.as_ref()?;
        let confirmed = self.all_hold() && !self.pending().iter().any(|(p, _)| *p == partition);
        Some(Moving { from, confirmed })
    }

    fn version(&self) -> u64 {
        self.ring.as_ref().map_or(0, Ring::version)
    }

    /// Members that haven't left, whose acknowledgements the steps wait for.
    fn voters(&self) -> impl Iterator<Item = &str> {
        self.members
            .values()
            .filter(|m| m.state != MemberState::Left)
            .map(|m| m.id.as_str())
    }

    /// Whether every member that hasn't left holds the current ring.
    pub fn all_hold(&self) -> bool {
        let v = self.version();
        self.voters()
            .all(|id| self.holds.get(id).copied().unwrap_or(0) >= v)
    }

    /// Records that `me` holds this state's ring and, once every transfer into it is
    /// confirmed and every member holds it, that `me` reads from the new sets everywhere;
    /// true if that is news. Every node calls it after each change to its state.
    pub fn acknowledge(&mut self, me: &str) -> bool {
        if self.ring.is_none() {
            return false;
        }
        let v = self.version();
        let mut news = raise(&mut self.holds, me, v);
        if self.pending().is_empty() && self.all_hold() {
            news |= raise(&mut self.seen, me, v);
        }
        news
    }

    /// Members the next ring change waits for: those that don't hold the current ring yet
    /// if there are any (the others can't move on before them), else those that haven't
    /// acknowledged reading from its new sets. Empty: the ring may change. A member that is
    /// down holds ring changes until it is back or removed.
    pub fn unacknowledged(&self) -> Vec<String> {
        if self.ring.is_none() {
            return Vec::new();
        }
        let v = self.version();
        let behind = |map: &BTreeMap<String, u64>| -> Vec<String> {
            self.voters()
                .filter(|id| map.get(*id).copied().unwrap_or(0) < v)
                .map(str::to_string)
                .collect()
        };
        let not_holding = behind(&self.holds);
        if not_holding.is_empty() {
            behind(&self.seen)
        } else {
            not_holding
        }
    }

    /// Members that should own partitions: joining or up.
    pub fn active(&self) -> Vec<Member> {
        self.members
            .values()
            .filter(|m| matches!(m.state, MemberState::Joining | MemberState::Up))
            .map(|m| Member {
                id: m.id.clone(),
                zone: m.zone.clone(),
            })
            .collect()
    }

    /// The node that plans ring changes: the lowest id among live members in the ring.
    pub fn claimant(&self, is_up: impl Fn(&str) -> bool) -> Option<String> {
        let ring = self.ring.as_ref()?;
        self.members
            .values()
            .filter(|m| matches!(m.state, MemberState::Up | MemberState::Joining))
            .filter(|m| ring.contains(&m.id) && is_up(&m.id))
            .map(|m| m.id.clone())
            .next()
    }

    /// The next state, if a change is due: finish a transition whose transfers are all
    /// confirmed, start one when the active members differ from the ring's, and move
    /// members along (joining → up once they own their share, leaving → left once out).
    pub fn plan(&self) -> Result<Option<ClusterState>, chorus_ring::RingError> {
        let Some(ring) = &self.ring else {
            return Ok(None);
        };
        let mut next = self.clone();
        let pending = self.pending();
        if next.prev.is_some() && pending.is_empty() && self.unacknowledged().is_empty() {
            // Finishing is a new ring version (same placement), so every node adopts it.
            next.ring = Some(ring.rebalance(ring.members().to_vec())?);
            next.prev = None;
            next.done.clear();
        }
        let active = self.active();
        let active_ids: BTreeSet<&str> = active.iter().map(|m| m.id.as_str()).collect();
        let ring_ids: BTreeSet<&str> = ring.members().iter().map(|m| m.id.as_str()).collect();
        // A gainer removed mid-transfer voids the transition: plan again from the same old
        // ring, which still describes where the data is.
        let gainer_gone = pending
            .iter()
            .any(|(_, g)| !active_ids.contains(g.as_str()));
        // Right after finishing, nobody has acknowledged the finished ring yet: the next
        // change waits for that too.
        let start = next.prev.is_none()
            && active_ids != ring_ids
            && !active.is_empty()
            && next.unacknowledged().is_empty();
        if start || gainer_gone {
            let base = next.prev.clone().unwrap_or_else(|| ring.clone());
            let mut new_ring = base.rebalance(active)?;
            // Versions only grow, even when planning again from the old ring.
            while new_ring.version() <= ring.version() {
                new_ring = new_ring.rebalance(new_ring.members().to_vec())?;
            }
            next.prev = Some(base);
            next.ring = Some(new_ring);
            next.done.clear();
        }
        let still_pending: BTreeSet<String> = next.pending().into_iter().map(|(_, g)| g).collect();
        let in_ring = |id: &str| next.ring.as_ref().is_some_and(|r| r.contains(id));
        let in_prev = |id: &str| next.prev.as_ref().is_some_and(|r| r.contains(id));
        let updates: Vec<(String, MemberState)> = next
            .members
            .values()
            .filter_map(|m| match m.state {
                MemberState::Joining if in_ring(&m.id) && !still_pending.contains(&m.id) => {
                    Some((m.id.clone(), MemberState::Up))
                }
                MemberState::Leaving if !in_ring(&m.id) && !in_prev(&m.id) => {
                    Some((m.id.clone(), MemberState::Left))
                }
                _ => None,
            })
            .collect();
        for (id, st) in updates {
            if let Some(m) = next.members.get_mut(&id) {
                m.state = st;
            }
        }
        Ok((next != *self).then_some(next))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: &str, state: MemberState, incarnation: u64) -> MemberInfo {
        MemberInfo {
            id: id.into(),
            address: format!("{id}:1"),
            zone: None,
            state,
            incarnation,
            generation: 0,
        }
    }

    fn cluster(ids: &[&str]) -> ClusterState {
        let members: BTreeMap<String, MemberInfo> = ids
            .iter()
            .map(|id| (id.to_string(), member(id, MemberState::Up, 0)))
            .collect();
        let ring = Ring::new(
            64,
            3,
            members
                .values()
                .map(|m| Member::new(m.id.clone()))
                .collect(),
        )
        .expect("ring");
        let mut s = ClusterState {
            members,
            ring: Some(ring),
            prev: None,
            done: BTreeSet::new(),
            ..Default::default()
        };
        ack_all(&mut s);
        s
    }

    /// Every member acknowledges the state, as each would once gossip brings it.
    fn ack_all(s: &mut ClusterState) {
        let ids: Vec<String> = s.members.keys().cloned().collect();
        // Twice: a member's second acknowledgement sees that all hold the ring.
        for id in ids.iter().chain(&ids) {
            s.acknowledge(id);
        }
    }

    /// Confirms every pending transfer, as the gainers would, and every member hears of it.
    fn confirm_all(s: &mut ClusterState) {
        for t in s.pending() {
            s.done.insert(t);
        }
        ack_all(s);
    }

    #[test]
    fn merge_prefers_higher_incarnation_then_later_state_and_is_commutative() {
        let mut a = cluster(&["a", "b", "c"]);
        let mut b = a.clone();
        b.members
            .insert("b".into(), member("b", MemberState::Leaving, 0));
        a.members
            .insert("c".into(), member("c", MemberState::Up, 2));
        let mut ab = a.clone();
        ab.merge(&b);
        let mut ba = b.clone();
        ba.merge(&a);
        assert_eq!(ab, ba);
        assert_eq!(ab.members["b"].state, MemberState::Leaving);
        assert_eq!(ab.members["c"].incarnation, 2);
        assert!(!ab.clone().merge(&ab), "idempotent");
        // A newer incarnation beats a later state: a left node may rejoin.
        let mut c = ab.clone();
        c.members
            .insert("b".into(), member("b", MemberState::Joining, 1));
        ack_all(&mut c);
        ab.merge(&c);
        assert_eq!(ab.members["b"].state, MemberState::Joining);
    }

    #[test]
    fn join_plans_a_transition_and_finishes_when_transfers_are_confirmed() {
        let mut s = cluster(&["a", "b", "c"]);
        s.members
            .insert("d".into(), member("d", MemberState::Joining, 1));
        ack_all(&mut s);
        let mut s = s.plan().expect("plan").expect("a change is due");
        let ring = s.ring.clone().expect("ring");
        assert!(ring.contains("d"));
        assert_eq!(ring.version(), 2);
        let pending = s.pending();
        assert!(!pending.is_empty());
        assert!(
            pending.iter().all(|(_, g)| g == "d"),
            "only the new node gains"
        );
        // During the transition the old ring holds each moving partition.
        let (p, _) = pending[0].clone();
        assert!(s.moving(p).is_some_and(|m| !m.confirmed));
        assert_eq!(s.members["d"].state, MemberState::Joining);
        // Nothing more to do until transfers are confirmed.
        assert_eq!(s.plan().expect("plan"), None);
        confirm_all(&mut s);
        let done = s.plan().expect("plan").expect("finish");
        assert!(done.prev.is_none());
        assert_eq!(done.members["d"].state, MemberState::Up);
        let finished = done.ring.clone().expect("ring");
        assert!(
            finished.version() > ring.version(),
            "finishing is a new version"
        );
        assert!(
            ring.diff(&finished, 3).is_empty(),
            "finishing moves nothing"
        );
        // A node that missed the finish adopts it by version.
        let mut lagging = s.clone();
        assert!(lagging.merge(&done));
        assert_eq!(lagging, done);
        let s = done;
        assert_eq!(s.plan().expect("plan"), None, "stable");
    }

    #[test]
    fn leave_moves_partitions_away_then_marks_the_node_left() {
        let mut s = cluster(&["a", "b", "c", "d"]);
        s.members.get_mut("d").expect("d").state = MemberState::Leaving;
        let mut s = s.plan().expect("plan").expect("change");
        assert!(!s.ring.as_ref().expect("ring").contains("d"));
        assert_eq!(
            s.members["d"].state,
            MemberState::Leaving,
            "left only after transfers"
        );
        confirm_all(&mut s);
        let s = s.plan().expect("plan").expect("finish");
        assert_eq!(s.members["d"].state, MemberState::Left);
        assert_eq!(s.ring.as_ref().expect("ring").members().len(), 3);
    }

    #[test]
    fn removing_a_joining_node_mid_transfer_replans_from_the_old_ring() {
        let mut s = cluster(&["a", "b", "c"]);
        s.members
            .insert("d".into(), member("d", MemberState::Joining, 1));
        ack_all(&mut s);
        let mut s = s.plan().expect("plan").expect("join");
        let old = s.prev.clone().expect("prev");
        s.members.get_mut("d").expect("d").state = MemberState::Left;
        let s = s.plan().expect("plan").expect("replan");
        assert_eq!(
            s.prev.as_ref(),
            Some(&old),
            "data is still where the old ring says"
        );
        assert!(!s.ring.as_ref().expect("ring").contains("d"));
        assert!(s.ring.as_ref().expect("ring").version() > 2);
    }

    #[test]
    fn concurrent_rings_of_one_version_settle_on_the_same_one() {
        let base = cluster(&["a", "b", "c"]);
        let mut x = base.clone();
        x.members
            .insert("d".into(), member("d", MemberState::Joining, 1));
        ack_all(&mut x);
        let mut y = base.clone();
        y.members
            .insert("e".into(), member("e", MemberState::Joining, 1));
        ack_all(&mut y);
        let x = x.plan().expect("plan").expect("x");
        let y = y.plan().expect("plan").expect("y");
        let mut xy = x.clone();
        xy.merge(&y);
        let mut yx = y.clone();
        yx.merge(&x);
        assert_eq!(xy.ring, yx.ring);
        assert_eq!(xy, yx);
    }

    /// Found by the simulator (seeds once listed as known-open in `sim/tests/sim.rs`): a
    /// node that had seen a partition's transfer confirmed planned its writes for the new
    /// replica set only, while a node that hadn't yet still planned its reads for the old
    /// set; a W=2 write and an R=2 read then needed not share a replica. Writes now reach
    /// both sets until the transition finishes.
    #[test]
    fn a_write_planned_after_a_confirmation_meets_a_read_planned_before_it() {
        use crate::plan::Plan;
        let mut s = cluster(&["a", "b", "c", "d"]);
        s.members
            .insert("e".into(), member("e", MemberState::Joining, 1));
        ack_all(&mut s);
        let stale = s.plan().expect("plan").expect("join");
        let (p, _) = stale.pending()[0].clone();
        let mut fresh = stale.clone();
        for t in stale.pending().into_iter().filter(|(q, _)| *q == p) {
            fresh.done.insert(t);
        }
        let quorum = |n: usize| Ok::<_, ()>(n / 2 + 1);
        let ring = stale.ring.as_ref().expect("ring");
        let read = Plan::new(ring, stale.moving(p), p, 3, quorum).expect("read plan");
        let write = Plan::new(ring, fresh.moving(p), p, 3, quorum).expect("write plan");
        // Any W of some set the write must reach has to share a node with any R of the read.
        let forced = |set: &Vec<String>| {
            let shared = set.iter().filter(|n| read.pref.contains(n)).count();
            shared > (set.len() - write.needed) + (read.pref.len() - read.needed)
        };
        assert!(
            std::iter::once(&write.pref)
                .chain(write.also.iter())
                .any(forced),
            "a write to {:?} (also {:?}) can miss a read of {:?}",
            write.pref,
            write.also,
            read.pref
        );
    }

    /// Whether every write quorum `writer` plans for `p` shares a node with every read
    /// quorum `reader` plans (N=3, quorum levels).
    fn meets(reader: &ClusterState, writer: &ClusterState, p: u32) -> bool {
        use crate::plan::Plan;
        let quorum = |n: usize| Ok::<_, ()>(n / 2 + 1);
        let plan = |s: &ClusterState| {
            Plan::new(s.ring.as_ref().expect("ring"), s.moving(p), p, 3, quorum).expect("plan")
        };
        let (read, write) = (plan(reader), plan(writer));
        let forced = |set: &Vec<String>| {
            let shared = set.iter().filter(|n| read.pref.contains(n)).count();
            shared > (set.len() - write.needed) + (read.pref.len() - read.needed)
        };
        std::iter::once(&write.pref)
            .chain(write.also.iter())
            .any(forced)
    }

    #[test]
    fn views_one_step_apart_always_share_a_quorum_and_two_steps_apart_need_not() {
        let mut before = cluster(&["a", "b", "c", "d"]);
        before
            .members
            .insert("e".into(), member("e", MemberState::Joining, 1));
        ack_all(&mut before);
        // Only the claimant holds the new ring yet.
        let mut moving = before.plan().expect("plan").expect("join");
        moving.acknowledge("a");
        let moved: Vec<u32> = moving.pending().iter().map(|(p, _)| *p).collect();
        assert!(!moved.is_empty());
        // Every gainer confirmed, but not every member holds the new ring: reads stay on
        // the old set, since a node that hasn't heard of the change writes it alone.
        let mut unheld = moving.clone();
        for t in unheld.pending() {
            unheld.done.insert(t);
        }
        unheld.acknowledge("e");
        assert!(moved
            .iter()
            .all(|&p| unheld.moving(p).is_some_and(|m| !m.confirmed)));
        let mut reading_new = unheld.clone();
        ack_all(&mut reading_new);
        assert!(moved
            .iter()
            .all(|&p| reading_new.moving(p).is_some_and(|m| m.confirmed)));
        let finished = reading_new.plan().expect("plan").expect("finish");
        assert!(finished.prev.is_none());
        for &p in &moved {
            for (x, y) in [
                (&before, &moving),
                (&before, &unheld),
                (&moving, &reading_new),
                (&unheld, &reading_new),
                (&reading_new, &finished),
            ] {
                assert!(meets(x, y, p), "partition {p}: read before, write after");
                assert!(meets(y, x, p), "partition {p}: read after, write before");
            }
        }
        // The controls: views two steps apart can miss, which is why each step waits for
        // every member's acknowledgement of the one before.
        assert!(
            moved.iter().any(|&p| !meets(&moving, &finished, p)),
            "reading the old set while writing the finished ring alone should be able to miss"
        );
        assert!(
            moved.iter().any(|&p| !meets(&reading_new, &before, p)),
            "reading the new set while writing the old ring alone should be able to miss"
        );
    }

    #[test]
    fn the_ring_changes_only_once_every_member_has_acknowledged_it() {
        let mut s = cluster(&["a", "b", "c", "d"]);
        s.members
            .insert("e".into(), member("e", MemberState::Joining, 1));
        assert_eq!(s.unacknowledged(), vec!["e".to_string()]);
        assert_eq!(
            s.plan().expect("plan"),
            None,
            "e hasn't acknowledged the ring"
        );
        assert!(s.acknowledge("e"));
        assert!(!s.acknowledge("e"), "news only once");
        let mut s = s.plan().expect("plan").expect("join");
        let v = s.ring.as_ref().expect("ring").version();
        assert!(s.acknowledge("a"), "a holds the new ring");
        assert!(
            s.seen["a"] < v,
            "but reads the old sets while transfers are pending"
        );
        for t in s.pending() {
            s.done.insert(t);
        }
        for id in ["a", "b", "c", "d"] {
            s.acknowledge(id);
        }
        // e, say, is down: its partitions are in, but the transition doesn't finish.
        let held = s.plan().expect("plan").expect("e is up now");
        assert!(
            held.prev.is_some(),
            "not finished while e hasn't acknowledged"
        );
        assert_eq!(held.unacknowledged(), vec!["e".to_string()]);
        // Gossip carries acknowledgements: they merge by maximum.
        let mut from_e = held.clone();
        from_e.acknowledge("e");
        let mut merged = held.clone();
        assert!(merged.merge(&from_e));
        assert!(
            merged.unacknowledged().len() > 1,
            "the others haven't seen that yet"
        );
        assert_eq!(merged.plan().expect("plan"), None);
        // Once they have, they read the new sets, and then the change finishes.
        ack_all(&mut merged);
        let finished = merged.plan().expect("plan").expect("finish");
        assert!(finished.prev.is_none());
        // The next change waits for the finished ring's acknowledgements, too.
        let mut next = finished.clone();
        next.members
            .insert("f".into(), member("f", MemberState::Joining, 1));
        next.acknowledge("f");
        assert_eq!(next.plan().expect("plan"), None);
        ack_all(&mut next);
        assert!(next.plan().expect("plan").expect("start").prev.is_some());
    }

    #[test]
    fn a_removed_member_no_longer_holds_ring_changes() {
        let mut s = cluster(&["a", "b", "c", "d"]);
        s.members
            .insert("e".into(), member("e", MemberState::Joining, 1));
        ack_all(&mut s);
        let mut s = s.plan().expect("plan").expect("join");
        s.members
            .insert("x".into(), member("x", MemberState::Up, 0));
        for t in s.pending() {
            s.done.insert(t);
        }
        for id in ["a", "b", "c", "d", "e"] {
            s.acknowledge(id);
        }
        assert_eq!(s.unacknowledged(), vec!["x".to_string()]);
        assert!(s.plan().expect("plan").is_none_or(|n| n.prev.is_some()));
        s.members.get_mut("x").expect("x").state = MemberState::Left;
        for id in ["a", "b", "c", "d", "e"] {
            s.acknowledge(id);
        }
        assert!(s.unacknowledged().is_empty());
        assert!(s.plan().expect("plan").expect("finish").prev.is_none());
    }

    mod laws {
        use super::*;
        use proptest::prelude::*;

        /// States built the way nodes build them: a shared history of rings and member
        /// updates, each node having seen some prefix and some updates.
        fn arb_state() -> impl Strategy<Value = ClusterState> {
            let rings: Vec<Ring> = {
                let base = cluster(&["a", "b", "c"]).ring.expect("ring");
                let v2 = base
                    .rebalance(
                        ["a", "b", "c", "d"]
                            .iter()
                            .map(|i| Member::new(*i))
                            .collect(),
                    )
                    .expect("v2");
                let v2b = base
                    .rebalance(
                        ["a", "b", "c", "e"]
                            .iter()
                            .map(|i| Member::new(*i))
                            .collect(),
                    )
                    .expect("v2b");
                let v3 = v2.rebalance(v2.members().to_vec()).expect("v3");
                vec![base, v2, v2b, v3]
            };
            let states = [
                MemberState::Joining,
                MemberState::Up,
                MemberState::Leaving,
                MemberState::Left,
            ];
            (
                proptest::collection::vec((0usize..5, 0usize..4, 0u64..3), 0..8),
                0usize..4,
                proptest::collection::btree_set((0u32..8, 0usize..5), 0..6),
            )
                .prop_map(move |(updates, ring, done)| {
                    let ids = ["a", "b", "c", "d", "e"];
                    let mut s = ClusterState::default();
                    for (id, st, inc) in updates {
                        let m = member(ids[id], states[st], inc);
                        let mut single = ClusterState::default();
                        single.members.insert(m.id.clone(), m);
                        s.merge(&single);
                    }
                    s.ring = Some(rings[ring].clone());
                    s.prev = (ring > 0).then(|| rings[0].clone());
                    s.done = done
                        .into_iter()
                        .map(|(p, i)| (p, ids[i].to_string()))
                        .collect();
                    s
                })
        }

        fn merged(a: &ClusterState, b: &ClusterState) -> ClusterState {
            let mut x = a.clone();
            x.merge(b);
            x
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(128))]
            #[test]
            fn merge_is_commutative_associative_idempotent(
                a in arb_state(), b in arb_state(), c in arb_state()
            ) {
                prop_assert_eq!(merged(&a, &b).members, merged(&b, &a).members);
                prop_assert_eq!(merged(&a, &b).ring, merged(&b, &a).ring);
                prop_assert_eq!(
                    merged(&merged(&a, &b), &c).ring,
                    merged(&a, &merged(&b, &c)).ring
                );
                prop_assert_eq!(
                    merged(&merged(&a, &b), &c).members,
                    merged(&a, &merged(&b, &c)).members
                );
                prop_assert_eq!(merged(&a, &a), a.clone());
                // Gossip in any order ends in one state.
                let abc = merged(&merged(&a, &b), &c);
                let cba = merged(&merged(&c, &b), &a);
                prop_assert_eq!(abc, cba);
            }
        }
    }

    #[test]
    fn state_round_trips_and_garbage_is_refused() {
        let s = cluster(&["a", "b"]);
        assert_eq!(ClusterState::decode(&s.encode()), Some(s));
        assert_eq!(ClusterState::decode(b"\x09junk"), None);
        assert_eq!(ClusterState::decode(b""), None);
    }
}
