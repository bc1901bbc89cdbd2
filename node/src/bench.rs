//! `chorus bench`: the YCSB core workloads against a running cluster, closed loop at a
//! concurrency or open loop at a target rate, with HdrHistogram percentiles.
//!
//! Keys follow YCSB's scrambled zipfian (θ = 0.99), or "latest" for workload D. In open
//! loop, latency counts from the intended send time, so a slow response delays nothing and
//! hides nothing (no coordinated omission).

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use chorus_client::{CausalContext, Client, Level, WriteOptions};
use hdrhistogram::Histogram;
use serde_json::json;

#[derive(clap::Args, Clone)]
pub struct BenchArgs {
    /// YCSB workload: a (50/50 read/update), b (95/5), c (read only), d (95/5 read/insert,
    /// latest), f (read-modify-write).
    #[arg(long, default_value = "a")]
    workload: String,
    /// Records loaded before the run.
    #[arg(long, default_value_t = 10_000)]
    records: u64,
    /// Operations in the run phase.
    #[arg(long, default_value_t = 100_000)]
    ops: u64,
    /// Closed loop: this many requests in flight.
    #[arg(long, default_value_t = 16, conflicts_with = "rate")]
    concurrency: usize,
    /// Open loop: this many operations per second, whatever the latency.
    #[arg(long)]
    rate: Option<u64>,
    #[arg(long, default_value = "quorum")]
    r: Level,
    #[arg(long, default_value = "quorum")]
    w: Level,
    /// Bytes per value.
    #[arg(long, default_value_t = 1000)]
    value_size: usize,
    /// Skip the load phase (the records are already there).
    #[arg(long)]
    skip_load: bool,
    #[arg(long, default_value = "usertable")]
    bucket: String,
    /// Print one JSON summary.
    #[arg(long)]
    json: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Op {
    Read,
    Update,
    Insert,
    ReadModifyWrite,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::Read => "read",
            Op::Update => "update",
            Op::Insert => "insert",
            Op::ReadModifyWrite => "read_modify_write",
        }
    }
}

/// YCSB's zipfian generator (Gray et al.), over `0..n`.
struct Zipfian {
    n: u64,
    theta: f64,
    alpha: f64,
    zetan: f64,
    eta: f64,
}

fn zeta(n: u64, theta: f64) -> f64 {
    (1..=n).map(|i| 1.0 / (i as f64).powf(theta)).sum()
}

impl Zipfian {
    fn new(n: u64, theta: f64) -> Zipfian {
        let n = n.max(1);
        let zetan = zeta(n, theta);
        let zeta2 = zeta(2, theta);
        Zipfian {
            n,
            theta,
            alpha: 1.0 / (1.0 - theta),
            zetan,
            eta: (1.0 - (2.0 / n as f64).powf(1.0 - theta)) / (1.0 - zeta2 / zetan),
        }
    }

    fn next(&self, u: f64) -> u64 {
        let uz = u * self.zetan;
        if uz < 1.0 {
            return 0;
        }
        if uz < 1.0 + 0.5f64.powf(self.theta) {
            return 1.min(self.n - 1);
        }
        let v = (self.n as f64 * (self.eta * u - self.eta + 1.0).powf(self.alpha)) as u64;
        v.min(self.n - 1)
    }
}

/// FNV-1a, as YCSB uses to scramble zipfian ranks over the key space.
fn fnv(x: u64) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in x.to_le_bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

struct Rng(u64);

