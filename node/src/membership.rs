//! Cluster members and their liveness as this node sees them.
//!
//! The member list comes from the configuration (keyed by node id, not address). A failure
//! detector pings every peer on an interval; a peer with no successful ping for
//! `down_after` is down, and the first successful ping brings it back up. Requests skip
//! down replicas at once instead of waiting for a deadline, and waiting requests are woken
//! when a replica goes down.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::config::MemberConfig;

#[derive(Clone, Debug)]
struct PeerState {
    address: String,
    zone: Option<String>,
    up: bool,
    last_ok: Option<Instant>,
    /// The peer's actor epoch, from its last answer.
    epoch: Option<u64>,
}

/// Liveness of one member, for status output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberView {
    pub id: String,
    pub address: String,
    pub zone: Option<String>,
    pub up: bool,
}

#[derive(Clone)]
pub struct Membership {
    me: String,
    peers: Arc<RwLock<BTreeMap<String, PeerState>>>,
    /// Bumped on every up/down change.
    changes: Arc<watch::Sender<u64>>,
}

impl Membership {
    pub fn new(me: &str, members: &[MemberConfig]) -> Membership {
        let peers = members
            .iter()
            .map(|m| {
                let me_too = m.id == me;
                (
                    m.id.clone(),
                    PeerState {
                        address: m.address.clone(),
                        zone: m.zone.clone(),
                        // Peers start down until they answer, so a fresh node never counts
                        // on a replica it hasn't heard from.
                        up: me_too,
                        last_ok: None,
                        epoch: None,
                    },
                )
            })
            .collect();
        Membership {
            me: me.to_string(),
            peers: Arc::new(RwLock::new(peers)),
            changes: Arc::new(watch::channel(0).0),
        }
    }

    pub fn me(&self) -> &str {
        &self.me
    }

    pub fn is_up(&self, id: &str) -> bool {
        id == self.me || self.read().get(id).map(|p| p.up).unwrap_or(false)
    }

    pub fn address(&self, id: &str) -> Option<String> {
        self.read().get(id).map(|p| p.address.clone())
    }

    /// Ids of every member but this node.
    pub fn peers(&self) -> Vec<String> {
        self.read()
            .keys()
            .filter(|k| **k != self.me)
            .cloned()
            .collect()
    }

    pub fn view(&self) -> Vec<MemberView> {
        self.read()
            .iter()
            .map(|(id, p)| MemberView {
                id: id.clone(),
                address: p.address.clone(),
                zone: p.zone.clone(),
                up: *id == self.me || p.up,
            })
            .collect()
    }

    /// A change counter that ticks whenever some member goes up or down.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Records a probe result; returns whether the member's state flipped.
    pub fn observe(&self, id: &str, ok: bool, now: Instant, down_after: Duration) -> bool {
        let flipped = {
            let mut peers = self.peers.write().unwrap_or_else(|p| p.into_inner());
            let Some(p) = peers.get_mut(id) else {
                return false;
            };
            let was = p.up;
            if ok {
                p.last_ok = Some(now);
                p.up = true;
            } else {
                let silent_for = p.last_ok.map(|t| now.saturating_duration_since(t));
                if silent_for.is_none_or(|d| d >= down_after) {
                    p.up = false;
                }
            }
            was != p.up
        };
        if flipped {
            self.changes.send_modify(|c| *c += 1);
            let state = if ok { "up" } else { "down" };
            tracing::info!(peer = id, state, "peer state changed");
        }
        flipped
    }

    /// Records the epoch a peer answered with; true if it differs from the one seen before,
    /// i.e. the peer came back with a new or empty data directory.
    pub fn observe_epoch(&self, id: &str, epoch: u64) -> bool {
        let mut peers = self.peers.write().unwrap_or_else(|p| p.into_inner());
        let Some(p) = peers.get_mut(id) else {
            return false;
        };
        let changed = p.epoch.is_some_and(|e| e != epoch);
        p.epoch = Some(epoch);
        changed
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, PeerState>> {
        self.peers.read().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members() -> Vec<MemberConfig> {
        ["a", "b"]
            .iter()
            .map(|id| MemberConfig {
                id: id.to_string(),
                address: format!("{id}:1"),
                zone: None,
            })
            .collect()
    }

    #[test]
    fn down_after_silence_up_on_first_answer() {
        let m = Membership::new("a", &members());
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
        assert!(m.is_up("b"));
        assert!(m.observe("b", false, t0 + Duration::from_secs(3), d));
        assert!(!m.is_up("b"));
        assert!(!m.observe("zz", true, t0, d), "strangers are ignored");
        assert!(!m.observe_epoch("b", 7), "first sighting");
        assert!(!m.observe_epoch("b", 7));
        assert!(m.observe_epoch("b", 8), "new epoch: data lost");
    }
}
