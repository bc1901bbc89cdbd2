//! Budgets for work in flight: a count and a byte total that a request, or the background
//! work a request leaves behind, charges before it starts and gives back when it ends.
//!
//! Past a budget, work is refused at once (the caller answers "overloaded") instead of
//! queued: a queue would hold the request's bytes while the client waits, which is how
//! memory grew without bound under heavy writes. Charges are plain atomics, so refusing
//! costs nothing.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::config::Limits;

/// A budget is used up; `what` names it and the setting that sizes it.
#[derive(Debug, Clone, thiserror::Error)]
#[error("node overloaded: {what} ({used} of {limit} in use); retry later")]
pub struct Exhausted {
    pub what: &'static str,
    pub used: usize,
    pub limit: usize,
}

/// One budget: at most `max_count` charges and `max_bytes` bytes at once.
#[derive(Debug)]
pub struct Budget {
    count_name: &'static str,
    bytes_name: &'static str,
    max_count: usize,
    max_bytes: usize,
    count: AtomicUsize,
    bytes: AtomicUsize,
}

/// What a piece of work holds of a budget; dropping it gives it back.
#[derive(Debug)]
pub struct Charge {
    budget: Arc<Budget>,
    count: usize,
    bytes: usize,
}

impl Budget {
    /// `count_name` and `bytes_name` say which settings size the budget, for the refusal.
    pub fn new(
        count_name: &'static str,
        max_count: usize,
        bytes_name: &'static str,
        max_bytes: usize,
    ) -> Arc<Budget> {
        Arc::new(Budget {
            count_name,
            bytes_name,
            max_count,
            max_bytes,
            count: AtomicUsize::new(0),
            bytes: AtomicUsize::new(0),
        })
    }

    /// Takes `count` slots and `bytes` bytes, or nothing if either would pass its limit.
    pub fn try_charge(self: &Arc<Self>, count: usize, bytes: usize) -> Result<Charge, Exhausted> {
        take(&self.count, count, self.max_count).map_err(|used| Exhausted {
            what: self.count_name,
            used,
            limit: self.max_count,
        })?;
        if let Err(used) = take(&self.bytes, bytes, self.max_bytes) {
            self.count.fetch_sub(count, Ordering::AcqRel);
            return Err(Exhausted {
                what: self.bytes_name,
                used,
                limit: self.max_bytes,
            });
        }
        Ok(Charge {
            budget: self.clone(),
            count,
            bytes,
        })
    }

    /// Slots and bytes in use now.
    pub fn used(&self) -> (usize, usize) {
        (
            self.count.load(Ordering::Acquire),
            self.bytes.load(Ordering::Acquire),
        )
    }
}

impl Charge {
    /// Adds `bytes` to the charge if the budget has room.
    pub fn try_grow(&mut self, bytes: usize) -> Result<(), Exhausted> {
        let b = &self.budget;
        take(&b.bytes, bytes, b.max_bytes).map_err(|used| Exhausted {
            what: b.bytes_name,
            used,
            limit: b.max_bytes,
        })?;
        self.bytes += bytes;
        Ok(())
    }

    /// Adds `bytes` whatever the budget holds: for work already admitted whose size turned
    /// out larger than estimated (bounded by the object size limit).
    pub fn grow(&mut self, bytes: usize) {
        self.budget.bytes.fetch_add(bytes, Ordering::AcqRel);
        self.bytes += bytes;
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn count(&self) -> usize {
        self.count
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        self.budget.count.fetch_sub(self.count, Ordering::AcqRel);
        self.budget.bytes.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

/// Adds `n` to `cell` unless that passes `max`; on refusal returns what was in use.
fn take(cell: &AtomicUsize, n: usize, max: usize) -> Result<(), usize> {
    cell.fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
        used.checked_add(n).filter(|total| *total <= max)
    })
    .map(|_| ())
}

/// The last known encoded size of large objects, by storage key: a write to a key whose
/// siblings make it large is charged for that size before it is applied, not after.
#[derive(Default)]
pub struct SizeHints {
    sizes: Mutex<HashMap<Vec<u8>, usize>>,
}

/// Objects smaller than this aren't remembered: the value size estimates them well enough.
const HINT_ABOVE: usize = 64 * 1024;
/// Most keys remembered; the map starts over when full (hot keys come back at once).
const HINT_KEYS: usize = 4096;

impl SizeHints {
    pub fn get(&self, key: &[u8]) -> usize {
        lock(&self.sizes).get(key).copied().unwrap_or(0)
    }

