//! Durable hints: writes a replica missed, held until it can take them.
//!
//! A hint is the full version of one key for one target node, stored in the `hints` column
//! family under `len(target) ‖ target ‖ seq (u64 BE)`, so each target's hints form one
//! ordered range. Replay reads a batch, sends it, and deletes the hints only after the
//! target acknowledged them: a crash or restart replays them again (merging is idempotent),
//! never loses them. Hints older than the expiry are dropped; anti-entropy covers the rest.
//! Which hints are due and which expired is `chorus_core::hints`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chorus_core::hints::expired;
use serde::{Deserialize, Serialize};

use crate::batch::{Budget, ITEM_OVERHEAD};
use crate::storage::{Op, Storage, StorageError, Table};

/// One held write.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hint {
    #[serde(with = "serde_bytes")]
    pub bucket: Vec<u8>,
    #[serde(with = "serde_bytes")]
    pub key: Vec<u8>,
    /// An encoded `version::Object`.
    #[serde(with = "serde_bytes")]
    pub object: Vec<u8>,
    /// Milliseconds since the Unix epoch when the hint was stored.
    pub created_ms: u64,
}

const FORMAT: u8 = 1;

/// Hints read from storage at a time while filling a batch.
const PAGE: usize = 32;

/// The hint store of one node.
pub struct Hints {
    storage: Arc<dyn Storage>,
    seq: AtomicU64,
    pending: Mutex<BTreeMap<String, u64>>,
    expiry: Duration,
}

