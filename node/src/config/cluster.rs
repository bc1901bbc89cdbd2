//! The `[cluster]` and `[tls]` sections: the cluster's identity, founding members, seeds,
//! per-bucket N and secret; the certificates; and the rules for node and cluster ids.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// Cluster CA certificate (PEM).
    pub ca: PathBuf,
    /// This node's certificate (PEM), issued by the cluster CA.
    pub cert: PathBuf,
    /// This node's private key (PEM).
    pub key: PathBuf,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// The cluster's identity, fixed when it is created and the same in every node's
    /// config: nodes of another cluster are refused at the first gossip.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub id: String,
    /// Number of ring partitions: a power of two, fixed when the cluster is created.
    #[serde(default = "default_partitions")]
    pub partitions: u32,
    /// Replicas per key for buckets without their own setting.
    #[serde(default = "default_n")]
    pub n: usize,
    /// The initial members of a new cluster, this node included. Every node of a cluster
    /// created together lists the same ones; the first ring comes from them. Leave it
    /// empty for a node that joins an existing cluster through `seeds`.
    #[serde(default)]
    pub members: Vec<MemberConfig>,
    /// Addresses (`host:port`) of nodes of an existing cluster to join through.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub seeds: Vec<String>,
    /// Per-bucket settings, keyed by bucket name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub buckets: BTreeMap<String, BucketConfig>,
    /// Shared by every node of the cluster (64 hex digits); authenticates the causal
    /// contexts clients hold. Required; never logged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<crate::context::ClusterSecret>,
}

impl ClusterConfig {
    /// Buckets with their own N.
    pub fn buckets_n(&self) -> Vec<(String, usize)> {
        self.buckets
            .iter()
            .filter_map(|(b, c)| c.n.map(|n| (b.clone(), n)))
            .collect()
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct MemberConfig {
    pub id: String,
    pub address: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
}

/// `[cluster.buckets.NAME]`: settings of one bucket.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BucketConfig {
    /// Replicas per key; the cluster's `n` when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<usize>,
    /// How concurrent writes are resolved: `"siblings"` (kept for the client) or `"lww"`
    /// (the newest by hybrid logical clock timestamp wins). Fixed for the cluster's life,
    /// like `n`.
    #[serde(default)]
    pub conflicts: chorus_core::version::Conflicts,
    /// TTL of a put that brings none (e.g. `"1h"`); unset means values don't expire.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "super::optional_duration"
    )]
    pub ttl: Option<std::time::Duration>,
}
fn default_partitions() -> u32 {
    chorus_ring::DEFAULT_PARTITIONS
}

fn default_n() -> usize {
    3
}
/// Node ids double as DNS labels in certificates.
pub fn check_id(id: &str) -> Result<(), String> {
    let ok = !id.is_empty()
        && id.len() <= 63
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !id.starts_with('-')
        && !id.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{id:?} is not a valid node id (1-63 of a-z, 0-9 and '-', not at either end)"
        ))
    }
}

/// Cluster ids: 1-64 of letters, digits, '-', '_' and '.'. A missing one is a config from
/// before ids existed (or a typo), and the fix is to copy the id of the cluster's other
/// nodes, never to make one up per node.
pub fn check_cluster_id(id: &str) -> Result<(), String> {
    if id.is_empty() {
        return Err("missing: every node of a cluster needs the cluster's id. Copy `id` from the [cluster] section of another node's node.toml; for a new cluster, `chorus dev` writes one, or pick any unique string (e.g. the output of `uuidgen`) and use it on every node".into());
    }
    let ok = id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{id:?} is not a valid cluster id (1-64 of letters, digits, '-', '_' and '.')"
        ))
    }
}

/// A fresh random cluster id.
pub fn new_cluster_id() -> String {
    let mut bytes = [0u8; 8];
    let from_os = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes));
    if from_os.is_err() {
        // No urandom: the time and pid still make a collision between two clusters unlikely.
        let seed = format!("{:?} {}", std::time::SystemTime::now(), std::process::id());
        bytes.copy_from_slice(&blake3::hash(seed.as_bytes()).as_bytes()[..8]);
    }
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("chorus-{hex}")
}
