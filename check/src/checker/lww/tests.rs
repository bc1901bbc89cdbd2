use super::*;
use serde_json::{json, Value};

use Kind::{Fail, Invoke, Ok as Okk};

fn ev(t: u64, process: u64, kind: Kind, f: &str, value: Value) -> Event {
    Event {
        time_ms: t,
        process,
        kind,
        f: f.into(),
        key: "lww0".into(),
        value,
    }
}

/// Two processes write 11 and 21 concurrently; 31 fails; a reader sees one of them.
fn history(seen: Value) -> Vec<Event> {
    vec![
        ev(0, 1, Invoke, "write", json!(11)),
        ev(1, 2, Invoke, "write", json!(21)),
        ev(2, 3, Invoke, "write", json!(31)),
        ev(3, 3, Fail, "write", json!(31)),
        ev(5, 1, Okk, "write", json!(11)),
        ev(6, 2, Okk, "write", json!(21)),
        ev(7, 4, Invoke, "read", Value::Null),
        ev(8, 4, Okk, "read", seen),
    ]
}

fn finals(replicas: &[&[i64]]) -> BTreeMap<String, Vec<Vec<i64>>> {
    BTreeMap::from([(
        "lww0".to_string(),
        replicas.iter().map(|r| r.to_vec()).collect(),
    )])
}

/// Three replicas answering the same.
fn all3(values: &[i64]) -> BTreeMap<String, Vec<Vec<i64>>> {
    finals(&[values, values, values])
}

#[test]
fn one_value_everywhere_passes() {
    // Either concurrent write may win; a failed write may too (it may have reached a replica).
    for winner in [11, 21, 31] {
        let v = check_lww(&history(json!([21])), &all3(&[winner]));
        assert!(v.valid, "{v:?}");
        assert_eq!(v.get("writes_ok"), 2);
        assert_eq!(v.get("replica_reads"), 3);
    }
}

#[test]
fn siblings_in_a_read_or_on_a_replica_are_flagged() {
    let v = check_lww(&history(json!([11, 21])), &all3(&[21]));
    assert!(!v.valid);
    assert_eq!(v.get("siblings"), 1);
    let v = check_lww(&history(json!([21])), &all3(&[11, 21]));
    assert_eq!(v.get("siblings"), 3, "{v:?}");
}

#[test]
fn a_value_nobody_wrote_is_flagged() {
    let v = check_lww(&history(json!([99])), &all3(&[21]));
    assert!(!v.valid);
    assert_eq!(v.get("unexpected"), 1);
    assert!(v.examples[0].contains("99"), "{:?}", v.examples);
}

#[test]
fn replicas_that_disagree_or_lost_everything_are_flagged() {
    let v = check_lww(&history(json!([21])), &finals(&[&[21], &[11], &[21]]));
    assert!(!v.valid);
    assert_eq!(v.get("diverged"), 1);
    let v = check_lww(&history(json!([21])), &all3(&[]));
    assert!(!v.valid);
    assert_eq!(v.get("lost"), 1);
    let v = check_lww(&history(json!([21])), &BTreeMap::new());
    assert!(!v.valid);
    assert_eq!(v.get("missing_final"), 1);
}

#[test]
fn malformed_reads_are_flagged() {
    let v = check_lww(&history(json!("21")), &all3(&[21]));
    assert!(!v.valid);
    assert_eq!(v.get("malformed"), 1);
}
