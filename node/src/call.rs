//! Typed peer calls: one small request type per peer message, each naming the answer it
//! expects ([`PeerCall::Reply`]), so callers get a value or a [`CallError`] and never match
//! [`PeerResponse`] variants. The wire keeps the one [`PeerRequest`] and [`PeerResponse`]
//! enum; this is a layer over it.

use chorus_proto::{RecoveryStatus, Request, Response};

use crate::membership::ClusterState;
use crate::merkle::Hash;
use crate::rpc::{unpack_hashes, Item, KeyDigest, PeerError, PeerRequest, PeerResponse, TreeRef};
use crate::transport::TransportError;

/// Why a peer call produced no reply.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The exchange failed: no connection, no answer in time, a frame that didn't decode.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// The peer answered with an error.
    #[error(transparent)]
    Peer(#[from] PeerError),
    /// The peer answered with another kind of reply than the request calls for.
    #[error("unexpected answer: {got}")]
    Unexpected { got: &'static str },
    /// The reply had the right kind but a malformed payload.
    #[error("malformed answer: {0}")]
    Malformed(&'static str),
}

impl CallError {
    /// Whether the request never reached the peer (no address, no connection), so another
    /// peer may take it without risk of it being applied twice.
    pub fn not_sent(&self) -> bool {
        matches!(
            self,
            CallError::Transport(TransportError::Connect { .. } | TransportError::Address { .. })
        )
    }
}

/// A request to a peer, and how its answer is read.
pub trait PeerCall {
    /// What a successful answer gives the caller.
    type Reply;
    /// The message on the wire.
    fn into_request(self) -> PeerRequest;
    /// The reply in `resp`, or why there is none: a [`PeerResponse::Error`] becomes
    /// [`CallError::Peer`], any other kind than the expected one [`CallError::Unexpected`].
    fn reply(resp: PeerResponse) -> Result<Self::Reply, CallError>;
}

/// The error for an answer that isn't the expected one.
pub fn unexpected(resp: PeerResponse) -> CallError {
    match resp {
        PeerResponse::Error(e) => CallError::Peer(e),
        other => CallError::Unexpected { got: other.kind() },
    }
}

fn ack(resp: PeerResponse) -> Result<(), CallError> {
    match resp {
        PeerResponse::Ack => Ok(()),
        other => Err(unexpected(other)),
    }
}

fn hashes(bytes: &[u8]) -> Result<Vec<Hash>, CallError> {
    unpack_hashes(bytes).ok_or(CallError::Malformed("hashes not a multiple of 32 bytes"))
}

/// Failure detection probe, with the sender's cluster id and settings (see `identity`).
#[derive(Clone, Debug)]
pub struct Ping {
    pub from: String,
    pub cluster: String,
    pub settings: String,
}

/// The answer to a [`Ping`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pong {
    pub node: String,
    pub epoch: u64,
    /// Set while the peer is recovering, with its progress.
    pub recovering: Option<RecoveryStatus>,
}

impl PeerCall for Ping {
    type Reply = Pong;
    fn into_request(self) -> PeerRequest {
        PeerRequest::Ping {
            from: self.from,
            cluster: self.cluster,
            settings: self.settings,
        }
    }
    fn reply(resp: PeerResponse) -> Result<Pong, CallError> {
        match resp {
            PeerResponse::Pong {
                node,
                epoch,
                recovering,
            } => Ok(Pong {
                node,
                epoch,
                recovering,
            }),
            other => Err(unexpected(other)),
        }
    }
}

/// A replica's stored version of a key.
#[derive(Clone, Debug)]
pub struct Read {
    pub bucket: Vec<u8>,
    pub key: Vec<u8>,
}

/// The answer to a [`Read`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Held {
    /// The encoded version, or `None` when nothing is stored.
    pub object: Option<Vec<u8>>,
    /// The replica is recovering: its version must not count toward R.
    pub recovering: bool,
}

impl PeerCall for Read {
    type Reply = Held;
    fn into_request(self) -> PeerRequest {
        PeerRequest::Read {
            bucket: self.bucket,
            key: self.key,
        }
    }
    fn reply(resp: PeerResponse) -> Result<Held, CallError> {
        match resp {
            PeerResponse::Object(object) => Ok(Held {
                object,
                recovering: false,
            }),
            PeerResponse::Recovering(object) => Ok(Held {
                object,
                recovering: true,
            }),
            other => Err(unexpected(other)),
        }
    }
}

/// Merge one version of a key into the replica.
#[derive(Clone, Debug)]
pub struct Replicate(pub Item);

impl PeerCall for Replicate {
    type Reply = ();
    fn into_request(self) -> PeerRequest {
        PeerRequest::Replicate(self.0)
    }
    fn reply(resp: PeerResponse) -> Result<(), CallError> {
        ack(resp)
    }
}

/// Merge several versions (hint replay, repair) in one write batch.
#[derive(Clone, Debug)]
pub struct MergeMany(pub Vec<Item>);

