//! One verification run: workloads against a cluster while the nemesis injects faults, then
//! heal, converge, final reads and the checkers' verdicts, all written to a results folder.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chorus_client::{Client, Error as ClientError, Level};
use serde::Serialize;
use serde_json::{json, Value};

use crate::cluster::{Cluster, ClusterError};
use crate::workload::{
    blob_worker, delete_worker, ints, recreate_worker, register_reader, register_writer, set_union,
    set_worker, History, Rng, SetKeys, BUCKET, REGISTER_KEYS,
};
use chorus_verify::checker::{self, Event, Kind, Verdict};
use chorus_verify::recreate::check_recreate;

/// A kind of fault the nemesis injects.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Fault {
    Kill,
    Pause,
    PartitionOne,
    PartitionMajority,
    PartitionBridge,
    Loss,
    Delay,
    ClockSkew,
    Wipe,
    JoinLeave,
    /// A node's data directory is put back to an older copy of itself.
    Restore,
    /// One replica is down while another loses its disk.
    WipeWhileDown,
    /// Many concurrent read-modify-writes of one key.
    HotKeys,
    /// Large values written while a replica is down, so they travel as hints.
    LargeValues,
}

impl Fault {
    /// Whether the fault destroys or rolls back a node's data directory.
    pub fn loses_a_disk(self) -> bool {
        matches!(self, Fault::Wipe | Fault::Restore | Fault::WipeWhileDown)
    }

    pub const ALL: [Fault; 14] = [
        Fault::Kill,
        Fault::Pause,
        Fault::PartitionOne,
        Fault::PartitionMajority,
        Fault::PartitionBridge,
        Fault::Loss,
        Fault::Delay,
        Fault::ClockSkew,
        Fault::Wipe,
        Fault::JoinLeave,
        Fault::Restore,
        Fault::WipeWhileDown,
        Fault::HotKeys,
        Fault::LargeValues,
    ];
}

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
}

/// Switches the nemesis flips for workloads that only run during a fault.
#[derive(Clone, Default)]
struct Switches {
    hot: Arc<AtomicBool>,
    large: Arc<AtomicBool>,
}

/// Concurrent writers on the hot key while the hot-keys fault lasts.
const HOT_WORKERS: usize = 16;
/// Delete-and-re-create workers.
const RECREATE_WORKERS: usize = 2;

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

fn log_fault(out: &mut std::fs::File, start: Instant, what: &str, detail: Value) {
    let line =
        json!({"time_ms": start.elapsed().as_millis() as u64, "event": what, "detail": detail});
    let _ = writeln!(out, "{line}");
}

