//! `chorus bench`: the YCSB core workloads against a running cluster, closed loop at a
//! concurrency or open loop at a target rate, for a number of operations or a duration,
//! with HdrHistogram percentiles; and the merge of several generator processes' reports.
//!
//! The workload engine runs against a [`Driver`]: Chorus itself (the default), or Redis or
//! etcd, so the same key choice, value size, mix and measurement apply to each store.
//!
//! - [`args`]: the command line and its checks;
//! - [`workload`]: operation mix and key choice;
//! - [`engine`]: the load phase and the closed and open loops;
//! - [`pacing`]: the open loop's timetable and its precise waiter;
//! - [`stats`]: what a run records; [`errors`]: failures by kind;
//! - [`summary`]: the JSON and text reports, reading them back and merging them.

mod args;
mod chorus_driver;
mod driver;
mod engine;
mod errors;
mod etcd_driver;
mod pacing;
mod redis_driver;
mod stats;
mod summary;
mod workload;

#[cfg(test)]
mod tests;

use std::future::Future;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use chorus_client::Client;

pub use args::{BenchArgs, DriverKind};
use driver::Driver;
use engine::Shared;
use summary::Summary;
use workload::key_name;

/// `chorus bench`: checks the arguments, connects the chosen driver and runs the workload,
/// or with `--merge` merges reports. `connect` opens the Chorus client from the command
/// line's config; it is awaited only for the Chorus driver, so the redis and etcd drivers
/// (and the merge) need no config.
pub async fn main(args: BenchArgs, connect: impl Future<Output = Result<Client>>) -> Result<()> {
    if !args.merge.is_empty() {
        let merged = merge_files(&args.merge)?;
        print(&merged, args.json);
        return Ok(());
    }
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

async fn run<D: Driver>(driver: D, args: BenchArgs) -> Result<()> {
    let shared = Arc::new(Shared::new(driver, &args)?);
    let tty = std::io::stderr().is_terminal() && !args.json;
    if !args.skip_load {
        engine::load(&shared, tty).await?;
    }
    let summary = run_and_summarize(&shared, tty).await;
    print(&summary, args.json);
    Ok(())
}

/// The run phase, and its report.
async fn run_and_summarize<D: Driver>(shared: &Arc<Shared<D>>, tty: bool) -> Summary {
    let elapsed = engine::run_phase(shared, tty).await;
    let levels = (shared.driver.read_level(), shared.driver.write_level());
    let measured = shared.stats.measured(shared.args.rate.is_some());
    Summary::of_run(&shared.args, levels, measured, elapsed)
}

fn print(summary: &Summary, json: bool) {
    if json {
        println!("{}", summary.to_json());
    } else {
        println!("{}", summary.text());
    }
}

/// Reads `--json` reports (the whole file, or else its last line, so a captured output
/// with other lines before the report also does) and merges them.
fn merge_files(files: &[PathBuf]) -> Result<Summary> {
    let mut parts = Vec::new();
    for f in files {
        let text =
            std::fs::read_to_string(f).with_context(|| format!("--merge: {}", f.display()))?;
        let value = serde_json::from_str(text.trim()).or_else(|e| {
            text.lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .ok_or(e)
                .and_then(serde_json::from_str)
        });
        let value: serde_json::Value =
            value.with_context(|| format!("--merge: {}: not JSON", f.display()))?;
        parts
            .push(Summary::from_json(&value).with_context(|| format!("--merge: {}", f.display()))?);
    }
    Ok(Summary::merge(parts)?)
}
