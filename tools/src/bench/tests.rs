//! Tests of the bench as a whole: the flags, the engine against an in-memory driver, and
//! the report and its merge.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use chorus_client::Level;
use serde_json::json;

use super::driver::DriverError;
use super::stats::{histogram, Measured};
use super::workload::{Rng, Zipfian};
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

async fn run_mem_with<D: Driver>(driver: D, args: &[&str]) -> (Arc<Shared<D>>, serde_json::Value) {
    let args = parse(args);
    args.validate().expect("valid");
    let shared = Arc::new(Shared::new(driver, &args).expect("bench state"));
    engine::load(&shared, false).await.expect("load");
    let out = run_and_summarize(&shared, false).await.to_json();
    (shared, out)
}

async fn run_mem(args: &[&str]) -> (Arc<Shared<MemDriver>>, serde_json::Value) {
    run_mem_with(MemDriver::default(), args).await
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
            assert_eq!(shared.stats.not_found(), 0, "{w}");
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
    // What this generator adds: errors by kind, its send lag, and what a merge needs.
    let added = [
        "error_samples",
        "errors_by_kind",
        "histograms",
        "processes",
        "send_lag_us",
    ];
    let (_, out) = run_mem(&["--records", "10", "--ops", "100"]).await;
    let keys: Vec<&str> = out
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let mut want: Vec<&str> = original.iter().chain(&added).copied().collect();
    want.sort_unstable();
    assert_eq!(keys, want);
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

#[test]
fn duration_is_an_alternative_to_ops() {
    let a = parse(&["--duration", "30s"]);
    a.validate().expect("valid");
    assert_eq!(a.stop(), args::Stop::After(Duration::from_secs(30)));
    assert_eq!(
        parse(&["--duration", "1m 500ms"]).stop(),
        args::Stop::After(Duration::from_millis(60_500))
    );
    assert_eq!(parse(&[]).stop(), args::Stop::Ops(100_000));
    assert_eq!(parse(&["--ops", "7"]).stop(), args::Stop::Ops(7));
    use clap::Parser;
    assert!(
        Cli::try_parse_from(["bench", "--ops", "5", "--duration", "1s"]).is_err(),
        "--ops and --duration are exclusive"
    );
    assert!(Cli::try_parse_from(["bench", "--duration", "soon"]).is_err());
    let e = invalid(&["--duration", "0s"]);
    assert_eq!(e, "--duration must be more than zero");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_loop_with_a_duration_runs_until_the_time_is_up() {
    let (_, out) = run_mem(&[
        "--records",
        "50",
        "--duration",
        "150ms",
        "--concurrency",
        "4",
    ])
    .await;
    assert!(
        out["seconds"].as_f64().unwrap() >= 0.15,
        "{}",
        out["seconds"]
    );
    assert!(out["ops"].as_u64().unwrap() > 0);
    assert_eq!(
        out["send_lag_us"],
        serde_json::Value::Null,
        "no timetable, no lag"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_loop_with_a_duration_sends_what_its_timetable_holds() {
    // 2000/s for 100 ms: operations due at 0, 0.5, ... 99.5 ms.
    let (_, out) = run_mem(&["--records", "50", "--duration", "100ms", "--rate", "2000"]).await;
    assert_eq!(out["ops"], 200);
    assert!(out["seconds"].as_f64().unwrap() >= 0.0995);
    // Every operation's send lag is measured, and latency (from the due instant) includes it.
    let lag = &out["histograms"]["send_lag"];
    let lag = summary::decode("send_lag", lag).expect("lag histogram");
    assert_eq!(lag.len(), 200);
    assert!(out["latency_us"]["max"].as_u64().unwrap() >= lag.max());
    for p in ["p50", "p99", "max"] {
        assert!(out["send_lag_us"][p].is_u64(), "{p}");
    }
}

/// Reads fail with a timeout, read-modify-writes with an overload; writes succeed.
#[derive(Default)]
struct FailingDriver {
    mem: MemDriver,
    rmw: AtomicU64,
}

impl Driver for FailingDriver {
    async fn read(&self, _: u64) -> Result<bool, DriverError> {
        tokio::task::yield_now().await;
        Err(chorus_client::Error::Timeout(Duration::from_secs(10)).into())
    }

    async fn write(&self, key: u64, value: Bytes) -> Result<(), DriverError> {
        self.mem.write(key, value).await
    }

    async fn read_modify_write(&self, _: u64, _: Bytes) -> Result<(), DriverError> {
        self.rmw.fetch_add(1, Ordering::Relaxed);
        Err(chorus_client::Error::Overloaded("busy".into()).into())
    }

    fn read_level(&self) -> String {
        "mem".into()
    }

    fn write_level(&self) -> String {
        "mem".into()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_are_counted_by_kind() {
    let (shared, out) = run_mem_with(
        FailingDriver::default(),
        &["--workload", "f", "--records", "20", "--ops", "400"],
    )
    .await;
    let reads = out["per_op"]["read"]["count"].as_u64().unwrap();
    let rmw = shared.driver.rmw.load(Ordering::Relaxed);
    assert!(reads > 0 && rmw > 0);
    assert_eq!(out["errors"], 400, "every operation failed");
    assert_eq!(
        out["errors_by_kind"],
        json!({"timeout": reads, "overloaded": rmw, "unavailable": 0, "quorum": 0, "other": 0})
    );
    assert_eq!(
        out["error_samples"]["timeout"],
        "request timed out after 10s; it may or may not have been applied"
    );
    assert_eq!(out["error_samples"]["overloaded"], "node overloaded: busy");
    let text = Summary::from_json(&out).unwrap().text();
    assert!(
        text.contains(&format!(
            "errors by kind: overloaded {rmw}, timeout {reads}"
        )),
        "{text}"
    );
}

fn measured(read: &[(u64, u64)], lag: Option<&[(u64, u64)]>, timeouts: u64) -> Measured {
    let fill = |pairs: &[(u64, u64)]| {
        let mut h = histogram().unwrap();
        for (v, n) in pairs {
            h.record_n(*v, *n).unwrap();
        }
        h
    };
    Measured {
        per_op: [("read".to_string(), fill(read))].into(),
        send_lag: lag.map(fill),
        errors_by_kind: [("timeout".to_string(), timeouts), ("other".to_string(), 1)].into(),
        error_samples: [("other".to_string(), format!("other after {timeouts}"))].into(),
        not_found: 0,
    }
}

fn summary_of(args: &[&str], m: Measured, secs: f64) -> Summary {
    let levels = ("quorum".to_string(), "quorum".to_string());
    Summary::of_run(&parse(args), levels, m, Duration::from_secs_f64(secs))
}

#[test]
fn two_reports_merge_to_the_right_percentiles_and_counts() {
    let open = ["--rate", "500", "--workload", "c"];
    let a = summary_of(
        &open,
        measured(&[(100, 900), (10_000, 100)], Some(&[(5, 1000)]), 2),
        10.0,
    );
    let b = summary_of(
        &open,
        measured(&[(1_000, 1000)], Some(&[(80, 1000)]), 3),
        10.5,
    );
    // Through JSON, as the files carry them.
    let back = |s: &Summary| Summary::from_json(&s.to_json()).expect("reads back");
    let merged = Summary::merge(vec![back(&a), back(&b)])
        .expect("merges")
        .to_json();
    let h = histogram().unwrap();
    assert_eq!(merged["ops"], 2000);
    assert_eq!(merged["per_op"]["read"]["count"], 2000);
    assert_eq!(merged["errors"], 7);
    assert_eq!(merged["errors_by_kind"], json!({"timeout": 5, "other": 2}));
    assert_eq!(
        merged["error_samples"],
        json!({"other": "other after 2"}),
        "the first's"
    );
    assert_eq!(merged["processes"], 2);
    assert_eq!(merged["rate"], 1000, "offered load adds up");
    assert_eq!(merged["seconds"], 10.5, "the longer run");
    let ops_per_sec = merged["ops_per_sec"].as_f64().unwrap();
    assert!((ops_per_sec - (1000.0 / 10.0 + 1000.0 / 10.5)).abs() < 1e-6);
    // 900 at 100 µs, 1000 at 1 ms, 100 at 10 ms.
    let l = &merged["latency_us"];
    assert_eq!(l["p50"], h.highest_equivalent(1_000));
    assert_eq!(l["p90"], h.highest_equivalent(1_000));
    assert_eq!(l["p99"], h.highest_equivalent(10_000));
    assert_eq!(l["max"], h.highest_equivalent(10_000));
    let lag = &merged["send_lag_us"];
    assert_eq!(lag["p50"], h.highest_equivalent(5));
    assert_eq!(lag["p99"], h.highest_equivalent(80));
    // A merged report merges again, and carries the same histograms.
    let again = Summary::merge(vec![Summary::from_json(&merged).unwrap()])
        .unwrap()
        .to_json();
    assert_eq!(again["histograms"], merged["histograms"]);
    assert_eq!(again["latency_us"], merged["latency_us"]);
}

#[test]
fn a_histogram_survives_the_round_trip_exactly() {
    let mut h = histogram().unwrap();
    let mut rng = Rng(7);
    for _ in 0..10_000 {
        h.record((rng.unit() * 59_000_000.0) as u64 + 1).unwrap();
    }
    h.record(60_000_000).unwrap();
    let back = summary::decode("x", &summary::encode(&h)).expect("decodes");
    assert_eq!(back, h);
    for q in [0.5, 0.9, 0.99, 0.999, 1.0] {
        assert_eq!(back.value_at_quantile(q), h.value_at_quantile(q));
    }
}

/// Negative controls: the merge refuses reports of different runs and malformed input.
#[test]
fn the_merge_refuses_what_does_not_add_up() {
    let a = summary_of(&["--workload", "a"], measured(&[(100, 1)], None, 0), 1.0);
    let c = summary_of(&["--workload", "c"], measured(&[(100, 1)], None, 0), 1.0);
    let e = Summary::merge(vec![a.clone(), c]).unwrap_err().to_string();
    assert!(e.contains("workload"), "{e}");
    let open = summary_of(
        &["--workload", "a", "--rate", "5"],
        measured(&[(1, 1)], None, 0),
        1.0,
    );
    let e = Summary::merge(vec![a.clone(), open])
        .unwrap_err()
        .to_string();
    assert!(e.contains("mode"), "{e}");
    assert!(matches!(
        Summary::merge(vec![]),
        Err(summary::SummaryError::Empty)
    ));

    let mut v = a.to_json();
    v.as_object_mut().unwrap().remove("histograms");
    let e = Summary::from_json(&v).unwrap_err().to_string();
    assert!(e.contains("no histograms"), "{e}");
    for bad in [
        json!({}),
        json!([[1]]),
        json!([[1, -1]]),
        json!([["x", 1]]),
        json!([[1u64 << 40, 1]]),
    ] {
        assert!(summary::decode("read", &bad).is_err(), "{bad}");
    }
}

#[test]
fn the_merge_reads_report_files() {
    let dir = std::env::temp_dir().join(format!("chorus-bench-merge-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let a = summary_of(
        &["--concurrency", "8"],
        measured(&[(100, 10)], None, 0),
        1.0,
    );
    let b = summary_of(
        &["--concurrency", "8"],
        measured(&[(300, 30)], None, 0),
        2.0,
    );
    let fa = dir.join("a.json");
    let fb = dir.join("b.json");
    std::fs::write(&fa, format!("{}\n", a.to_json())).unwrap();
    // Another line before the report, as a captured run's output may have.
    std::fs::write(&fb, format!("loading...\n{}\n", b.to_json())).unwrap();
    let merged = merge_files(&[fa.clone(), fb]).expect("merges").to_json();
    assert_eq!(merged["ops"], 40);
    assert_eq!(merged["concurrency"], 16);
    std::fs::write(&fa, "not json").unwrap();
    let e = format!("{:#}", merge_files(&[fa]).unwrap_err());
    assert!(e.contains("not JSON"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}
