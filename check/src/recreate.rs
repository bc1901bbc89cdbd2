//! Checker for the delete-and-re-create workload.
//!
//! Each key goes through one cycle, written by one process:
//!
//! 1. `write 1`, a blind write;
//! 2. `delete`, with the context of a read that saw value 1 (recorded as `read-ctx`);
//! 3. a pause long enough for the tombstone to be purged;
//! 4. `write 2`, a blind write: the key is re-created;
//! 5. `write 3`, with the context read in step 2, from before the delete and before value 2.
//!
//! Value 3's context never saw value 2, so value 2 must survive as a sibling; and value 1 was
//! deleted by a write that saw it, so it must never come back. This is the shape that lost
//! acknowledged writes when a purge let a coordinator issue the same version counter twice:
//! value 3's stale context then covered value 2's reused dot.
//!
//! Verdict counts, per key whose final read is known:
//! * `cycles`: keys whose delete and `write 2` were acknowledged.
//! * `lost` (**violation**): an acknowledged `write 2` or `write 3` missing from the final read.
//! * `resurrected` (**violation**): value 1 in the final read after an acknowledged delete.
//! * `uncertain`: a step failed or timed out, so the key is not checked.
//! * `missing_final` (**violation**): a checked key without a final read.

use std::collections::BTreeMap;

use crate::checker::{pair, Event, Kind, Verdict};

/// Checks recreate-workload keys; `final_values` holds each key's final read (all siblings).
pub fn check_recreate(history: &[Event], final_values: &BTreeMap<String, Vec<i64>>) -> Verdict {
    let mut v = Verdict::new(
        "recreate",
        &[
            "cycles",
            "lost",
            "resurrected",
            "uncertain",
            "missing_final",
        ],
    );
    #[derive(Default)]
    struct Cycle {
        deleted: bool,
        acked: Vec<i64>,
        uncertain: bool,
    }
    let mut keys: BTreeMap<String, Cycle> = BTreeMap::new();
    for op in pair(history) {
        let c = keys.entry(op.key.clone()).or_default();
        match (op.f.as_str(), op.outcome) {
            ("delete", Kind::Ok) => c.deleted = true,
            ("write", Kind::Ok) => {
                if let Some(x) = op.value_in.as_i64() {
                    c.acked.push(x);
                }
            }
            ("write" | "delete", _) => c.uncertain = true,
            _ => {}
        }
    }
    for (key, c) in keys {
        if c.uncertain || !c.deleted || !c.acked.contains(&2) {
            v.add("uncertain", 1);
            continue;
        }
        v.add("cycles", 1);
        let Some(fin) = final_values.get(&key) else {
            v.add("missing_final", 1);
            v.example(format!("key {key:?}: checked but has no final read"));
            continue;
        };
        for x in c.acked.iter().filter(|x| **x >= 2) {
            if !fin.contains(x) {
                v.add("lost", 1);
                v.example(format!(
                    "key {key:?}: acknowledged write {x} is missing from the final read {fin:?}"
                ));
            }
        }
        if fin.contains(&1) {
            v.add("resurrected", 1);
            v.example(format!(
                "key {key:?}: value 1 was deleted (acknowledged) but the final read is {fin:?}"
            ));
        }
    }
    v.valid = v.get("lost") == 0 && v.get("resurrected") == 0 && v.get("missing_final") == 0;
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn ev(t: u64, kind: Kind, f: &str, value: Value) -> Event {
        Event {
            time_ms: t,
            process: 1,
            kind,
            f: f.into(),
            key: "rc1".into(),
            value,
        }
    }

    fn cycle(last: Kind) -> Vec<Event> {
        vec![
            ev(1, Kind::Invoke, "write", json!(1)),
            ev(2, Kind::Ok, "write", json!(1)),
            ev(3, Kind::Invoke, "delete", Value::Null),
            ev(4, Kind::Ok, "delete", Value::Null),
            ev(5, Kind::Invoke, "write", json!(2)),
            ev(6, Kind::Ok, "write", json!(2)),
            ev(7, Kind::Invoke, "write", json!(3)),
            ev(8, last, "write", json!(3)),
        ]
    }

    fn fin(values: &[i64]) -> BTreeMap<String, Vec<i64>> {
        BTreeMap::from([("rc1".to_string(), values.to_vec())])
    }

    #[test]
    fn both_writes_kept_is_valid() {
        let v = check_recreate(&cycle(Kind::Ok), &fin(&[2, 3]));
        assert!(v.valid, "{v:?}");
        assert_eq!(v.get("cycles"), 1);
    }

    #[test]
    fn a_lost_re_creation_is_flagged() {
        // What a reused dot did: the stale context's write replaced the re-created value.
        let v = check_recreate(&cycle(Kind::Ok), &fin(&[3]));
        assert!(!v.valid);
        assert_eq!(v.get("lost"), 1);
    }

    #[test]
    fn a_deleted_value_coming_back_is_flagged() {
        let v = check_recreate(&cycle(Kind::Ok), &fin(&[1, 2, 3]));
        assert!(!v.valid);
        assert_eq!(v.get("resurrected"), 1);
    }

    #[test]
    fn unknown_outcomes_are_not_checked() {
        let v = check_recreate(&cycle(Kind::Info), &fin(&[]));
        assert!(v.valid, "{v:?}");
        assert_eq!(v.get("uncertain"), 1);
    }

    #[test]
    fn a_checked_key_without_a_final_read_is_invalid() {
        let v = check_recreate(&cycle(Kind::Ok), &BTreeMap::new());
        assert!(!v.valid);
        assert_eq!(v.get("missing_final"), 1);
    }
}
