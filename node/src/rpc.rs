//! Node-to-node messages. They travel on connections negotiated with the peer ALPN, which
//! only certificates issued to nodes may open.

use serde::{Deserialize, Serialize};

use chorus_proto::{Request, Response};

use crate::merkle::Hash;

/// One key's version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Item {
    #[serde(with = "serde_bytes")]
    pub bucket: Vec<u8>,
    #[serde(with = "serde_bytes")]
    pub key: Vec<u8>,
    /// An encoded `version::Object`.
    #[serde(with = "serde_bytes")]
    pub object: Vec<u8>,
}

/// A key and the digest of its version, for anti-entropy listings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyDigest {
    #[serde(with = "serde_bytes")]
    pub bucket: Vec<u8>,
    #[serde(with = "serde_bytes")]
    pub key: Vec<u8>,
    #[serde(with = "serde_bytes")]
    pub digest: Vec<u8>,
}

/// One anti-entropy tree: a partition and the N of the buckets it covers.
pub type TreeRef = (u32, u8);

/// A request from one node to another.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PeerRequest {
    /// Failure detection probe. Carries the sender's cluster id and settings (see
    /// `identity`): a node of another cluster is refused.
    Ping {
        from: String,
        #[serde(default)]
        cluster: String,
        #[serde(default)]
        settings: String,
    },
    /// The replica's stored version of a key.
    Read {
        #[serde(with = "serde_bytes")]
        bucket: Vec<u8>,
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
    },
    /// Merge this version of a key into the replica.
    Replicate(Item),
    /// Merge several versions (hint replay, anti-entropy repair) in one write batch.
    MergeMany(Vec<Item>),
    /// Hold this version for `target`, a replica that is down (sloppy quorum).
    StoreHint { target: String, item: Item },
    /// Coordinate a client write here: the node that took it isn't one of the key's replicas.
    Coordinate(Request),
    /// Anti-entropy: the roots of these trees, in order.
    TreeRoots(Vec<TreeRef>),
    /// Anti-entropy: the branch hashes of a tree.
    TreeBranches(TreeRef),
    /// Anti-entropy: the leaves of some branches of a tree.
    TreeLeaves { tree: TreeRef, branches: Vec<u16> },
    /// Anti-entropy: keys and digests in some segments of a tree.
    SegmentKeys { tree: TreeRef, segments: Vec<u16> },
    /// The stored versions of several keys.
    ReadMany(Vec<(serde_bytes::ByteBuf, serde_bytes::ByteBuf)>),
    /// A batch read's keys held by this replica (see `coordinate_batch`): answered with
    /// [`PeerResponse::Versions`], which says whether the replica counts toward R.
    ReadKeys(Vec<(serde_bytes::ByteBuf, serde_bytes::ByteBuf)>),
    /// Membership gossip: the sender's cluster state; the answer is the receiver's, merged.
    Gossip(Box<crate::membership::ClusterState>),
    /// Partition transfer: up to `limit` keys of a partition after the data key `after`.
    PartitionScan {
        partition: u32,
        #[serde(with = "serde_bytes")]
        after: Vec<u8>,
        limit: u32,
    },
    /// Remove a tombstone that every replica holds, if it is still this exact version.
    Purge {
        #[serde(with = "serde_bytes")]
        bucket: Vec<u8>,
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
        #[serde(with = "serde_bytes")]
        digest: Vec<u8>,
    },
    /// Listing: this node's live keys of `bucket` in `partitions` that start with `prefix`
    /// and are past `after`, in byte order, at most `limit`.
    ListKeys {
        #[serde(with = "serde_bytes")]
        bucket: Vec<u8>,
        #[serde(with = "serde_bytes")]
        prefix: Vec<u8>,
        #[serde(with = "serde_bytes")]
        after: Option<Vec<u8>>,
        partitions: Vec<u32>,
        limit: u32,
    },
    /// Truncation: delete every live key of `bucket` in `partitions` this node holds.
    Truncate {
        #[serde(with = "serde_bytes")]
        bucket: Vec<u8>,
        partitions: Vec<u32>,
    },
}

