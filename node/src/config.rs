//! Node configuration: `node.toml`, `--set key=value` overrides, and validation whose errors
//! name the offending field.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

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
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Transfers {
    /// Keys per transfer message.
    pub batch: usize,
    /// Pause between two transfer messages (throttle).
    #[serde(with = "duration")]
    pub pause: Duration,
}

impl Default for Transfers {
    fn default() -> Self {
        Transfers {
            batch: 512,
            pause: Duration::from_millis(2),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Gossip {
    /// How often the cluster state is exchanged with a few peers.
    #[serde(with = "duration")]
    pub interval: Duration,
}

impl Default for Gossip {
    fn default() -> Self {
        Gossip {
            interval: Duration::from_millis(500),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReadRepair {
    pub enabled: bool,
    /// How long a read keeps listening for replicas that answer after the client got its
    /// reply, so they are repaired too.
    #[serde(with = "duration")]
    pub window: Duration,
    /// Share of reads sent to all N replicas, so they can be compared and repaired. Other
    /// reads go to R replicas (the coordinator's own copy first), which is enough for R+W>N
    /// and costs fewer messages; anti-entropy covers what they don't compare.
    pub chance: f64,
    /// A read that hasn't reached R after this long is also sent to the replicas it skipped
    /// (and at once when a contacted replica fails).
    #[serde(with = "duration")]
    pub speculative_after: Duration,
}

impl Default for ReadRepair {
    fn default() -> Self {
        ReadRepair {
            enabled: true,
            window: Duration::from_secs(1),
            chance: 0.1,
            speculative_after: Duration::from_millis(50),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HintedHandoff {
    pub enabled: bool,
    /// Hints older than this are dropped; anti-entropy repairs what they carried.
    #[serde(with = "duration")]
    pub expiry: Duration,
    /// Hints sent to a target in one message.
    pub batch: usize,
    /// How soon a failed replay is retried while the target is up.
    #[serde(with = "duration")]
    pub retry: Duration,
}

impl Default for HintedHandoff {
    fn default() -> Self {
        HintedHandoff {
            enabled: true,
            expiry: Duration::from_secs(3 * 3600),
            batch: 256,
            retry: Duration::from_secs(1),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AntiEntropy {
    pub enabled: bool,
    /// Time between exchange rounds.
    #[serde(with = "duration")]
    pub interval: Duration,
    /// Pause between two partitions' exchanges, so client traffic keeps priority.
    #[serde(with = "duration")]
    pub pause: Duration,
    /// Most keys repaired in one message.
    pub batch: usize,
}

impl Default for AntiEntropy {
    fn default() -> Self {
        AntiEntropy {
            enabled: true,
            interval: Duration::from_secs(600),
            pause: Duration::from_millis(5),
            batch: 256,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Tombstones {
    /// A tombstone is purged only after this long, and only once every replica holds it.
    /// Keep it longer than `hinted_handoff.expiry`, so no hint older than the delete can
    /// arrive after the purge.
    #[serde(with = "duration")]
    pub grace: Duration,
    /// How often purgeable tombstones are looked for.
    #[serde(with = "duration")]
    pub gc_interval: Duration,
}

impl Default for Tombstones {
    fn default() -> Self {
        Tombstones {
            grace: Duration::from_secs(4 * 3600),
            gc_interval: Duration::from_secs(60),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Admin {
    /// TCP address for the HTTP admin endpoint (`/metrics` in Prometheus format, `/health`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<SocketAddr>,
}

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
        self.buckets.iter().map(|(b, c)| (b.clone(), c.n)).collect()
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

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BucketConfig {
    pub n: usize,
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

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    pub max_key_bytes: usize,
    pub max_bucket_bytes: usize,
    pub max_value_bytes: usize,
    /// Largest frame accepted on any stream.
    pub max_frame_bytes: usize,
    /// Concurrent request streams per connection.
    pub max_streams_per_connection: u32,
    /// Client requests handled at once by this node; more are refused as overloaded.
    pub max_inflight_requests: usize,
    /// Open connections (clients and peers); more are refused.
    pub max_connections: usize,
    /// Siblings kept for one key before writes to it are refused.
    pub max_siblings: usize,
    /// Bytes in one background message (hint replay, anti-entropy, transfer pages, read
    /// repair); a single larger item goes alone. Unset: 4 MiB, or a quarter of
    /// `max_frame_bytes` if that is less.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_batch_bytes: Option<usize>,
    /// Largest stored version of a key, siblings included: a write that would make it
    /// larger is refused. Unset: 32 MiB, or half of what a frame can carry if that is less.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_object_bytes: Option<usize>,
    /// Peer requests handled at once; more are refused. Pings and gossip don't count.
    pub max_peer_requests: usize,
    /// Bytes of client request frames being read or served at once; more are refused.
    pub max_request_bytes: usize,
    /// Bytes of peer request frames being read or served at once; more are refused.
    pub max_peer_request_bytes: usize,
    /// Replica writes (this node's own and the ones writes leave running after they
    /// answer, hints included); past this, new writes are refused as overloaded.
    pub max_fanout: usize,
    /// Bytes those replica writes carry.
    pub max_fanout_bytes: usize,
    /// Value bytes of writes to one key in flight at its coordinator; more are refused.
    pub max_key_write_bytes: usize,
    /// A stream's request frame must arrive within this, or the stream is dropped.
    #[serde(with = "duration")]
    pub request_read_timeout: Duration,
    /// Past this many handshakes in progress, new connections must first prove their
    /// address (a QUIC retry round trip). 0: always.
    pub handshakes_before_retry: usize,
    /// Keys in one batch read or write (`get-many`, `put-many`); larger batches are refused.
    pub max_batch_keys: usize,
}

impl Limits {
    /// Room a frame needs beyond one object: key, bucket, context and envelope.
    pub fn frame_headroom(&self) -> usize {
        self.max_key_bytes + self.max_bucket_bytes + 64 * 1024
    }

    /// The byte budget of one background message.
    pub fn batch_bytes(&self) -> usize {
        self.max_batch_bytes
            .unwrap_or_else(|| (4 << 20).min(self.max_frame_bytes / 4))
    }

    /// The cap on one key's stored version.
    pub fn object_bytes(&self) -> usize {
        // Half a frame by default, so two concurrent versions at the cap still merge into
        // something a peer can send.
        self.max_object_bytes.unwrap_or_else(|| {
            (32 << 20)
                .min(self.max_frame_bytes.saturating_sub(self.frame_headroom()) / 2)
                .max(self.max_value_bytes)
        })
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_batch_keys: 1000,
            max_key_bytes: 64 * 1024,
            max_bucket_bytes: 1024,
            max_value_bytes: 8 * 1024 * 1024,
            max_frame_bytes: 64 * 1024 * 1024,
            max_streams_per_connection: 512,
            max_inflight_requests: 4096,
            max_connections: 4096,
            max_siblings: 128,
            max_batch_bytes: None,
            max_object_bytes: None,
            max_peer_requests: 4096,
            max_request_bytes: 128 * 1024 * 1024,
            max_peer_request_bytes: 128 * 1024 * 1024,
            max_fanout: 4096,
            max_fanout_bytes: 128 * 1024 * 1024,
            max_key_write_bytes: 4 * 1024 * 1024,
            request_read_timeout: Duration::from_secs(10),
            handshakes_before_retry: 64,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Timeouts {
    /// Deadline for a coordinated request to reach its R or W.
    #[serde(with = "duration")]
    pub request: Duration,
    /// Deadline for opening a connection to a peer.
    #[serde(with = "duration")]
    pub connect: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            request: Duration::from_secs(5),
            connect: Duration::from_secs(1),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FailureDetector {
    /// How often each peer is pinged.
    #[serde(with = "duration")]
    pub interval: Duration,
    /// A peer with no successful ping for this long is marked down.
    #[serde(with = "duration")]
    pub down_after: Duration,
}

impl Default for FailureDetector {
    fn default() -> Self {
        FailureDetector {
            interval: Duration::from_millis(300),
            down_after: Duration::from_millis(1500),
        }
    }
}

fn default_partitions() -> u32 {
    chorus_ring::DEFAULT_PARTITIONS
}

fn default_n() -> usize {
    3
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
    /// Reads `path`, applies `--set` overrides, resolves relative paths against the config's
    /// folder and validates the result.
    pub fn load(path: &Path, overrides: &[String]) -> Result<NodeConfig, ConfigError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
            path: shown.clone(),
            reason: e.to_string(),
        })?;
        let mut cfg = Self::parse(&text, overrides, &shown)?;
        let base = path.parent().unwrap_or(Path::new("."));
        for p in [
            &mut cfg.data_dir,
            &mut cfg.tls.ca,
            &mut cfg.tls.cert,
            &mut cfg.tls.key,
        ] {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        Ok(cfg)
    }

    /// Parses and validates config text; `origin` names it in errors.
    pub fn parse(
        text: &str,
        overrides: &[String],
        origin: &str,
    ) -> Result<NodeConfig, ConfigError> {
        let field_err = |field: &str, reason: String| ConfigError::Field {
            path: origin.to_string(),
            field: field.to_string(),
            reason,
        };
        let mut table: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| field_err("(syntax)", e.message().to_string()))?;
        for o in overrides {
            apply_override(&mut table, o)?;
        }
        let cfg: NodeConfig =
            serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|e| {
                let field = e.path().to_string();
                field_err(&field, e.into_inner().to_string())
            })?;
        cfg.validate().map_err(|(f, r)| field_err(&f, r))?;
        Ok(cfg)
    }

    fn validate(&self) -> Result<(), (String, String)> {
        let err = |f: &str, r: String| Err((f.to_string(), r));
        if let Err(r) = check_id(&self.id) {
            return err("id", r);
        }
        let c = &self.cluster;
        if let Err(r) = check_cluster_id(&c.id) {
            return err("cluster.id", r);
        }
        if c.partitions == 0 || !c.partitions.is_power_of_two() || c.partitions > 65536 {
            return err(
                "cluster.partitions",
                format!("{} is not a power of two from 1 to 65536", c.partitions),
            );
        }
        let chance = self.read_repair.chance;
        if !(0.0..=1.0).contains(&chance) {
            return err(
                "read_repair.chance",
                format!("{chance} is not from 0.0 to 1.0"),
            );
        }
        if c.n == 0 || c.n > 16 {
            return err("cluster.n", format!("{} is not from 1 to 16", c.n));
        }
        for (name, b) in &c.buckets {
            if b.n == 0 || b.n > 16 {
                return err(
                    &format!("cluster.buckets.{name}.n"),
                    format!("{} is not from 1 to 16", b.n),
                );
            }
        }
        if c.secret.is_none() {
            return err(
                "cluster.secret",
                "missing: every node of a cluster needs the same secret of 64 hex digits; generate one with `openssl rand -hex 32`".into(),
            );
        }
        if c.members.is_empty() && c.seeds.is_empty() {
            return err(
                "cluster.members",
                "list the members of a new cluster, or cluster.seeds to join one".into(),
            );
        }
        let mut seen = std::collections::BTreeSet::new();
        for (i, m) in c.members.iter().enumerate() {
            if let Err(r) = check_id(&m.id) {
                return err(&format!("cluster.members[{i}].id"), r);
            }
            if !seen.insert(&m.id) {
                return err(
                    &format!("cluster.members[{i}].id"),
                    format!("duplicate member {:?}", m.id),
                );
            }
        }
        if !c.members.is_empty() && !seen.contains(&self.id) {
            return err(
                "cluster.members",
                format!("this node ({}) is not among the members", self.id),
            );
        }
        let l = &self.limits;
        for (name, v) in [
            ("limits.max_key_bytes", l.max_key_bytes),
            ("limits.max_bucket_bytes", l.max_bucket_bytes),
            ("limits.max_value_bytes", l.max_value_bytes),
            ("limits.max_inflight_requests", l.max_inflight_requests),
            ("limits.max_connections", l.max_connections),
            ("limits.max_siblings", l.max_siblings),
            ("storage.max_batch", self.storage.max_batch),
            ("hinted_handoff.batch", self.hinted_handoff.batch),
            ("anti_entropy.batch", self.anti_entropy.batch),
            ("transfers.batch", self.transfers.batch),
        ] {
            if v == 0 {
                return err(name, "must be greater than 0".into());
            }
        }
        if l.max_bucket_bytes > u16::MAX as usize {
            return err("limits.max_bucket_bytes", "must be at most 65535".into());
        }
        if l.max_streams_per_connection == 0 {
            return err(
                "limits.max_streams_per_connection",
                "must be greater than 0".into(),
            );
        }
        if let Err((field, reason)) = crate::budget::validate(l) {
            return err(field, reason);
        }
        let needed = l.max_key_bytes + l.max_value_bytes + l.max_bucket_bytes + 4096;
        if l.max_frame_bytes < needed {
            return err(
                "limits.max_frame_bytes",
                format!(
                    "{} is too small to carry a maximal request ({needed} bytes)",
                    l.max_frame_bytes
                ),
            );
        }
        if let Some(b) = l.max_batch_bytes {
            if b == 0 || b > l.max_frame_bytes / 2 {
                return err(
                    "limits.max_batch_bytes",
                    format!(
                        "{b} must be from 1 to half of limits.max_frame_bytes ({})",
                        l.max_frame_bytes / 2
                    ),
                );
            }
        }
        if let Some(o) = l.max_object_bytes {
            let most = l.max_frame_bytes.saturating_sub(l.frame_headroom());
            if o < l.max_value_bytes || o > most {
                return err(
                    "limits.max_object_bytes",
                    format!(
                        "{o} must be at least limits.max_value_bytes ({}) and at most {most} \
                         (limits.max_frame_bytes less room for the key and context)",
                        l.max_value_bytes
                    ),
                );
            }
        }
        for (name, d) in [
            ("timeouts.request", self.timeouts.request),
            ("timeouts.connect", self.timeouts.connect),
            ("failure_detector.interval", self.failure_detector.interval),
            (
                "failure_detector.down_after",
                self.failure_detector.down_after,
            ),
        ] {
            if d.is_zero() {
                return err(name, "must be longer than 0".into());
            }
        }
        // A hint older than the delete it could resurrect must expire before the purge.
        if self.tombstones.grace <= self.hinted_handoff.expiry {
            return err(
                "tombstones.grace",
                format!(
                    "{} must be longer than hinted_handoff.expiry ({}), or a hint written before a delete could bring the key back after the tombstone is purged",
                    humantime::format_duration(self.tombstones.grace),
                    humantime::format_duration(self.hinted_handoff.expiry)
                ),
            );
        }
        Ok(())
    }

    /// The address others use to reach this node.
    pub fn advertised(&self) -> String {
        self.advertise
            .clone()
            .unwrap_or_else(|| self.listen.to_string())
    }

    /// N for a bucket.
    pub fn n_for(&self, bucket: &[u8]) -> usize {
        std::str::from_utf8(bucket)
            .ok()
            .and_then(|b| self.cluster.buckets.get(b))
            .map(|b| b.n)
            .unwrap_or(self.cluster.n)
    }

    /// The largest N of any bucket: the ring balances this many replica slots.
    pub fn max_n(&self) -> usize {
        self.cluster
            .buckets
            .values()
            .map(|b| b.n)
            .chain([self.cluster.n])
            .max()
            .unwrap_or(self.cluster.n)
    }
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

/// Applies one `a.b.c=value`. The value is read as TOML when it parses (numbers, booleans,
/// quoted strings, arrays), otherwise as a bare string.
fn apply_override(table: &mut toml::Table, o: &str) -> Result<(), ConfigError> {
    let (key, raw) = o
        .split_once('=')
        .ok_or_else(|| ConfigError::BadOverride(o.to_string()))?;
    let key = key.trim();
    if key.is_empty() || key.split('.').any(|p| p.is_empty()) {
        return Err(ConfigError::BadOverride(o.to_string()));
    }
    let value = format!("v = {raw}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_string()));
    let parts: Vec<&str> = key.split('.').collect();
    let mut cur = table;
    for p in &parts[..parts.len() - 1] {
        let entry = cur
            .entry(p.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        cur = match entry {
            toml::Value::Table(t) => t,
            _ => return Err(ConfigError::BadOverride(format!("{o}: {p} is not a table"))),
        };
    }
    cur.insert(parts[parts.len() - 1].to_string(), value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"
id = "n1"
listen = "127.0.0.1:7000"
data_dir = "data"
[tls]
ca = "ca.pem"
cert = "node.pem"
key = "node.key"
[cluster]
id = "test"
members = [{ id = "n1", address = "127.0.0.1:7000" }]
secret = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
"#;

    fn parse(extra: &[&str]) -> Result<NodeConfig, ConfigError> {
        let o: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        NodeConfig::parse(BASE, &o, "node.toml")
    }

    #[test]
    fn defaults_and_overrides() {
        let c = parse(&[]).expect("base config");
        assert!(!c.storage.sync);
        assert_eq!(c.cluster.n, 3);
        assert_eq!(c.limits.max_key_bytes, 65536);
        let c =
            parse(&["storage.sync=true", "timeouts.request=2s", "cluster.n=1"]).expect("overrides");
        assert!(c.storage.sync);
        assert_eq!(c.timeouts.request, Duration::from_secs(2));
        assert_eq!(c.cluster.n, 1);
        let c = parse(&[
            "read_repair.enabled=false",
            "hinted_handoff.enabled=false",
            "anti_entropy.enabled=false",
            "anti_entropy.interval=2s",
        ])
        .expect("switches");
        assert!(!c.read_repair.enabled && !c.hinted_handoff.enabled && !c.anti_entropy.enabled);
        assert_eq!(c.anti_entropy.interval, Duration::from_secs(2));
        let c = parse(&["storage.engine=memory"]).expect("bare string");
        assert_eq!(c.storage.engine, Engine::Memory);
    }

    #[test]
    fn errors_name_the_field() {
        let e = parse(&["storage.sync=yes"]).unwrap_err().to_string();
        assert!(e.contains("storage.sync"), "{e}");
        let e = parse(&["storage.colour=1"]).unwrap_err().to_string();
        assert!(e.contains("colour"), "{e}");
        let e = parse(&["cluster.partitions=100"]).unwrap_err().to_string();
        assert!(e.contains("cluster.partitions"), "{e}");
        let e = parse(&["timeouts.request=soon"]).unwrap_err().to_string();
        assert!(e.contains("timeouts.request"), "{e}");
        let e = parse(&["id=N_1"]).unwrap_err().to_string();
        assert!(e.contains("id"), "{e}");
        let e = parse(&["id=n2"]).unwrap_err().to_string();
        assert!(e.contains("cluster.members"), "{e}");
        let c = parse(&[
            "id=n2",
            "cluster.members=[]",
            "cluster.seeds=[\"127.0.0.1:7000\"]",
        ])
        .expect("a joining node needs only seeds");
        assert_eq!(c.cluster.seeds.len(), 1);
        let e = parse(&["cluster.members=[]"]).unwrap_err().to_string();
        assert!(e.contains("cluster.members"), "{e}");
        assert!(parse(&["nonsense"]).is_err());
    }

    #[test]
    fn secret_is_required_valid_and_never_shown() {
        let c = parse(&[]).expect("base config");
        let hex = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
        assert_eq!(
            c.cluster.secret.as_ref().map(|s| s.to_hex()),
            Some(hex.into())
        );
        assert!(!format!("{c:?}").contains(&hex[8..]));
        let text = BASE.replace(&format!("secret = \"{hex}\""), "");
        let e = NodeConfig::parse(&text, &[], "node.toml")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("cluster.secret") && e.contains("openssl rand -hex 32"),
            "{e}"
        );
        let e = parse(&["cluster.secret=\"abcd\""]).unwrap_err().to_string();
        assert!(
            e.contains("cluster.secret") && e.contains("64 hex digits"),
            "{e}"
        );
        // Written back as the same hex digits.
        let again = toml::to_string(&c).expect("serialize");
        assert!(again.contains(hex));
    }

    #[test]
    fn byte_budgets_follow_the_frame_and_are_checked() {
        let c = parse(&[]).expect("defaults");
        assert_eq!(c.limits.batch_bytes(), 4 << 20);
        let o = c.limits.object_bytes();
        assert!(o <= 32 << 20 && o > 31 << 20, "{o}");
        // A smaller frame shrinks the unset budgets with it.
        let c = parse(&[
            "limits.max_frame_bytes=4194304",
            "limits.max_value_bytes=1048576",
        ])
        .expect("small frame");
        assert_eq!(c.limits.batch_bytes(), 1 << 20);
        assert!(c.limits.object_bytes() + c.limits.frame_headroom() <= 4 << 20);
        assert!(c.limits.object_bytes() >= 1 << 20);
        let c = parse(&[
            "limits.max_batch_bytes=65536",
            "limits.max_object_bytes=9000000",
        ])
        .expect("explicit");
        assert_eq!(c.limits.batch_bytes(), 65536);
        assert_eq!(c.limits.object_bytes(), 9_000_000);
        for bad in [
            "limits.max_batch_bytes=0",
            "limits.max_batch_bytes=40000000",
        ] {
            let e = parse(&[bad]).unwrap_err().to_string();
            assert!(e.contains("limits.max_batch_bytes"), "{e}");
        }
        for bad in [
            "limits.max_object_bytes=1000",
            "limits.max_object_bytes=67108864",
        ] {
            let e = parse(&[bad]).unwrap_err().to_string();
            assert!(e.contains("limits.max_object_bytes"), "{e}");
        }
    }

    #[test]
    fn cluster_id_is_required_and_says_how_to_fix_it() {
        let e = parse(&["cluster.id=\"\""]).unwrap_err().to_string();
        assert!(
            e.contains("cluster.id") && e.contains("another node"),
            "{e}"
        );
        let e = parse(&["cluster.id=\"a b\""]).unwrap_err().to_string();
        assert!(e.contains("cluster.id"), "{e}");
        assert_ne!(new_cluster_id(), new_cluster_id());
        assert!(check_cluster_id(&new_cluster_id()).is_ok());
    }

    #[test]
    fn tombstone_grace_must_outlast_hint_expiry() {
        let e = parse(&["tombstones.grace=3s", "hinted_handoff.expiry=3s"])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("tombstones.grace") && e.contains("hinted_handoff.expiry"),
            "{e}"
        );
        let e = parse(&["tombstones.grace=1h"]).unwrap_err().to_string();
        assert!(e.contains("hinted_handoff.expiry"), "{e}");
        parse(&["tombstones.grace=3s", "hinted_handoff.expiry=2s"]).expect("grace > expiry");
    }
}
