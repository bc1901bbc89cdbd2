//! Client library for Chorus, a leaderless replicated key-value store.
//!
//! A [`Client`] connects over QUIC with mutual TLS, learns the cluster's ring and sends each
//! request straight to a node in the key's preference list, failing over to the next one
//! when a node is unreachable. Every call takes its own consistency [`Level`]: `One`,
//! `Quorum`, `All` or an explicit count.
//!
//! Reads return every concurrent value (siblings) with an opaque [`CausalContext`]; pass
//! that context back with the next write to replace what was read.

mod batch;
pub mod client;
mod dial;
pub mod exchange;
pub mod link;
mod listing;
pub mod report;
pub mod tls;
pub mod wire;

/// The protocol types, from `chorus-proto`.
pub use chorus_proto as proto;

pub use batch::{KeyGet, KeyPut, WriteEntry};
pub use client::{CausalContext, Client, ClientConfig, Error, GetResult, WriteOptions};
pub use listing::KeyPage;
pub use proto::{Level, LevelError};
