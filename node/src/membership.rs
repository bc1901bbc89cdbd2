//! Cluster membership: the member list and ring that nodes gossip, the planner that moves
//! the ring forward when members join or leave, and each node's view of who is alive.
//!
//! The state itself and its planner are `chorus_core::membership`; the failure detector's
//! rule is `chorus_core::failure_detector`. This holds them for the node's tasks and signals
//! changes.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use chorus_core::failure_detector::Liveness;
pub use chorus_core::membership::{ClusterState, MemberInfo, MemberState};
use tokio::sync::watch;

/// One member, for status output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberView {
    pub id: String,
    pub address: String,
    pub zone: Option<String>,
    pub state: MemberState,
    /// What the failure detector says.
    pub up: bool,
}

impl MemberView {
    /// `joining`, `leaving` and `left` where they apply, else `up` or `down`.
    pub fn status(&self) -> &'static str {
        match (self.state, self.up) {
            (MemberState::Joining, _) => "joining",
            (MemberState::Leaving, _) => "leaving",
            (MemberState::Left, _) => "left",
            (MemberState::Up, true) => "up",
            (MemberState::Up, false) => "down",
        }
    }
}

/// This node's membership: the gossiped state and the failure detector's view.
#[derive(Clone)]
pub struct Membership {
    me: String,
    state: Arc<RwLock<Arc<ClusterState>>>,
    live: Arc<RwLock<BTreeMap<String, Liveness>>>,
    /// What the failure detector's times are measured from.
    origin: Instant,
    /// Bumped on every liveness or state change.
    changes: Arc<watch::Sender<u64>>,
}

impl Membership {
    pub fn new(me: &str, mut state: ClusterState) -> Membership {
        // This node holds the state it starts from (core's `ClusterState::acknowledge`).
        state.acknowledge(me);
        Membership {
            me: me.to_string(),
            state: Arc::new(RwLock::new(Arc::new(state))),
            live: Arc::new(RwLock::new(BTreeMap::new())),
            origin: Instant::now(),
            changes: Arc::new(watch::channel(0).0),
        }
    }

    pub fn me(&self) -> &str {
        &self.me
    }

    /// The current cluster state.
    pub fn state(&self) -> Arc<ClusterState> {
        self.state.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Replaces the state through `f`; true if it changed.
    pub fn update(&self, f: impl FnOnce(&mut ClusterState) -> bool) -> bool {
        let changed = {
            let mut guard = self.state.write().unwrap_or_else(|p| p.into_inner());
            let mut next = (**guard).clone();
            let changed = f(&mut next);
            // Every state this node takes on is acknowledged with it, so that gossip tells
            // the claimant when the ring may change again.
            let changed = next.acknowledge(&self.me) || changed;
            if changed {
                *guard = Arc::new(next);
            }
            changed
        };
        if changed {
            self.changes.send_modify(|c| *c += 1);
        }
        changed
    }

    pub fn is_up(&self, id: &str) -> bool {
        id == self.me || self.read_live().get(id).is_some_and(Liveness::is_up)
    }

    pub fn address(&self, id: &str) -> Option<String> {
        self.state().members.get(id).map(|m| m.address.clone())
    }

    /// Ids of every other member, left ones included (they still learn they left).
    pub fn peers(&self) -> Vec<String> {
        self.state()
            .members
            .keys()
            .filter(|k| **k != self.me)
            .cloned()
            .collect()
    }

    pub fn view(&self) -> Vec<MemberView> {
        let live = self.read_live();
        self.state()
            .members
            .values()
            .map(|m| MemberView {
                id: m.id.clone(),
                address: m.address.clone(),
                zone: m.zone.clone(),
                state: m.state,
                up: m.id == self.me || live.get(&m.id).is_some_and(Liveness::is_up),
            })
            .collect()
    }

    /// A change counter that ticks whenever liveness or the cluster state changes.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Records a probe result; returns whether the member's liveness flipped.
    pub fn observe(&self, id: &str, ok: bool, now: Instant, down_after: Duration) -> bool {
        let now = now.saturating_duration_since(self.origin);
        let flipped = {
            let mut live = self.live.write().unwrap_or_else(|p| p.into_inner());
            live.entry(id.to_string())
                .or_default()
                .observe(ok, now, down_after)
        };
        if flipped {
            self.changes.send_modify(|c| *c += 1);
            let state = if ok { "up" } else { "down" };
            tracing::info!(peer = id, state, "peer liveness changed");
        }
        flipped
    }

    /// Records the epoch a peer answered with; true if it differs from the one seen before,
    /// i.e. the peer came back with a new or empty data directory.
    pub fn observe_epoch(&self, id: &str, epoch: u64) -> bool {
        let mut live = self.live.write().unwrap_or_else(|p| p.into_inner());
        live.entry(id.to_string()).or_default().observe_epoch(epoch)
    }

    fn read_live(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Liveness>> {
        self.live.read().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chorus_ring::{Member, Ring};

    fn cluster(ids: &[&str]) -> ClusterState {
        let members: BTreeMap<String, MemberInfo> = ids
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
        let ring = Ring::new(
            64,
            3,
            members.keys().map(|id| Member::new(id.clone())).collect(),
        )
        .expect("ring");
        ClusterState {
            members,
            ring: Some(ring),
            ..Default::default()
        }
    }

    #[test]
    fn liveness_down_after_silence_up_on_first_answer() {
        let m = Membership::new("a", cluster(&["a", "b"]));
        let t0 = Instant::now();
        let d = Duration::from_secs(2);
        assert!(m.is_up("a"));
        assert!(!m.is_up("b"), "unknown liveness starts down");
        let rx = m.subscribe();
        assert!(m.observe("b", true, t0, d));
        assert!(m.is_up("b"));
        assert!(rx.has_changed().unwrap_or(false));
        assert!(
            !m.observe("b", false, t0 + Duration::from_secs(1), d),
            "one miss isn't down"
        );
        assert!(m.observe("b", false, t0 + Duration::from_secs(3), d));
        assert!(!m.is_up("b"));
        assert!(!m.observe_epoch("b", 7), "first sighting");
        assert!(!m.observe_epoch("b", 7));
        assert!(m.observe_epoch("b", 8), "new epoch: data lost");
    }
}
