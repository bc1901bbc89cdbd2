//! Which nodes replicate which key, as one node sees it: a snapshot of that node's gossiped
//! `chorus_core::membership::ClusterState` (its ring, the ring a transition moves away from,
//! its members) with every partition's preference list resolved to node indices. A node
//! rebuilds its snapshot whenever its cluster state changes; requests plan with
//! `chorus_core::plan::Plan::new` over the same rings, as `chorus-node` does.

use std::collections::BTreeMap;

use chorus_core::membership::{ClusterState, MemberInfo, MemberState};
use chorus_core::plan::{Moving, Plan};
use chorus_ring::{partition_for, Member, Ring, RingError};

/// One node's view of the cluster's placement.
#[derive(Clone, Debug)]
pub struct Placement {
    partitions: u32,
    n: usize,
    /// Every node slot of the run (members or not), so indices and names never change.
    names: Vec<String>,
    ring: Option<Ring>,
    /// Per partition while a ring change is in progress, whether every gainer confirmed
    /// its transfer (`ClusterState::moving`).
    old: Vec<Option<bool>>,
    prev: Option<Ring>,
    /// The current ring's replicas of each partition.
    prefs: Vec<Vec<usize>>,
    /// Members that haven't left, by index.
    members: Vec<usize>,
    version: u64,
}

/// The cluster state every initial member starts from: `names` all up, in one ring.
pub fn initial_state(
    names: &[String],
    partitions: u32,
    n: usize,
) -> Result<ClusterState, RingError> {
    let ring = Ring::new(partitions, n, names.iter().map(Member::new).collect())?;
    let members: BTreeMap<String, MemberInfo> = names
        .iter()
        .map(|id| (id.clone(), member(id, MemberState::Up, 0)))
        .collect();
    let mut state = ClusterState {
        members,
        ring: Some(ring),
        ..Default::default()
    };
    // Every founding member starts holding this ring, with nothing to transfer (twice:
    // a second acknowledgement sees that all hold it).
    for id in names.iter().chain(names) {
        state.acknowledge(id);
    }
    Ok(state)
}

/// A member entry as the node's config or a join announces it.
pub fn member(id: &str, state: MemberState, incarnation: u64) -> MemberInfo {
    MemberInfo {
        id: id.to_string(),
        address: id.to_string(),
        zone: None,
        state,
        incarnation,
        generation: 0,
    }
}

impl Placement {
    /// The placement `state` describes, over the run's node slots `names`.
    pub fn new(names: &[String], partitions: u32, n: usize, state: &ClusterState) -> Placement {
        let index = |id: &str| names.iter().position(|x| x == id);
        let prefs = (0..partitions)
            .map(|p| match &state.ring {
                Some(r) => r
                    .preference_list(p, n)
                    .into_iter()
                    .filter_map(index)
                    .collect(),
                None => Vec::new(),
            })
            .collect();
        // `ClusterState::moving` for every partition, with the pending transfers worked out
        // once.
        let pending = state.pending();
        let all_hold = state.all_hold();
        let old = (0..partitions)
            .map(|p| {
                let confirmed = all_hold && !pending.iter().any(|(q, _)| *q == p);
                state.prev.as_ref().map(|_| confirmed)
            })
            .collect();
        let members = state
            .members
            .values()
            .filter(|m| m.state != MemberState::Left)
            .filter_map(|m| index(&m.id))
            .collect();
        Placement {
            partitions,
            n,
            names: names.to_vec(),
            ring: state.ring.clone(),
            old,
            prev: state.prev.clone(),
            prefs,
            members,
            version: state.ring.as_ref().map_or(0, Ring::version),
        }
    }

    /// The partition of `key` (all simulated keys live in one bucket).
    pub fn partition(&self, key: &str) -> u32 {
        partition_for(self.partitions, crate::BUCKET, key.as_bytes())
    }

    /// The replicas of a partition in the current ring, in preference order.
    pub fn pref(&self, partition: u32) -> &[usize] {
        self.prefs
            .get(partition as usize)
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    /// The replicas of `key` in the current ring.
    pub fn pref_of(&self, key: &str) -> &[usize] {
        self.pref(self.partition(key))
    }

    /// Whether a ring change is in progress (this node's state still has the old ring).
    pub fn moving(&self, partition: u32) -> bool {
        self.old
            .get(partition as usize)
            .copied()
            .flatten()
            .is_some()
    }

    /// A request's plan for `key` needing `needed` answers per replica set, by core's
    /// `Plan::new`: during a ring change, both replica sets (reads from the old one until
    /// the partition's transfers are confirmed). `old_too: false` plans with the current
    /// ring only (the transition-new-only control). `None` before the node knows a ring.
    pub fn plan(&self, key: &str, needed: usize, old_too: bool) -> Option<Plan> {
        let ring = self.ring.as_ref()?;
        let p = self.partition(key);
        let confirmed = self.old.get(p as usize).copied().flatten();
        let moving = match (&self.prev, confirmed) {
            (Some(from), Some(confirmed)) if old_too => Some(Moving { from, confirmed }),
            _ => None,
        };
        Plan::new(ring, moving, p, self.n, |n| {
            Ok::<_, std::convert::Infallible>(needed.clamp(1, n.max(1)))
        })
        .ok()
    }

    /// Partition count.
    pub fn partitions(&self) -> u32 {
        self.partitions
    }

    /// The current ring's version (0: no ring known).
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Members that haven't left, by index.
    pub fn members(&self) -> &[usize] {
        &self.members
    }

    /// A node's name (as it appears in actors and quorums).
    pub fn name(&self, node: usize) -> &str {
        self.names.get(node).map(String::as_str).unwrap_or("?")
    }

    /// The index of a named node.
    pub fn index(&self, name: &str) -> Option<usize> {
        self.names.iter().position(|n| n == name)
    }

    /// Every node slot's name.
    pub fn names(&self) -> &[String] {
        &self.names
    }
}
