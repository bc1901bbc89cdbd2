//! The last-writer-wins checker: an `lww` bucket shows one value per key, only values
//! somebody wrote, and every replica settles on the same one.

use std::collections::{BTreeMap, BTreeSet};

use super::{as_int_list, pair, written_value, Event, Kind, Verdict};

/// LWW register checker.
///
/// Several processes write distinct integers to a few keys of an `lww` bucket
/// (`f = "write"`, value = the integer; blind or with a read's context) and read them
/// (`f = "read"`, value = the values seen). Concurrent writes may lose by design, so no
/// order is checked; what lww promises instead is checked:
///
/// * `siblings` (**violation**): an ok read, or a replica's final answer, holds more than
///   one value.
/// * `unexpected` (**violation**): a value that no write on that key was invoked with.
/// * `diverged` (**violation**): after the heal, the key's replicas (`final_replicas`, one
///   entry per replica of the key, each the values it returned) do not all hold the same
///   value.
/// * `lost` (**violation**): a key with an acknowledged write that every replica reports
///   as not found after the heal: there are no deletes, so some write must have won.
/// * `missing_final` (**violation**): a key with an acknowledged write but no final
///   replica answers.
/// * `malformed` (**violation**): a write without an integer value or a read whose value is
///   not an integer array.
///
/// Also counted: `keys`, `reads`, `writes_ok`, `replica_reads` (final replica answers).
pub fn check_lww(history: &[Event], final_replicas: &BTreeMap<String, Vec<Vec<i64>>>) -> Verdict {
    let mut v = Verdict::new(
        "lww",
        &[
            "keys",
            "reads",
            "writes_ok",
            "replica_reads",
            "siblings",
            "unexpected",
            "diverged",
            "lost",
            "missing_final",
            "malformed",
        ],
    );

    #[derive(Default)]
    struct KeyState {
        invoked: BTreeSet<i64>,
        acked: bool,
        /// (process, invoke time, values) of every ok read.
        reads: Vec<(u64, u64, Vec<i64>)>,
    }
    let mut keys: BTreeMap<String, KeyState> = BTreeMap::new();
    for op in pair(history) {
        match (op.f.as_str(), op.outcome) {
            ("write", outcome) => {
                let Some(x) = written_value(&op) else {
                    v.add("malformed", 1);
                    v.example(format!(
                        "key {:?}: write by process {} at {} ms has non-integer value {}",
                        op.key, op.process, op.invoke_ms, op.value_in
                    ));
                    continue;
                };
                let k = keys.entry(op.key.clone()).or_default();
                k.invoked.insert(x);
                if outcome == Kind::Ok {
                    v.add("writes_ok", 1);
                    k.acked = true;
                }
            }
            ("read", Kind::Ok) => {
                v.add("reads", 1);
                let Some(seen) = as_int_list(&op.value_out) else {
                    v.add("malformed", 1);
                    v.example(format!(
                        "key {:?}: ok read by process {} at {} ms returned {}",
                        op.key, op.process, op.invoke_ms, op.value_out
                    ));
                    continue;
                };
                let k = keys.entry(op.key.clone()).or_default();
                k.reads.push((op.process, op.invoke_ms, seen));
            }
            _ => {}
        }
    }
    for key in final_replicas.keys() {
        keys.entry(key.clone()).or_default();
    }

    for (key, k) in &keys {
        v.add("keys", 1);
        let finals = final_replicas.get(key);
        let answers = k
            .reads
            .iter()
            .map(|(p, t, seen)| (format!("read by process {p} invoked at {t} ms"), seen))
            .chain(
                finals
                    .into_iter()
                    .flatten()
                    .enumerate()
                    .map(|(i, seen)| (format!("final answer of replica {i}"), seen)),
            );
        for (who, seen) in answers {
            if seen.len() > 1 {
                v.add("siblings", 1);
                v.example(format!("key {key:?}: {who} returned siblings {seen:?}"));
            }
            let bogus: Vec<i64> = seen
                .iter()
                .filter(|x| !k.invoked.contains(x))
                .copied()
                .collect();
            if !bogus.is_empty() {
                v.add("unexpected", 1);
                v.example(format!(
                    "key {key:?}: {who} returned {seen:?}; {bogus:?} never written"
                ));
            }
        }
        let Some(finals) = finals.filter(|f| !f.is_empty()) else {
            if k.acked {
                v.add("missing_final", 1);
                v.example(format!(
                    "key {key:?}: has acknowledged writes but no final answers"
                ));
            }
            continue;
        };
        v.add("replica_reads", finals.len() as u64);
        if finals.iter().any(|f| f != &finals[0]) {
            v.add("diverged", 1);
            v.example(format!(
                "key {key:?}: replicas disagree after the heal: {finals:?}"
            ));
        } else if k.acked && finals[0].is_empty() {
            v.add("lost", 1);
            v.example(format!(
                "key {key:?}: every replica reports not found, yet a write was acknowledged"
            ));
        }
    }

    v.valid = [
        "siblings",
        "unexpected",
        "diverged",
        "lost",
        "missing_final",
        "malformed",
    ]
    .iter()
    .all(|n| v.get(n) == 0);
    v
}

#[cfg(test)]
mod tests;
