//! The verification harness end to end: a short run with every fault kind must find no
//! violation, and the negative controls must make the checkers fail.
//! Runs are serialised: each one is a 6-node cluster on a 2-core machine.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Mutex;

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn run(name: &str, base_port: u16, args: &[&str]) -> (bool, serde_json::Value, PathBuf) {
    let out = std::env::temp_dir().join(format!("chorus-verify-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let status = Command::new(env!("CARGO_BIN_EXE_chorus-verify"))
        .args(["--out"])
        .arg(&out)
        .args(["--base-port", &base_port.to_string(), "--seed", "42"])
        .args(args)
        .status()
        .expect("run chorus-verify");
    let report: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("verdicts.json")).expect("verdicts.json written"),
    )
    .expect("verdicts are JSON");
    for f in ["history.jsonl", "faults.jsonl", "summary.txt", "seed"] {
        assert!(out.join(f).is_file(), "results folder lacks {f}");
    }
    (status.success(), report, out)
}

fn verdict<'a>(report: &'a serde_json::Value, checker: &str) -> &'a serde_json::Value {
    report["verdicts"]
        .as_array()
        .and_then(|v| v.iter().find(|x| x["checker"] == checker))
        .unwrap_or_else(|| panic!("no {checker} verdict in {report}"))
}

#[test]
fn short_run_with_every_fault_kind_finds_no_violation() {
    let _guard = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let (ok, report, out) = run(
        "short",
        24000,
        &["--duration", "110s", "--fault-time", "4s"],
    );
    let faults = report["faults"].as_object().expect("faults");
    for kind in [
        "kill",
        "pause",
        "partition-one",
        "partition-majority",
        "partition-bridge",
        "loss",
        "delay",
        "clock-skew",
        "wipe",
        "join-leave",
        "restore",
        "wipe-while-down",
        "hot-keys",
        "large-values",
    ] {
        assert!(
            faults.contains_key(kind),
            "{kind} was never injected: {report}"
        );
    }
    assert!(report["operations"].as_u64().unwrap_or(0) > 500, "{report}");
    // Every checker must have had something to check, or its zero means nothing.
    for (checker, count) in [
        ("set", "acknowledged"),
        ("register", "checked_reads"),
        ("deletes", "checked"),
        ("recreate", "cycles"),
        ("ttl", "checked_reads"),
        ("ttl", "resurrection_checks"),
        ("lww", "reads"),
        ("lww", "replica_reads"),
    ] {
        let n = verdict(&report, checker)["counts"][count]
            .as_u64()
            .unwrap_or(0);
        assert!(n > 0, "{checker} checked nothing ({count} = 0): {report}");
    }
    assert!(ok, "violations found; see {}", out.display());
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn r_one_w_one_is_flagged_by_the_register_checker() {
    let _guard = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let (ok, report, out) = run(
        "weak",
        24400,
        &[
            "--duration",
            "40s",
            "--fault-time",
            "4s",
            "--r",
            "one",
            "--w",
            "one",
            "--faults",
            "partition-one,partition-majority,kill",
        ],
    );
    let v = verdict(&report, "register");
    assert!(!ok, "R=1 W=1 passed every checker: {report}");
    assert!(v["counts"]["stale_reads"].as_u64().unwrap_or(0) > 0, "{v}");
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn a_client_that_drops_siblings_is_flagged_by_the_set_checker() {
    let _guard = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let (ok, report, out) = run(
        "lww",
        24800,
        &[
            "--duration",
            "25s",
            "--fault-time",
            "4s",
            "--drop-siblings",
            "--faults",
            "partition-one",
        ],
    );
    let v = verdict(&report, "set");
    assert!(!ok, "a sibling-dropping client passed: {report}");
    assert!(v["counts"]["lost"].as_u64().unwrap_or(0) > 0, "{v}");
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn ttl_and_lww_bugs_are_flagged_by_their_checkers() {
    let _guard = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let (ok, report, out) = run(
        "bugs",
        27000,
        &[
            "--duration",
            "25s",
            "--fault-time",
            "4s",
            "--bug",
            "ttl-ignored,blind-overwrite,lww-off",
            "--faults",
            "delay",
        ],
    );
    assert!(!ok, "the TTL and lww bugs passed: {report}");
    for (checker, count) in [
        ("ttl", "expired_read"),
        ("ttl", "resurrected"),
        ("lww", "siblings"),
    ] {
        let v = verdict(&report, checker);
        assert!(v["counts"][count].as_u64().unwrap_or(0) > 0, "{count}: {v}");
    }
    // Each bug trips only its own checkers.
    for checker in ["set", "register", "deletes", "recreate"] {
        let v = verdict(&report, checker);
        assert_eq!(v["valid"], true, "{v}");
    }
    let _ = std::fs::remove_dir_all(&out);
}