/// Picks and applies one fault; returns a description and how to undo it.
async fn inject(
    c: &mut Cluster,
    fault: Fault,
    rng: &mut Rng,
    switches: &Switches,
    fault_time: Duration,
) -> Result<Value, ClusterError> {
    let n = c.initial;
    let victim = rng.below(n);
    let detail = match fault {
        Fault::Kill => {
            c.kill(victim);
            json!({"node": c.nodes[victim].id})
        }
        Fault::Pause => {
            c.pause(victim);
            json!({"node": c.nodes[victim].id})
        }
        Fault::PartitionOne => {
            c.relays.isolate(victim);
            json!({"isolated": c.nodes[victim].id})
        }
        Fault::PartitionMajority => {
            let mut all: Vec<usize> = (0..n).collect();
            all.rotate_left(victim);
            let minority: Vec<usize> = all[..n / 2].to_vec();
            let majority: Vec<usize> = all[n / 2..].to_vec();
            c.relays.partition(&[minority.clone(), majority.clone()]);
            json!({"minority": minority, "majority": majority})
        }
        Fault::PartitionBridge => {
            // Overlapping majorities: the bridge node sees both halves, the halves not each other.
            let mut faults = chorus_verify::relay::Faults::default();
            let others: Vec<usize> = (0..n).filter(|i| *i != victim).collect();
            let (left, right) = others.split_at(others.len() / 2);
            for a in left {
                for b in right {
                    use chorus_verify::relay::Party::Node;
                    faults.blocked.insert((Node(*a), Node(*b)));
                    faults.blocked.insert((Node(*b), Node(*a)));
                }
            }
            c.relays.set(faults);
            json!({"bridge": victim, "left": left, "right": right})
        }
        Fault::Loss => {
            c.relays.set_loss(0.2);
            json!({"loss": 0.2})
        }
        Fault::Delay => {
            c.relays.set_delay(Duration::from_millis(50));
            json!({"delay_ms": 50})
        }
        Fault::ClockSkew => {
            let skew = if rng.below(2) == 0 { 90_000 } else { -90_000 };
            c.kill(victim);
            c.nodes[victim].clock_offset_ms = skew;
            c.start(victim)?;
            json!({"node": c.nodes[victim].id, "offset_ms": skew})
        }
        Fault::Wipe => {
            c.wipe(victim)?;
            c.start(victim)?;
            json!({"node": c.nodes[victim].id})
        }
        Fault::Restore => {
            // Copy the data directory of a cleanly stopped node, let it run on (writes land
            // after the copy), then stop it and put the copy back: the backup-and-restore an
            // operator does.
            c.stop(victim);
            c.snapshot(victim)?;
            c.start(victim)?;
            tokio::time::sleep(fault_time / 2).await;
            c.stop(victim);
            c.restore(victim)?;
            c.start(victim)?;
            json!({"node": c.nodes[victim].id})
        }
        Fault::WipeWhileDown => {
            let other = (victim + 1) % n;
            c.kill(victim);
            c.wipe(other)?;
            c.start(other)?;
            json!({"down": c.nodes[victim].id, "wiped": c.nodes[other].id})
        }
        Fault::HotKeys => {
            switches.hot.store(true, Ordering::Relaxed);
            json!({"writers": HOT_WORKERS})
        }
        Fault::LargeValues => {
            c.kill(victim);
            switches.large.store(true, Ordering::Relaxed);
            json!({"down": c.nodes[victim].id})
        }
        Fault::JoinLeave => {
            // The spare node joins; it leaves again when this fault heals.
            let spare = n;
            if spare < c.nodes.len() && !c.running(spare) {
                c.start(spare)?;
                json!({"joined": c.nodes[spare].id})
            } else {
                json!({"skipped": "no spare node"})
            }
        }
    };
    Ok(detail)
}

