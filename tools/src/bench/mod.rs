//! `chorus bench`: the YCSB core workloads against a running cluster, closed loop at a
//! concurrency or open loop at a target rate, with HdrHistogram percentiles.
//!
//! Keys follow YCSB's scrambled zipfian (θ = 0.99), or "latest" for workload D. In open
//! loop, latency counts from the intended send time, so a slow response delays nothing and
//! hides nothing (no coordinated omission).
//!
//! The workload engine runs against a [`Driver`]: Chorus itself (the default), or Redis or
//! etcd, so the same key choice, value size, mix and measurement apply to each store.

mod chorus_driver;
mod driver;
mod etcd_driver;
mod redis_driver;

use std::collections::HashMap;
use std::future::Future;
use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use bytes::Bytes;
use chorus_client::{Client, Level};
use hdrhistogram::Histogram;
use serde_json::json;

use driver::Driver;

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
    /// Chorus bucket for the records (redis and etcd use the bare key names).
    #[arg(long, default_value = "usertable")]
    bucket: String,
    /// Print one JSON summary.
    #[arg(long)]
    json: bool,
    /// The store to benchmark: chorus (the cluster in --config), or redis or etcd at
    /// --endpoints, for comparison.
    #[arg(long, value_enum, default_value_t = DriverKind::Chorus)]
    driver: DriverKind,
    /// redis: the primary's HOST:PORT (reads and writes go to it); etcd: the members' client
    /// addresses, comma-separated (requests are spread over them).
    #[arg(long, value_delimiter = ',', value_name = "HOST:PORT[,HOST:PORT...]")]
    endpoints: Vec<String>,
    /// redis, etcd: connections to open [default: --concurrency, or 64 with --rate].
    #[arg(long)]
    connections: Option<usize>,
}

/// Which store `chorus bench` drives.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum DriverKind {
    Chorus,
    Redis,
    Etcd,
}

impl DriverKind {
    fn name(self) -> &'static str {
        match self {
            DriverKind::Chorus => "chorus",
            DriverKind::Redis => "redis",
            DriverKind::Etcd => "etcd",
        }
    }
}

impl BenchArgs {
    /// Checks the arguments before anything connects.
    fn validate(&self) -> Result<()> {
        if !matches!(self.workload.as_str(), "a" | "b" | "c" | "d" | "f") {
            bail!(
                "--workload: {:?} is not one of a, b, c, d, f",
                self.workload
            );
        }
        if self.records == 0 {
            bail!("--records must be at least 1");
        }
        if self.rate == Some(0) {
            bail!("--rate must be at least 1");
        }
        if self.connections == Some(0) {
            bail!("--connections must be at least 1");
        }
        match self.driver {
            DriverKind::Chorus => {
                if !self.endpoints.is_empty() {
                    bail!(
                        "--endpoints is for --driver redis or etcd; Chorus finds its nodes \
                         in the client config (--config or CHORUS_CONFIG)"
                    );
                }
                if self.connections.is_some() {
                    bail!("--connections is for --driver redis or etcd");
                }
            }
            DriverKind::Redis => {
                if self.endpoints.is_empty() {
                    bail!("--driver redis needs --endpoints HOST:PORT (the primary's address)");
                }
                if self.endpoints.len() > 1 {
                    bail!(
                        "--driver redis takes one endpoint, the primary (reads and writes go \
                         to it; replicas are found through it): got {}",
                        self.endpoints.join(",")
                    );
                }
            }
            DriverKind::Etcd => {
                if self.endpoints.is_empty() {
                    bail!(
                        "--driver etcd needs --endpoints HOST:PORT[,HOST:PORT...] (the \
                         members' client addresses)"
                    );
                }
            }
        }
        for e in &self.endpoints {
            check_endpoint(e)?;
        }
        Ok(())
    }

    /// Connections for the redis and etcd drivers.
    fn connection_count(&self) -> usize {
        self.connections.unwrap_or(match self.rate {
            None => self.concurrency.max(1),
            Some(_) => 64,
        })
    }
}

