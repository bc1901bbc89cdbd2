//! Causal contexts as clients hold them: what a writer has seen, sealed so that only this
//! cluster's nodes can have issued it, and only for the key it names.
//!
//! A [`Context`] is a version vector (everything a read saw: the merged clock, which is
//! exact, see [`crate::version`]) plus single dots (writes the client made itself since, or
//! knows of one by one). A write with a context replaces the siblings it covers.
//!
//! A context covering dots that were never seen would make later writes look already
//! overwritten; a forged one with counters near 2^64 would freeze a key. So clients get
//! contexts as opaque bytes, `[format] [MessagePack body] [MAC]`, where the MAC is a keyed
//! BLAKE3 over the bucket, the key and the body, keyed by a key derived from
//! `cluster.secret`. Anything else (tampered, truncated, from another key or another cluster)
//! is refused before it is decoded, and the encoding is bounded in size.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::version::{Actor, Dot, VersionVector};

/// Leading byte of sealed contexts. (Format 1 was an unauthenticated version vector.)
pub const CONTEXT_FORMAT_V2: u8 = 2;

/// Largest sealed context accepted. Read contexts are object clocks, which gain one entry
/// per node process that coordinated a write to the key; this leaves room for thousands.
pub const MAX_CONTEXT_BYTES: usize = 64 * 1024;

/// Most entries (version vector entries plus single dots) in an accepted context.
pub const MAX_CONTEXT_ENTRIES: usize = 4096;

/// Most single dots a write's context carries on; older ones are dropped first, which can
/// only make a later write keep a value as a sibling, never lose one.
pub const MAX_CONTEXT_DOTS: usize = 64;

/// Bytes of the MAC kept (128 bits).
const MAC_BYTES: usize = 16;

const KEY_PURPOSE: &str = "chorus causal context MAC v2";

/// Why a context was refused.
#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    #[error("causal context of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge { len: usize, max: usize },
    #[error(
        "causal context is not valid for this key: forged, corrupted, or from another key or cluster"
    )]
    Invalid,
}

/// What a writer has seen: every dot of `vv` (read as downward closed) and each of `dots`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Context {
    pub vv: VersionVector,
    /// Sorted, without duplicates, none covered by `vv`.
    pub dots: Vec<Dot>,
}

impl From<VersionVector> for Context {
    fn from(vv: VersionVector) -> Self {
        Context {
            vv,
            dots: Vec::new(),
        }
    }
}

impl Context {
    /// Whether the writer saw `dot`.
    pub fn covers(&self, dot: &Dot) -> bool {
        self.vv.covers(dot) || self.dots.binary_search(dot).is_ok()
    }

    /// The highest counter this context mentions for `actor`.
    pub fn max_for(&self, actor: &Actor) -> u64 {
        let dots = self
            .dots
            .iter()
            .filter(|d| d.actor == *actor)
            .map(|d| d.counter);
        dots.fold(self.vv.get(actor), u64::max)
    }

    /// Everything either context covers.
    pub fn join(&mut self, other: &Context) {
        self.vv.join(&other.vv);
        self.dots.extend(other.dots.iter().cloned());
        self.normalize();
    }

    /// Sorts the dots, drops repeats and those `vv` covers, and keeps at most
    /// [`MAX_CONTEXT_DOTS`] (the newest counters).
    pub fn normalize(&mut self) {
        let vv = &self.vv;
        self.dots.retain(|d| !vv.covers(d));
        self.dots.sort();
        self.dots.dedup();
        if self.dots.len() > MAX_CONTEXT_DOTS {
            self.dots
                .sort_by(|a, b| b.counter.cmp(&a.counter).then_with(|| a.cmp(b)));
            self.dots.truncate(MAX_CONTEXT_DOTS);
            self.dots.sort();
        }
    }

    /// Number of version vector entries plus dots.
    pub fn entries(&self) -> usize {
        self.vv.len() + self.dots.len()
    }
}

/// `(node, epoch, counter)`: the compact wire shape of a vector entry or a dot.
type Entry = (String, u64, u64);

fn entry(actor: &Actor, counter: u64) -> Entry {
    (actor.node.clone(), actor.epoch, counter)
}

/// The shared secret of a cluster: 32 bytes, written as 64 hex digits in `node.toml`.
/// Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct ClusterSecret([u8; 32]);

impl ClusterSecret {
    /// A secret from 32 bytes, which the caller draws from a good random source.
    pub fn from_bytes(bytes: [u8; 32]) -> ClusterSecret {
        ClusterSecret(bytes)
    }

