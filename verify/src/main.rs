//! `chorus-verify`: a Jepsen-style run against a real cluster. Writes a results folder and
//! exits 0 when every checker passes, 1 when one reports a violation.

mod cluster;
mod run;
mod workload;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use chorus_client::Level;
use clap::Parser;

use run::{Bug, Fault, RunConfig};

#[derive(Parser)]
#[command(
    name = "chorus-verify",
    about = "Fault-injection verification of a Chorus cluster"
)]
struct Args {
    /// Nodes in the cluster (one more is kept as a spare for join/leave faults).
    #[arg(long, default_value_t = 5)]
    nodes: usize,
    /// How long the workload runs, e.g. `3m` or `30m`.
    #[arg(long, default_value = "3m", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Seed of the fault schedule and the workloads; a run is reproducible from it.
    #[arg(long)]
    seed: Option<u64>,
    /// Results folder.
    #[arg(long, default_value = "verify-results")]
    out: PathBuf,
    /// First UDP port of the cluster (relays use +200, admin +1000).
    #[arg(long, default_value_t = 24000)]
    base_port: u16,
    #[arg(long, default_value = "quorum")]
    r: Level,
    #[arg(long, default_value = "quorum")]
    w: Level,
    /// Client workers (set, register-read and delete workloads, in turn) besides one
    /// writer per register key and the fixed re-create, TTL and lww workers.
    #[arg(long, default_value_t = 6)]
    workers: usize,
    /// Fault kinds, comma-separated; default all: kill, pause, partition-one,
    /// partition-majority, partition-bridge, loss, delay, clock-skew, wipe, join-leave,
    /// restore, wipe-while-down, hot-keys, large-values.
    #[arg(long, value_delimiter = ',')]
    faults: Vec<String>,
    /// How long each fault lasts.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    fault_time: Duration,
    /// Negative control: a client that drops siblings (last-writer-wins), which loses adds.
    #[arg(long)]
    drop_siblings: bool,
    /// Negative controls, comma-separated: ttl-ignored, blind-overwrite, lww-off (see
    /// docs/guarantees.md); the run must then fail.
    #[arg(long, value_enum, value_delimiter = ',')]
    bug: Vec<Bug>,
    /// The nodes' tombstone grace; short, so deletes are purged during the run.
    #[arg(long, default_value = "12s", value_parser = humantime::parse_duration)]
    tombstone_grace: Duration,
}

fn parse_fault(s: &str) -> anyhow::Result<Fault> {
    Fault::ALL
        .into_iter()
        .find(|f| {
            serde_json::to_value(f)
                .ok()
                .and_then(|v| v.as_str().map(|x| x == s))
                .unwrap_or(false)
        })
        .ok_or_else(|| anyhow::anyhow!("unknown fault {s:?}"))
}

fn main() -> ExitCode {
    let args = Args::parse();
    let faults = if args.faults.is_empty() {
        Ok(Fault::ALL.to_vec())
    } else {
        args.faults.iter().map(|s| parse_fault(s)).collect()
    };
    let faults = match faults {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
    });
    let cfg = RunConfig {
        nodes: args.nodes,
        duration: args.duration,
        seed,
        out: args.out,
        base_port: args.base_port,
        r: args.r,
        w: args.w,
        workers: args.workers,
        faults,
        fault_time: args.fault_time,
        drop_siblings: args.drop_siblings,
        tombstone_grace: args.tombstone_grace,
        bugs: args.bug,
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    println!("seed {seed}");
    match rt.block_on(run::run(cfg.clone())) {
        Ok(report) => {
            let summary = std::fs::read_to_string(cfg.out.join("summary.txt")).unwrap_or_default();
            print!("{summary}");
            if report.valid {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