/// Wall-clock milliseconds, as this node believes them. `CHORUS_CLOCK_OFFSET_MS` (signed)
/// skews the node's clock, for fault-injection tests of clock-dependent logic (hint expiry,
/// tombstone grace).
pub fn now_ms() -> u64 {
    static OFFSET: std::sync::OnceLock<i64> = std::sync::OnceLock::new();
    let offset = *OFFSET.get_or_init(|| {
        std::env::var("CHORUS_CLOCK_OFFSET_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    });
    let real = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default();
    real.saturating_add(offset).max(0) as u64
}

fn prefix(target: &str) -> Vec<u8> {
    let t = target.as_bytes();
    let mut p = Vec::with_capacity(1 + t.len());
    // Node ids are at most 63 bytes (config validation).
    p.push(t.len().min(255) as u8);
    p.extend_from_slice(&t[..t.len().min(255)]);
    p
}

fn prefix_end(p: &[u8]) -> Vec<u8> {
    let mut end = p.to_vec();
    end.push(0xff);
    end.extend_from_slice(&[0xff; 8]);
    end
}

fn decode(bytes: &[u8]) -> Option<Hint> {
    match bytes.split_first() {
        Some((&FORMAT, rest)) => rmp_serde::from_slice(rest).ok(),
        _ => None,
    }
}

fn target_of(key: &[u8]) -> Option<String> {
    let len = *key.first()? as usize;
    let t = key.get(1..1 + len)?;
    String::from_utf8(t.to_vec()).ok()
}

impl Hints {
    /// Opens the store and counts what it holds. Blocking.
    pub fn open(storage: Arc<dyn Storage>, expiry: Duration) -> Result<Hints, StorageError> {
        let mut pending: BTreeMap<String, u64> = BTreeMap::new();
        let mut max_seq = 0u64;
        let mut start = Vec::new();
        loop {
            let page = storage.scan(Table::Hints, &start, &[0xff; 300], 4096)?;
            let Some((last, _)) = page.last() else { break };
            let mut next = last.clone();
            next.push(0);
            for (k, _) in &page {
                if let Some(t) = target_of(k) {
                    *pending.entry(t).or_default() += 1;
                }
                if k.len() >= 8 {
                    let mut s = [0u8; 8];
                    s.copy_from_slice(&k[k.len() - 8..]);
                    max_seq = max_seq.max(u64::from_be_bytes(s));
                }
            }
            start = next;
        }
        Ok(Hints {
            storage,
            seq: AtomicU64::new(max_seq + 1),
            pending: Mutex::new(pending),
            expiry,
        })
    }

    /// Stores a hint for `target`. Blocking.
    pub fn add(&self, target: &str, hint: &Hint) -> Result<(), StorageError> {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        let mut key = prefix(target);
        key.extend_from_slice(&seq.to_be_bytes());
        let mut value = vec![FORMAT];
        rmp_serde::encode::write_named(&mut value, hint)
            .map_err(|e| StorageError::Write(format!("encoding hint: {e}")))?;
        self.storage
            .write(vec![Op::Put(Table::Hints, key, value)])?;
        *self.lock().entry(target.to_string()).or_default() += 1;
        Ok(())
    }

    /// Hints held per target.
    pub fn pending(&self) -> BTreeMap<String, u64> {
        self.lock().clone()
    }

    pub fn pending_for(&self, target: &str) -> u64 {
        self.lock().get(target).copied().unwrap_or(0)
    }

    /// Live hints for `target`, oldest first, with their storage keys: up to `max` of them
    /// and `max_bytes` in all (a single larger hint comes alone). Expired and unreadable
    /// hints met on the way are deleted; returns how many were. Blocking.
    #[allow(clippy::type_complexity)]
    pub fn batch(
        &self,
        target: &str,
        max: usize,
        max_bytes: usize,
    ) -> Result<(Vec<(Vec<u8>, Hint)>, u64), StorageError> {
        let p = prefix(target);
        let end = prefix_end(&p);
        let now = Duration::from_millis(now_ms());
        let mut budget = Budget::new(max, max_bytes);
        let mut live = Vec::new();
        let mut dead = Vec::new();
        let mut start = p;
        // Small pages, so a run of large hints is never all read into memory at once.
        let page_len = max.clamp(1, PAGE);
        'scan: loop {
            let entries = self.storage.scan(Table::Hints, &start, &end, page_len)?;
            let full = entries.len() == page_len;
            let Some((last, _)) = entries.last() else {
                break;
            };
            let mut next = last.clone();
            next.push(0);
            for (k, v) in entries {
                match decode(&v) {
                    Some(h) if !expired(Duration::from_millis(h.created_ms), now, self.expiry) => {
                        let size = h.bucket.len() + h.key.len() + h.object.len() + ITEM_OVERHEAD;
                        if !budget.take(size) {
                            break 'scan;
                        }
                        live.push((k, h));
                    }
                    _ => dead.push(k),
                }
            }
            if !full {
                break;
            }
            start = next;
        }
        let expired = dead.len() as u64;
        if !dead.is_empty() {
            self.remove(target, dead)?;
        }
        Ok((live, expired))
    }

    /// Deletes delivered (or dead) hints. Blocking.
    pub fn remove(&self, target: &str, keys: Vec<Vec<u8>>) -> Result<(), StorageError> {
        let n = keys.len() as u64;
        self.storage.write(
            keys.into_iter()
                .map(|k| Op::Delete(Table::Hints, k))
                .collect(),
        )?;
        let mut pending = self.lock();
        if let Some(c) = pending.get_mut(target) {
            *c = c.saturating_sub(n);
            if *c == 0 {
                pending.remove(target);
            }
        }
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, u64>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::MemStorage;

    fn hint(k: &str, created_ms: u64) -> Hint {
        Hint {
            bucket: b"b".to_vec(),
            key: k.as_bytes().to_vec(),
            object: vec![1, 2, 3],
            created_ms,
        }
    }

    #[test]
    fn add_batch_remove_and_reopen() {
        let mem = Arc::new(MemStorage::default());
        let h = Hints::open(mem.clone(), Duration::from_secs(3600)).expect("open");
        for i in 0..5 {
            h.add("n2", &hint(&format!("k{i}"), now_ms())).expect("add");
        }
        h.add("n3", &hint("x", now_ms())).expect("add");
        assert_eq!(h.pending_for("n2"), 5);
        let (batch, expired) = h.batch("n2", 3, usize::MAX).expect("batch");
        assert_eq!(expired, 0);
        assert_eq!(
            batch.iter().map(|(_, h)| h.key.clone()).collect::<Vec<_>>(),
            vec![b"k0".to_vec(), b"k1".to_vec(), b"k2".to_vec()],
            "oldest first"
        );
        h.remove("n2", batch.into_iter().map(|(k, _)| k).collect())
            .expect("remove");
        assert_eq!(h.pending_for("n2"), 2);

        // Reopening counts what is left and never reuses a sequence number.
        let again = Hints::open(mem, Duration::from_secs(3600)).expect("reopen");
        assert_eq!(again.pending_for("n2"), 2);
        assert_eq!(again.pending_for("n3"), 1);
        again.add("n2", &hint("k9", now_ms())).expect("add");
        let (batch, _) = again.batch("n2", 10, usize::MAX).expect("batch");
        assert_eq!(
            batch.last().map(|(_, h)| h.key.clone()),
            Some(b"k9".to_vec())
        );
        assert_eq!(batch.len(), 3);
    }

    #[test]
    fn expired_hints_are_dropped() {
        let mem = Arc::new(MemStorage::default());
        let h = Hints::open(mem, Duration::from_secs(60)).expect("open");
        h.add("n2", &hint("old", now_ms() - 120_000)).expect("add");
        h.add("n2", &hint("new", now_ms())).expect("add");
        let (batch, expired) = h.batch("n2", 10, usize::MAX).expect("batch");
        assert_eq!(expired, 1);
        assert_eq!(batch.len(), 1);
        assert_eq!(h.pending_for("n2"), 1);
    }

    #[test]
    fn batches_are_cut_by_bytes_and_a_large_hint_goes_alone() {
        let mem = Arc::new(MemStorage::default());
        let h = Hints::open(mem, Duration::from_secs(3600)).expect("open");
        let big = |k: &str, size: usize| Hint {
            object: vec![7; size],
            ..hint(k, now_ms())
        };
        // 100 hints of 10 KB: more than one page of the scan.
        for i in 0..100 {
            h.add("n2", &big(&format!("k{i:03}"), 10_000)).expect("add");
        }
        let (b, _) = h.batch("n2", 256, 45_000).expect("batch");
        assert_eq!(b.len(), 4, "4 x 10 KB fit in 45 KB");
        let (b, _) = h.batch("n2", 256, usize::MAX).expect("batch");
        assert_eq!(b.len(), 100, "the count limit alone, across pages");
        let (b, _) = h.batch("n2", 7, usize::MAX).expect("batch");
        assert_eq!(b.len(), 7);

        h.add("n3", &big("huge", 1_000_000)).expect("add");
        h.add("n3", &big("small", 10)).expect("add");
        let (b, _) = h.batch("n3", 256, 45_000).expect("batch");
        assert_eq!(b.len(), 1, "an oversized hint goes alone");
        assert_eq!(b[0].1.key, b"huge".to_vec());
        h.remove("n3", b.into_iter().map(|(k, _)| k).collect())
            .expect("remove");
        let (b, _) = h.batch("n3", 256, 45_000).expect("batch");
        assert_eq!(b.len(), 1);
        assert_eq!(b[0].1.key, b"small".to_vec());
    }
}