impl PeerCall for MergeMany {
    type Reply = ();
    fn into_request(self) -> PeerRequest {
        PeerRequest::MergeMany(self.0)
    }
    fn reply(resp: PeerResponse) -> Result<(), CallError> {
        ack(resp)
    }
}

/// Hold a version for `target`, a replica that is down (sloppy quorum).
#[derive(Clone, Debug)]
pub struct StoreHint {
    pub target: String,
    pub item: Item,
}

impl PeerCall for StoreHint {
    type Reply = ();
    fn into_request(self) -> PeerRequest {
        PeerRequest::StoreHint {
            target: self.target,
            item: self.item,
        }
    }
    fn reply(resp: PeerResponse) -> Result<(), CallError> {
        ack(resp)
    }
}

/// Coordinate a client write on a replica of its key.
#[derive(Clone, Debug)]
pub struct Coordinate(pub Request);

impl PeerCall for Coordinate {
    type Reply = Response;
    fn into_request(self) -> PeerRequest {
        PeerRequest::Coordinate(self.0)
    }
    fn reply(resp: PeerResponse) -> Result<Response, CallError> {
        match resp {
            PeerResponse::Coordinated(r) => Ok(r),
            other => Err(unexpected(other)),
        }
    }
}

/// Membership gossip: the sender's state; the answer is the receiver's, merged.
#[derive(Clone, Debug)]
pub struct Gossip(pub Box<ClusterState>);

impl PeerCall for Gossip {
    type Reply = Box<ClusterState>;
    fn into_request(self) -> PeerRequest {
        PeerRequest::Gossip(self.0)
    }
    fn reply(resp: PeerResponse) -> Result<Box<ClusterState>, CallError> {
        match resp {
            PeerResponse::Gossip(s) => Ok(s),
            other => Err(unexpected(other)),
        }
    }
}

/// Anti-entropy: the roots of these trees, in order.
#[derive(Clone, Debug)]
pub struct TreeRoots(pub Vec<TreeRef>);

/// The answer to [`TreeRoots`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Roots {
    pub roots: Vec<Hash>,
    /// Positions of the trees the peer keeps no keys under: not to be taken as empty.
    pub unknown: Vec<u32>,
}

impl PeerCall for TreeRoots {
    type Reply = Roots;
    fn into_request(self) -> PeerRequest {
        PeerRequest::TreeRoots(self.0)
    }
    fn reply(resp: PeerResponse) -> Result<Roots, CallError> {
        match resp {
            PeerResponse::Roots { hashes: h, unknown } => Ok(Roots {
                roots: hashes(&h)?,
                unknown,
            }),
            other => Err(unexpected(other)),
        }
    }
}

/// Anti-entropy: the branch hashes of a tree.
#[derive(Clone, Debug)]
pub struct TreeBranches(pub TreeRef);

impl PeerCall for TreeBranches {
    type Reply = Vec<Hash>;
    fn into_request(self) -> PeerRequest {
        PeerRequest::TreeBranches(self.0)
    }
    fn reply(resp: PeerResponse) -> Result<Vec<Hash>, CallError> {
        match resp {
            PeerResponse::Hashes(h) => hashes(&h),
            other => Err(unexpected(other)),
        }
    }
}

/// Anti-entropy: the leaves of some branches of a tree.
#[derive(Clone, Debug)]
pub struct TreeLeaves {
    pub tree: TreeRef,
    pub branches: Vec<u16>,
}

impl PeerCall for TreeLeaves {
    /// Per branch, its leaves; a branch with a malformed list is left out.
    type Reply = Vec<(usize, Vec<Hash>)>;
    fn into_request(self) -> PeerRequest {
        PeerRequest::TreeLeaves {
            tree: self.tree,
            branches: self.branches,
        }
    }
    fn reply(resp: PeerResponse) -> Result<Self::Reply, CallError> {
        match resp {
            PeerResponse::Leaves(list) => Ok(list
                .into_iter()
                .filter_map(|(b, l)| Some((b as usize, unpack_hashes(&l)?)))
                .collect()),
            other => Err(unexpected(other)),
        }
    }
}

/// Anti-entropy: keys and digests in some segments of a tree.
#[derive(Clone, Debug)]
pub struct SegmentKeys {
    pub tree: TreeRef,
    pub segments: Vec<u16>,
}

impl PeerCall for SegmentKeys {
    type Reply = Vec<KeyDigest>;
    fn into_request(self) -> PeerRequest {
        PeerRequest::SegmentKeys {
            tree: self.tree,
            segments: self.segments,
        }
    }
    fn reply(resp: PeerResponse) -> Result<Vec<KeyDigest>, CallError> {
        match resp {
            PeerResponse::Keys(k) => Ok(k),
            other => Err(unexpected(other)),
        }
    }
}

/// The stored versions of several keys; the peer answers a prefix that fits its budget.
#[derive(Clone, Debug)]
pub struct ReadMany(pub Vec<(Vec<u8>, Vec<u8>)>);

