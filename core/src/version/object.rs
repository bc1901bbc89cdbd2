//! A key's stored state: its clock and its siblings, with update, merge, contexts and the
//! canonical encoding.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{
    decode_msgpack, write_msgpack, Actor, Dot, VersionError, VersionVector, OBJECT_FORMAT_V1,
};
use crate::context::Context;

/// One value (or tombstone) held for a key, tagged with the write that made it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Sibling {
    /// The write that created this sibling.
    pub dot: Dot,
    /// The value; `None` is a tombstone left by a delete.
    #[serde(with = "serde_bytes")]
    pub value: Option<Vec<u8>>,
}

impl Sibling {
    /// Whether this sibling records a delete.
    pub fn is_tombstone(&self) -> bool {
        self.value.is_none()
    }
}

/// Everything a replica stores for one key: causal context plus siblings.
///
/// Invariants (kept by every constructor and checked by [`Object::decode`]):
/// every sibling's dot is covered by the clock and has counter ≥ 1, no two
/// siblings share a dot, and siblings are sorted by dot.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "RawObject")]
pub struct Object {
    clock: VersionVector,
    siblings: Vec<Sibling>,
}

/// Wire shape of [`Object`] before its invariants are checked.
#[derive(Deserialize)]
struct RawObject {
    clock: Vec<(Actor, u64)>,
    siblings: Vec<Sibling>,
}

impl TryFrom<RawObject> for Object {
    type Error = VersionError;

    fn try_from(raw: RawObject) -> Result<Self, Self::Error> {
        Object::from_parts(VersionVector::from_entries(raw.clock)?, raw.siblings)
    }
}

impl Object {
    /// The state of a key nobody has written: empty clock, no siblings.
    pub fn new() -> Self {
        Object::default()
    }

    /// Build an object from a clock and siblings in any order, checking the
    /// invariants (siblings are sorted here).
    pub fn from_parts(
        clock: VersionVector,
        mut siblings: Vec<Sibling>,
    ) -> Result<Object, VersionError> {
        siblings.sort_by(|a, b| a.dot.cmp(&b.dot));
        for sibling in &siblings {
            if sibling.dot.counter == 0 {
                return Err(VersionError::ZeroCounter(sibling.dot.clone()));
            }
            if !clock.covers(&sibling.dot) {
                return Err(VersionError::UncoveredDot(sibling.dot.clone()));
            }
        }
        if let Some(pair) = siblings.windows(2).find(|w| w[0].dot == w[1].dot) {
            return Err(VersionError::DuplicateDot(pair[0].dot.clone()));
        }
        Ok(Object { clock, siblings })
    }

    /// The causal context (all dots this replica has seen).
    pub fn clock(&self) -> &VersionVector {
        &self.clock
    }

    /// All siblings, tombstones included, sorted by dot.
    pub fn siblings(&self) -> &[Sibling] {
        &self.siblings
    }

    /// A write coordinated locally by `actor`, with the context `ctx` the
    /// client sent (empty for a blind write). `None` writes a tombstone
    /// (a delete). `floor` is the highest counter `actor` has minted for any
    /// key (the writer's node-wide counter). Returns the new sibling's dot.
    ///
    /// Siblings `ctx` covers are dropped: the client saw them, so this write
    /// supersedes them. Others are concurrent with it and stay.
    ///
    /// The counter saturates at `u64::MAX` instead of overflowing; that needs
    /// 2^64 writes by one process, and from then on its writes to the key
    /// replace each other.
    pub fn update(
        &mut self,
        ctx: &Context,
        actor: &Actor,
        floor: u64,
        value: Option<Vec<u8>>,
    ) -> Dot {
        self.siblings.retain(|s| !ctx.covers(&s.dot));
        // `floor` alone makes the dot new; the other terms keep the key's own
        // sequence increasing even for a caller without a floor.
        let counter = floor
            .max(self.clock.get(actor))
            .max(ctx.max_for(actor))
            .saturating_add(1);
        // The new write causally follows everything the client saw, so the
        // clock absorbs `ctx.vv`: copies of those dots arriving later are known
        // to be overwritten. Single dots are not absorbed (see the module doc).
        self.clock.join(&ctx.vv);
        self.clock.raise(actor, counter);
        let dot = Dot::new(actor.clone(), counter);
        match self.siblings.binary_search_by(|s| s.dot.cmp(&dot)) {
            // Only reachable once the counter has saturated.
            Ok(i) => self.siblings[i].value = value,
            Err(i) => self.siblings.insert(
                i,
                Sibling {
                    dot: dot.clone(),
                    value,
                },
            ),
        }
        dot
    }