/// Undoes whatever is in effect: restarts killed nodes, resumes paused ones, heals the
/// network, restores clocks, and walks a joined spare back out.
async fn heal(c: &mut Cluster, fault: Fault, switches: &Switches) -> Result<(), ClusterError> {
    switches.hot.store(false, Ordering::Relaxed);
    switches.large.store(false, Ordering::Relaxed);
    c.relays.heal();
    for i in 0..c.initial {
        c.resume(i);
        if c.nodes[i].clock_offset_ms != 0 {
            c.kill(i);
            c.nodes[i].clock_offset_ms = 0;
        }
        if !c.running(i) {
            c.start(i)?;
        }
    }
    if fault == Fault::JoinLeave && c.nodes.len() > c.initial && c.running(c.initial) {
        let spare = c.nodes[c.initial].id.clone();
        let deadline = Instant::now() + Duration::from_secs(60);
        // Let the join settle, then ask the spare to leave and wait for it to be out.
        loop {
            if let Ok(cfg) = c.admin_config_for(0) {
                if let Ok(cl) = Client::connect(cfg).await {
                    if let Ok(st) = cl.status().await {
                        if st.transfers_pending == 0 && cl.leave(&spare).await.is_ok() {
                            break;
                        }
                    }
                }
            }
            if Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        loop {
            let left = match c.client_config_for(0) {
                Ok(cfg) => match Client::connect(cfg).await {
                    Ok(cl) => cl.status().await.ok().is_some_and(|st| {
                        st.nodes.iter().any(|m| m.id == spare && m.status == "left")
                    }),
                    Err(_) => false,
                },
                Err(_) => false,
            };
            if left || Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        let spare_index = c.initial;
        c.kill(spare_index);
    }
    Ok(())
}

/// Waits until no node reports itself recovering (as every running node sees it).
async fn all_whole(c: &Cluster, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    loop {
        let mut whole = true;
        for i in 0..c.initial {
            let st = match c.client_config_for(i) {
                Ok(cfg) => match Client::connect(cfg).await {
                    Ok(cl) => cl.status().await.ok(),
                    Err(_) => None,
                },
                Err(_) => None,
            };
            if st.is_none_or(|st| st.nodes.iter().any(|n| n.status == "recovering")) {
                whole = false;
                break;
            }
        }
        if whole {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Waits until every replica of every key holds the same version, after asking every node
/// for an anti-entropy round. Returns how long that took.
async fn converge(c: &Cluster, keys: &[String], within: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut last_repair = Instant::now() - Duration::from_secs(60);
    loop {
        if last_repair.elapsed() > Duration::from_secs(3) {
            for i in 0..c.initial {
                if let Ok(cfg) = c.admin_config_for(i) {
                    if let Ok(cl) = Client::connect(cfg).await {
                        let _ = cl.repair().await;
                    }
                }
            }
            last_repair = Instant::now();
        }
        if let Ok(cfg) = c.client_config() {
            if let Ok(cl) = Client::connect(cfg).await {
                if identical(&cl, keys).await {
                    return Some(started.elapsed());
                }
            }
        }
        if started.elapsed() > within {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Whether each key's replicas (by the current ring) return the same values and context.
/// Keys are checked by several tasks at once: long runs leave hundreds of thousands.
async fn identical(cl: &Client, keys: &[String]) -> bool {
    let Ok(info) = cl.refresh_ring().await else {
        return false;
    };
    let info = Arc::new(info);
    let mut tasks = tokio::task::JoinSet::new();
    for chunk in keys.chunks(keys.len().div_ceil(32).max(1)) {
        let (cl, info, chunk) = (cl.clone(), info.clone(), chunk.to_vec());
        tasks.spawn(async move {
            for key in chunk {
                let p = info.ring.partition_of(BUCKET.as_bytes(), key.as_bytes());
                let mut seen = None;
                for node in info.ring.preference_list(p, info.n_for(BUCKET.as_bytes())) {
                    let Ok(r) = cl.get_replica(BUCKET, &key, node).await else {
                        return false;
                    };
                    let this = (r.found, r.values, r.context.to_string());
                    match &seen {
                        None => seen = Some(this),
                        Some(s) if *s == this => {}
                        Some(_) => return false,
                    }
                }
            }
            true
        });
    }
    let mut all = true;
    while let Some(r) = tasks.join_next().await {
        all &= r.unwrap_or(false);
    }
    all
}

/// Final R=all reads (R=quorum if all can't be had) of every key, several at a time.
async fn final_reads(
    client: &Client,
    keys: &[String],
) -> anyhow::Result<Vec<(String, chorus_client::GetResult)>> {
    let mut tasks = tokio::task::JoinSet::new();
    for chunk in keys.chunks(keys.len().div_ceil(32).max(1)) {
        let (client, chunk) = (client.clone(), chunk.to_vec());
        tasks.spawn(async move {
            let mut out = Vec::with_capacity(chunk.len());
            for key in chunk {
                let r = match client.get(BUCKET, &key, Level::All).await {
                    Ok(r) => r,
                    Err(_) => client.get(BUCKET, &key, Level::Quorum).await?,
                };
                out.push((key, r));
            }
            Ok::<_, ClientError>(out)
        });
    }
    let mut all = Vec::with_capacity(keys.len());
    while let Some(r) = tasks.join_next().await {
        all.extend(r??);
    }
    Ok(all)
}

/// Runs the whole thing and writes `history.jsonl`, `faults.jsonl`, `verdicts.json`,
/// `summary.txt` and `seed` into `cfg.out`.
pub async fn run(cfg: RunConfig) -> anyhow::Result<Report> {
    std::fs::create_dir_all(&cfg.out)?;
    std::fs::write(cfg.out.join("seed"), cfg.seed.to_string())?;
    // A short tombstone grace, so deletes are purged within a run and re-created keys meet
    // purged ones; hints must still outlive a fault, and the grace must exceed their expiry.
    let grace = cfg.tombstone_grace.as_secs().max(2);
    let sets = vec![
        "anti_entropy.interval=3s".to_string(),
        "timeouts.request=3s".to_string(),
        format!("tombstones.grace={grace}s"),
        "tombstones.gc_interval=1s".to_string(),
        format!("hinted_handoff.expiry={}s", grace - 1),
    ];
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
        let detail = inject(&mut cluster, fault, &mut rng, &switches, cfg.fault_time).await?;
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
