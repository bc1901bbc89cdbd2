//! The `[limits]` and `[timeouts]` sections: sizes, budgets and deadlines.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::duration;

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
