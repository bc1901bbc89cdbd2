//! Versioning of stored values: dotted version vectors with siblings.
//!
//! Every key holds an [`Object`]: a causal context (`clock`, a [`VersionVector`])
//! plus the set of concurrent values not yet overwritten (`siblings`), each tagged
//! with the [`Dot`] — `(actor, counter)` — of the write that created it. This is
//! the "dot kernel" / Riak-DVV scheme:
//!
//! * A write coordinated by `actor` with the client's context `ctx` drops every
//!   sibling whose dot `ctx` covers (the client saw it, so the new value replaces
//!   it), mints the next dot for `actor`, and folds `ctx` into the clock
//!   ([`Object::update`]). A write without context only adds a sibling.
//! * Replicas reconcile with [`Object::merge`]. Per dot, a replica is in one of
//!   three states: *unknown* (not covered by its clock), *present* (a sibling), or
//!   *overwritten* (covered by its clock but no sibling). Merge takes, per dot,
//!   the maximum of `unknown < present < overwritten`, so it is a lattice join:
//!   commutative, associative and idempotent for any valid objects, and a write
//!   is only ever dropped because some replica knows it was overwritten.
//!
//! # Why a plain version vector is an exact causal context here
//!
//! The clock is a compact `actor -> max counter` map, read as the downward-closed
//! set of dots `{(a, 1..=vv[a])}`. In general that over-approximates what a
//! replica has seen (a general dot kernel needs a "dot cloud" for gaps). Here it
//! is exact, in the sense that matters: a clock never covers a dot that exists for
//! the key and that its state has not seen (as a sibling or as overwritten).
//!
//! * An [`Actor`] is one node *process*: the epoch is a fresh random number on every
//!   start, never read back from disk. So a restart, a restore of an older copy of
//!   the data directory, an unclean shutdown that loses the log's tail or a wiped
//!   disk all continue under a new actor, and no dot can be issued twice.
//! * Within a process, one writer thread mints every dot, from one node-wide
//!   counter: dot = `max(counter, clock[actor], ctx[actor]) + 1`. Counters of an
//!   actor therefore only increase, across keys and across purges (a purge forgets
//!   the key's clock, not the counter). Each key's dots of an actor form an
//!   increasing sequence with gaps, and dot `n` is minted from the key's local
//!   object, which already covers the actor's earlier dots for that key.
//! * The gaps are harmless: a gap counter was used for another key or not at all,
//!   and a dot is scoped to its key, so a clock covering it claims nothing that
//!   exists. A purged key's old dots are covered again by its next dot; they were
//!   tombstones that every replica held, so covering them drops nothing live.
//! * Objects always travel as full states (never deltas), so whoever learns dot
//!   `(a, n)` also learns the clock of the state that minted it, which covers the
//!   earlier dots of `a` for the key.
//!
//! Clients hold [`Context`]s: a version vector plus single dots. Read contexts
//! are merged object clocks (exact). A write returns what its writer saw plus its
//! own dot ([`Object::written_context`]); that dot is folded into the vector only
//! where the coordinator's exact state shows it hides no sibling the writer did
//! not see. A single dot in a context is never absorbed into a clock that does not
//! already cover it: raising a downward-closed vector to it could hide concurrent
//! siblings. At worst a write then leaves a sibling it could have replaced, never
//! loses one. Contexts are sealed with a MAC per key ([`crate::context`]), so a
//! forged or foreign context (e.g. one from a different key) is refused before it
//! can cover dots not yet minted.
//!
//! Because no dot is issued twice, two replicas never hold the same dot with
//! different values. [`Object::merge`] still resolves that case deterministically
//! ("greater bytes win") so that merge stays a join on any input, but it is
//! unreachable from valid histories.
//!
//! # Encodings
//!
//! [`Object::encode`] is one format byte followed by named MessagePack, so the
//! layout can evolve. Siblings are sorted
//! by dot and clocks are `BTreeMap`s, so equal states encode to identical bytes
//! and [`Object::digest`] can be compared across replicas.

