//! Jepsen-style verification of Chorus: a real multi-process cluster behind fault-injecting
//! relays, concurrent clients recording a history, a seeded nemesis, and checkers.

/// The history checkers live in `chorus-check`, shared with the simulator.
pub use chorus_check::{checker, recreate};
pub mod relay;