    /// Parses 64 hex digits.
    pub fn from_hex(s: &str) -> Result<ClusterSecret, String> {
        let s = s.trim();
        let bad = || {
            format!(
                "must be 64 hex digits (32 random bytes), got {} characters; generate one with `openssl rand -hex 32`",
                s.len()
            )
        };
        if s.len() != 64 || !s.is_ascii() {
            return Err(bad());
        }
        let mut b = [0u8; 32];
        for (i, out) in b.iter_mut().enumerate() {
            *out = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
        }
        Ok(ClusterSecret(b))
    }

    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl fmt::Debug for ClusterSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClusterSecret(<redacted>)")
    }
}

impl Serialize for ClusterSecret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for ClusterSecret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        ClusterSecret::from_hex(&s).map_err(serde::de::Error::custom)
    }
}

/// Seals and opens contexts with the key derived from the cluster secret.
#[derive(Clone)]
pub struct ContextKey([u8; 32]);

impl fmt::Debug for ContextKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ContextKey(<redacted>)")
    }
}

impl ContextKey {
    pub fn new(secret: &ClusterSecret) -> ContextKey {
        ContextKey(blake3::derive_key(KEY_PURPOSE, &secret.0))
    }

    fn mac(&self, bucket: &[u8], key: &[u8], sealed: &[u8]) -> [u8; MAC_BYTES] {
        let mut h = blake3::Hasher::new_keyed(&self.0);
        // Lengths first, so (bucket, key) pairs can't be shifted into each other.
        h.update(&(bucket.len() as u64).to_le_bytes());
        h.update(bucket);
        h.update(&(key.len() as u64).to_le_bytes());
        h.update(key);
        h.update(sealed);
        let mut out = [0u8; MAC_BYTES];
        out.copy_from_slice(&h.finalize().as_bytes()[..MAC_BYTES]);
        out
    }

    /// The opaque bytes handed to a client for `ctx` on `(bucket, key)`.
    pub fn seal(&self, bucket: &[u8], key: &[u8], ctx: &Context) -> Vec<u8> {
        let vv: Vec<Entry> = ctx.vv.iter().map(|(a, c)| entry(a, c)).collect();
        let dots: Vec<Entry> = ctx
            .dots
            .iter()
            .map(|d| entry(&d.actor, d.counter))
            .collect();
        let mut out = vec![CONTEXT_FORMAT_V2];
        // Tuples and strings only: encoding into a Vec cannot fail.
        if let Ok(body) = rmp_serde::to_vec(&(vv, dots)) {
            out.extend_from_slice(&body);
        }
        let mac = self.mac(bucket, key, &out);
        out.extend_from_slice(&mac);
        out
    }

