//! The run loops: the load phase, the closed loop (a fixed number of workers, each with one
//! request in flight) and the open loop (operations sent on a timetable, whatever the
//! latency), all driving a [`Driver`] and recording into [`Stats`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use bytes::Bytes;

use super::args::{BenchArgs, Stop};
use super::driver::{Driver, DriverError};
use super::pacing::{self, Schedule};
use super::stats::Stats;
use super::workload::{self, fnv, Op, Rng, Zipfian};

/// Everything the tasks of one run share.
pub(super) struct Shared<D> {
    pub(super) driver: D,
    pub(super) args: BenchArgs,
    zipf: Zipfian,
    /// Records inserted so far (workload D grows the key space).
    inserted: AtomicU64,
    value: Bytes,
    pub(super) stats: Stats,
}

impl<D: Driver> Shared<D> {
    pub(super) fn new(driver: D, args: &BenchArgs) -> Result<Shared<D>> {
        Ok(Shared {
            driver,
            zipf: Zipfian::new(args.records, 0.99),
            inserted: AtomicU64::new(args.records),
            value: Bytes::from(vec![b'x'; args.value_size]),
            stats: Stats::new()?,
            args: args.clone(),
        })
    }

    fn pick_op(&self, rng: &mut Rng) -> Op {
        let (reads, other) = workload::mix(&self.args.workload);
        if rng.unit() < reads {
            Op::Read
        } else {
            other
        }
    }

    fn pick_key(&self, rng: &mut Rng) -> u64 {
        let n = self.inserted.load(Ordering::Relaxed).max(1);
        if self.args.workload == "d" {
            // "latest": recent inserts are the hottest.
            let back = self.zipf.next(rng.unit()) % n;
            return n - 1 - back;
        }
        fnv(self.zipf.next(rng.unit())) % n
    }

    async fn write(&self, k: u64) -> Result<(), DriverError> {
        self.driver.write(k, self.value.clone()).await
    }

    async fn execute(&self, op: Op, rng: &mut Rng) -> Result<(), DriverError> {
        match op {
            Op::Read => {
                let k = self.pick_key(rng);
                if !self.driver.read(k).await? {
                    self.stats.note_not_found();
                }
                Ok(())
            }
            Op::Update => self.write(self.pick_key(rng)).await,
            Op::Insert => {
                let k = self.inserted.fetch_add(1, Ordering::Relaxed);
                self.write(k).await
            }
            Op::ReadModifyWrite => {
                let k = self.pick_key(rng);
                self.driver.read_modify_write(k, self.value.clone()).await
            }
        }
    }

    /// Runs one operation and records it, its latency counted from `since`.
    async fn run_one(&self, op: Op, rng: &mut Rng, since: Instant) {
        let res = self.execute(op, rng).await;
        self.stats.record(op, since.elapsed(), res.as_ref().err());
    }
}

pub(super) fn progress(tty: bool, len: Option<u64>, what: &str) -> indicatif::ProgressBar {
    if !tty {
        return indicatif::ProgressBar::hidden();
    }
    let (bar, template) = match len {
        Some(len) => (
            indicatif::ProgressBar::new(len),
            format!("{what} {{bar:40}} {{pos}}/{{len}} {{per_sec}} eta {{eta}}"),
        ),
        None => (
            indicatif::ProgressBar::new_spinner(),
            format!("{what} {{spinner}} {{pos}} ops {{per_sec}} {{elapsed}}"),
        ),
    };
    if let Ok(style) = indicatif::ProgressStyle::with_template(&template) {
        bar.set_style(style);
    }
    bar
}

