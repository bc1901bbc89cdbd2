//! The simulator's promises: a seed replays byte for byte, the CI seeds pass, and every
//! negative control is caught within them.

use chorus_sim::{run, Bug, SimConfig};

/// Seeds the CI run covers.
const CI_SEEDS: u64 = 500;
const THREADS: u64 = 2;

/// Runs seeds `0..count` but those in `skip` on [`THREADS`] threads; returns the failing
/// seeds with their replay commands, stopping early after the first failure when
/// `first_only`.
fn failing_seeds(
    cfg: &SimConfig,
    count: u64,
    first_only: bool,
    skip: &[u64],
) -> Vec<(u64, String)> {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::Mutex;
    let next = AtomicU64::new(0);
    let found = AtomicBool::new(false);
    let failed = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..THREADS {
            s.spawn(|| loop {
                let seed = next.fetch_add(1, Ordering::Relaxed);
                if seed >= count || (first_only && found.load(Ordering::Relaxed)) {
                    return;
                }
                if skip.contains(&seed) {
                    continue;
                }
                let r = run(cfg, seed);
                if !r.valid() {
                    found.store(true, Ordering::Relaxed);
                    let line = format!("{}{r}", r.replay_command());
                    failed
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push((seed, line));
                }
            });
        }
    });
    let mut out = failed.into_inner().unwrap_or_else(|p| p.into_inner());
    out.sort();
    out
}

#[test]
fn a_seed_replays_byte_for_byte() {
    let cfg = SimConfig::default();
    let a = run(&cfg, 7);
    let b = run(&cfg, 7);
    assert_eq!(a.trace_hash, b.trace_hash);
    assert_eq!(a.events, b.events);
    assert!(a.events > 10_000, "the run did little: {a}");
    let c = run(&cfg, 8);
    assert_ne!(a.trace_hash, c.trace_hash, "another seed, another history");
    // Seed 8 has membership changes (gossip, ring changes, transfers): it replays too.
    assert!(cfg.changes_membership(8) && !cfg.changes_membership(7));
    let d = run(&cfg, 8);
    assert_eq!(c.trace_hash, d.trace_hash);
    assert!(
        c.faults.get("join").is_some_and(|&j| j > 0),
        "seed 8 changed no membership: {c}"
    );
}

/// CI seeds that fail on a known, open Chorus bug, each with the bug it hits. A seed leaves
/// this list when its bug is fixed: the test below fails until then if one stops failing.
///
/// - 306, 451: a wall-clock step shortens the tombstone grace (docs/guarantees.md, "What
///   Chorus does not promise"): a node records a delete while its clock is far behind, the
///   clock is corrected, the tombstone looks old and is purged about a second later, and a
///   delayed replicate (306) or a hint (451) brings the value back.
const KNOWN_OPEN: &[u64] = &[306, 451];

fn known_open() -> Vec<u64> {
    KNOWN_OPEN.to_vec()
}

#[test]
fn the_ci_seeds_find_no_violation() {
    let failed = failing_seeds(&SimConfig::default(), CI_SEEDS, false, &[]);
    let known = known_open();
    let unexpected: Vec<&str> = failed
        .iter()
        .filter(|(seed, _)| !known.contains(seed))
        .take(3)
        .map(|(_, l)| l.as_str())
        .collect();
    assert!(
        unexpected.is_empty(),
        "{} of {CI_SEEDS} seeds failed beyond the known open ones:\n{}",
        failed.len(),
        unexpected.join("\n")
    );
    for seed in &known {
        assert!(
            failed.iter().any(|(s, _)| s == seed),
            "seed {seed} no longer fails: if its bug is fixed, take it off KNOWN_OPEN"
        );
    }
}

/// The control fails some CI seed that doesn't fail without it (the known-open seeds are
/// skipped: they prove nothing about the control).
fn caught(bug: Bug) {
    let cfg = SimConfig::default().with_bug(Some(bug));
    let failed = failing_seeds(&cfg, CI_SEEDS, true, &known_open());
    assert!(
        !failed.is_empty(),
        "the {bug} control passed all {CI_SEEDS} seeds: the checkers can't see it"
    );
}

#[test]
fn counter_restart_is_caught() {
    caught(Bug::CounterRestart);
}

#[test]
fn wiped_counts_is_caught() {
    caught(Bug::WipedCounts);
}

#[test]
fn drop_siblings_is_caught() {
    caught(Bug::DropSiblings);
}

#[test]
fn r1w1_is_caught() {
    caught(Bug::R1W1);
}

/// Writes during a transition reach only the new replica set while reads still go to the
/// old one: caught in the seeds with membership changes.
#[test]
fn transition_new_only_is_caught() {
    caught(Bug::TransitionNewOnly);
}

/// A former owner drops a partition as soon as its ring no longer gives it one, before the
/// gainers pulled it: caught in the seeds with membership changes.
#[test]
fn early_drop_is_caught() {
    caught(Bug::EarlyDrop);
}

/// What the simulator found in `chorus-node`'s tombstone index, which keeps the age of the
/// first tombstone when a newer one replaces it: a node's newer tombstone looks past the
/// grace at once, is purged, and a hint older than the delete brings the value back. The
/// simulated replica counts a tombstone's age from its last change, which passes the CI
/// seeds; the node's rule, as a control, fails them.
#[test]
#[ignore = "since the simulated node runs the core machines, the CI seeds no longer reach this \
            scenario; it needs a targeted scenario (the node's fix has its own unit test)"]
fn tombstone_age_kept_is_caught() {
    caught(Bug::TombstoneAgeKept);
}
