//! `chorus-sim`: runs seeds of the deterministic cluster simulation and reports failures
//! with the command that replays them.

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use chorus_sim::{run, Bug, Report, SimConfig};
use clap::Parser;

#[derive(Parser, Debug)]
#[command(about = "Deterministic simulation of a Chorus cluster under faults")]
struct Args {
    /// Run seeds 0..SEEDS (CI mode).
    #[arg(long, default_value_t = 500)]
    seeds: u64,
    /// Replay one seed and print its report.
    #[arg(long)]
    seed: Option<u64>,
    /// Explore random seeds until stopped.
    #[arg(long)]
    long: bool,
    /// Switch on a negative control: counter-restart, wiped-counts, drop-siblings, r1w1,
    /// tombstone-age-kept, transition-new-only, early-drop.
    #[arg(long)]
    bug: Option<Bug>,
    /// Membership changes in one seed of this many (1: every seed, 0: none).
    #[arg(long)]
    membership_one_in: Option<u64>,
    /// With --seed: print everything that touches this key.
    #[arg(long)]
    watch: Option<String>,
    /// Worker threads.
    #[arg(long, default_value_t = 2)]
    threads: usize,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let mut cfg = SimConfig::default().with_bug(args.bug);
    cfg.watch = args.watch.clone();
    if let Some(k) = args.membership_one_in {
        cfg.membership_one_in = k;
    }
    if let Some(seed) = args.seed {
        let r = run(&cfg, seed);
        print!("{r}");
        return if r.valid() {
            ExitCode::SUCCESS
        } else {
            println!("replay: {}", r.replay_command());
            ExitCode::FAILURE
        };
    }
    let started = Instant::now();
    let next = AtomicU64::new(if args.long { random_start() } else { 0 });
    let ran = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    let failures: Mutex<Vec<Report>> = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..args.threads.max(1) {
            s.spawn(|| loop {
                let seed = next.fetch_add(1, Ordering::Relaxed);
                if stop.load(Ordering::Relaxed) || (!args.long && seed >= args.seeds) {
                    return;
                }
                let r = run(&cfg, seed);
                ran.fetch_add(1, Ordering::Relaxed);
                if !r.valid() {
                    let names: Vec<&str> = r.failed().iter().map(|v| v.checker.as_str()).collect();
                    println!(
                        "seed {seed} FAILED ({}): {}",
                        names.join(", "),
                        r.replay_command()
                    );
                    failures.lock().unwrap_or_else(|p| p.into_inner()).push(r);
                    if args.long {
                        stop.store(true, Ordering::Relaxed);
                    }
                }
            });
        }
    });
    let ran = ran.load(Ordering::Relaxed);
    let secs = started.elapsed().as_secs_f64();
    let failed = failures.lock().unwrap_or_else(|p| p.into_inner()).len();
    println!(
        "{ran} seeds, {failed} failed, {:.1} s ({:.0} seeds per minute)",
        secs,
        ran as f64 * 60.0 / secs.max(1e-9)
    );
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// A starting seed for `--long` from the wall clock: exploration, not replay (each failing
/// seed is printed with its replay command).
fn random_start() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        >> 16
}
