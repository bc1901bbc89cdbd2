//! Cluster identity and the settings every node of a cluster must share.
//!
//! A cluster id is fixed when the cluster is created (`[cluster] id` in node.toml). Nodes
//! carry it, with a description of the cluster-wide settings (partition count, each
//! bucket's N and conflict policy), in every gossip and ping. A peer that differs in either is refused on both
//! sides and never merged into the member list; a node that is refused by the cluster and
//! agrees with no peer serves no client data until its config is fixed.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::config::NodeConfig;
use crate::membership::ClusterState;

/// How long a refusal stays in `status`, and how often the same one is logged again.
const REMEMBER: Duration = Duration::from_secs(60);

/// The settings that must agree cluster-wide, as text that names them (for logs).
pub fn settings(cfg: &NodeConfig) -> String {
    let c = &cfg.cluster;
    let mut s = format!("cluster.partitions={} cluster.n={}", c.partitions, c.n);
    // Only what is set is named (a bucket's default TTL is the coordinator's business), so
    // settings from before the policy existed still match, and adding a TTL changes nothing.
    for (name, b) in &c.buckets {
        if let Some(n) = b.n {
            s.push_str(&format!(" cluster.buckets.{name}.n={n}"));
        }
        if b.conflicts == chorus_core::version::Conflicts::Lww {
            s.push_str(&format!(" cluster.buckets.{name}.conflicts=lww"));
        }
    }
    s
}

/// Why a peer with this cluster id and settings can't be one of ours, if it can't.
pub fn mismatch(cfg: &NodeConfig, cluster: &str, theirs: &str) -> Option<String> {
    let me = &cfg.id;
    if cluster != cfg.cluster.id {
        return Some(format!(
            "cluster id mismatch: the sender is in cluster {cluster:?}, {me} in cluster {:?}",
            cfg.cluster.id
        ));
    }
    let mine = settings(cfg);
    (theirs != mine).then(|| {
        format!("cluster settings differ: the sender has [{theirs}], {me} has [{mine}]; N and the partition count must be the same on every node")
    })
}

/// Checks a state read back from this node's disk against its config.
pub fn check_stored(cfg: &NodeConfig, stored: &ClusterState) -> Result<(), String> {
    if !stored.cluster_id.is_empty() && stored.cluster_id != cfg.cluster.id {
        return Err(format!(
            "this node's data belongs to cluster {:?} but cluster.id is {:?}; use the id of the cluster this data directory was created in, or an empty data directory",
            stored.cluster_id, cfg.cluster.id
        ));
    }
    let mine = settings(cfg);
    if !stored.settings.is_empty() && stored.settings != mine {
        return Err(format!(
            "the cluster's settings are [{}] but this node's config says [{mine}]; N and the partition count are fixed for the whole cluster, so put the old values back",
            stored.settings
        ));
    }
    Ok(())
}

/// Peers this node refused or was refused by, and whether any peer ever agreed with it.
#[derive(Default)]
pub struct Conflicts {
    agreed: AtomicBool,
    /// Per peer: the reason, when, and whether the peer refused us (rather than we it).
    seen: Mutex<BTreeMap<String, (String, Instant, bool)>>,
}

impl Conflicts {
    /// A peer answered a ping or gossip: it shares this node's id and settings.
    pub fn agree(&self, peer: &str) {
        self.agreed.store(true, Ordering::Relaxed);
        lock(&self.seen).remove(peer);
    }

    /// Records a refusal and logs it, once a minute per peer. `by_peer`: the peer refused
    /// this node (else this node refused the peer).
    pub fn refuse(&self, peer: &str, reason: &str, by_peer: bool) {
        let now = Instant::now();
        let mut seen = lock(&self.seen);
        let fresh = match seen.get(peer) {
            Some((r, at, _)) => r != reason || now.duration_since(*at) >= REMEMBER,
            None => true,
        };
        if fresh {
            if by_peer {
                tracing::warn!(peer, "refused by the peer: {reason}");
            } else {
                tracing::warn!(peer, "refused the peer: {reason}");
            }
        }
        let at = if fresh {
            now
        } else {
            seen.get(peer).map(|e| e.1).unwrap_or(now)
        };
        seen.insert(peer.to_string(), (reason.to_string(), at, by_peer));
    }

    /// Refusals of the last minute, for `status`.
    pub fn recent(&self) -> Vec<String> {
        self.recent_where(|_| true)
    }

    fn recent_where(&self, keep: impl Fn(bool) -> bool) -> Vec<String> {
        let now = Instant::now();
        lock(&self.seen)
            .iter()
            .filter(|(_, (_, at, by_peer))| now.duration_since(*at) < REMEMBER && keep(*by_peer))
            .map(|(peer, (reason, _, _))| format!("{peer}: {reason}"))
            .collect()
    }

    /// Why this node serves no client data: the cluster refused it and no peer agreed.
    pub fn out_of_cluster(&self) -> Option<String> {
        if self.agreed.load(Ordering::Relaxed) {
            return None;
        }
        let recent = self.recent_where(|by_peer| by_peer);
        (!recent.is_empty()).then(|| {
            format!(
                "this node is not part of the cluster it was pointed at ({}); fix its config and restart it",
                recent.join("; ")
            )
        })
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
