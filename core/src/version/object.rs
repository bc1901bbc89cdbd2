//! A key's stored state: its clock and its siblings, with update, merge, contexts and the
//! canonical encoding.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{
    decode_msgpack, write_msgpack, Actor, Dot, VersionError, VersionVector, OBJECT_FORMAT_V1,
};
use crate::context::Context;

/// One value (or tombstone) held for a key, tagged with the write that made it.
///
/// `expires_ms` and `ts` are set once, by the write's coordinator, and travel with the dot
/// unchanged. Unset, they are absent from the encoding, so objects written without them
/// encode (and hash) exactly as before they existed.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Sibling {
    /// The write that created this sibling.
    pub dot: Dot,
    /// The value; `None` is a tombstone left by a delete.
    #[serde(with = "serde_bytes")]
    pub value: Option<Vec<u8>>,
    /// Wall-clock milliseconds since the Unix epoch from which the value reads as deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_ms: Option<u64>,
    /// Hybrid logical clock timestamp of the write ([`crate::hlc`]); set in `lww` buckets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ts: Option<u64>,
}

impl Sibling {
    /// A sibling without expiry or timestamp.
    pub fn new(dot: Dot, value: Option<Vec<u8>>) -> Sibling {
        Sibling {
            dot,
            value,
            expires_ms: None,
            ts: None,
        }
    }

    /// Whether this sibling records a delete.
    pub fn is_tombstone(&self) -> bool {
        self.value.is_none()
    }

    /// Whether its value has expired at wall-clock time `now_ms`.
    pub fn is_expired_at(&self, now_ms: u64) -> bool {
        self.expires_ms.is_some_and(|e| e <= now_ms)
    }

    /// Whether it reads as a live value at `now_ms`: neither a tombstone nor expired.
    pub fn is_live_at(&self, now_ms: u64) -> bool {
        !self.is_tombstone() && !self.is_expired_at(now_ms)
    }

    /// Whether it will read as deleted at some point: a tombstone, or a value with expiry.
    pub fn is_mortal(&self) -> bool {
        self.is_tombstone() || self.expires_ms.is_some()
    }

    /// The order that decides `lww` buckets: timestamp (none counts as 0), then dot, then
    /// (only for a dot issued twice, which valid histories never reach) the rest, the raw
    /// timestamp last, so it is total: a missing and a zero timestamp must not tie, or the
    /// pick would depend on merge order.
    #[allow(clippy::type_complexity)]
    fn lww_key(&self) -> (u64, &Dot, &Option<Vec<u8>>, Option<u64>, Option<u64>) {
        (
            self.ts.unwrap_or(0),
            &self.dot,
            &self.value,
            self.expires_ms,
            self.ts,
        )
    }

    /// The deterministic pick between two copies of the same dot (see [`Object::merge`]).
    fn same_dot_key(&self) -> (&Option<Vec<u8>>, Option<u64>, Option<u64>) {
        (&self.value, self.expires_ms, self.ts)
    }
}

/// What the coordinator attaches to a write besides its value.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriteMeta {
    /// Absolute expiry, wall-clock milliseconds since the Unix epoch.
    pub expires_ms: Option<u64>,
    /// Hybrid logical clock timestamp.
    pub ts: Option<u64>,
}

