//! Jepsen-style verification of Chorus: a real multi-process cluster behind fault-injecting
//! relays, concurrent clients recording a history, a seeded nemesis, and checkers.

pub mod checker;
pub mod recreate;
pub mod relay;