/// The load phase: every record written once, by `--concurrency` workers.
pub(super) async fn load<D: Driver>(shared: &Arc<Shared<D>>, tty: bool) -> Result<()> {
    let records = shared.args.records;
    let bar = progress(tty, Some(records), "load");
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..shared.args.concurrency.max(1) {
        let (s, next, bar) = (shared.clone(), next.clone(), bar.clone());
        tasks.spawn(async move {
            let (mut failed, mut first) = (0u64, None);
            loop {
                let k = next.fetch_add(1, Ordering::Relaxed);
                if k >= records {
                    return (failed, first);
                }
                if let Err(e) = s.write(k).await {
                    failed += 1;
                    first.get_or_insert_with(|| e.to_string());
                }
                bar.inc(1);
            }
        });
    }
    let (mut failed, mut first) = (0, None);
    while let Some(r) = tasks.join_next().await {
        if let Ok((n, e)) = r {
            failed += n;
            first = first.or(e);
        }
    }
    bar.finish_and_clear();
    if failed > 0 {
        let first = first.unwrap_or_default();
        bail!("load phase: {failed} of {records} inserts failed (the first: {first})");
    }
    Ok(())
}

/// The run phase, closed or open loop as the arguments say. Returns how long it took, from
/// its start until the last operation finished.
pub(super) async fn run_phase<D: Driver>(shared: &Arc<Shared<D>>, tty: bool) -> Duration {
    let stop = shared.args.stop();
    let len = match stop {
        Stop::Ops(n) => Some(n),
        Stop::After(_) => None,
    };
    let bar = progress(tty, len, "run");
    let started = Instant::now();
    match shared.args.rate {
        None => closed_loop(shared, stop, &bar).await,
        Some(rate) => open_loop(shared, Schedule::new(rate, stop), &bar).await,
    }
    bar.finish_and_clear();
    started.elapsed()
}

async fn closed_loop<D: Driver>(shared: &Arc<Shared<D>>, stop: Stop, bar: &indicatif::ProgressBar) {
    let next = Arc::new(AtomicU64::new(0));
    let (ops, deadline) = match stop {
        Stop::Ops(n) => (n, None),
        Stop::After(d) => (u64::MAX, Some(Instant::now() + d)),
    };
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..shared.args.concurrency.max(1) {
        let (s, next, bar) = (shared.clone(), next.clone(), bar.clone());
        tasks.spawn(async move {
            let mut rng = Rng(0x5eed ^ (w as u64) << 32);
            loop {
                let go = match deadline {
                    Some(deadline) => Instant::now() < deadline,
                    None => next.fetch_add(1, Ordering::Relaxed) < ops,
                };
                if !go {
                    break;
                }
                let op = s.pick_op(&mut rng);
                s.run_one(op, &mut rng, Instant::now()).await;
                bar.inc(1);
            }
        });
    }
    while tasks.join_next().await.is_some() {}
}

/// Sends operations on `schedule` from a pacing thread; each runs as its own task, its
/// latency counted from its due instant and its send lag from the due instant to the
/// moment the task began.
async fn open_loop<D: Driver>(
    shared: &Arc<Shared<D>>,
    schedule: Schedule,
    bar: &indicatif::ProgressBar,
) {
    let runtime = tokio::runtime::Handle::current();
    // Every task holds a sender; the receiver sees the channel close once the pacer and
    // all the tasks are done.
    let (alive, mut all_done) = tokio::sync::mpsc::channel::<()>(1);
    let (s, bar) = (shared.clone(), bar.clone());
    let start = Instant::now();
    let pacer = tokio::task::spawn_blocking(move || {
        let mut rng = Rng(0x0be7);
        pacing::pace(&schedule, start, |i, due| {
            let op = s.pick_op(&mut rng);
            let mut op_rng = Rng(rng.0 ^ i);
            let (s, bar, alive) = (s.clone(), bar.clone(), alive.clone());
            runtime.spawn(async move {
                s.stats
                    .record_send_lag(pacing::send_lag(due, Instant::now()));
                // From the due instant: a late send and queueing behind slow requests count.
                s.run_one(op, &mut op_rng, due).await;
                bar.inc(1);
                drop(alive);
            });
        })
    });
    let _ = pacer.await;
    let _ = all_done.recv().await;
}
