use super::*;
use serde_json::json;
use std::collections::BTreeSet;

/// Builds a history from (time, process, kind, f, key, value) tuples.
fn h(events: &[(u64, u64, Kind, &str, &str, Value)]) -> Vec<Event> {
    events
        .iter()
        .map(|(t, p, k, f, key, value)| Event {
            time_ms: *t,
            process: *p,
            kind: *k,
            f: f.to_string(),
            key: key.to_string(),
            value: value.clone(),
        })
        .collect()
}

use Kind::{Fail, Info, Invoke, Ok as Okk};

fn finals(entries: &[(&str, &[i64])]) -> BTreeMap<String, BTreeSet<i64>> {
    entries
        .iter()
        .map(|(k, es)| (k.to_string(), es.iter().copied().collect()))
        .collect()
}

fn c(v: &Verdict, name: &str) -> u64 {
    v.counts[name]
}

#[test]
fn parse_history_round_trip() {
    let events = h(&[
        (0, 1, Invoke, "add", "s0", json!(7)),
        (3, 1, Okk, "add", "s0", json!(7)),
        (4, 2, Invoke, "read", "s0", Value::Null),
        (9, 2, Okk, "read", "s0", json!([7])),
        (10, 3, Invoke, "delete", "d1", Value::Null),
        (12, 3, Fail, "delete", "d1", Value::Null),
        (13, 4, Invoke, "write", "r1", json!(1)),
        (20, 4, Info, "write", "r1", json!(1)),
    ]);
    let mut jsonl = String::new();
    for e in &events {
        jsonl.push_str(&serde_json::to_string(e).unwrap());
        jsonl.push_str("\n\n");
    }
    assert!(jsonl.contains(r#""type":"invoke""#));
    assert_eq!(parse_history(&jsonl).unwrap(), events);

    // A missing value reads as null; bad lines report their line number.
    let parsed =
        parse_history(r#"{"time_ms":1,"process":0,"type":"invoke","f":"read","key":"k"}"#).unwrap();
    assert_eq!(parsed[0].value, Value::Null);
    let err = parse_history("\n{\"time_ms\":1,\"process\":0,\"type\":\"bogus\"}").unwrap_err();
    assert!(err.contains("line 2"), "{err}");
}

#[test]
fn pair_matches_completions_and_treats_unfinished_as_info() {
    let ops = pair(&h(&[
        (0, 1, Invoke, "write", "k", json!(1)),
        (1, 2, Invoke, "read", "k", Value::Null),
        (2, 2, Okk, "read", "k", json!([1])),
        (5, 1, Okk, "write", "k", json!(1)),
        (6, 1, Invoke, "write", "k", json!(2)),
        (7, 3, Okk, "read", "k", json!([])), // completion with no invoke: ignored
    ]));
    assert_eq!(ops.len(), 3);
    assert_eq!((ops[0].process, ops[0].outcome), (1, Okk));
    assert_eq!((ops[0].invoke_ms, ops[0].complete_ms), (0, Some(5)));
    assert_eq!(ops[0].value_in, json!(1));
    assert_eq!(ops[1].value_out, json!([1]));
    assert_eq!(ops[2].outcome, Info);
    assert_eq!(ops[2].complete_ms, None);
    assert_eq!(ops[2].value_in, json!(2));
    assert_eq!(ops[2].value_out, Value::Null);
}

fn set_history() -> Vec<Event> {
    h(&[
        (0, 1, Invoke, "add", "s", json!(1)),
        (5, 1, Okk, "add", "s", json!(1)),
        (6, 1, Invoke, "add", "s", json!(2)),
        (8, 2, Invoke, "read", "s", Value::Null),
        (9, 2, Okk, "read", "s", json!([1])), // concurrent with add 2: fine
        (10, 1, Okk, "add", "s", json!(2)),
        (11, 1, Invoke, "add", "s", json!(3)),
        (12, 2, Invoke, "read", "s", Value::Null),
        (13, 2, Okk, "read", "s", json!([2])), // started after add 1's ok: 1 is stale
        (20, 1, Info, "add", "s", json!(3)),
        (21, 1, Invoke, "add", "s", json!(4)),
        (22, 1, Fail, "add", "s", json!(4)),
        (23, 1, Invoke, "add", "s", json!(5)),
        (24, 1, Okk, "add", "s", json!(5)),
    ])
}

#[test]
fn set_valid_history_passes() {
    let v = check_set(&set_history(), &finals(&[("s", &[1, 2, 3, 4, 5])]));
    assert!(v.valid, "{v:?}");
    assert_eq!(c(&v, "attempted"), 5);
    assert_eq!(c(&v, "acknowledged"), 3);
    assert_eq!(c(&v, "ok"), 3);
    assert_eq!(c(&v, "lost"), 0);
    assert_eq!(c(&v, "recovered"), 2); // info 3 and failed 4 present anyway
    assert_eq!(c(&v, "stale"), 1); // element 1 missing from the read at 12 ms
    assert_eq!(c(&v, "never_read"), 1); // element 5
    assert_eq!(c(&v, "unexpected"), 0);
    assert!(v.examples.is_empty());
}

#[test]
fn set_lost_add_fails() {
    let v = check_set(&set_history(), &finals(&[("s", &[1, 3, 5])]));
    assert!(!v.valid);
    assert_eq!(c(&v, "lost"), 1);
    assert_eq!(c(&v, "ok"), 2);
    assert!(v.examples[0].contains("element 2"), "{:?}", v.examples);
    // A key with acknowledged adds but no final read at all loses everything.
    let v = check_set(&set_history(), &BTreeMap::new());
    assert!(!v.valid);
    assert_eq!(c(&v, "lost"), 3);
}

#[test]
fn set_unexpected_element_fails() {
    let mut hist = set_history();
    hist.extend(h(&[
        (30, 3, Invoke, "read", "s", Value::Null),
        (31, 3, Okk, "read", "s", json!([1, 2, 5, 99])),
    ]));
    let v = check_set(&hist, &finals(&[("s", &[1, 2, 5])]));
    assert!(!v.valid);
    assert_eq!(c(&v, "unexpected"), 1);
    assert_eq!(c(&v, "lost"), 0);
    assert!(v.examples[0].contains("99"));
    // In the final read, or under a key nobody added to, it is just as unexpected.
    let v = check_set(
        &set_history(),
        &finals(&[("s", &[1, 2, 5, 42]), ("other", &[1])]),
    );
    assert!(!v.valid);
    assert_eq!(c(&v, "unexpected"), 2);
}

#[test]
fn set_malformed_read_fails() {
    let hist = h(&[
        (0, 1, Invoke, "read", "s", Value::Null),
        (1, 1, Okk, "read", "s", json!("oops")),
    ]);
    let v = check_set(&hist, &finals(&[("s", &[])]));
    assert!(!v.valid);
    assert_eq!(c(&v, "malformed"), 1);
}

fn register_history() -> Vec<Event> {
    h(&[
        (0, 1, Invoke, "write", "r", json!(1)),
        (1, 9, Invoke, "read", "r", Value::Null),
        (2, 9, Okk, "read", "r", json!([])), // before any ack: unchecked
        (5, 1, Okk, "write", "r", json!(1)),
        (6, 1, Invoke, "write", "r", json!(2)),
        (7, 2, Invoke, "read", "r", Value::Null),
        (8, 2, Okk, "read", "r", json!([1])), // concurrent with write 2: old value fine
        (10, 1, Okk, "write", "r", json!(2)),
        (11, 2, Invoke, "read", "r", Value::Null),
        (12, 2, Okk, "read", "r", json!([2])),
    ])
}

#[test]
fn register_valid_history_passes() {
    let v = check_register(&register_history());
    assert!(v.valid, "{v:?}");
    assert_eq!(c(&v, "reads"), 3);
    assert_eq!(c(&v, "writes_ok"), 2);
    assert_eq!(c(&v, "checked_reads"), 2);
    assert_eq!(c(&v, "stale_reads"), 0);
    assert_eq!(c(&v, "unexpected"), 0);
}

/// Writes seqs 1..=5, all acknowledged by 50 ms.
fn writes_to_five() -> Vec<Event> {
    let mut hist = Vec::new();
    for seq in 1..=5u64 {
        hist.extend(h(&[
            (seq * 10, 1, Invoke, "write", "r", json!(seq)),
            (seq * 10 + 1, 1, Okk, "write", "r", json!(seq)),
        ]));
    }
    hist
}

#[test]
fn register_stale_read_fails() {
    let mut hist = writes_to_five();
    hist.extend(h(&[
        (60, 2, Invoke, "read", "r", Value::Null),
        (61, 2, Okk, "read", "r", json!([3])),
        (62, 3, Invoke, "read", "r", Value::Null),
        (63, 3, Okk, "read", "r", json!([])), // not found after an ack: also stale
    ]));
    let v = check_register(&hist);
    assert!(!v.valid);
    assert_eq!(c(&v, "stale_reads"), 2);
    assert_eq!(c(&v, "checked_reads"), 2);
    assert!(v.examples[0].contains("write 5"), "{:?}", v.examples);
}

#[test]
fn register_latest_or_siblings_after_ack_pass() {
    let mut hist = writes_to_five();
    hist.extend(h(&[
        (60, 2, Invoke, "read", "r", Value::Null),
        (61, 2, Okk, "read", "r", json!([5])),
        (62, 3, Invoke, "read", "r", Value::Null),
        (63, 3, Okk, "read", "r", json!([3, 5])),
    ]));
    let v = check_register(&hist);
    assert!(v.valid, "{v:?}");
    assert_eq!(c(&v, "checked_reads"), 2);
}

#[test]
fn register_read_concurrent_with_write_may_return_old_value() {
    let hist = h(&[
        (0, 1, Invoke, "write", "r", json!(3)),
        (1, 1, Okk, "write", "r", json!(3)),
        (10, 1, Invoke, "write", "r", json!(5)),
        (11, 2, Invoke, "read", "r", Value::Null),
        (12, 1, Okk, "write", "r", json!(5)),
        (13, 2, Okk, "read", "r", json!([3])),
        // Invoked in the same millisecond as the ack: not strictly after, so unchecked.
        (12, 3, Invoke, "read", "r", Value::Null),
        (14, 3, Okk, "read", "r", json!([3])),
    ]);
    let v = check_register(&hist);
    assert!(v.valid, "{v:?}");
    assert_eq!(c(&v, "checked_reads"), 2); // both with floor 3
}

#[test]
fn register_info_write_then_read_passes() {
    let hist = h(&[
        (0, 1, Invoke, "write", "r", json!(1)),
        (1, 1, Okk, "write", "r", json!(1)),
        (2, 1, Invoke, "write", "r", json!(2)),
        (9, 1, Info, "write", "r", json!(2)),
        (10, 1, Invoke, "write", "r", json!(3)), // never completes
        (20, 2, Invoke, "read", "r", Value::Null),
        (21, 2, Okk, "read", "r", json!([2])),
        (22, 2, Invoke, "read", "r", Value::Null),
        (23, 2, Okk, "read", "r", json!([1, 3])),
    ]);
    let v = check_register(&hist);
    assert!(v.valid, "{v:?}");
    assert_eq!(c(&v, "writes_ok"), 1);
    assert_eq!(c(&v, "checked_reads"), 2);
}

#[test]
fn register_unexpected_seq_fails() {
    let mut hist = writes_to_five();
    hist.extend(h(&[
        (60, 2, Invoke, "read", "r", Value::Null),
        (61, 2, Okk, "read", "r", json!([5, 77])),
        (62, 2, Invoke, "read", "other", Value::Null),
        (63, 2, Okk, "read", "other", json!([1])),
    ]));
    let v = check_register(&hist);
    assert!(!v.valid);
    assert_eq!(c(&v, "unexpected"), 2);
    assert_eq!(c(&v, "stale_reads"), 0);
    // A never-written seq does not satisfy the floor.
    let mut hist = writes_to_five();
    hist.extend(h(&[
        (60, 2, Invoke, "read", "r", Value::Null),
        (61, 2, Okk, "read", "r", json!([77])),
    ]));
    let v = check_register(&hist);
    assert_eq!((c(&v, "unexpected"), c(&v, "stale_reads")), (1, 1));
}

fn deleted_key(delete_outcome: Kind) -> Vec<Event> {
    h(&[
        (0, 1, Invoke, "write", "d", json!(1)),
        (1, 1, Okk, "write", "d", json!(1)),
        (2, 1, Invoke, "delete", "d", Value::Null),
        (3, 1, delete_outcome, "delete", "d", Value::Null),
    ])
}

#[test]
fn deletes_valid_history_passes() {
    let mut hist = deleted_key(Okk);
    hist.extend(h(&[
        // Deleted then written again: expected to be found, not checked.
        (4, 2, Invoke, "write", "e", json!(1)),
        (5, 2, Okk, "write", "e", json!(1)),
        (6, 2, Invoke, "delete", "e", Value::Null),
        (7, 2, Okk, "delete", "e", Value::Null),
        (8, 2, Invoke, "write", "e", json!(2)),
        (9, 2, Okk, "write", "e", json!(2)),
    ]));
    let found = BTreeMap::from([("d".to_string(), false), ("e".to_string(), true)]);
    let v = check_deletes(&hist, &found);
    assert!(v.valid, "{v:?}");
    assert_eq!((c(&v, "deleted"), c(&v, "checked")), (1, 1));
    assert_eq!(c(&v, "resurrected"), 0);
}

#[test]
fn deletes_resurrected_fails() {
    let found = BTreeMap::from([("d".to_string(), true)]);
    let v = check_deletes(&deleted_key(Okk), &found);
    assert!(!v.valid);
    assert_eq!(c(&v, "resurrected"), 1);
    assert!(v.examples[0].contains("\"d\""));
    // No final read for a checked key cannot pass either.
    let v = check_deletes(&deleted_key(Okk), &BTreeMap::new());
    assert!(!v.valid);
    assert_eq!(c(&v, "missing_final"), 1);
}

#[test]
fn deletes_uncertain_delete_is_not_a_violation() {
    let found = BTreeMap::from([("d".to_string(), true)]);
    for outcome in [Info, Fail] {
        let v = check_deletes(&deleted_key(outcome), &found);
        assert!(v.valid, "{v:?}");
        assert_eq!(c(&v, "uncertain"), 1);
        assert_eq!((c(&v, "checked"), c(&v, "resurrected")), (0, 0));
    }
    // An ok delete racing a write (acked after the delete began) is uncertain too.
    let hist = h(&[
        (0, 1, Invoke, "write", "d", json!(1)),
        (1, 2, Invoke, "delete", "d", Value::Null),
        (2, 2, Okk, "delete", "d", Value::Null),
        (3, 1, Okk, "write", "d", json!(1)),
    ]);
    let v = check_deletes(&hist, &found);
    assert!(v.valid, "{v:?}");
    assert_eq!(
        (c(&v, "deleted"), c(&v, "uncertain"), c(&v, "checked")),
        (1, 1, 0)
    );
}

#[test]
fn summary_requires_all_valid() {
    let good = check_register(&register_history());
    let bad = check_deletes(
        &deleted_key(Okk),
        &BTreeMap::from([("d".to_string(), true)]),
    );
    assert!(summary(&[]));
    assert!(summary(std::slice::from_ref(&good)));
    assert!(!summary(&[good, bad]));
}
