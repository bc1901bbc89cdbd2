//! The Chorus storage node: configuration, storage, versions, replication and the command
//! line. The `chorus` binary adds the command line on top.

// The protocol core, re-exported under the paths the node has always used.
pub use chorus_core::{context, merkle, version};

pub mod anti_entropy;
pub mod batch;
pub mod budget;
pub mod call;
mod catch_up;
pub mod certs;
mod client_api;
pub mod config;
mod coordinate_get;
mod coordinate_put;
pub mod entropy;
mod forward;
mod get_many;
pub mod gossip;
pub mod handoff;
pub mod hints;
pub mod identity;
mod intake;
pub mod layout;
mod link;
mod listing;
pub mod membership;
pub mod network;
pub mod node;
mod peer_api;
mod persist;
mod probe;
mod put_many;
mod read_repair;
pub mod recovery;
pub mod replica;
pub mod roles;
pub mod rpc;
/// The node's former module, kept so the paths other modules and users name still work.
pub mod server {
    pub(crate) use crate::client_api::op_name;
    pub use crate::node::{Node, ServerError, WORKERS_STOP_WITHIN};
}
pub mod stats;
pub mod storage;
mod tombstone_gc;
pub mod transfer;
pub mod transport;
pub mod worker;
