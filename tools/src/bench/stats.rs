//! What a run measures while it runs: a latency histogram per operation, the open loop's
//! send lag, and counts of errors by kind and reads that found nothing.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use hdrhistogram::{CreationError, Histogram};

use super::driver::DriverError;
use super::errors::ErrorKind;
use super::workload::Op;

/// Latency histogram: 1 µs to 60 s, 3 significant digits. Every histogram the bench writes
/// or reads has these bounds, so any two can be added.
pub(super) fn histogram() -> Result<Histogram<u64>, CreationError> {
    Histogram::new_with_bounds(1, 60_000_000, 3)
}

/// Records `d` in whole microseconds (at least 1), clamped to the histogram's range.
fn record_us(h: &mut Histogram<u64>, d: Duration) {
    let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1);
    let _ = h.record(us.min(h.high()));
}

/// The live counters, shared by every task of a run.
pub(super) struct Stats {
    hists: Mutex<Hists>,
    errors: [AtomicU64; ErrorKind::ALL.len()],
    /// The first error of each kind, to show what "other" (or any kind) was.
    samples: Mutex<BTreeMap<ErrorKind, String>>,
    not_found: AtomicU64,
}

struct Hists {
    per_op: BTreeMap<Op, Histogram<u64>>,
    send_lag: Histogram<u64>,
}

/// A run's measurements, taken when it is over (or read back from a report to merge).
#[derive(Clone, Debug)]
pub(super) struct Measured {
    /// Latency per operation name, only for operations that ran.
    pub per_op: BTreeMap<String, Histogram<u64>>,
    /// Open loop only: how late each operation went out.
    pub send_lag: Option<Histogram<u64>>,
    pub errors_by_kind: BTreeMap<String, u64>,
    /// One error message per kind that occurred.
    pub error_samples: BTreeMap<String, String>,
    pub not_found: u64,
}

impl Stats {
    pub(super) fn new() -> Result<Stats, CreationError> {
        let mut per_op = BTreeMap::new();
        for op in Op::ALL {
            per_op.insert(op, histogram()?);
        }
        Ok(Stats {
            hists: Mutex::new(Hists {
                per_op,
                send_lag: histogram()?,
            }),
            errors: Default::default(),
            samples: Mutex::default(),
            not_found: AtomicU64::new(0),
        })
    }

    fn hists(&self) -> std::sync::MutexGuard<'_, Hists> {
        self.hists.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// One finished operation: its latency, and what went wrong if it failed.
    pub(super) fn record(&self, op: Op, latency: Duration, failed: Option<&DriverError>) {
        if let Some(e) = failed {
            let kind = ErrorKind::of(e);
            if self.errors[kind as usize].fetch_add(1, Ordering::Relaxed) == 0 {
                let mut samples = self.samples.lock().unwrap_or_else(|p| p.into_inner());
                samples.entry(kind).or_insert_with(|| e.to_string());
            }
        }
        if let Some(h) = self.hists().per_op.get_mut(&op) {
            record_us(h, latency);
        }
    }

    /// How late one open-loop operation went out.
    pub(super) fn record_send_lag(&self, lag: Duration) {
        record_us(&mut self.hists().send_lag, lag);
    }

    pub(super) fn note_not_found(&self) {
        self.not_found.fetch_add(1, Ordering::Relaxed);
    }

    #[cfg(test)]
    pub(super) fn not_found(&self) -> u64 {
        self.not_found.load(Ordering::Relaxed)
    }

    /// The measurements so far; `open` says whether the send lag applies.
    pub(super) fn measured(&self, open: bool) -> Measured {
        let h = self.hists();
        Measured {
            per_op: h
                .per_op
                .iter()
                .filter(|(_, h)| !h.is_empty())
                .map(|(op, h)| (op.name().to_string(), h.clone()))
                .collect(),
            send_lag: open.then(|| h.send_lag.clone()),
            errors_by_kind: ErrorKind::ALL
                .iter()
                .map(|k| {
                    let n = self.errors[*k as usize].load(Ordering::Relaxed);
                    (k.name().to_string(), n)
                })
                .collect(),
            error_samples: self
                .samples
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .map(|(k, m)| (k.name().to_string(), m.clone()))
                .collect(),
            not_found: self.not_found.load(Ordering::Relaxed),
        }
    }
}

impl Measured {
    /// Operations counted, over all kinds.
    pub(super) fn ops(&self) -> u64 {
        self.per_op.values().map(|h| h.len()).sum()
    }

    pub(super) fn errors(&self) -> u64 {
        self.errors_by_kind.values().sum()
    }

    /// All operations' latencies in one histogram.
    pub(super) fn latency(&self) -> Result<Histogram<u64>, hdrhistogram::AdditionError> {
        let mut all =
            histogram().map_err(|_| hdrhistogram::AdditionError::OtherAddendValueExceedsRange)?;
        for h in self.per_op.values() {
            all.add(h)?;
        }
        Ok(all)
    }

    /// Adds another process's measurements of the same run.
    pub(super) fn add(&mut self, other: &Measured) -> Result<(), hdrhistogram::AdditionError> {
        for (op, h) in &other.per_op {
            match self.per_op.get_mut(op) {
                Some(mine) => mine.add(h)?,
                None => {
                    self.per_op.insert(op.clone(), h.clone());
                }
            }
        }
        self.send_lag = match (self.send_lag.take(), &other.send_lag) {
            (Some(mut mine), Some(theirs)) => {
                mine.add(theirs)?;
                Some(mine)
            }
            (mine, theirs) => mine.or_else(|| theirs.clone()),
        };
        for (kind, n) in &other.errors_by_kind {
            *self.errors_by_kind.entry(kind.clone()).or_default() += n;
        }
        for (kind, m) in &other.error_samples {
            self.error_samples
                .entry(kind.clone())
                .or_insert_with(|| m.clone());
        }
        self.not_found += other.not_found;
        Ok(())
    }
}