impl PeerCall for ReadMany {
    /// Encoded versions of the first keys asked for, in order.
    type Reply = Vec<Option<Vec<u8>>>;
    fn into_request(self) -> PeerRequest {
        PeerRequest::ReadMany(
            self.0
                .into_iter()
                .map(|(b, k)| (serde_bytes::ByteBuf::from(b), serde_bytes::ByteBuf::from(k)))
                .collect(),
        )
    }
    fn reply(resp: PeerResponse) -> Result<Self::Reply, CallError> {
        match resp {
            PeerResponse::Objects(o) => {
                Ok(o.into_iter().map(|b| b.map(|b| b.into_vec())).collect())
            }
            other => Err(unexpected(other)),
        }
    }
}

/// A batch read's keys at one replica; the replica answers a prefix that fits a frame.
#[derive(Clone, Debug)]
pub struct ReadKeys(pub Vec<(Vec<u8>, Vec<u8>)>);

/// The answer to [`ReadKeys`]: each key's version (encoded) or why it couldn't be read, and
/// whether the replica counts toward R (false while it is recovering).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Versions {
    pub whole: bool,
    pub versions: Vec<Result<Option<Vec<u8>>, String>>,
}

impl PeerCall for ReadKeys {
    type Reply = Versions;
    fn into_request(self) -> PeerRequest {
        PeerRequest::ReadKeys(
            self.0
                .into_iter()
                .map(|(b, k)| (serde_bytes::ByteBuf::from(b), serde_bytes::ByteBuf::from(k)))
                .collect(),
        )
    }
    fn reply(resp: PeerResponse) -> Result<Self::Reply, CallError> {
        match resp {
            PeerResponse::Versions { whole, versions } => Ok(Versions {
                whole,
                versions: versions
                    .into_iter()
                    .map(|v| v.map(|o| o.map(|b| b.into_vec())))
                    .collect(),
            }),
            other => Err(unexpected(other)),
        }
    }
}

/// Partition transfer: up to `limit` keys of a partition after the data key `after`.
#[derive(Clone, Debug)]
pub struct PartitionScan {
    pub partition: u32,
    pub after: Vec<u8>,
    pub limit: u32,
}

/// A page of a partition; `next` is the cursor to continue from, `None` at the end.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Page {
    pub items: Vec<Item>,
    pub next: Option<Vec<u8>>,
}

impl PeerCall for PartitionScan {
    type Reply = Page;
    fn into_request(self) -> PeerRequest {
        PeerRequest::PartitionScan {
            partition: self.partition,
            after: self.after,
            limit: self.limit,
        }
    }
    fn reply(resp: PeerResponse) -> Result<Page, CallError> {
        match resp {
            PeerResponse::Items { items, next } => Ok(Page { items, next }),
            other => Err(unexpected(other)),
        }
    }
}

/// Remove a tombstone every replica holds, if it is still this exact version.
#[derive(Clone, Debug)]
pub struct Purge {
    pub bucket: Vec<u8>,
    pub key: Vec<u8>,
    pub digest: Hash,
}

impl PeerCall for Purge {
    type Reply = ();
    fn into_request(self) -> PeerRequest {
        PeerRequest::Purge {
            bucket: self.bucket,
            key: self.key,
            digest: self.digest.to_vec(),
        }
    }
    fn reply(resp: PeerResponse) -> Result<(), CallError> {
        ack(resp)
    }
}

#[cfg(test)]
mod tests;

/// A listing's ask of one node (see `chorus_core::listing`).
#[derive(Clone, Debug)]
pub struct ListKeys {
    pub bucket: Vec<u8>,
    pub prefix: Vec<u8>,
    pub after: Option<Vec<u8>>,
    pub partitions: Vec<u32>,
    pub limit: u32,
}

impl PeerCall for ListKeys {
    type Reply = chorus_core::listing::Answer;
    fn into_request(self) -> PeerRequest {
        PeerRequest::ListKeys {
            bucket: self.bucket,
            prefix: self.prefix,
            after: self.after,
            partitions: self.partitions,
            limit: self.limit,
        }
    }
    fn reply(resp: PeerResponse) -> Result<Self::Reply, CallError> {
        match resp {
            PeerResponse::KeyList { keys, more } => Ok(chorus_core::listing::Answer {
                keys: keys.into_iter().map(|k| k.into_vec()).collect(),
                more,
            }),
            other => Err(unexpected(other)),
        }
    }
}

/// A truncation's ask of one owner: delete what it holds of a bucket in these partitions.
#[derive(Clone, Debug)]
pub struct Truncate {
    pub bucket: Vec<u8>,
    pub partitions: Vec<u32>,
}

impl PeerCall for Truncate {
    /// The keys the node deleted, per partition.
    type Reply = Vec<(u32, u64)>;
    fn into_request(self) -> PeerRequest {
        PeerRequest::Truncate {
            bucket: self.bucket,
            partitions: self.partitions,
        }
    }
    fn reply(resp: PeerResponse) -> Result<Self::Reply, CallError> {
        match resp {
            PeerResponse::Truncated(n) => Ok(n),
            other => Err(unexpected(other)),
        }
    }
}