/// How a bucket resolves concurrent writes. Every node must use the same policy for a
/// bucket (the node refuses peers whose bucket settings differ).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Conflicts {
    /// Keep concurrent writes as siblings for the client to resolve (the default).
    #[default]
    Siblings,
    /// Last writer wins: keep only the sibling with the greatest `(ts, dot)`.
    Lww,
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
        self.update_with(ctx, actor, floor, value, WriteMeta::default())
    }

    /// [`Object::update`] with the write's expiry and timestamp on the new sibling.
    pub fn update_with(
        &mut self,
        ctx: &Context,
        actor: &Actor,
        floor: u64,
        value: Option<Vec<u8>>,
        meta: WriteMeta,
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
        let sibling = Sibling {
            dot: dot.clone(),
            value,
            expires_ms: meta.expires_ms,
            ts: meta.ts,
        };
        match self.siblings.binary_search_by(|s| s.dot.cmp(&dot)) {
            // Only reachable once the counter has saturated.
            Ok(i) => self.siblings[i] = sibling,
            Err(i) => self.siblings.insert(i, sibling),
        }
        dot
    }

    /// An update in an `lww` bucket: like [`Object::update_with`], but the context only
    /// feeds the clock. The result keeps the single sibling with the greatest `(ts, dot)`
    /// among what was held and the new write, exactly what merging the new write into the
    /// held state gives, so every replica ends with the same sibling.
    pub fn update_lww(
        &mut self,
        ctx: &Context,
        actor: &Actor,
        floor: u64,
        value: Option<Vec<u8>>,
        meta: WriteMeta,
    ) -> Dot {
        let held = std::mem::take(&mut self.siblings);
        let dot = self.update_with(ctx, actor, floor, value, meta);
        self.siblings
            .extend(held.into_iter().filter(|s| s.dot != dot));
        self.resolve_lww();
        dot
    }

    /// Keeps only the sibling with the greatest `(ts, dot)`; the clock still covers the
    /// others, so they count as overwritten everywhere. Siblings without a timestamp
    /// (written before the bucket was `lww`) order as timestamp 0.
    pub fn resolve_lww(&mut self) {
        if self.siblings.len() > 1 {
            let best = std::mem::take(&mut self.siblings)
                .into_iter()
                .max_by(|a, b| a.lww_key().cmp(&b.lww_key()));
            self.siblings.extend(best);
        }
    }

    /// Drops siblings expired at `now_ms`. Their dots stay covered by the clock, so they
    /// count as overwritten: nothing they replaced comes back, and a replica still holding
    /// them drops them at the next merge.
    pub fn drop_expired(&mut self, now_ms: u64) {
        self.siblings.retain(|s| !s.is_expired_at(now_ms));
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
                        if let (Some(m), Some(t)) = (mine.next(), theirs.next()) {
                            if t.same_dot_key() > m.same_dot_key() {
                                out.push(t.clone());
                            } else {
                                out.push(m);
                            }
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
                    // Same dot: merge would only change the sibling if theirs
                    // is greater (see `merge`).
                    if t.same_dot_key() > m.same_dot_key() {
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

    /// Join under a bucket's conflict policy. For `lww` the result is the joined clock
    /// with the single greatest `(ts, dot)` sibling of either side: a max on a total order
    /// times a clock join, so still commutative, associative and idempotent, and every
    /// replica converges to the same sibling whatever the merge order.
    pub fn merge_as(&mut self, other: &Object, conflicts: Conflicts) {
        match conflicts {
            Conflicts::Siblings => self.merge(other),
            Conflicts::Lww => {
                self.siblings.extend(other.siblings.iter().cloned());
                self.resolve_lww();
                self.clock.join(&other.clock);
            }
        }
    }

    /// Whether [`Object::merge_as`] with `other` would change `self`.
    pub fn merge_changes_as(&self, other: &Object, conflicts: Conflicts) -> bool {
        match conflicts {
            Conflicts::Siblings => self.merge_changes(other),
            Conflicts::Lww => {
                let mut m = self.clone();
                m.merge_as(other, conflicts);
                m != *self
            }
        }
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

    /// Values live at wall-clock time `now_ms` (tombstones and expired values skipped),
    /// in sibling order.
    pub fn values_at(&self, now_ms: u64) -> Vec<&[u8]> {
        self.siblings
            .iter()
            .filter(|s| !s.is_expired_at(now_ms))
            .filter_map(|s| s.value.as_deref())
            .collect()
    }

    /// Whether any sibling is live at `now_ms`.
    pub fn is_found_at(&self, now_ms: u64) -> bool {
        self.siblings.iter().any(|s| s.is_live_at(now_ms))
    }

    /// Siblings that read as deleted at `now_ms`: tombstones and expired values.
    pub fn dead_count_at(&self, now_ms: u64) -> usize {
        self.siblings
            .iter()
            .filter(|s| !s.is_live_at(now_ms))
            .count()
    }

    /// Whether the object has siblings and all of them read as deleted at `now_ms`: what
    /// tombstone garbage collection may purge.
    pub fn is_dead_at(&self, now_ms: u64) -> bool {
        !self.siblings.is_empty() && self.siblings.iter().all(|s| !s.is_live_at(now_ms))
    }

    /// When the object will read as deleted for good, if it will without another write:
    /// every sibling is a tombstone or expires. The time is the latest expiry (0 when all
    /// are tombstones); the tombstone index ages the key from the later of this and its
    /// last change.
    pub fn dead_from(&self) -> Option<u64> {
        if self.siblings.is_empty() || !self.siblings.iter().all(Sibling::is_mortal) {
            return None;
        }
        Some(
            self.siblings
                .iter()
                .filter_map(|s| s.expires_ms)
                .max()
                .unwrap_or(0),
        )
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
        self.context_showing_at(0, shown)
    }

    /// [`Object::context_showing`] at wall-clock time `now_ms`: a value expired then reads
    /// as deleted, so it is never "left out" and the context covers it.
    pub fn context_showing_at(&self, now_ms: u64, shown: impl Fn(&[u8]) -> bool) -> Context {
        let mut cut: BTreeMap<&Actor, u64> = BTreeMap::new();
        for s in &self.siblings {
            if s.is_live_at(now_ms) && s.value.as_deref().is_some_and(|v| !shown(v)) {
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
            .filter(|s| {
                (!s.is_live_at(now_ms) || s.value.as_deref().is_none_or(&shown))
                    && !vv.covers(&s.dot)
            })
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
