//! One verification run: workloads against a cluster while the nemesis injects faults, then
//! heal, converge, final reads and the checkers' verdicts, all written to a results folder.

mod nemesis;
mod settle;

pub use nemesis::Fault;
use nemesis::{heal, inject, log_fault, Switches, HOT_WORKERS};
use settle::{all_whole, converge, final_reads, replica_values};

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chorus_client::{Client, Level};
use serde::Serialize;
use serde_json::Value;

use crate::cluster::Cluster;
use crate::workload::{
    blob_worker, delete_worker, ints, lww_reader, lww_writer, recreate_worker, register_reader,
    register_writer, set_union, set_worker, ttl_worker, History, Rng, SetKeys, LWW_BUCKET,
    LWW_READERS, LWW_WRITERS, REGISTER_KEYS,
};
use chorus_verify::checker::{self, ClockBounds, Event, Kind, SkewWindow, Verdict};
use chorus_verify::recreate::check_recreate;

#[derive(Clone, Debug)]
pub struct RunConfig {
    pub nodes: usize,
    pub duration: Duration,
    pub seed: u64,
    pub out: PathBuf,
    pub base_port: u16,
    pub r: Level,
    pub w: Level,
    pub workers: usize,
    pub faults: Vec<Fault>,
    /// How long each fault lasts before it heals.
    pub fault_time: Duration,
    /// Negative control: the set client keeps only the first sibling (last-writer-wins
    /// style), which loses concurrent adds.
    pub drop_siblings: bool,
    /// The nodes' tombstone grace: short, so the delete-and-re-create workload sees purges.
    pub tombstone_grace: Duration,
    /// Negative controls switched on.
    pub bugs: Vec<Bug>,
}

/// A negative control: a known bug put into the run on purpose, which a checker must catch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Bug {
    /// Keys meant to be written once with a TTL are written without it, as by a node that
    /// ignored TTLs (caught by the ttl checker as reads after expiry).
    TtlIgnored,
    /// The TTL overwrite is sent without the read's context, so the older value survives
    /// as a sibling and is read again once the TTL value expires (ttl: resurrected).
    BlindOverwrite,
    /// The run's cluster config leaves the lww bucket's conflict policy at `siblings`, so
    /// concurrent writes there become siblings (lww: siblings).
    LwwOff,
}

/// Delete-and-re-create workers.
const RECREATE_WORKERS: usize = 2;
/// TTL workers (each alternates once-written and overwritten keys).
const TTL_WORKERS: usize = 2;
/// Slack the TTL checker adds to every expiry bound, on top of the injected clock skews.
const CLOCK_MARGIN_MS: u64 = 1_000;

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub seed: u64,
    pub operations: u64,
    pub faults: BTreeMap<String, u64>,
    pub verdicts: Vec<Verdict>,
    pub converged: bool,
    pub convergence_ms: Option<u64>,
    pub valid: bool,
}