    /// The context a write hands back: `ctx` (what its writer saw) plus `dot`
    /// (its own write). Call on the state [`Object::update`] returned.
    ///
    /// A single dot `(x, n)` is folded into the vector when this state's clock
    /// covers `(x, 1..=n)` and no sibling of `x` in that range is one the writer
    /// did not see: the range then holds only dots the writer saw, dots known
    /// overwritten, or counters never used for this key. So the context stays a
    /// plain vector unless there are concurrent siblings, and covers nothing
    /// live that the writer did not see.
    pub fn written_context(&self, ctx: &Context, dot: &Dot) -> Context {
        let mut out = Context {
            vv: ctx.vv.clone(),
            dots: Vec::new(),
        };
        let mut dots = ctx.dots.clone();
        dots.push(dot.clone());
        dots.sort();
        dots.dedup();
        // Ascending per actor, so each fold can build on the previous one.
        for d in &dots {
            let from = out.vv.get(&d.actor);
            let hides_unseen = self.siblings.iter().any(|s| {
                s.dot.actor == d.actor
                    && s.dot.counter > from
                    && s.dot.counter <= d.counter
                    && s.dot != *dot
                    && ctx.dots.binary_search(&s.dot).is_err()
            });
            if d.counter > from && self.clock.get(&d.actor) >= d.counter && !hides_unseen {
                out.vv.raise(&d.actor, d.counter);
            }
        }
        let vv = &out.vv;
        out.dots = dots.into_iter().filter(|d| !vv.covers(d)).collect();
        if out.dots.len() > crate::context::MAX_CONTEXT_DOTS {
            // Keep the writer's own dot; drop the oldest carried ones.
            let own = out
                .dots
                .iter()
                .position(|d| d == dot)
                .map(|i| out.dots.remove(i));
            out.dots
                .sort_by(|a, b| b.counter.cmp(&a.counter).then_with(|| a.cmp(b)));
            out.dots.truncate(crate::context::MAX_CONTEXT_DOTS - 1);
            out.dots.extend(own);
            out.dots.sort();
        }
        out
    }

    /// Join `other` into `self` (replica reconciliation).
    ///
    /// A sibling survives if both sides have it, or if the side lacking it has
    /// not seen its dot (it is concurrent, not overwritten). If both sides hold
    /// the same dot with different values, the greater value wins so the result
    /// is still order-independent. That needs a dot issued twice, which the
    /// per-process epochs and the writer's counter rule out (see the module
    /// doc): a deterministic fallback that valid histories never reach.
    pub fn merge(&mut self, other: &Object) {
        let mine = std::mem::take(&mut self.siblings);
        let mut out = Vec::with_capacity(mine.len().max(other.siblings.len()));
        let mut mine = mine.into_iter().peekable();
        let mut theirs = other.siblings.iter().peekable();
        loop {
            let take_mine = match (mine.peek(), theirs.peek()) {
                (None, None) => break,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (Some(m), Some(t)) => {
                    if m.dot == t.dot {
                        // Both have it: keep it, with a deterministic value.
                        if let (Some(mut m), Some(t)) = (mine.next(), theirs.next()) {
                            if t.value > m.value {
                                m.value = t.value.clone();
                            }
                            out.push(m);
                        }
                        continue;
                    }
                    m.dot < t.dot
                }
            };
            if take_mine {
                if let Some(m) = mine.next() {
                    if !other.clock.covers(&m.dot) {
                        out.push(m);
                    }
                }
            } else if let Some(t) = theirs.next() {
                // `self.clock` is still the pre-merge clock here.
                if !self.clock.covers(&t.dot) {
                    out.push(t.clone());
                }
            }
        }
        self.siblings = out;
        self.clock.join(&other.clock);
    }

