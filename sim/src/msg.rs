//! Messages between simulated clients and nodes, and between nodes. Objects travel whole,
//! as they do between real nodes.

use std::rc::Rc;

use chorus_core::context::Context;
use chorus_core::membership::ClusterState;
use chorus_core::version::Object;

use crate::net::MsgKind;

/// Why a replica write was sent (they differ only in the fault class they fall into).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Push {
    /// A coordinator's fan-out.
    Write,
    /// Hint replay.
    Hint,
    /// Read repair (no answer expected).
    Repair,
}

/// A replica's answer to a read.
#[derive(Clone, Debug)]
pub enum ReadAnswer {
    /// Its copy (`None`: no such key).
    Found(Option<Object>),
    /// It lost or restored data and hasn't caught up: don't count it. Its copy comes
    /// along, as `chorus-node`'s does (the wiped-counts control counts it).
    Recovering(Option<Object>),
}

/// Every message.
#[derive(Clone, Debug)]
pub enum Msg {
    /// Client read with level `r`.
    Get {
        op: u64,
        key: String,
        r: usize,
    },
    /// Client write (`value: None` deletes) with its context and level `w`.
    Put {
        op: u64,
        key: String,
        ctx: Context,
        value: Option<Vec<u8>>,
        w: usize,
    },
    /// A read's result: the merged object (`None`: not found) or an error.
    GetReply {
        op: u64,
        result: Result<Option<Object>, String>,
    },
    /// A write's result: the context it hands back, or an error (maybe applied).
    PutReply {
        op: u64,
        result: Result<Context, String>,
    },
    /// Merge this object (write fan-out, hint, read repair).
    Replicate {
        req: u64,
        key: String,
        object: Object,
        why: Push,
    },
    /// A replica merged (or refused) a `Replicate`.
    Ack {
        req: u64,
        ok: bool,
    },
    /// Send me your copy of `key`.
    Read {
        req: u64,
        key: String,
    },
    ReadReply {
        req: u64,
        answer: ReadAnswer,
    },
    /// An exchange for one partition: the sender's key digests. A recovering sender only
    /// pulls (`pull_only`): it sends nothing back.
    AeOffer {
        xid: u64,
        partition: u32,
        /// The root of the sender's Merkle tree of the partition: equal roots end the
        /// exchange at once.
        root: [u8; 32],
        digests: Vec<(String, [u8; 32])>,
        pull_only: bool,
    },
    /// The answer: objects the offerer lacks or holds differently, and the keys the answerer
    /// wants pushed. `refused`: the answerer serves no data now (it is recovering).
    AeAnswer {
        xid: u64,
        partition: u32,
        objects: Vec<(String, Object)>,
        want: Vec<String>,
        refused: bool,
    },
    /// The offerer's objects for the keys the answerer wanted.
    AePush {
        objects: Vec<(String, Object)>,
    },
    /// Tombstone purge: what is your digest of `key`?
    PurgeQuery {
        req: u64,
        key: String,
    },
    /// The replica's version of the key, encoded (`None`: no copy, or it is recovering).
    PurgeAnswer {
        req: u64,
        held: Option<Vec<u8>>,
    },
    /// Purge `key` if it still has exactly this digest.
    Purge {
        key: String,
        digest: [u8; 32],
    },
    Ping,
    Pong,
    /// Membership gossip: the sender's cluster state; the receiver merges it and answers
    /// with its own merged state.
    Gossip(Rc<ClusterState>),
    GossipReply(Rc<ClusterState>),
}

impl Msg {
    /// The fault class of the message.
    pub fn kind(&self) -> MsgKind {
        match self {
            Msg::Get { .. } | Msg::Put { .. } | Msg::GetReply { .. } | Msg::PutReply { .. } => {
                MsgKind::Client
            }
            Msg::Replicate { why, .. } => match why {
                Push::Write => MsgKind::Replicate,
                Push::Hint => MsgKind::Hint,
                Push::Repair => MsgKind::Repair,
            },
            Msg::Ack { .. } => MsgKind::Replicate,
            Msg::Read { .. } | Msg::ReadReply { .. } => MsgKind::Read,
            Msg::AeOffer { .. } | Msg::AeAnswer { .. } | Msg::AePush { .. } => MsgKind::AntiEntropy,
            Msg::PurgeQuery { .. } | Msg::PurgeAnswer { .. } | Msg::Purge { .. } => MsgKind::Purge,
            Msg::Ping | Msg::Pong => MsgKind::Ping,
            Msg::Gossip(_) | Msg::GossipReply(_) => MsgKind::Gossip,
        }
    }

    /// A short tag and the key, for the trace.
    pub fn tag(&self) -> (&'static str, &str) {
        match self {
            Msg::Get { key, .. } => ("get", key),
            Msg::Put { key, .. } => ("put", key),
            Msg::GetReply { .. } => ("get-reply", ""),
            Msg::PutReply { .. } => ("put-reply", ""),
            Msg::Replicate { key, .. } => ("replicate", key),
            Msg::Ack { .. } => ("ack", ""),
            Msg::Read { key, .. } => ("read", key),
            Msg::ReadReply { .. } => ("read-reply", ""),
            Msg::AeOffer { .. } => ("ae-offer", ""),
            Msg::AeAnswer { .. } => ("ae-answer", ""),
            Msg::AePush { .. } => ("ae-push", ""),
            Msg::PurgeQuery { key, .. } => ("purge-query", key),
            Msg::PurgeAnswer { .. } => ("purge-answer", ""),
            Msg::Purge { key, .. } => ("purge", key),
            Msg::Ping => ("ping", ""),
            Msg::Pong => ("pong", ""),
            Msg::Gossip(_) => ("gossip", ""),
            Msg::GossipReply(_) => ("gossip-reply", ""),
        }
    }
}