/// A node's answer to a [`PeerRequest`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PeerResponse {
    Pong {
        node: String,
        epoch: u64,
        /// Set while the node is recovering (lost or restored data), with its progress.
        #[serde(default)]
        recovering: Option<chorus_proto::RecoveryStatus>,
    },
    /// The replica's version (encoded), or nothing stored.
    Object(#[serde(with = "serde_bytes")] Option<Vec<u8>>),
    /// Versions of several keys, in request order.
    Objects(Vec<Option<serde_bytes::ByteBuf>>),
    Ack,
    Coordinated(Response),
    /// Hashes, concatenated (32 bytes each).
    Hashes(#[serde(with = "serde_bytes")] Vec<u8>),
    /// Per branch, its leaves concatenated.
    Leaves(Vec<(u16, serde_bytes::ByteBuf)>),
    Keys(Vec<KeyDigest>),
    Gossip(Box<crate::membership::ClusterState>),
    /// A page of a partition; `next` is the cursor to continue from, `None` at the end.
    Items {
        items: Vec<Item>,
        #[serde(with = "serde_bytes")]
        next: Option<Vec<u8>>,
    },
    /// The request was refused or failed; see [`PeerError`].
    Error(PeerError),
    /// Anti-entropy: the roots of the trees asked for, in order (32 bytes each), and the
    /// positions of those this node keeps no keys under (another N configured here), which
    /// must not be taken as empty.
    Roots {
        #[serde(with = "serde_bytes")]
        hashes: Vec<u8>,
        unknown: Vec<u32>,
    },
    /// The answer to a `Read` from a replica that is recovering: its version (encoded), which
    /// must not count toward R. Nodes that don't know this answer treat it as a failure.
    Recovering(#[serde(with = "serde_bytes")] Option<Vec<u8>>),
    /// The answer to `ReadKeys`: a prefix of the keys asked (the rest didn't fit; ask
    /// again), each its version or why not. `whole` is false while the replica is
    /// recovering: then none of them counts toward R.
    Versions {
        whole: bool,
        versions: Vec<Result<Option<serde_bytes::ByteBuf>, String>>,
    },
    /// The answer to `ListKeys`: keys in byte order; `more` when the node stopped at the
    /// limit or the reply's size (it then returns at least one key).
    KeyList {
        keys: Vec<serde_bytes::ByteBuf>,
        more: bool,
    },
    /// The answer to `Truncate`: the keys this node deleted, per partition.
    Truncated(Vec<(u32, u64)>),
}

impl PeerResponse {
    /// The kind of answer, for errors (never the payload, which may be large).
    pub fn kind(&self) -> &'static str {
        match self {
            PeerResponse::Pong { .. } => "pong",
            PeerResponse::Object(_) => "object",
            PeerResponse::Objects(_) => "objects",
            PeerResponse::Ack => "ack",
            PeerResponse::Coordinated(_) => "coordinated",
            PeerResponse::Hashes(_) => "hashes",
            PeerResponse::Leaves(_) => "leaves",
            PeerResponse::Keys(_) => "keys",
            PeerResponse::Gossip(_) => "gossip",
            PeerResponse::Items { .. } => "items",
            PeerResponse::Error(_) => "error",
            PeerResponse::Roots { .. } => "roots",
            PeerResponse::Recovering(_) => "recovering",
            PeerResponse::Versions { .. } => "versions",
            PeerResponse::KeyList { .. } => "key list",
            PeerResponse::Truncated(_) => "truncated",
        }
    }
}

/// Why a peer refused or failed a request, as carried in [`PeerResponse::Error`]. The
/// variants are what callers act on (hold a hint, refuse a node of another cluster, retry
/// later); the strings only explain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum PeerError {
    /// The node lost or restored data and doesn't serve it to peers until it has caught up.
    #[error("recovering: this node's data may be incomplete or stale, and is not served to peers")]
    Recovering,
    /// The node's start is not yet confirmed by a peer, so it takes no replica writes.
    #[error("recovering: this node's start is not yet confirmed by a peer; hold a hint for it")]
    NotTakingWrites,
    /// The node has left the cluster or was removed from it.
    #[error("this node has left or was removed from the cluster")]
    Removed,
    /// A budget of the node is used up; retry later.
    #[error("node overloaded: {what}; retry later")]
    Overloaded { what: String },
    /// A frame or version over a limit.
    #[error("{what} of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge { what: String, size: u64, limit: u64 },
    /// The sender belongs to another cluster or disagrees on cluster-wide settings.
    #[error("refused by {by}: {why}")]
    WrongCluster { by: String, why: String },
    /// The request itself is invalid (key limits, malformed object, unknown target).
    #[error("bad request: {0}")]
    BadRequest(String),
    /// The node's storage failed.
    #[error("storage: {0}")]
    Storage(String),
    /// Anything else (a task that failed, the replica shutting down).
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<crate::budget::Exhausted> for PeerError {
    fn from(e: crate::budget::Exhausted) -> Self {
        PeerError::Overloaded {
            what: format!("{} ({} of {} in use)", e.what, e.used, e.limit),
        }
    }
}

impl From<crate::replica::ReplicaError> for PeerError {
    fn from(e: crate::replica::ReplicaError) -> Self {
        use crate::replica::ReplicaError as R;
        match e {
            R::Storage(e) => PeerError::Storage(e.to_string()),
            R::Corrupt(_) => PeerError::Storage(e.to_string()),
            R::TooLarge { size, limit } => PeerError::TooLarge {
                what: "version".into(),
                size: size as u64,
                limit: limit as u64,
            },
            R::TooManySiblings { .. } => PeerError::BadRequest(e.to_string()),
            R::WrongNode { .. } | R::Closed => PeerError::Internal(e.to_string()),
        }
    }
}

impl From<crate::storage::StorageError> for PeerError {
    fn from(e: crate::storage::StorageError) -> Self {
        PeerError::Storage(e.to_string())
    }
}

impl From<chorus_proto::ErrorReply> for PeerError {
    fn from(e: chorus_proto::ErrorReply) -> Self {
        PeerError::BadRequest(e.message)
    }
}

impl From<tokio::task::JoinError> for PeerError {
    fn from(e: tokio::task::JoinError) -> Self {
        PeerError::Internal(e.to_string())
    }
}

/// Concatenates hashes for [`PeerResponse::Hashes`].
pub fn pack_hashes(hashes: &[Hash]) -> Vec<u8> {
    hashes.iter().flatten().copied().collect()
}

/// Splits concatenated hashes; `None` if the length isn't a multiple of 32.
pub fn unpack_hashes(bytes: &[u8]) -> Option<Vec<Hash>> {
    if !bytes.len().is_multiple_of(32) {
        return None;
    }
    Some(
        bytes
            .chunks_exact(32)
            .filter_map(|c| <[u8; 32]>::try_from(c).ok())
            .collect(),
    )
}

/// A digest from the wire; `None` unless exactly 32 bytes.
pub fn digest_of(bytes: &[u8]) -> Option<Hash> {
    <[u8; 32]>::try_from(bytes).ok()
}
