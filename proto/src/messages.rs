//! Client protocol messages: what a client sends to any node and what it gets back.
//!
//! Every message travels inside a [`crate::wire`] frame that carries the protocol version.
//! Fields are encoded by name (msgpack maps), so later versions can add optional fields
//! without breaking older peers.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// ALPN protocol id for client connections.
pub const ALPN_CLIENT: &[u8] = b"chorus-client/1";
/// ALPN protocol id for node-to-node connections.
pub const ALPN_PEER: &[u8] = b"chorus-peer/1";

/// Per-request consistency level: how many replicas must answer (R) or acknowledge (W).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum Level {
    /// One replica.
    One,
    /// A majority of the N replicas: `N / 2 + 1`.
    #[default]
    Quorum,
    /// Every one of the N replicas.
    All,
    /// An explicit count from 1 to N.
    Count(u32),
}

impl Level {
    /// The replica count this level asks for when a bucket has `n` replicas.
    pub fn resolve(self, n: usize) -> Result<usize, LevelError> {
        let needed = match self {
            Level::One => 1,
            Level::Quorum => n / 2 + 1,
            Level::All => n,
            Level::Count(c) => c as usize,
        };
        if needed == 0 || needed > n {
            return Err(LevelError::OutOfRange { level: self, n });
        }
        Ok(needed)
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Level::One => f.write_str("one"),
            Level::Quorum => f.write_str("quorum"),
            Level::All => f.write_str("all"),
            Level::Count(c) => write!(f, "{c}"),
        }
    }
}

/// A consistency level that can't be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LevelError {
    #[error("invalid consistency level {0:?}: expected one, quorum, all or a number")]
    Parse(String),
    #[error("consistency level {level} is out of range for N={n} (allowed: 1 to {n})")]
    OutOfRange { level: Level, n: usize },
}

impl FromStr for Level {
    type Err = LevelError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "one" => Ok(Level::One),
            "quorum" => Ok(Level::Quorum),
            "all" => Ok(Level::All),
            other => other
                .parse::<u32>()
                .ok()
                .filter(|c| *c > 0)
                .map(Level::Count)
                .ok_or_else(|| LevelError::Parse(s.to_string())),
        }
    }
}

/// A request from a client to any node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    Get {
        #[serde(with = "serde_bytes")]
        bucket: Vec<u8>,
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
        r: Level,
    },
    Put {
        #[serde(with = "serde_bytes")]
        bucket: Vec<u8>,
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
        #[serde(with = "serde_bytes")]
        value: Vec<u8>,
        /// Opaque causal context from an earlier read; empty when the client has none.
        #[serde(with = "serde_bytes")]
        context: Vec<u8>,
        w: Level,
        /// Let fallback nodes stand in for down replicas and count toward W.
        #[serde(default)]
        sloppy: bool,
        /// Time to live in milliseconds ([`crate::check_ttl`]); unset means the bucket's
        /// default TTL, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ttl_ms: Option<u64>,
    },
    Delete {
        #[serde(with = "serde_bytes")]
        bucket: Vec<u8>,
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
        #[serde(with = "serde_bytes")]
        context: Vec<u8>,
        w: Level,
        #[serde(default)]
        sloppy: bool,
    },
    /// One replica's local copy, with no coordination and no repair (for operators).
    GetReplica {
        #[serde(with = "serde_bytes")]
        bucket: Vec<u8>,
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
        node: String,
    },
    /// Reads of several keys of one bucket, each decided on its own with level `r`.
    /// Answered with [`Response::Values`], one entry per key in the order given.
    GetMany {
        #[serde(with = "serde_bytes")]
        bucket: Vec<u8>,
        keys: Vec<serde_bytes::ByteBuf>,
        r: Level,
    },
    /// Writes (puts and deletes) of several keys of one bucket, each coordinated on its own
    /// with level `w`. Answered with [`Response::WrittenMany`], in the order given.
    PutMany {
        #[serde(with = "serde_bytes")]
        bucket: Vec<u8>,
        items: Vec<WriteItem>,
        w: Level,
        #[serde(default)]
        sloppy: bool,
        /// Time to live of every put of the batch, in milliseconds, as for `Put`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ttl_ms: Option<u64>,
    },
    /// The ring and member addresses, for token-aware routing.
    Ring,
    /// The cluster as the contacted node sees it.
    Status,
    /// Start an anti-entropy round on the contacted node now.
    Repair,
    /// Move a node's partitions to the others; it then reports itself `left`. Needs an
    /// admin certificate; `force` allows leaving fewer members than some bucket's N.
    Leave {
        node: String,
        #[serde(default)]
        force: bool,
    },
    /// Take a dead node out of the ring; its replicas are recreated from surviving copies.
    /// Needs an admin certificate; `force` allows removing a live node, or leaving fewer
    /// members than some bucket's N.
    Remove {
        node: String,
        #[serde(default)]
        force: bool,
    },
    /// A page of a bucket's keys in byte order, those starting with `prefix`, after the
    /// key the token `after` names. Answered with [`Response::Keys`].
    ListKeys {
        #[serde(with = "serde_bytes")]
        bucket: Vec<u8>,
        #[serde(with = "serde_bytes")]
        prefix: Vec<u8>,
        /// Keys at most; 0 asks for the node's default.
        limit: u32,
        /// The `next` token of the previous page.
        after: Option<String>,
    },
    /// Delete every key of a bucket (admin only). Answered with [`Response::Truncated`].
    Truncate {
        #[serde(with = "serde_bytes")]
        bucket: Vec<u8>,
    },
}