    /// Whether `self` already contains everything `other` knows, i.e.
    /// `merge(self, other) == self`.
    ///
    /// That holds iff `other.clock <= self.clock`, no sibling of `self` is one
    /// that `other` has seen and overwritten (covered by `other.clock` but
    /// absent from `other`), and every sibling of `other` is either in `self`
    /// or overwritten in `self`. A replica `r` is stale with respect to a
    /// reconciled object `m` iff `!r.descends(&m)`.
    pub fn descends(&self, other: &Object) -> bool {
        if !self.clock.descends(&other.clock) {
            return false;
        }
        let mut mine = self.siblings.iter().peekable();
        let mut theirs = other.siblings.iter().peekable();
        loop {
            match (mine.peek(), theirs.peek()) {
                (None, None) => return true,
                (Some(m), t) if t.is_none_or(|t| m.dot < t.dot) => {
                    if other.clock.covers(&m.dot) {
                        return false;
                    }
                    mine.next();
                }
                (m, Some(t)) if m.is_none_or(|m| t.dot < m.dot) => {
                    if !self.clock.covers(&t.dot) {
                        return false;
                    }
                    theirs.next();
                }
                (Some(m), Some(t)) => {
                    // Same dot: merge would only change the value if theirs
                    // is greater (see `merge`).
                    if t.value > m.value {
                        return false;
                    }
                    mine.next();
                    theirs.next();
                }
                // Unreachable: the guards above cover every one-sided case.
                _ => return false,
            }
        }
    }

    /// Whether merging `other` into `self` would change `self`
    /// (`!self.descends(other)`).
    pub fn merge_changes(&self, other: &Object) -> bool {
        !self.descends(other)
    }

    /// Live values (tombstones skipped), in sibling order.
    pub fn values(&self) -> Vec<&[u8]> {
        self.siblings
            .iter()
            .filter_map(|s| s.value.as_deref())
            .collect()
    }

    /// Whether any sibling holds a live value.
    pub fn is_found(&self) -> bool {
        self.siblings.iter().any(|s| s.value.is_some())
    }

    /// The context to hand a client with a read (the clock, which is exact);
    /// it sends it back with the next write to replace what it saw.
    pub fn context(&self) -> Context {
        Context::from(self.clock.clone())
    }

    /// The context for a read that showed only some live values (a reply cut to fit its
    /// frame): it covers no sibling whose value was left out, so a read-modify-write with it
    /// keeps those as siblings instead of silently replacing values its writer never saw.
    /// Per actor the clock is cut below the lowest left-out dot; shown siblings above a cut
    /// travel as single dots, up to the context's limit (one past it is simply not covered,
    /// and stays a sibling too).
    pub fn context_showing(&self, shown: impl Fn(&[u8]) -> bool) -> Context {
        let mut cut: BTreeMap<&Actor, u64> = BTreeMap::new();
        for s in &self.siblings {
            if s.value.as_deref().is_some_and(|v| !shown(v)) {
                let c = cut.entry(&s.dot.actor).or_insert(u64::MAX);
                *c = (*c).min(s.dot.counter.saturating_sub(1));
            }
        }
        let mut vv = VersionVector::new();
        for (actor, counter) in self.clock.iter() {
            vv.raise(
                actor,
                counter.min(cut.get(actor).copied().unwrap_or(u64::MAX)),
            );
        }
        let mut dots: Vec<Dot> = self
            .siblings
            .iter()
            .filter(|s| s.value.as_deref().is_none_or(&shown) && !vv.covers(&s.dot))
            .map(|s| s.dot.clone())
            .collect();
        dots.sort();
        dots.truncate(crate::context::MAX_CONTEXT_DOTS);
        Context { vv, dots }
    }

    /// Number of siblings, tombstones included.
    pub fn sibling_count(&self) -> usize {
        self.siblings.len()
    }

    /// Whether the object has siblings and all of them are tombstones.
    pub fn is_tombstone_only(&self) -> bool {
        !self.siblings.is_empty() && self.siblings.iter().all(Sibling::is_tombstone)
    }

    /// Canonical encoding for disk and wire: [`OBJECT_FORMAT_V1`] followed by
    /// named MessagePack. Equal objects give identical bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![OBJECT_FORMAT_V1];
        write_msgpack(&mut out, self);
        out
    }

    /// Decode [`Object::encode`] output, checking the invariants (siblings are
    /// re-sorted if needed). Does not enforce [`MAX_SIBLINGS`], so anything
    /// that was stored stays readable.
    pub fn decode(bytes: &[u8]) -> Result<Object, VersionError> {
        const WHAT: &str = "object";
        let (&format, body) = bytes
            .split_first()
            .ok_or(VersionError::Empty { what: WHAT })?;
        if format != OBJECT_FORMAT_V1 {
            return Err(VersionError::UnknownFormat {
                what: WHAT,
                found: format,
                supported: OBJECT_FORMAT_V1,
            });
        }
        let raw: RawObject = decode_msgpack(WHAT, body)?;
        Object::try_from(raw)
    }

    /// BLAKE3 of [`Object::encode`]: equal states give equal digests on every
    /// replica (for Merkle anti-entropy).
    pub fn digest(&self) -> [u8; 32] {
        *blake3::hash(&self.encode()).as_bytes()
    }
}
