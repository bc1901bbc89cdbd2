//! The Chorus storage node: configuration, storage, versions, replication and the command
//! line. The `chorus` binary adds the command line on top.

// The protocol core, re-exported under the paths the node has always used.
pub use chorus_core::{context, coordinator, merkle, version};

pub mod anti_entropy;
pub mod batch;
pub mod budget;
mod catch_up;
pub mod certs;
pub mod config;
pub mod entropy;
pub mod gossip;
pub mod handoff;
pub mod hints;
pub mod identity;
mod intake;
pub mod layout;
pub mod membership;
mod persist;
mod probe;
pub mod recovery;
pub mod replica;
pub mod roles;
pub mod rpc;
pub mod server;
pub mod stats;
pub mod storage;
mod tombstone_gc;
pub mod transfer;
pub mod transport;
pub mod worker;
