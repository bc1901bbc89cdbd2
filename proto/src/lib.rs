//! The Chorus wire format, shared by clients and nodes: the client protocol messages and
//! ALPN ids ([`messages`], re-exported at the root) and the frame encoding ([`wire`]).
//!
//! No I/O and no async runtime: reading and writing frames on a stream is the transport's
//! job (`chorus_client::wire`), so anything that only needs to encode or decode messages,
//! such as a simulator or another language's tests, can use this crate alone.

pub mod messages;
pub mod ttl;
pub mod wire;

pub use messages::*;
pub use ttl::*;

/// Byte strings in messages (batch keys and values), re-exported for users of the protocol.
pub use serde_bytes::ByteBuf;
