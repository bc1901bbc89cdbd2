//! Node configuration: `node.toml`, `--set key=value` overrides, and validation whose errors
//! name the offending field.
//!
//! One file per group of sections: `cluster` (identity, members, buckets, TLS), `limits`
//! (sizes, budgets, timeouts), `background` (gossip, failure detection, repair, transfers,
//! tombstones), and `load` (reading, overrides, validation).

mod background;
mod cluster;
mod limits;
mod load;
#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use background::{
    AntiEntropy, FailureDetector, Gossip, HintedHandoff, ReadRepair, Tombstones, Transfers,
};
pub use cluster::{
    check_cluster_id, check_id, new_cluster_id, BucketConfig, ClusterConfig, MemberConfig,
    TlsConfig,
};
pub use limits::{Limits, Timeouts};

/// A configuration problem, naming the field at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("config {path}: {field}: {reason}")]
    Field {
        path: String,
        field: String,
        reason: String,
    },
    #[error("--set {0}: expected KEY=VALUE")]
    BadOverride(String),
}

/// Everything one node needs to run.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// Stable node id: lowercase letters, digits and `-`. Survives address changes.
    pub id: String,
    /// UDP address to listen on for QUIC (clients and peers).
    pub listen: SocketAddr,
    /// Address other nodes and clients use to reach this node; `listen` if unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advertise: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
    /// Where RocksDB keeps this node's data; relative to the config file.
    pub data_dir: PathBuf,
    pub tls: TlsConfig,
    pub cluster: ClusterConfig,
    #[serde(default)]
    pub storage: StorageConfig,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub timeouts: Timeouts,
    #[serde(default)]
    pub failure_detector: FailureDetector,
    #[serde(default)]
    pub read_repair: ReadRepair,
    #[serde(default)]
    pub hinted_handoff: HintedHandoff,
    #[serde(default)]
    pub anti_entropy: AntiEntropy,
    #[serde(default)]
    pub tombstones: Tombstones,
    #[serde(default)]
    pub admin: Admin,
    #[serde(default)]
    pub transfers: Transfers,
    #[serde(default)]
    pub gossip: Gossip,
    #[serde(default)]
    pub runtime: Runtime,
}

/// How the node's process runs its async work and talks to others.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Runtime {
    /// Threads running requests and background work (storage has its own). 0: from the
    /// core count ([`Runtime::threads`]). One thread runs everything on one event loop,
    /// which costs the least CPU per request; more spread the load over more cores.
    pub threads: usize,
    /// Carry small requests to peers on one long-lived stream per peer, sent in batches.
    /// Off: a QUIC stream per request (the protocol before links; for comparison).
    pub links: bool,
}

impl Default for Runtime {
    fn default() -> Self {
        Runtime {
            threads: 0,
            links: true,
        }
    }
}

impl Runtime {
    /// The threads to run: the setting, or half the cores (at least one), leaving the rest
    /// to storage, the OS and other processes.
    pub fn threads(&self) -> usize {
        if self.threads > 0 {
            return self.threads;
        }
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        (cores / 2).clamp(1, 16)
    }
}
#[derive(Clone, Debug, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Admin {
    /// TCP address for the HTTP admin endpoint (`/metrics` in Prometheus format, `/health`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<SocketAddr>,
}
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    #[default]
    Rocksdb,
    /// Keeps nothing across restarts; for tests whose subject isn't storage.
    Memory,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    pub engine: Engine,
    /// fsync the WAL on every write batch. Without it, a write survives a process crash but
    /// not a power loss.
    pub sync: bool,
    /// Most mutations grouped into one RocksDB write batch.
    pub max_batch: usize,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            engine: Engine::Rocksdb,
            sync: false,
            max_batch: 256,
        }
    }
}
/// Optional durations as human strings; absent means `None`.
pub mod optional_duration {
    use serde::{Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => super::duration::serialize(d, s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        super::duration::deserialize(d).map(Some)
    }
}

/// Durations as human strings such as `"500ms"` or `"10m"`.
pub mod duration {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(&s)
            .map_err(|e| serde::de::Error::custom(format!("invalid duration {s:?}: {e}")))
    }
}
impl NodeConfig {
    /// The address others use to reach this node.
    pub fn advertised(&self) -> String {
        self.advertise
            .clone()
            .unwrap_or_else(|| self.listen.to_string())
    }

    /// A bucket's own settings, if it has any.
    fn bucket(&self, bucket: &[u8]) -> Option<&BucketConfig> {
        std::str::from_utf8(bucket)
            .ok()
            .and_then(|b| self.cluster.buckets.get(b))
    }

    /// N for a bucket.
    pub fn n_for(&self, bucket: &[u8]) -> usize {
        self.bucket(bucket)
            .and_then(|b| b.n)
            .unwrap_or(self.cluster.n)
    }

    /// A bucket's conflict policy (`siblings` unless configured).
    pub fn conflicts_for(&self, bucket: &[u8]) -> chorus_core::version::Conflicts {
        self.bucket(bucket).map(|b| b.conflicts).unwrap_or_default()
    }

    /// A bucket's default TTL for puts that bring none.
    pub fn ttl_for(&self, bucket: &[u8]) -> Option<std::time::Duration> {
        self.bucket(bucket).and_then(|b| b.ttl)
    }

    /// The largest N of any bucket: the ring balances this many replica slots.
    pub fn max_n(&self) -> usize {
        self.cluster
            .buckets
            .values()
            .filter_map(|b| b.n)
            .chain([self.cluster.n])
            .max()
            .unwrap_or(self.cluster.n)
    }
}