    /// Checks and decodes bytes from a client. Empty bytes are "no context" (a blind write).
    pub fn open(&self, bucket: &[u8], key: &[u8], bytes: &[u8]) -> Result<Context, ContextError> {
        if bytes.is_empty() {
            return Ok(Context::default());
        }
        if bytes.len() > MAX_CONTEXT_BYTES {
            return Err(ContextError::TooLarge {
                len: bytes.len(),
                max: MAX_CONTEXT_BYTES,
            });
        }
        if bytes.len() < 1 + MAC_BYTES || bytes[0] != CONTEXT_FORMAT_V2 {
            return Err(ContextError::Invalid);
        }
        let (sealed, mac) = bytes.split_at(bytes.len() - MAC_BYTES);
        let expected = self.mac(bucket, key, sealed);
        // Constant time, so the MAC can't be guessed byte by byte.
        let diff = expected
            .iter()
            .zip(mac)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        if diff != 0 {
            return Err(ContextError::Invalid);
        }
        // Authentic, so written by a node of this cluster; still decoded defensively.
        let (vv, dots): (Vec<Entry>, Vec<Entry>) =
            rmp_serde::from_slice(&sealed[1..]).map_err(|_| ContextError::Invalid)?;
        if vv.len() + dots.len() > MAX_CONTEXT_ENTRIES {
            return Err(ContextError::Invalid);
        }
        let mut ctx = Context {
            vv: vv
                .into_iter()
                .map(|(node, epoch, c)| (Actor::new(node, epoch), c))
                .collect(),
            dots: dots
                .into_iter()
                .filter(|(_, _, c)| *c != 0)
                .map(|(node, epoch, c)| Dot::new(Actor::new(node, epoch), c))
                .collect(),
        };
        ctx.normalize();
        Ok(ctx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> ContextKey {
        ContextKey::new(&ClusterSecret([7; 32]))
    }

    fn sample() -> Context {
        let a = Actor::new("n1", 42);
        let b = Actor::new("n2", u64::MAX);
        Context {
            vv: [(a.clone(), 3), (b.clone(), 9)].into_iter().collect(),
            dots: vec![Dot::new(a, 7), Dot::new(Actor::new("n3", 1), 1)],
        }
    }

    #[test]
    fn round_trips_and_empty_is_blind() {
        let k = key();
        for ctx in [Context::default(), sample()] {
            let sealed = k.seal(b"b", b"k", &ctx);
            assert_eq!(sealed[0], CONTEXT_FORMAT_V2);
            assert_eq!(k.open(b"b", b"k", &sealed).ok(), Some(ctx));
        }
        assert_eq!(k.open(b"b", b"k", &[]).ok(), Some(Context::default()));
    }

    #[test]
    fn sealed_size() {
        // A random epoch takes 9 bytes; the MAC 16. The unsealed format 1 took 28 bytes for
        // one actor and 26 per further actor (named MessagePack).
        let vv = |n: usize| -> VersionVector {
            (1..=n)
                .map(|i| (Actor::new(format!("n{i}"), u64::MAX - i as u64), 5))
                .collect()
        };
        for (n, bytes) in [(1, 34), (3, 62)] {
            assert_eq!(key().seal(b"b", b"k", &Context::from(vv(n))).len(), bytes);
        }
    }

    #[test]
    fn refuses_other_keys_other_clusters_and_tampering() {
        let k = key();
        let sealed = k.seal(b"b", b"k", &sample());
        let invalid = |r: Result<Context, ContextError>| matches!(r, Err(ContextError::Invalid));
        assert!(invalid(k.open(b"b", b"other", &sealed)));
        assert!(invalid(k.open(b"other", b"k", &sealed)));
        // Shifting bytes between bucket and key changes the MAC too.
        let shifted = k.seal(b"bk", b"", &sample());
        assert!(invalid(k.open(b"b", b"k", &shifted)));
        let other = ContextKey::new(&ClusterSecret([8; 32]));
        assert!(invalid(other.open(b"b", b"k", &sealed)));
        for i in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 0x40;
            assert!(k.open(b"b", b"k", &bad).is_err(), "flip at {i}");
        }
        for cut in 1..sealed.len() {
            assert!(k.open(b"b", b"k", &sealed[..cut]).is_err(), "cut at {cut}");
        }
        // The old unauthenticated format is refused with the same message.
        let e = k.open(b"b", b"k", &[1, 0x90]).unwrap_err().to_string();
        assert!(e.contains("not valid for this key"), "{e}");
        let huge = vec![CONTEXT_FORMAT_V2; MAX_CONTEXT_BYTES + 1];
        assert!(matches!(
            k.open(b"b", b"k", &huge),
            Err(ContextError::TooLarge { .. })
        ));
    }

    #[test]
    fn covers_join_and_normalize() {
        let a = Actor::new("n1", 1);
        let mut c = Context::from([(a.clone(), 2)].into_iter().collect::<VersionVector>());
        assert!(c.covers(&Dot::new(a.clone(), 2)) && !c.covers(&Dot::new(a.clone(), 5)));
        c.join(&Context {
            vv: VersionVector::new(),
            dots: vec![Dot::new(a.clone(), 5), Dot::new(a.clone(), 1)],
        });
        assert_eq!(c.dots, vec![Dot::new(a.clone(), 5)]);
        assert!(c.covers(&Dot::new(a.clone(), 5)) && !c.covers(&Dot::new(a.clone(), 4)));
        assert_eq!(c.max_for(&a), 5);
        c.dots = (10..200).map(|i| Dot::new(a.clone(), i)).collect();
        c.normalize();
        assert_eq!(c.dots.len(), MAX_CONTEXT_DOTS);
        assert_eq!(c.dots.last().map(|d| d.counter), Some(199));
    }

    #[test]
    fn secret_hex_and_redaction() {
        let s = ClusterSecret::from_bytes([0x5a; 32]);
        assert_ne!(s, ClusterSecret::from_bytes([0x5b; 32]));
        let hex = s.to_hex();
        assert_eq!(hex.len(), 64);
        assert_eq!(ClusterSecret::from_hex(&hex).ok(), Some(s.clone()));
        assert!(!format!("{s:?}").contains(&hex[..8]));
        assert!(ClusterSecret::from_hex("abc").is_err());
        assert!(ClusterSecret::from_hex(&"zz".repeat(32)).is_err());
        assert!(ClusterSecret::from_hex(&"é".repeat(32)).is_err());
    }
}
