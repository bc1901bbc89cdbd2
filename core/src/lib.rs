//! Chorus's protocol core: every decision that keeps data safe, as plain data and
//! deterministic state machines. Nothing here does I/O or reads a clock: callers pass events
//! (replica answers, failures, the current time) in and carry the returned actions out. The
//! node (`chorus-node`) drives these over QUIC and RocksDB; the simulator (`chorus-sim`)
//! drives the same code over a simulated network and in-memory disks.

pub mod anti_entropy;
pub mod context;
pub mod failure_detector;
pub mod get;
pub mod hints;
pub mod hlc;
pub mod listing;
pub mod membership;
pub mod merkle;
pub mod plan;
pub mod put;
pub mod quorum;
pub mod recovery;
pub mod replica;
pub mod tombstone;
pub mod transfer;
pub mod version;