/// An endpoint is `host:port`, without a scheme.
fn check_endpoint(e: &str) -> Result<()> {
    if e.contains("://") {
        bail!("--endpoints: {e:?}: give HOST:PORT without a scheme");
    }
    match e.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0) => {
            Ok(())
        }
        _ => bail!("--endpoints: {e:?} is not HOST:PORT"),
    }
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

struct Shared<D> {
    driver: D,
    args: BenchArgs,
    zipf: Zipfian,
    /// Records inserted so far (workload D grows the key space).
    inserted: AtomicU64,
    value: Bytes,
    errors: AtomicU64,
    /// Reads that found no value (reported for the comparison drivers).
    not_found: AtomicU64,
    hist: Mutex<HashMap<Op, Histogram<u64>>>,
    done: AtomicU64,
}

impl<D: Driver> Shared<D> {
    fn pick_op(&self, rng: &mut Rng) -> Op {
        // YCSB's mixes: the share of reads, and what the other operations are.
        let (reads, other) = match self.args.workload.as_str() {
            "a" => (0.5, Op::Update),
            "b" => (0.95, Op::Update),
            "d" => (0.95, Op::Insert),
            "f" => (0.5, Op::ReadModifyWrite),
            _ => (1.0, Op::Read),
        };
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

    async fn write(&self, k: u64) -> bool {
        self.driver.write(k, self.value.clone()).await.is_ok()
    }

    async fn execute(&self, op: Op, rng: &mut Rng) -> bool {
        match op {
            Op::Read => {
                let k = self.pick_key(rng);
                match self.driver.read(k).await {
                    Ok(found) => {
                        if !found {
                            self.not_found.fetch_add(1, Ordering::Relaxed);
                        }
                        true
                    }
                    Err(_) => false,
                }
            }
            Op::Update => self.write(self.pick_key(rng)).await,
            Op::Insert => {
                let k = self.inserted.fetch_add(1, Ordering::Relaxed);
                self.write(k).await
            }
            Op::ReadModifyWrite => {
                let k = self.pick_key(rng);
                self.driver
                    .read_modify_write(k, self.value.clone())
                    .await
                    .is_ok()
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

/// `chorus bench`: checks the arguments, connects the chosen driver and runs the workload.
/// `connect` opens the Chorus client from the command line's config; it is awaited only for
/// the Chorus driver, so the redis and etcd drivers need no config.
pub async fn main(args: BenchArgs, connect: impl Future<Output = Result<Client>>) -> Result<()> {
    args.validate()?;
    match args.driver {
        DriverKind::Chorus => {
            let client = connect.await?;
            let driver = chorus_driver::ChorusDriver::new(client, &args);
            run(driver, args).await
        }
        DriverKind::Redis => {
            let driver = redis_driver::RedisDriver::connect(&args).await?;
            run(driver, args).await
        }
        DriverKind::Etcd => {
            let driver = etcd_driver::EtcdDriver::connect(&args).await?;
            run(driver, args).await
        }
    }
}

/// Latency histogram: 1 µs to 60 s, 3 significant digits.
fn histogram() -> Result<Histogram<u64>, hdrhistogram::CreationError> {
    Histogram::new_with_bounds(1, 60_000_000, 3)
}

impl<D: Driver> Shared<D> {
    fn new(driver: D, args: &BenchArgs) -> Result<Shared<D>> {
        let mut hist = HashMap::new();
        for op in [Op::Read, Op::Update, Op::Insert, Op::ReadModifyWrite] {
            hist.insert(op, histogram()?);
        }
        Ok(Shared {
            driver,
            zipf: Zipfian::new(args.records, 0.99),
            inserted: AtomicU64::new(args.records),
            value: Bytes::from(vec![b'x'; args.value_size]),
            errors: AtomicU64::new(0),
            not_found: AtomicU64::new(0),
            hist: Mutex::new(hist),
            done: AtomicU64::new(0),
            args: args.clone(),
        })
    }
}

async fn run<D: Driver>(driver: D, args: BenchArgs) -> Result<()> {
    let shared = Arc::new(Shared::new(driver, &args)?);
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

async fn load<D: Driver>(shared: &Arc<Shared<D>>, tty: bool) -> Result<()> {
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

async fn closed_loop<D: Driver>(shared: &Arc<Shared<D>>, bar: &indicatif::ProgressBar) {
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

async fn open_loop<D: Driver>(shared: &Arc<Shared<D>>, rate: u64, bar: &indicatif::ProgressBar) {
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

/// The run's summary: what `--json` prints, and what the text report is made from.
fn summary<D: Driver>(shared: &Shared<D>, elapsed: Duration) -> serde_json::Value {
    let hists = shared.hist.lock().unwrap_or_else(|p| p.into_inner());
    let mut all = histogram().ok();
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
    let mut out = json!({
        "workload": a.workload,
        "records": a.records,
        "ops": done,
        "mode": if a.rate.is_some() { "open" } else { "closed" },
        "concurrency": if a.rate.is_some() { serde_json::Value::Null } else { json!(a.concurrency) },
        "rate": a.rate,
        "r": shared.driver.read_level(),
        "w": shared.driver.write_level(),
        "value_size": a.value_size,
        "seconds": elapsed.as_secs_f64(),
        "ops_per_sec": ops_per_sec,
        "errors": errors,
        "latency_us": latency,
        "per_op": per_op,
    });
    // The Chorus summary keeps its original shape; the comparison drivers say what they
    // ran against.
    if a.driver != DriverKind::Chorus {
        if let Some(obj) = out.as_object_mut() {
            obj.insert("driver".into(), json!(a.driver.name()));
            obj.insert("endpoints".into(), json!(a.endpoints));
            obj.insert("connections".into(), json!(a.connection_count()));
            obj.insert(
                "not_found".into(),
                json!(shared.not_found.load(Ordering::Relaxed)),
            );
        }
    }
    out
}

fn report<D: Driver>(shared: &Shared<D>, elapsed: Duration) {
    let out = summary(shared, elapsed);
    let a = &shared.args;
    if a.json {
        println!("{out}");
        return;
    }
    let on = match a.driver {
        DriverKind::Chorus => String::new(),
        d => format!("{} at {}, ", d.name(), a.endpoints.join(",")),
    };
    let text = |k: &str| out[k].as_str().unwrap_or_default().to_string();
    println!(
        "workload {} ({on}{} records, {} ops, R={} W={}): {:.0} ops/s, {} errors",
        a.workload,
        a.records,
        out["ops"],
        text("r"),
        text("w"),
        out["ops_per_sec"].as_f64().unwrap_or_default(),
        out["errors"]
    );
    if let Some(n) = out
        .get("not_found")
        .and_then(|n| n.as_u64())
        .filter(|n| *n > 0)
    {
        println!("{n} reads found no value");
    }
    println!("latency (us): {}", out["latency_us"]);
    if let Some(per_op) = out["per_op"].as_object() {
        for (op, v) in per_op {
            println!("  {op}: {v}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::driver::DriverError;
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

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        bench: BenchArgs,
    }

    fn parse(args: &[&str]) -> BenchArgs {
        use clap::Parser;
        Cli::try_parse_from(std::iter::once("bench").chain(args.iter().copied()))
            .unwrap_or_else(|e| panic!("{args:?}: {e}"))
            .bench
    }

    fn invalid(args: &[&str]) -> String {
        match parse(args).validate() {
            Ok(()) => panic!("{args:?} should be rejected"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn the_original_flags_still_parse_and_default_to_chorus() {
        let a = parse(&[
            "--workload",
            "f",
            "--records",
            "10",
            "--ops",
            "5",
            "--concurrency",
            "4",
            "--r",
            "one",
            "--w",
            "all",
            "--value-size",
            "100",
            "--json",
        ]);
        assert_eq!(a.driver, DriverKind::Chorus);
        assert!(a.endpoints.is_empty());
        assert_eq!((a.r, a.w), (Level::One, Level::All));
        a.validate().expect("valid");
        let open = parse(&["--rate", "500"]);
        open.validate().expect("valid");
        use clap::Parser;
        assert!(
            Cli::try_parse_from(["bench", "--rate", "5", "--concurrency", "2"]).is_err(),
            "--rate and --concurrency stay exclusive"
        );
    }

    #[test]
    fn redis_and_etcd_need_endpoints() {
        let e = invalid(&["--driver", "redis"]);
        assert!(e.contains("--driver redis needs --endpoints"), "{e}");
        let e = invalid(&["--driver", "etcd"]);
        assert!(e.contains("--driver etcd needs --endpoints"), "{e}");
    }

    #[test]
    fn endpoints_are_checked() {
        let e = invalid(&["--endpoints", "127.0.0.1:6379"]);
        assert!(
            e.contains("--endpoints is for --driver redis or etcd"),
            "{e}"
        );
        let e = invalid(&["--driver", "redis", "--endpoints", "a:1,b:2"]);
        assert!(e.contains("takes one endpoint"), "{e}");
        let e = invalid(&["--driver", "etcd", "--endpoints", "http://127.0.0.1:2379"]);
        assert!(e.contains("without a scheme"), "{e}");
        for bad in ["localhost", ":2379", "h:0", "h:99999", "h:x"] {
            let e = invalid(&["--driver", "etcd", "--endpoints", bad]);
            assert!(e.contains("is not HOST:PORT"), "{bad}: {e}");
        }
        let a = parse(&[
            "--driver",
            "etcd",
            "--endpoints",
            "127.0.0.1:2379,127.0.0.1:2380,[::1]:2381",
        ]);
        assert_eq!(a.endpoints.len(), 3);
        a.validate().expect("valid");
    }

    #[test]
    fn connections_follow_the_load_shape() {
        let e = invalid(&[
            "--driver",
            "redis",
            "--endpoints",
            "h:1",
            "--connections",
            "0",
        ]);
        assert!(e.contains("--connections must be at least 1"), "{e}");
        let e = invalid(&["--connections", "4"]);
        assert!(e.contains("--connections is for"), "{e}");
        let a = parse(&[
            "--driver",
            "redis",
            "--endpoints",
            "h:1",
            "--concurrency",
            "8",
        ]);
        assert_eq!(a.connection_count(), 8);
        let a = parse(&["--driver", "redis", "--endpoints", "h:1", "--rate", "100"]);
        assert_eq!(a.connection_count(), 64);
        let a = parse(&[
            "--driver",
            "etcd",
            "--endpoints",
            "h:1",
            "--connections",
            "3",
        ]);
        assert_eq!(a.connection_count(), 3);
    }

    #[test]
    fn the_old_checks_keep_their_messages() {
        let e = invalid(&["--workload", "e"]);
        assert!(e.contains("is not one of a, b, c, d, f"), "{e}");
        let e = invalid(&["--records", "0"]);
        assert_eq!(e, "--records must be at least 1");
        let e = invalid(&["--rate", "0"]);
        assert_eq!(e, "--rate must be at least 1");
    }

    /// An in-memory store, to run the engine without a server.
    #[derive(Default)]
    struct MemDriver {
        data: Mutex<HashMap<u64, Bytes>>,
        rmw: AtomicU64,
    }

    impl Driver for MemDriver {
        async fn read(&self, key: u64) -> Result<bool, DriverError> {
            tokio::task::yield_now().await;
            Ok(self.data.lock().unwrap().contains_key(&key))
        }

        async fn write(&self, key: u64, value: Bytes) -> Result<(), DriverError> {
            tokio::task::yield_now().await;
            self.data.lock().unwrap().insert(key, value);
            Ok(())
        }

        async fn read_modify_write(&self, key: u64, value: Bytes) -> Result<(), DriverError> {
            self.rmw.fetch_add(1, Ordering::Relaxed);
            self.read(key).await?;
            self.write(key, value).await
        }

        fn read_level(&self) -> String {
            "mem".into()
        }

        fn write_level(&self) -> String {
            "mem".into()
        }
    }

    async fn run_mem(args: &[&str]) -> (Arc<Shared<MemDriver>>, serde_json::Value) {
        let args = parse(args);
        args.validate().expect("valid");
        let shared = Arc::new(Shared::new(MemDriver::default(), &args).expect("bench state"));
        load(&shared, false).await.expect("load");
        let bar = indicatif::ProgressBar::hidden();
        let started = Instant::now();
        match args.rate {
            None => closed_loop(&shared, &bar).await,
            Some(rate) => open_loop(&shared, rate, &bar).await,
        }
        let out = summary(&shared, started.elapsed());
        (shared, out)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_engine_runs_each_workload_against_a_driver() {
        for w in ["a", "b", "c", "d", "f"] {
            let (shared, out) = run_mem(&[
                "--workload",
                w,
                "--records",
                "200",
                "--ops",
                "2000",
                "--value-size",
                "10",
            ])
            .await;
            assert_eq!(out["ops"], 2000, "{w}");
            assert_eq!(out["errors"], 0, "{w}");
            // Every read finds a loaded record. (Workload D may read a key whose insert is
            // still in flight: the key counter moves when the insert starts.)
            if w != "d" {
                assert_eq!(shared.not_found.load(Ordering::Relaxed), 0, "{w}");
            }
            let data = shared.driver.data.lock().unwrap();
            match w {
                "d" => assert!(data.len() > 200, "inserts grow the key space"),
                _ => assert_eq!(data.len(), 200, "{w}"),
            }
            assert!(data.values().all(|v| v.len() == 10));
            let per_op = out["per_op"].as_object().unwrap();
            let ops: Vec<&str> = per_op.keys().map(String::as_str).collect();
            let want: &[&str] = match w {
                "a" | "b" => &["read", "update"],
                "c" => &["read"],
                "d" => &["insert", "read"],
                _ => &["read", "read_modify_write"],
            };
            assert_eq!(ops, want, "{w}");
            if w == "f" {
                assert!(shared.driver.rmw.load(Ordering::Relaxed) > 0);
            }
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_open_loop_sends_every_operation() {
        let (_, out) = run_mem(&["--records", "50", "--ops", "200", "--rate", "2000"]).await;
        assert_eq!(out["ops"], 200);
        assert_eq!(out["mode"], "open");
        assert_eq!(out["concurrency"], serde_json::Value::Null);
        assert_eq!(out["rate"], 2000);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_chorus_summary_keeps_its_fields_and_others_add_theirs() {
        let original = [
            "concurrency",
            "errors",
            "latency_us",
            "mode",
            "ops",
            "ops_per_sec",
            "per_op",
            "r",
            "rate",
            "records",
            "seconds",
            "value_size",
            "w",
            "workload",
        ];
        let (_, out) = run_mem(&["--records", "10", "--ops", "100"]).await;
        let keys: Vec<&str> = out
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(keys, original);
        for p in ["p50", "p90", "p99", "p999", "max"] {
            assert!(out["latency_us"][p].is_u64(), "{p}");
        }
        let (_, out) = run_mem(&[
            "--records",
            "10",
            "--ops",
            "100",
            "--driver",
            "etcd",
            "--endpoints",
            "h:1,h:2",
        ])
        .await;
        let obj = out.as_object().unwrap();
        for k in original {
            assert!(obj.contains_key(k), "{k}");
        }
        assert_eq!(out["driver"], "etcd");
        assert_eq!(out["endpoints"], json!(["h:1", "h:2"]));
        assert_eq!(out["not_found"], 0);
    }
}