impl Rng {
    fn unit(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn key_name(i: u64) -> String {
    format!("user{:016x}", fnv(i))
}

struct Shared {
    client: Client,
    args: BenchArgs,
    zipf: Zipfian,
    /// Records inserted so far (workload D grows the key space).
    inserted: AtomicU64,
    /// Latest context per key, so updates replace rather than pile up siblings.
    contexts: Mutex<HashMap<u64, CausalContext>>,
    value: Vec<u8>,
    errors: AtomicU64,
    hist: Mutex<HashMap<Op, Histogram<u64>>>,
    done: AtomicU64,
}

impl Shared {
    fn pick_op(&self, rng: &mut Rng) -> Op {
        let u = rng.unit();
        match self.args.workload.as_str() {
            "a" => {
                if u < 0.5 {
                    Op::Read
                } else {
                    Op::Update
                }
            }
            "b" => {
                if u < 0.95 {
                    Op::Read
                } else {
                    Op::Update
                }
            }
            "d" => {
                if u < 0.95 {
                    Op::Read
                } else {
                    Op::Insert
                }
            }
            "f" => {
                if u < 0.5 {
                    Op::Read
                } else {
                    Op::ReadModifyWrite
                }
            }
            _ => Op::Read,
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

    fn context(&self, k: u64) -> Option<CausalContext> {
        self.contexts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&k)
            .cloned()
    }

    fn remember(&self, k: u64, ctx: CausalContext) {
        self.contexts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(k, ctx);
    }

    async fn write(&self, k: u64) -> bool {
        let opts = WriteOptions {
            context: self.context(k),
            w: self.args.w,
            sloppy: false,
        };
        match self
            .client
            .put_with(&self.args.bucket, key_name(k), self.value.clone(), &opts)
            .await
        {
            Ok(ctx) => {
                self.remember(k, ctx);
                true
            }
            Err(_) => false,
        }
    }

    async fn execute(&self, op: Op, rng: &mut Rng) -> bool {
        match op {
            Op::Read => {
                let k = self.pick_key(rng);
                self.client
                    .get(&self.args.bucket, key_name(k), self.args.r)
                    .await
                    .is_ok()
            }
            Op::Update => self.write(self.pick_key(rng)).await,
            Op::Insert => {
                let k = self.inserted.fetch_add(1, Ordering::Relaxed);
                self.write(k).await
            }
            Op::ReadModifyWrite => {
                let k = self.pick_key(rng);
                match self
                    .client
                    .get(&self.args.bucket, key_name(k), self.args.r)
                    .await
                {
                    Ok(r) => {
                        self.remember(k, r.context);
                        self.write(k).await
                    }
                    Err(_) => false,
                }
            }
        }
    }

    fn record(&self, op: Op, latency: Duration, ok: bool) {
        if !ok {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
        let us = (latency.as_micros() as u64).max(1);
        let mut h = self.hist.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(hist) = h.get_mut(&op) {
            let _ = hist.record(us.min(hist.high()));
        }
        self.done.fetch_add(1, Ordering::Relaxed);
    }
}

pub async fn run(client: Client, args: BenchArgs) -> Result<()> {
    if !matches!(args.workload.as_str(), "a" | "b" | "c" | "d" | "f") {
        bail!(
            "--workload: {:?} is not one of a, b, c, d, f",
            args.workload
        );
    }
    if args.records == 0 {
        bail!("--records must be at least 1");
    }
    if args.rate == Some(0) {
        bail!("--rate must be at least 1");
    }
    let mut hist = HashMap::new();
    for op in [Op::Read, Op::Update, Op::Insert, Op::ReadModifyWrite] {
        hist.insert(op, Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?);
    }
    let shared = Arc::new(Shared {
        client,
        zipf: Zipfian::new(args.records, 0.99),
        inserted: AtomicU64::new(args.records),
        contexts: Mutex::new(HashMap::new()),
        value: vec![b'x'; args.value_size],
        errors: AtomicU64::new(0),
        hist: Mutex::new(hist),
        done: AtomicU64::new(0),
        args: args.clone(),
    });
    let tty = std::io::stderr().is_terminal() && !args.json;
    if !args.skip_load {
        load(&shared, tty).await?;
    }
    let bar = progress(tty, args.ops, "run");
    let started = Instant::now();
    match args.rate {
        None => closed_loop(&shared, &bar).await,
        Some(rate) => open_loop(&shared, rate, &bar).await,
    }
    bar.finish_and_clear();
    let elapsed = started.elapsed();
    report(&shared, elapsed);
    Ok(())
}

fn progress(tty: bool, len: u64, what: &str) -> indicatif::ProgressBar {
    if !tty {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(len);
    if let Ok(style) = indicatif::ProgressStyle::with_template(&format!(
        "{what} {{bar:40}} {{pos}}/{{len}} {{per_sec}} eta {{eta}}"
    )) {
        bar.set_style(style);
    }
    bar
}

async fn load(shared: &Arc<Shared>, tty: bool) -> Result<()> {
    let records = shared.args.records;
    let bar = progress(tty, records, "load");
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..shared.args.concurrency.max(1) {
        let (s, next, bar) = (shared.clone(), next.clone(), bar.clone());
        tasks.spawn(async move {
            let mut failed = 0u64;
            loop {
                let k = next.fetch_add(1, Ordering::Relaxed);
                if k >= records {
                    return failed;
                }
                if !s.write(k).await {
                    failed += 1;
                }
                bar.inc(1);
            }
        });
    }
    let mut failed = 0;
    while let Some(r) = tasks.join_next().await {
        failed += r.unwrap_or(0);
    }
    bar.finish_and_clear();
    if failed > 0 {
        bail!("load phase: {failed} of {records} inserts failed");
    }
    Ok(())
}

async fn closed_loop(shared: &Arc<Shared>, bar: &indicatif::ProgressBar) {
    let ops = shared.args.ops;
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..shared.args.concurrency.max(1) {
        let (s, next, bar) = (shared.clone(), next.clone(), bar.clone());
        tasks.spawn(async move {
            let mut rng = Rng(0x5eed ^ (w as u64) << 32);
            while next.fetch_add(1, Ordering::Relaxed) < ops {
                let op = s.pick_op(&mut rng);
                let t = Instant::now();
                let ok = s.execute(op, &mut rng).await;
                s.record(op, t.elapsed(), ok);
                bar.inc(1);
            }
        });
    }
    while tasks.join_next().await.is_some() {}
}

async fn open_loop(shared: &Arc<Shared>, rate: u64, bar: &indicatif::ProgressBar) {
    let ops = shared.args.ops;
    let start = tokio::time::Instant::now();
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    let mut tasks = tokio::task::JoinSet::new();
    let mut rng = Rng(0x0be7);
    for i in 0..ops {
        let intended = start + interval.mul_f64(i as f64);
        tokio::time::sleep_until(intended).await;
        let op = shared.pick_op(&mut rng);
        let (s, bar) = (shared.clone(), bar.clone());
        let mut op_rng = Rng(rng.0 ^ i);
        tasks.spawn(async move {
            let ok = s.execute(op, &mut op_rng).await;
            // From the intended send time: queueing behind slow requests counts.
            s.record(op, intended.elapsed(), ok);
            bar.inc(1);
        });
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
}

fn report(shared: &Shared, elapsed: Duration) {
    let hists = shared.hist.lock().unwrap_or_else(|p| p.into_inner());
    let mut all = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).ok();
    for h in hists.values() {
        if let Some(a) = all.as_mut() {
            let _ = a.add(h);
        }
    }
    let done = shared.done.load(Ordering::Relaxed);
    let ops_per_sec = done as f64 / elapsed.as_secs_f64().max(1e-9);
    let errors = shared.errors.load(Ordering::Relaxed);
    let pct = |h: &Histogram<u64>| {
        json!({
            "p50": h.value_at_quantile(0.5),
            "p90": h.value_at_quantile(0.9),
            "p99": h.value_at_quantile(0.99),
            "p999": h.value_at_quantile(0.999),
            "max": h.max(),
        })
    };
    let per_op: serde_json::Map<String, serde_json::Value> = hists
        .iter()
        .filter(|(_, h)| !h.is_empty())
        .map(|(op, h)| {
            (
                op.name().to_string(),
                json!({"count": h.len(), "latency_us": pct(h)}),
            )
        })
        .collect();
    let a = &shared.args;
    let latency = all.as_ref().map(pct).unwrap_or(json!({}));
    if a.json {
        let out = json!({
            "workload": a.workload,
            "records": a.records,
            "ops": done,
            "mode": if a.rate.is_some() { "open" } else { "closed" },
            "concurrency": if a.rate.is_some() { serde_json::Value::Null } else { json!(a.concurrency) },
            "rate": a.rate,
            "r": a.r.to_string(),
            "w": a.w.to_string(),
            "value_size": a.value_size,
            "seconds": elapsed.as_secs_f64(),
            "ops_per_sec": ops_per_sec,
            "errors": errors,
            "latency_us": latency,
            "per_op": per_op,
        });
        println!("{out}");
    } else {
        println!(
            "workload {} ({} records, {} ops, R={} W={}): {:.0} ops/s, {} errors",
            a.workload, a.records, done, a.r, a.w, ops_per_sec, errors
        );
        println!("latency (us): {latency}");
        for (op, v) in per_op {
            println!("  {op}: {v}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zipfian_is_skewed_and_in_range() {
        let z = Zipfian::new(1000, 0.99);
        let mut rng = Rng(1);
        let mut counts = vec![0u32; 1000];
        for _ in 0..100_000 {
            let v = z.next(rng.unit());
            counts[v as usize] += 1;
        }
        assert!(counts[0] > counts[10] && counts[10] > counts[500]);
        assert!(counts[0] > 5_000, "rank 0 should be hot: {}", counts[0]);
    }
}
