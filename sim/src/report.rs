//! The verdicts of one run: the `chorus-check` checkers over the recorded history and the
//! final reads, plus convergence (every replica of every key holds the identical version
//! once the cluster has healed).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use chorus_check::checker::{check_deletes, check_register, check_set, Event, Verdict};
use chorus_check::recreate::check_recreate;

use crate::client::{ints, set_union};
use crate::config::{Bug, SimConfig};
use crate::engine::{Time, MS};
use crate::node::Node;
use crate::placement::Placement;
use crate::world::World;

/// Most diverged keys named in the convergence verdict.
const MAX_EXAMPLES: usize = 10;

/// The outcome of one seed.
#[derive(Clone, Debug)]
pub struct Report {
    pub seed: u64,
    pub bug: Option<Bug>,
    pub verdicts: Vec<Verdict>,
    /// blake3 over every event, history line and the final disks.
    pub trace_hash: String,
    pub events: u64,
    pub operations: usize,
    pub faults: BTreeMap<&'static str, u64>,
    /// Time from the heal until every replica agreed.
    pub converged_after: Option<Time>,
}

impl Report {
    pub(crate) fn setup_error(seed: u64, cfg: &SimConfig, error: &str) -> Report {
        let mut counts = BTreeMap::new();
        counts.insert("setup_error".to_string(), 1);
        Report {
            seed,
            bug: cfg.bug,
            verdicts: vec![Verdict {
                checker: "setup".into(),
                valid: false,
                counts,
                examples: vec![error.to_string()],
            }],
            trace_hash: String::new(),
            events: 0,
            operations: 0,
            faults: BTreeMap::new(),
            converged_after: None,
        }
    }

    /// Whether every checker passed.
    pub fn valid(&self) -> bool {
        self.verdicts.iter().all(|v| v.valid)
    }

    /// The checkers that failed.
    pub fn failed(&self) -> Vec<&Verdict> {
        self.verdicts.iter().filter(|v| !v.valid).collect()
    }

    /// The command that replays this seed.
    pub fn replay_command(&self) -> String {
        let bug = self.bug.map(|b| format!(" --bug {b}")).unwrap_or_default();
        format!(
            "cargo run --release -p chorus-sim -- --seed {}{bug}",
            self.seed
        )
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "seed {}: {} ({} events, {} operations, trace {})",
            self.seed,
            if self.valid() { "ok" } else { "FAILED" },
            self.events,
            self.operations,
            &self.trace_hash[..self.trace_hash.len().min(16)]
        )?;
        let faults: Vec<String> = self
            .faults
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        writeln!(f, "  faults: {}", faults.join(", "))?;
        match self.converged_after {
            Some(t) => writeln!(f, "  converged {} ms after the heal", t / MS)?,
            None => writeln!(f, "  never converged")?,
        }
        for v in &self.verdicts {
            let counts: Vec<String> = v.counts.iter().map(|(k, n)| format!("{k} {n}")).collect();
            writeln!(
                f,
                "  {}: {} ({})",
                v.checker,
                if v.valid { "ok" } else { "FAILED" },
                counts.join(", ")
            )?;
            for e in v.examples.iter().take(5) {
                writeln!(f, "    {e}")?;
            }
        }
        Ok(())
    }
}

/// Keys whose replicas don't all hold the identical version (a replica lacking the key
/// counts as holding nothing).
pub fn diverged_keys(nodes: &[Node], place: &Placement) -> Vec<String> {
    let mut keys: BTreeSet<&String> = BTreeSet::new();
    for n in nodes {
        keys.extend(n.disk.view().data.keys());
    }
    keys.into_iter()
        .filter(|k| {
            let pref = place.pref_of(k);
            let digests: BTreeSet<Option<[u8; 32]>> = pref
                .iter()
                .filter_map(|&i| nodes.get(i))
                .map(|n| n.disk.view().data.get(*k).map(|s| s.digest))
                .collect();
            digests.len() > 1
        })
        .cloned()
        .collect()
}

fn family(history: &[Event], prefix: &str) -> Vec<Event> {
    history
        .iter()
        .filter(|e| e.key.starts_with(prefix))
        .cloned()
        .collect()
}

pub(crate) fn check(w: &World, seed: u64) -> Report {
    let mut trace = blake3::Hasher::new();
    trace.update(w.trace.hex().as_bytes());
    for n in &w.nodes {
        for (k, s) in &n.disk.view().data {
            trace.update(k.as_bytes());
            trace.update(&s.digest);
        }
    }
    let finals = &w.final_objects;
    let keyed = |prefix: &'static str| finals.iter().filter(move |(k, _)| k.starts_with(prefix));
    let final_sets: BTreeMap<String, BTreeSet<i64>> = keyed("set")
        .map(|(k, o)| (k.clone(), set_union(o.as_ref())))
        .collect();
    let final_found: BTreeMap<String, bool> = keyed("del")
        .map(|(k, o)| (k.clone(), o.as_ref().is_some_and(|o| o.is_found())))
        .collect();
    let final_values: BTreeMap<String, Vec<i64>> = keyed("rc")
        .map(|(k, o)| (k.clone(), ints(o.as_ref())))
        .collect();
    let h = &w.history;
    let mut verdicts = vec![
        check_set(&family(h, "set"), &final_sets),
        check_register(&family(h, "reg")),
        check_deletes(&family(h, "del"), &final_found),
        check_recreate(&family(h, "rc"), &final_values),
    ];
    let diverged = diverged_keys(&w.nodes, &w.latest_place());
    let recovering = w.nodes.iter().filter(|n| !n.is_whole()).count() as u64;
    let mut counts = BTreeMap::new();
    counts.insert("diverged".to_string(), diverged.len() as u64);
    counts.insert("not_whole".to_string(), recovering);
    counts.insert("final_read_failures".to_string(), w.final_failures);
    counts.insert(
        "converged_ms".to_string(),
        w.converged_after.map_or(0, |t| t / MS),
    );
    verdicts.push(Verdict {
        checker: "convergence".into(),
        valid: w.converged_after.is_some() && w.final_failures == 0,
        counts,
        examples: diverged
            .iter()
            .take(MAX_EXAMPLES)
            .map(|k| format!("key {k:?} differs between its replicas after the heal"))
            .collect(),
    });
    Report {
        seed,
        bug: w.cfg.bug,
        verdicts,
        trace_hash: trace.finalize().to_hex().to_string(),
        events: w.trace.events(),
        operations: chorus_check::checker::pair(h).len(),
        faults: w.faults.clone(),
        converged_after: w.converged_after,
    }
}
