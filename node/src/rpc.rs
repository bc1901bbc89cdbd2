//! Node-to-node messages. They travel on connections negotiated with the peer ALPN, which
//! only certificates issued to nodes may open.

use serde::{Deserialize, Serialize};

use chorus_client::proto::{Request, Response};

/// A request from one node to another.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PeerRequest {
    /// Failure detection probe.
    Ping { from: String },
    /// The replica's stored version of a key.
    Read {
        #[serde(with = "serde_bytes")]
        bucket: Vec<u8>,
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
    },
    /// Merge this version of a key into the replica.
    Replicate {
        #[serde(with = "serde_bytes")]
        bucket: Vec<u8>,
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
        /// An encoded `version::Object`.
        #[serde(with = "serde_bytes")]
        object: Vec<u8>,
    },
    /// Coordinate a client write here: the node that took it isn't one of the key's replicas.
    Coordinate(Request),
}

/// A node's answer to a [`PeerRequest`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PeerResponse {
    Pong {
        node: String,
        epoch: u64,
    },
    /// The replica's version (encoded), or nothing stored.
    Object(#[serde(with = "serde_bytes")] Option<Vec<u8>>),
    Ack,
    Coordinated(Response),
    Error(String),
}
