//! Checkers for recorded Chorus histories, independent of how the history was produced: the
//! process-level fault suite (`chorus-verify`) and the deterministic simulator (`chorus-sim`)
//! record the same [`checker::Event`]s and hand them to the same checkers.

pub mod checker;
pub mod recreate;
