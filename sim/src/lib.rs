//! A deterministic simulator of a whole Chorus cluster in one process, after FoundationDB's
//! and TigerBeetle's: nodes, clients, a faulty network, crashing disks and skewed clocks
//! driven by one event queue in virtual time and one seeded RNG, so a seed replays byte for
//! byte. Each node's logic is a small driver over `chorus-core` (versions, contexts,
//! quorums); the histories go to the `chorus-check` checkers.
//!
//! [`run`] plays one seed; [`config::Bug`] switches on a negative control.

pub mod client;
pub mod config;
pub mod disk;
pub mod engine;
pub mod msg;
pub mod nemesis;
pub mod net;
pub mod node;
pub mod placement;
pub mod report;
mod world;

pub use config::{Bug, SimConfig};
pub use report::Report;
pub use world::run;

/// The bucket every simulated key lives in.
pub const BUCKET: &[u8] = b"sim";