mod clock;
mod dot;
mod object;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_meta;

use std::io::Cursor;

use serde::de::DeserializeOwned;
use serde::Serialize;

pub use clock::VersionVector;
pub use dot::{Actor, Dot};
pub use object::{Conflicts, Object, Sibling, WriteMeta};

/// Soft limit on the number of siblings an object should hold.
///
/// [`Object::update`] and [`Object::merge`] never enforce it (dropping a
/// sibling silently would lose a write, and decode must stay able to read
/// anything that was stored); callers decide what to do when
/// [`Object::sibling_count`] exceeds it, e.g. refuse blind writes to the key.
pub const MAX_SIBLINGS: usize = 256;

/// Leading byte of [`Object::encode`] output.
pub const OBJECT_FORMAT_V1: u8 = 1;

/// Our structures nest only a few levels; a low limit keeps hostile input
/// (deeply nested unknown fields) cheap to reject.
const MAX_DECODE_DEPTH: usize = 32;

/// Errors from decoding objects.
#[derive(Debug, thiserror::Error)]
pub enum VersionError {
    /// The input had no bytes at all.
    #[error("empty {what} encoding")]
    Empty {
        /// What was being decoded ("object" or "causal context").
        what: &'static str,
    },
    /// The leading format byte is not one this build understands.
    #[error(
        "unsupported {what} format version {found} (this build understands version {supported})"
    )]
    UnknownFormat {
        /// What was being decoded.
        what: &'static str,
        /// The format byte found.
        found: u8,
        /// The format byte this build writes and reads.
        supported: u8,
    },
    /// The MessagePack body is malformed or truncated.
    #[error("malformed {what}: {source}")]
    Malformed {
        /// What was being decoded.
        what: &'static str,
        /// The underlying decoder error.
        #[source]
        source: rmp_serde::decode::Error,
    },
    /// Bytes were left over after a complete value.
    #[error("{count} unexpected trailing bytes after {what}")]
    TrailingBytes {
        /// What was being decoded.
        what: &'static str,
        /// How many bytes were left.
        count: usize,
    },
    /// A version vector listed the same actor twice.
    #[error("version vector lists actor {0} more than once")]
    DuplicateActor(Actor),
    /// A sibling had counter 0, which is never minted.
    #[error("sibling dot {0} has counter 0, which is never issued")]
    ZeroCounter(Dot),
    /// Two siblings had the same dot.
    #[error("object has two siblings with dot {0}")]
    DuplicateDot(Dot),
    /// A sibling's dot is not covered by the object's clock.
    #[error("sibling dot {0} is not covered by the object's clock")]
    UncoveredDot(Dot),
}

/// Append the named MessagePack encoding of `value` to `out`.
pub(crate) fn write_msgpack<T: Serialize>(out: &mut Vec<u8>, value: &T) {
    // Writing into a Vec cannot fail with I/O errors, every sequence here has
    // a known length, and our Serialize impls raise no custom errors, so an
    // error is a bug in this module, not a property of any input.
    #[allow(clippy::expect_used)]
    rmp_serde::encode::write_named(out, value)
        .expect("MessagePack encoding of version data into a Vec cannot fail");
}

/// Decode one MessagePack value that must span all of `body`.
pub(crate) fn decode_msgpack<T: DeserializeOwned>(
    what: &'static str,
    body: &[u8],
) -> Result<T, VersionError> {
    let mut de = rmp_serde::Deserializer::new(Cursor::new(body));
    de.set_max_depth(MAX_DECODE_DEPTH);
    let value =
        T::deserialize(&mut de).map_err(|source| VersionError::Malformed { what, source })?;
    let used = usize::try_from(de.position()).unwrap_or(usize::MAX);
    if used < body.len() {
        return Err(VersionError::TrailingBytes {
            what,
            count: body.len() - used,
        });
    }
    Ok(value)
}
