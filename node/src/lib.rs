//! The Chorus storage node: configuration, storage, versions, replication and the command
//! line. The `chorus` binary adds the command line on top.

pub mod anti_entropy;
pub mod budget;
pub mod certs;
pub mod config;
pub mod coordinator;
pub mod gossip;
pub mod handoff;
pub mod hints;
mod intake;
pub mod layout;
pub mod membership;
pub mod merkle;
pub mod replica;
pub mod rpc;
pub mod server;
pub mod stats;
pub mod storage;
pub mod transfer;
pub mod transport;
pub mod version;