    pub fn note(&self, key: &[u8], size: usize) {
        let mut sizes = lock(&self.sizes);
        if size < HINT_ABOVE {
            sizes.remove(key);
            return;
        }
        if sizes.len() >= HINT_KEYS && !sizes.contains_key(key) {
            sizes.clear();
        }
        sizes.insert(key.to_vec(), size);
    }
}

/// Value bytes of the writes to each key in flight at this node. One hot key can't take
/// the node: concurrent writes to a key become siblings that each later write copies,
/// encodes and sends, so their cost grows with their number. Past the limit, a write to
/// the key is refused as overloaded.
pub struct KeyGate {
    limit: usize,
    keys: Mutex<HashMap<Vec<u8>, usize>>,
}

/// A write's place at its key; dropping it leaves.
pub struct KeyPass<'a> {
    gate: &'a KeyGate,
    key: Vec<u8>,
    bytes: usize,
}

impl KeyGate {
    pub fn new(limit: usize) -> KeyGate {
        KeyGate {
            limit,
            keys: Mutex::new(HashMap::new()),
        }
    }

    /// Enters a write of `bytes` to `key`; the first write to a key always gets in.
    pub fn enter(&self, key: &[u8], bytes: usize) -> Result<KeyPass<'_>, Exhausted> {
        let mut keys = lock(&self.keys);
        let used = keys.get(key).copied().unwrap_or(0);
        if used > 0 && used + bytes > self.limit {
            return Err(Exhausted {
                what: "write bytes in flight to this key (limits.max_key_write_bytes)",
                used,
                limit: self.limit,
            });
        }
        keys.insert(key.to_vec(), used + bytes);
        Ok(KeyPass {
            gate: self,
            key: key.to_vec(),
            bytes,
        })
    }
}

impl Drop for KeyPass<'_> {
    fn drop(&mut self) {
        let mut keys = lock(&self.gate.keys);
        if let Some(used) = keys.get_mut(&self.key) {
            *used = used.saturating_sub(self.bytes);
            if *used == 0 {
                keys.remove(&self.key);
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The budgets of one node, sized from `[limits]`.
pub struct Budgets {
    /// Client requests being read or served.
    pub client: Arc<Budget>,
    /// Peer requests being read or served (pings and gossip are never refused).
    pub peer: Arc<Budget>,
    /// Replica writes and hints a write left running after it answered.
    pub fanout: Arc<Budget>,
    /// Sizes of large objects, for charging `fanout` before a write is applied.
    pub sizes: SizeHints,
    /// Writes in flight per key.
    pub keys: KeyGate,
}

impl Budgets {
    pub fn new(l: &Limits) -> Budgets {
        Budgets {
            client: Budget::new(
                "client requests in flight (limits.max_inflight_requests)",
                l.max_inflight_requests,
                "client request bytes in flight (limits.max_request_bytes)",
                l.max_request_bytes,
            ),
            peer: Budget::new(
                "peer requests in flight (limits.max_peer_requests)",
                l.max_peer_requests,
                "peer request bytes in flight (limits.max_peer_request_bytes)",
                l.max_peer_request_bytes,
            ),
            fanout: Budget::new(
                "replica writes in flight (limits.max_fanout)",
                l.max_fanout,
                "replica write bytes in flight (limits.max_fanout_bytes)",
                l.max_fanout_bytes,
            ),
            sizes: SizeHints::default(),
            keys: KeyGate::new(l.max_key_write_bytes),
        }
    }
}

/// Checks the `[limits]` that size the budgets: `(field, reason)` of the first problem.
pub fn validate(l: &Limits) -> Result<(), (&'static str, String)> {
    for (name, v) in [
        ("limits.max_peer_requests", l.max_peer_requests),
        ("limits.max_fanout", l.max_fanout),
        ("limits.max_key_write_bytes", l.max_key_write_bytes),
    ] {
        if v == 0 {
            return Err((name, "must be greater than 0".into()));
        }
    }
    // One largest frame must fit, or such a request could never be served.
    for (name, v) in [
        ("limits.max_request_bytes", l.max_request_bytes),
        ("limits.max_peer_request_bytes", l.max_peer_request_bytes),
        ("limits.max_fanout_bytes", l.max_fanout_bytes),
    ] {
        if v < l.max_frame_bytes {
            return Err((
                name,
                format!(
                    "{v} is smaller than limits.max_frame_bytes ({}); one largest request must fit",
                    l.max_frame_bytes
                ),
            ));
        }
    }
    if l.request_read_timeout.is_zero() {
        return Err((
            "limits.request_read_timeout",
            "must be greater than 0".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charges_are_refused_past_either_limit_and_given_back_on_drop() {
        let b = Budget::new("count", 2, "bytes", 100);
        let a = b.try_charge(1, 60).expect("first");
        let e = b.try_charge(1, 50).expect_err("bytes over");
        assert_eq!(e.what, "bytes");
        assert_eq!(b.used(), (1, 60), "a refused charge takes nothing");
        let mut c = b.try_charge(1, 40).expect("second");
        assert_eq!(b.try_charge(1, 0).expect_err("count over").what, "count");
        assert!(c.try_grow(1).is_err());
        drop(a);
        c.try_grow(10).expect("room again");
        c.grow(100);
        assert_eq!(b.used(), (1, 150));
        drop(c);
        assert_eq!(b.used(), (0, 0));
    }
}
