//! Counters a node keeps about itself: reported by `chorus status` and exported as
//! Prometheus metrics on the admin endpoint.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use chorus_proto::{Convergence, PartitionSync};

/// Per-partition anti-entropy state.
#[derive(Clone, Debug, Default)]
struct PartitionState {
    /// Last time each co-replica was found equal or was repaired.
    clean: BTreeMap<String, Instant>,
    keys_repaired: u64,
}

#[derive(Default)]
pub struct Stats {
    pub read_repairs: AtomicU64,
    pub hints_replayed: AtomicU64,
    pub hints_expired: AtomicU64,
    pub aae_rounds: AtomicU64,
    pub aae_keys_repaired: AtomicU64,
    pub aae_bytes: AtomicU64,
    pub tombstones_purged: AtomicU64,
    partitions: Mutex<BTreeMap<u32, PartitionState>>,
}

impl Stats {
    pub fn add(counter: &AtomicU64, name: &'static str, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
        metrics::counter!(name).increment(n);
    }

    /// Records that `partition` was found equal on `peer` (after any repair).
    pub fn partition_clean(&self, partition: u32, peer: &str) {
        let mut p = self.lock();
        p.entry(partition)
            .or_default()
            .clean
            .insert(peer.to_string(), Instant::now());
    }

    pub fn partition_repaired(&self, partition: u32, keys: u64) {
        self.lock().entry(partition).or_default().keys_repaired += keys;
        Self::add(
            &self.aae_keys_repaired,
            "chorus_aae_keys_repaired_total",
            keys,
        );
    }

    /// The convergence report, for partitions where this node shares data with `peers`.
    pub fn convergence(&self, partitions: &[(u32, Vec<String>)]) -> Convergence {
        let map = self.lock();
        let now = Instant::now();
        let mut worst: Option<u64> = Some(0);
        let list = partitions
            .iter()
            .map(|(p, peers)| {
                let st = map.get(p).cloned().unwrap_or_default();
                // The partition is only as fresh as its least recently checked replica.
                let ms = peers
                    .iter()
                    .map(|peer| {
                        st.clean
                            .get(peer)
                            .map(|t| now.duration_since(*t).as_millis() as u64)
                    })
                    .try_fold(0u64, |acc, x| x.map(|x| acc.max(x)));
                worst = match (worst, ms) {
                    (Some(w), Some(m)) => Some(w.max(m)),
                    _ => None,
                };
                PartitionSync {
                    partition: *p,
                    ms_since_clean: ms,
                    keys_repaired: st.keys_repaired,
                }
            })
            .collect();
        if let Some(w) = worst {
            metrics::gauge!("chorus_aae_max_ms_since_clean").set(w as f64);
        }
        Convergence {
            read_repairs: self.read_repairs.load(Ordering::Relaxed),
            hints_replayed: self.hints_replayed.load(Ordering::Relaxed),
            hints_expired: self.hints_expired.load(Ordering::Relaxed),
            anti_entropy_rounds: self.aae_rounds.load(Ordering::Relaxed),
            anti_entropy_keys_repaired: self.aae_keys_repaired.load(Ordering::Relaxed),
            anti_entropy_bytes: self.aae_bytes.load(Ordering::Relaxed),
            tombstones_purged: self.tombstones_purged.load(Ordering::Relaxed),
            partitions: list,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u32, PartitionState>> {
        self.partitions.lock().unwrap_or_else(|p| p.into_inner())
    }
}