/// A node's answer to a [`Request`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    Value(ValueReply),
    /// A put or delete reached its W; carries the context of the written version.
    Written {
        #[serde(with = "serde_bytes")]
        context: Vec<u8>,
    },
    Ring(RingInfo),
    Status(StatusInfo),
    /// Per-key results of a [`Request::GetMany`], in request order.
    Values(Vec<KeyValue>),
    /// Per-key outcomes of a [`Request::PutMany`], in request order.
    WrittenMany(Vec<KeyWritten>),
    /// The request was accepted.
    Ok,
    Error(ErrorReply),
    /// A page of a [`Request::ListKeys`]; `next` resumes after it, `None` at the end.
    Keys {
        keys: Vec<serde_bytes::ByteBuf>,
        next: Option<String>,
    },
    /// A [`Request::Truncate`] finished: the keys deleted (per partition, the most any
    /// replica deleted).
    Truncated {
        deleted: u64,
    },
}

/// The result of a read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValueReply {
    pub found: bool,
    /// One entry per live sibling.
    pub values: Vec<serde_bytes::ByteBuf>,
    #[serde(with = "serde_bytes")]
    pub context: Vec<u8>,
    /// Tombstone siblings (deletes) still held for the key.
    #[serde(default)]
    pub tombstones: u32,
    /// Some values were left out because they don't fit in one reply (the key is over the
    /// size cap). The context still covers them all: a write with it replaces them.
    #[serde(default)]
    pub truncated: bool,
}

/// One write of a [`Request::PutMany`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriteItem {
    #[serde(with = "serde_bytes")]
    pub key: Vec<u8>,
    /// The new value; `None` deletes the versions the context saw.
    pub value: Option<serde_bytes::ByteBuf>,
    /// Opaque causal context from an earlier read; empty when the client has none.
    #[serde(with = "serde_bytes")]
    pub context: Vec<u8>,
}

/// One key's result in a batch read: its value, or why it could not be read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyValue {
    #[serde(with = "serde_bytes")]
    pub key: Vec<u8>,
    pub result: Result<ValueReply, ErrorReply>,
}

/// One key's outcome in a batch write: the written version's context, or why it failed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyWritten {
    #[serde(with = "serde_bytes")]
    pub key: Vec<u8>,
    pub result: Result<serde_bytes::ByteBuf, ErrorReply>,
}

/// What a client needs for token-aware routing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RingInfo {
    pub ring: chorus_ring::Ring,
    /// Node id and its client address.
    pub addresses: Vec<(String, String)>,
    /// N for buckets without their own setting.
    pub default_n: usize,
    /// Buckets with their own N.
    pub bucket_n: Vec<(String, usize)>,
    /// Nodes the answering node believes down; clients try them last.
    #[serde(default)]
    pub down: Vec<String>,
}

impl RingInfo {
    /// N for a bucket.
    pub fn n_for(&self, bucket: &[u8]) -> usize {
        self.bucket_n
            .iter()
            .find(|(b, _)| b.as_bytes() == bucket)
            .map(|(_, n)| *n)
            .unwrap_or(self.default_n)
    }

    /// The address of a node, if known.
    pub fn address_of(&self, id: &str) -> Option<&str> {
        self.addresses
            .iter()
            .find(|(n, _)| n == id)
            .map(|(_, a)| a.as_str())
    }
}

/// One node as seen by the contacted node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStatus {
    pub id: String,
    pub address: String,
    pub zone: Option<String>,
    /// `up`, `down`, `recovering`, `joining`, `leaving` or `left`.
    pub status: String,
    /// Partitions for which this node is in the preference list (default N).
    pub partitions: usize,
    /// Hints the answering node holds for this node.
    #[serde(default)]
    pub hints_pending: u64,
    /// Set while the node is `recovering`: why, and how far its exchanges have got.
    #[serde(default)]
    pub recovery: Option<RecoveryStatus>,
}

