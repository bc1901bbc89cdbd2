//! Background workers as an operator sees them on a real 3-node cluster: `chorus status
//! --json` lists the answering node's workers by name, their iteration counts grow while
//! the node runs, and SIGTERM stops a node (its workers first) promptly.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{poll, single_node_config, TestCluster};

const WORKERS: [&str; 7] = [
    "gossip",
    "failure-detector",
    "transfers",
    "hint-replay",
    "anti-entropy",
    "tombstone-gc",
    "recovery",
];

fn chorus(cfg: &Path, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_chorus"))
        .arg("--config")
        .arg(cfg)
        .args(args)
        .env_remove("CHORUS_CONFIG")
        .output()
        .expect("run chorus");
    assert!(
        out.status.success(),
        "chorus {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `status --json` from node `k`: its id and each worker's JSON by name.
fn workers_of(cfg: &Path) -> (String, BTreeMap<String, serde_json::Value>) {
    let out = chorus(cfg, &["status", "--json"]);
    let st: serde_json::Value = serde_json::from_str(out.trim()).expect("status JSON");
    // The fields scripts rely on are still there next to the new one.
    assert!(st["transfers_pending"].is_u64(), "{st}");
    assert!(st["tombstones_purged"].is_u64(), "{st}");
    for n in st["nodes"].as_array().expect("nodes") {
        assert!(n["id"].is_string() && n["status"].is_string(), "{n}");
        assert!(n["hints_pending"].is_u64(), "{n}");
    }
    let workers = st["workers"].as_array().expect("workers array");
    let by_name: BTreeMap<String, serde_json::Value> = workers
        .iter()
        .map(|w| (w["name"].as_str().expect("name").to_string(), w.clone()))
        .collect();
    assert_eq!(by_name.len(), workers.len(), "names are unique: {st}");
    let node = st["node"].as_str().expect("node").to_string();
    (node, by_name)
}

fn iterations(w: &serde_json::Value) -> u64 {
    w["iterations"].as_u64().expect("iterations")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_lists_the_seven_workers_and_their_iterations_grow() {
    // Rounds every second, so every worker steps within the test.
    let c = TestCluster::start(
        3,
        &["anti_entropy.interval=1s", "tombstones.gc_interval=1s"],
    )
    .await;
    let configs: Vec<PathBuf> = (1..=3)
        .map(|k| single_node_config(&c, "client.toml", k))
        .collect();

    let mut first = Vec::new();
    for (i, cfg) in configs.iter().enumerate() {
        let (node, workers) = workers_of(cfg);
        assert_eq!(node, format!("n{}", i + 1), "the contacted node answers");
        let mut names: Vec<&str> = workers.keys().map(String::as_str).collect();
        names.sort_unstable();
        let mut want = WORKERS.to_vec();
        want.sort_unstable();
        assert_eq!(names, want, "node {node}");
        for (name, w) in &workers {
            let state = w["state"].as_str().expect("state");
            assert!(
                ["busy", "idle", "error"].contains(&state),
                "{node}: worker {name} is {state}: {w}"
            );
            assert!(w["progress"].is_string(), "{w}");
            assert!(
                w["last_error"].is_null() || w["last_error"].is_string(),
                "{w}"
            );
        }
        first.push(workers);
    }

    // Every worker of every node steps again: none is stuck or dead.
    for (k, cfg) in configs.iter().enumerate() {
        let before = &first[k];
        let cfg = cfg.clone();
        poll(
            Duration::from_secs(30),
            &format!("every worker of n{} steps again", k + 1),
            || {
                let (_, now) = workers_of(&cfg);
                let grown = WORKERS
                    .iter()
                    .all(|name| iterations(&now[*name]) > iterations(&before[*name]));
                async move { grown }
            },
        )
        .await;
    }
    // The periodic ones had their first round by now (they wait an interval first).
    let (_, now) = workers_of(&configs[0]);
    for name in ["anti-entropy", "tombstone-gc", "recovery"] {
        assert!(iterations(&now[name]) >= 1, "{name}: {}", now[name]);
        assert!(now[name]["ms_since_step"].is_u64(), "{}", now[name]);
    }

    // The text form has one line for them.
    let text = chorus(&configs[1], &["status"]);
    let line = text
        .lines()
        .find(|l| l.starts_with("workers: "))
        .unwrap_or_else(|| panic!("no workers line in:\n{text}"));
    for name in WORKERS {
        assert!(line.contains(name), "{name} missing from {line:?}");
    }

    // SIGTERM: the workers stop, then the transport; the process exits promptly and says
    // nothing about steps cut short (every step of a healthy cluster is short).
    let pid = c.pid(3).expect("n3 runs");
    let sent = Instant::now();
    // SAFETY: kill(2) on our own child's pid has no memory-safety preconditions.
    unsafe {
        libc::kill(pid as libc::pid_t, libc::SIGTERM);
    }
    poll(Duration::from_secs(15), "n3 exits after SIGTERM", || {
        let gone = !alive(pid);
        async move { gone }
    })
    .await;
    assert!(sent.elapsed() < Duration::from_secs(15));
    let log = c.log(3);
    assert!(log.contains("shutting down"), "{log}");
    assert!(!log.contains("stopped mid-step"), "{log}");
}

fn alive(pid: u32) -> bool {
    // An exited child stays a zombie until reaped; look at its state.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat.contains(") Z"),
        Err(_) => false,
    }
}
