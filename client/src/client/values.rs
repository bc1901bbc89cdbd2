//! The values requests take and return: the causal context, a read's result and a write's
//! options.

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;

use super::Error;
use crate::proto::{Level, ValueReply};

/// The opaque causal context of a read. Pass it back with a write to replace what was read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CausalContext(Vec<u8>);

impl CausalContext {
    pub fn from_bytes(bytes: Vec<u8>) -> Self {
        CausalContext(bytes)
    }
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for CausalContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&self.0))
    }
}

impl FromStr for CausalContext {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(s.trim())
            .map(CausalContext)
            .map_err(|e| Error::InvalidContext(e.to_string()))
    }
}

/// The result of a read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GetResult {
    /// Whether any live value exists.
    pub found: bool,
    /// One entry per sibling; more than one means concurrent writes to resolve.
    pub values: Vec<Vec<u8>>,
    /// Pass this back with the next put or delete of the key.
    pub context: CausalContext,
    /// Deletes (tombstones) still held for the key.
    pub tombstones: u32,
    /// Some values were left out of the reply (too large together); `context` covers them.
    pub truncated: bool,
}

impl From<ValueReply> for GetResult {
    fn from(v: ValueReply) -> Self {
        GetResult {
            found: v.found,
            values: v.values.into_iter().map(|b| b.into_vec()).collect(),
            context: CausalContext(v.context),
            tombstones: v.tombstones,
            truncated: v.truncated,
        }
    }
}

/// Options of a write.
#[derive(Clone, Debug, Default)]
pub struct WriteOptions {
    /// Context of an earlier read: the write replaces what that read saw.
    pub context: Option<CausalContext>,
    /// Write consistency.
    pub w: Level,
    /// Sloppy quorum: when replicas are down, fallback nodes hold the write for them and
    /// count toward W. Survives more failures, but a later read may miss the write until
    /// the fallbacks hand it back.
    pub sloppy: bool,
    /// Time to live of a put: the value then reads as deleted. `None` takes the bucket's
    /// default TTL, if it has one. Must be more than zero and at most
    /// [`crate::proto::MAX_TTL`]. Deletes ignore it.
    pub ttl: Option<std::time::Duration>,
}

impl WriteOptions {
    /// The TTL as sent, checked first.
    pub(super) fn ttl_ms(&self) -> Result<Option<u64>, super::Error> {
        checked_ttl_ms(self.ttl)
    }

    pub(super) fn context_bytes(&self) -> Vec<u8> {
        self.context
            .as_ref()
            .map(|c| c.0.clone())
            .unwrap_or_default()
    }
}

/// A TTL as sent on the wire, or why it can't be.
pub(crate) fn checked_ttl_ms(
    ttl: Option<std::time::Duration>,
) -> Result<Option<u64>, super::Error> {
    match ttl {
        None => Ok(None),
        Some(t) => crate::proto::check_ttl(t)
            .map(|()| Some(crate::proto::ttl_millis(t)))
            .map_err(super::Error::BadRequest),
    }
}