/// Runs the whole thing and writes `history.jsonl`, `faults.jsonl`, `verdicts.json`,
/// `summary.txt` and `seed` into `cfg.out`.
pub async fn run(cfg: RunConfig) -> anyhow::Result<Report> {
    std::fs::create_dir_all(&cfg.out)?;
    std::fs::write(cfg.out.join("seed"), cfg.seed.to_string())?;
    // A short tombstone grace, so deletes are purged within a run and re-created keys meet
    // purged ones; hints must still outlive a fault, and the grace must exceed their expiry.
    let grace = cfg.tombstone_grace.as_secs().max(2);
    let mut sets = vec![
        "anti_entropy.interval=3s".to_string(),
        "timeouts.request=3s".to_string(),
        format!("tombstones.grace={grace}s"),
        "tombstones.gc_interval=1s".to_string(),
        format!("hinted_handoff.expiry={}s", grace - 1),
    ];
    if !cfg.bugs.contains(&Bug::LwwOff) {
        sets.push(format!("cluster.buckets.{LWW_BUCKET}.conflicts=lww"));
    }
    let mut cluster =
        Cluster::create(&cfg.out.join("cluster"), cfg.nodes, 1, cfg.base_port, sets).await?;
    if !cluster.wait_serving(Duration::from_secs(60)).await {
        anyhow::bail!("cluster did not come up");
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let history = Arc::new(History::new());
    let switches = Switches::default();
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = tokio::task::JoinSet::new();
    let client_cfg = cluster.client_config()?;
    let mut process = 0u64;
    for w in 0..cfg.workers.max(1) {
        // Readers go to any node, not the key's first replica, so a read and the write
        // before it can meet different coordinators: that is what R and W are about.
        let mut wcfg = client_cfg.clone();
        if w % 3 == 1 {
            wcfg.token_aware = false;
            let len = wcfg.addresses.len().max(1);
            wcfg.addresses.rotate_left(w % len);
        }
        let client = Client::connect(wcfg).await?;
        let (h, s, c) = (history.clone(), stop.clone(), cfg.clone());
        process += 1;
        let p = process;
        match w % 3 {
            0 => tasks.spawn(set_worker(client, p, h, s, c, SetKeys::Spread)),
            1 => tasks.spawn(register_reader(client, p, h, s, c)),
            _ => tasks.spawn(delete_worker(client, p, h, s, c)),
        };
    }
    for k in 0..REGISTER_KEYS {
        let client = Client::connect(client_cfg.clone()).await?;
        process += 1;
        tasks.spawn(register_writer(
            client,
            process,
            format!("reg{k}"),
            history.clone(),
            stop.clone(),
            cfg.clone(),
        ));
    }

    for _ in 0..HOT_WORKERS {
        let client = Client::connect(client_cfg.clone()).await?;
        process += 1;
        let keys = SetKeys::Hot(switches.hot.clone());
        let (h, s, c) = (history.clone(), stop.clone(), cfg.clone());
        tasks.spawn(set_worker(client, process, h, s, c, keys));
    }
    for _ in 0..RECREATE_WORKERS {
        let client = Client::connect(client_cfg.clone()).await?;
        process += 1;
        let (h, s, c) = (history.clone(), stop.clone(), cfg.clone());
        tasks.spawn(recreate_worker(client, process, h, s, c));
    }
    for _ in 0..TTL_WORKERS {
        let client = Client::connect(client_cfg.clone()).await?;
        process += 1;
        let (h, s, c) = (history.clone(), stop.clone(), cfg.clone());
        tasks.spawn(ttl_worker(client, process, h, s, c));
    }
    for i in 0..LWW_WRITERS + LWW_READERS {
        let client = Client::connect(client_cfg.clone()).await?;
        process += 1;
        let (h, s, c) = (history.clone(), stop.clone(), cfg.clone());
        if i < LWW_WRITERS {
            tasks.spawn(lww_writer(client, process, h, s, c));
        } else {
            tasks.spawn(lww_reader(client, process, h, s, c));
        }
    }
    {
        let client = Client::connect(client_cfg.clone()).await?;
        process += 1;
        let (h, s, c) = (history.clone(), stop.clone(), cfg.clone());
        tasks.spawn(blob_worker(
            client,
            process,
            h,
            s,
            c,
            switches.large.clone(),
        ));
    }

    // The nemesis: a fault, time for it to bite, heal, quiet time; repeat.
    let mut faults_log = std::fs::File::create(cfg.out.join("faults.jsonl"))?;
    let mut rng = Rng(cfg.seed);
    let mut injected: BTreeMap<String, u64> = BTreeMap::new();
    let mut skews: Vec<SkewWindow> = Vec::new();
    let end = Instant::now() + cfg.duration;
    let mut round = 0usize;
    while Instant::now() + cfg.fault_time < end && !cfg.faults.is_empty() {
        // Cycle through every kind first so a short run still exercises all of them.
        let fault = if round < cfg.faults.len() {
            cfg.faults[round]
        } else {
            cfg.faults[rng.below(cfg.faults.len())]
        };
        round += 1;
        // The promise covers one lost disk at a time: a disk fault waits until every node
        // has recovered from the last one (N=3, W=2 can't survive losing the last copies
        // before they are re-replicated); if recovery takes too long, it's skipped.
        if fault.loses_a_disk() && !all_whole(&cluster, Duration::from_secs(60)).await {
            log_fault(
                &mut faults_log,
                history.start,
                "skip a disk fault: a node is still recovering",
                Value::Null,
            );
            continue;
        }
        let injected_at = history.start.elapsed().as_millis() as u64;
        let detail = inject(&mut cluster, fault, &mut rng, &switches, cfg.fault_time).await?;
        let offset_ms = detail["offset_ms"].as_i64();
        let name = serde_json::to_value(fault)?
            .as_str()
            .unwrap_or("fault")
            .to_string();
        log_fault(
            &mut faults_log,
            history.start,
            &format!("start {name}"),
            detail,
        );
        *injected.entry(name.clone()).or_default() += 1;
        tokio::time::sleep(cfg.fault_time).await;
        heal(&mut cluster, fault, &switches).await?;
        // The skewed process ran from within `inject` until `heal` stopped it.
        if let Some(offset_ms) = offset_ms {
            skews.push(SkewWindow {
                from_ms: injected_at,
                to_ms: history.start.elapsed().as_millis() as u64,
                offset_ms,
            });
        }
        log_fault(
            &mut faults_log,
            history.start,
            &format!("heal {name}"),
            Value::Null,
        );
        tokio::time::sleep(cfg.fault_time / 2).await;
    }
    while Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop.store(true, Ordering::Relaxed);
    while tasks.join_next().await.is_some() {}
    heal(&mut cluster, Fault::Kill, &switches).await?;
    log_fault(&mut faults_log, history.start, "healed", Value::Null);
    cluster.wait_serving(Duration::from_secs(60)).await;

    let events = history.snapshot();
    let keys: BTreeSet<String> = events.iter().map(|e| e.key.clone()).collect();
    let keys: Vec<String> = keys.into_iter().collect();
    let converged = converge(&cluster, &keys, Duration::from_secs(300)).await;

    // Final reads with every replica.
    let client = Client::connect(cluster.client_config()?).await?;
    let mut final_sets = BTreeMap::new();
    let mut final_found = BTreeMap::new();
    let mut final_values = BTreeMap::new();
    for (key, r) in final_reads(&client, &keys).await? {
        if key.starts_with("set") {
            final_sets.insert(key.clone(), set_union(&r.values, false));
        }
        if key.starts_with("rc") {
            final_values.insert(key.clone(), ints(&r.values));
        }
        final_found.insert(key, r.found);
    }
    let lww_keys: Vec<String> = keys
        .iter()
        .filter(|k| k.starts_with("lww"))
        .cloned()
        .collect();
    let final_lww = replica_values(&client, &lww_keys).await?;
    // TTL keys are read once more, into the history, so the TTL checker judges the final
    // reads with the same bounds as the others.
    process += 1;
    for key in keys.iter().filter(|k| k.starts_with("ttl")) {
        history.record(process, Kind::Invoke, "read", key, Value::Null);
        match client.get(crate::workload::BUCKET, key, Level::All).await {
            Ok(r) => history.record(process, Kind::Ok, "read", key, ints(&r.values).into()),
            Err(_) => history.record(process, Kind::Fail, "read", key, Value::Null),
        }
    }
    let events = history.snapshot();

    // Each workload has its own keys; each checker sees only its own.
    let only = |prefix: &str| -> Vec<Event> {
        events
            .iter()
            .filter(|e| e.key.starts_with(prefix))
            .cloned()
            .collect()
    };
    let verdicts = vec![
        checker::check_set(&only("set"), &final_sets),
        checker::check_register(&only("reg")),
        checker::check_deletes(&only("del"), &final_found),
        check_recreate(&only("rc"), &final_values),
        checker::check_ttl(
            &only("ttl"),
            &ClockBounds {
                skews,
                margin_ms: CLOCK_MARGIN_MS,
            },
        ),
        checker::check_lww(&only("lww"), &final_lww),
        Verdict {
            checker: "convergence".into(),
            valid: converged.is_some(),
            counts: BTreeMap::from([
                ("keys".to_string(), keys.len() as u64),
                (
                    "converge_ms".to_string(),
                    converged.map(|d| d.as_millis() as u64).unwrap_or(0),
                ),
            ]),
            examples: if converged.is_some() {
                Vec::new()
            } else {
                vec!["replicas still differ 300 s after heal".into()]
            },
        },
    ];
    let operations = events.iter().filter(|e| e.kind == Kind::Invoke).count() as u64;
    let report = Report {
        seed: cfg.seed,
        operations,
        faults: injected,
        valid: checker::summary(&verdicts),
        verdicts,
        converged: converged.is_some(),
        convergence_ms: converged.map(|d| d.as_millis() as u64),
    };
    write_results(&cfg.out, &events, &report)?;
    Ok(report)
}

fn write_results(out: &Path, events: &[Event], report: &Report) -> anyhow::Result<()> {
    let mut h = std::io::BufWriter::new(std::fs::File::create(out.join("history.jsonl"))?);
    for e in events {
        writeln!(h, "{}", serde_json::to_string(e)?)?;
    }
    std::fs::write(
        out.join("verdicts.json"),
        serde_json::to_string_pretty(report)?,
    )?;
    let mut s = format!(
        "seed {}\noperations {}\nfaults {:?}\nconverged {} ({:?} ms)\n",
        report.seed, report.operations, report.faults, report.converged, report.convergence_ms
    );
    for v in &report.verdicts {
        s.push_str(&format!(
            "{}: {} {:?}\n",
            v.checker,
            if v.valid { "ok" } else { "VIOLATED" },
            v.counts
        ));
        for e in &v.examples {
            s.push_str(&format!("  {e}\n"));
        }
    }
    s.push_str(if report.valid { "valid\n" } else { "INVALID\n" });
    std::fs::write(out.join("summary.txt"), s)?;
    Ok(())
}