/// A node catching up after lost or restored data: it doesn't count toward R until it has
/// exchanged with the other replicas of each of its partitions.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecoveryStatus {
    /// `unconfirmed`, `wiped`, `restored` or `power_loss`.
    pub reason: String,
    pub partitions_exchanged: u32,
    pub partitions_total: u32,
}

/// Anti-entropy state of one partition on the answering node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionSync {
    pub partition: u32,
    /// Milliseconds since every other replica was last found equal (or repaired); `None`
    /// if that hasn't happened since the node started.
    pub ms_since_clean: Option<u64>,
    /// Keys repaired in this partition since the node started.
    pub keys_repaired: u64,
}

/// Convergence counters of the answering node since it started.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Convergence {
    pub read_repairs: u64,
    pub hints_replayed: u64,
    pub hints_expired: u64,
    pub anti_entropy_rounds: u64,
    pub anti_entropy_keys_repaired: u64,
    pub anti_entropy_bytes: u64,
    pub tombstones_purged: u64,
    pub partitions: Vec<PartitionSync>,
}

/// The cluster as one node sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusInfo {
    /// The node that answered.
    pub node: String,
    pub ring_version: u64,
    pub partitions: u32,
    pub nodes: Vec<NodeStatus>,
    #[serde(default)]
    pub convergence: Convergence,
    /// Partition transfers of the current ring change not yet confirmed, cluster-wide as
    /// far as the answering node knows.
    #[serde(default)]
    pub transfers_pending: u64,
    #[serde(default)]
    pub transfers: Vec<TransferStatus>,
    /// Members that haven't yet acknowledged the current ring with its transfers
    /// confirmed: the next ring change (or the end of this one) waits for them. A member
    /// that stays down holds ring changes until it is back or removed.
    #[serde(default)]
    pub ring_waits_for: Vec<String>,
    /// Peers refused in the last minute for another cluster id or other cluster-wide
    /// settings (N, partition count), each with the reason.
    #[serde(default)]
    pub refused: Vec<String>,
    /// The answering node's background workers (empty from nodes older than the field).
    #[serde(default)]
    pub workers: Vec<WorkerInfo>,
}

/// One background worker of the answering node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerInfo {
    pub name: String,
    /// `busy` (a step is running), `idle` (waiting for work), `done`, or `error` (the last
    /// step failed; the worker goes on).
    pub state: String,
    /// What it did last, in words.
    #[serde(default)]
    pub progress: String,
    /// Steps completed since the node started.
    #[serde(default)]
    pub iterations: u64,
    /// Steps that failed.
    #[serde(default)]
    pub errors: u64,
    #[serde(default)]
    pub last_error: Option<String>,
    /// Milliseconds since the last step ended; `None` before the first.
    #[serde(default)]
    pub ms_since_step: Option<u64>,
}

/// A partition on its way to a new owner.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransferStatus {
    pub partition: u32,
    /// The node receiving it.
    pub node: String,
}

/// Why a request failed, as told by the node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorKind {
    /// R or W could not be met before the deadline.
    Quorum { needed: u32, answered: u32 },
    /// Key or value over the node's limit.
    TooLarge,
    /// The request was malformed or asked for something impossible.
    BadRequest,
    /// The node is shedding load.
    Overloaded,
    /// The node can't serve this yet (e.g. it hasn't joined a cluster).
    Unavailable,
    /// Something failed inside the node.
    Internal,
    /// The request needs a role the client's certificate doesn't have (e.g. admin).
    PermissionDenied,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorReply {
    pub kind: ErrorKind,
    pub message: String,
}

impl Response {
    pub fn error(kind: ErrorKind, message: impl Into<String>) -> Response {
        Response::Error(ErrorReply {
            kind,
            message: message.into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_parse_and_resolve() {
        assert_eq!("one".parse::<Level>(), Ok(Level::One));
        assert_eq!("QUORUM".parse::<Level>(), Ok(Level::Quorum));
        assert_eq!("all".parse::<Level>(), Ok(Level::All));
        assert_eq!("2".parse::<Level>(), Ok(Level::Count(2)));
        assert!("0".parse::<Level>().is_err());
        assert!("most".parse::<Level>().is_err());
        assert_eq!(Level::Quorum.resolve(3), Ok(2));
        assert_eq!(Level::Quorum.resolve(4), Ok(3));
        assert_eq!(Level::Quorum.resolve(1), Ok(1));
        assert_eq!(Level::All.resolve(5), Ok(5));
        assert_eq!(Level::Count(3).resolve(3), Ok(3));
        assert!(Level::Count(4).resolve(3).is_err());
    }
}
