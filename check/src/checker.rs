//! Checkers for recorded Chorus histories.
//!
//! Concurrent client workers record every operation as a pair of [`Event`]s (an `invoke`
//! followed later by exactly one completion from the same process) in a JSONL history. The
//! checkers below turn that history into [`Op`]s with [`pair`] and test it against the
//! guarantees Chorus claims, returning a [`Verdict`] per property:
//!
//! * [`check_set`]: no acknowledged add is lost after the cluster heals, and nothing appears
//!   that nobody added (Jepsen's `set-full`, adapted to eventual consistency).
//! * [`check_register`]: read-after-write under strict quorums (R + W > N).
//! * [`check_deletes`]: an acknowledged delete is not undone once the cluster heals.
//!
//! Every checker is conservative in one direction only: when the history cannot decide
//! whether something was a bug (an operation timed out, or overlapped another one), the case
//! is counted as uncertain rather than as a violation. Values that do not have the shape the
//! workload promises are counted as `malformed` and make the verdict invalid, so a bug in the
//! recording can never silently turn into a pass.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

/// Most examples a [`Verdict`] carries; the counts are always complete.
pub const MAX_EXAMPLES: usize = 20;

/// One line of the history.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Milliseconds since the run started.
    pub time_ms: u64,
    /// Worker id.
    pub process: u64,
    /// Whether this is the invocation or which kind of completion.
    #[serde(rename = "type")]
    pub kind: Kind,
    /// `"add"`, `"read"`, `"write"` or `"delete"`.
    pub f: String,
    /// The key operated on.
    pub key: String,
    /// add: the element (integer). write: the sequence number written (integer).
    /// read (on ok): array of integers seen (one per sibling / set element); on invoke null.
    /// delete: null. A missing field reads as null.
    #[serde(default)]
    pub value: Value,
}

/// Event type. `Info` means the outcome is unknown (e.g. a timeout): the operation may or may
/// not have taken effect, now or later.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Invoke,
    Ok,
    Fail,
    Info,
}

/// An invocation paired with its completion.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Op {
    pub process: u64,
    pub f: String,
    pub key: String,
    pub invoke_ms: u64,
    /// `None` if the history ends before the operation completed.
    pub complete_ms: Option<u64>,
    /// `Ok`, `Fail` or `Info`; `Info` as well when the operation never completed, since it may
    /// still have taken effect.
    pub outcome: Kind,
    /// The invoke event's value.
    pub value_in: Value,
    /// The completion event's value (null if never completed).
    pub value_out: Value,
}

/// The result of one checker.
#[derive(Clone, Debug, Serialize)]
pub struct Verdict {
    pub checker: String,
    pub valid: bool,
    pub counts: BTreeMap<String, u64>,
    /// Up to [`MAX_EXAMPLES`] human-readable examples of violations.
    pub examples: Vec<String>,
}

impl Verdict {
    /// A verdict with every named count present (at zero) so reports have a stable shape.
    pub(crate) fn new(checker: &str, names: &[&str]) -> Self {
        Verdict {
            checker: checker.to_string(),
            valid: true,
            counts: names.iter().map(|n| (n.to_string(), 0)).collect(),
            examples: Vec::new(),
        }
    }

    pub(crate) fn add(&mut self, name: &str, n: u64) {
        *self.counts.entry(name.to_string()).or_insert(0) += n;
    }

    pub(crate) fn get(&self, name: &str) -> u64 {
        self.counts.get(name).copied().unwrap_or(0)
    }

    pub(crate) fn example(&mut self, text: String) {
        if self.examples.len() < MAX_EXAMPLES {
            self.examples.push(text);
        }
    }
}

/// Parses a JSONL history: one [`Event`] per non-blank line. Errors name the 1-based line.
pub fn parse_history(jsonl: &str) -> Result<Vec<Event>, String> {
    jsonl
        .lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(i, line)| {
            serde_json::from_str(line).map_err(|e| format!("history line {}: {e}", i + 1))
        })
        .collect()
}

/// Pairs each invoke with the next completion from the same process (a process runs one
/// operation at a time). Ops come back in invocation order. An invoke that never completes —
/// or that is followed by another invoke of the same process before completing — becomes an
/// op with outcome `Info` and no `complete_ms`, because its effect is unknown. A completion
/// without a pending invoke is ignored.
pub fn pair(history: &[Event]) -> Vec<Op> {
    let mut ops: Vec<Op> = Vec::new();
    let mut pending: BTreeMap<u64, usize> = BTreeMap::new();
    for ev in history {
        match ev.kind {
            Kind::Invoke => {
                pending.insert(ev.process, ops.len());
                ops.push(Op {
                    process: ev.process,
                    f: ev.f.clone(),
                    key: ev.key.clone(),
                    invoke_ms: ev.time_ms,
                    complete_ms: None,
                    outcome: Kind::Info,
                    value_in: ev.value.clone(),
                    value_out: Value::Null,
                });
            }
            Kind::Ok | Kind::Fail | Kind::Info => {
                if let Some(op) = pending.remove(&ev.process).and_then(|i| ops.get_mut(i)) {
                    op.complete_ms = Some(ev.time_ms);
                    op.outcome = ev.kind;
                    op.value_out = ev.value.clone();
                }
            }
        }
    }
    ops
}

/// True iff every verdict is valid (vacuously true for none).
pub fn summary(verdicts: &[Verdict]) -> bool {
    verdicts.iter().all(|v| v.valid)
}

fn as_int(v: &Value) -> Option<i64> {
    v.as_i64()
}

fn as_int_list(v: &Value) -> Option<Vec<i64>> {
    v.as_array()?.iter().map(as_int).collect()
}

/// The value a write/add op carried: the invoke's, falling back to the completion's.
fn written_value(op: &Op) -> Option<i64> {
    as_int(&op.value_in).or_else(|| as_int(&op.value_out))
}

fn outcome_name(k: Kind) -> &'static str {
    match k {
        Kind::Invoke => "invoke",
        Kind::Ok => "ok",
        Kind::Fail => "fail",
        Kind::Info => "info",
    }
}

/// Set workload checker (after Jepsen's `set-full`).
///
/// Workers add unique integers to a few keys (`f = "add"`, value = element); Chorus stores
/// the set as one value updated by read-modify-write, so concurrent adds become siblings that
/// must be merged, never dropped. Ok reads (`f = "read"`) return the elements seen, and
/// `final_reads` holds one read per key taken after the cluster healed and converged. Counts
/// are over distinct (key, element) pairs unless noted:
///
/// * `attempted`: add operations invoked (any outcome).
/// * `acknowledged`: elements whose add returned ok.
/// * `ok`: acknowledged and present in the final read.
/// * `lost` (**violation**): acknowledged but absent from the final read. Once a write is
///   acknowledged, eventual consistency still promises it survives. A key missing from
///   `final_reads` counts as an empty final read, so a skipped final read fails loudly.
/// * `recovered`: add failed or timed out, yet the element is present — legal, since a
///   failed/unknown write may still have reached some replica.
/// * `stale`: acknowledged element missing from at least one ok read invoked strictly after
///   the add's ok. Informational: without strict quorums reads may lag, but the number shows
///   how far from read-your-writes the run was.
/// * `never_read`: acknowledged and present in the final read but seen by no earlier ok read
///   (informational).
/// * `unexpected` (**violation**): an element in a read (or final read) that nobody ever tried
///   to add to that key — the store invented or misrouted data.
/// * `malformed` (**violation**): an add without an integer element or an ok read whose value
///   is not an integer array; the history cannot be trusted.
pub fn check_set(history: &[Event], final_reads: &BTreeMap<String, BTreeSet<i64>>) -> Verdict {
    let mut v = Verdict::new(
        "set",
        &[
            "attempted",
            "acknowledged",
            "ok",
            "lost",
            "recovered",
            "stale",
            "never_read",
            "unexpected",
            "malformed",
        ],
    );

    /// Per-key bookkeeping.
    #[derive(Default)]
    struct KeyState {
        /// Every element an add was invoked with.
        attempted: BTreeSet<i64>,
        /// Element -> (earliest ok completion, process) of its acknowledged add.
        acked: BTreeMap<i64, (u64, u64)>,
        /// Invoke times of ok reads, sorted later.
        read_times: Vec<u64>,
        /// Element -> invoke times of ok reads that contained it (each read at most once).
        seen_at: BTreeMap<i64, Vec<u64>>,
        /// (element, process, read invoke time) for every distinct element read.
        read_elements: Vec<(i64, u64, u64)>,
    }
    let mut keys: BTreeMap<String, KeyState> = BTreeMap::new();

    for op in pair(history) {
        match op.f.as_str() {
            "add" => {
                v.add("attempted", 1);
                let Some(e) = written_value(&op) else {
                    v.add("malformed", 1);
                    v.example(format!(
                        "key {:?}: add by process {} at {} ms has non-integer element {}",
                        op.key, op.process, op.invoke_ms, op.value_in
                    ));
                    continue;
                };
                let st = keys.entry(op.key.clone()).or_default();
                st.attempted.insert(e);
                if let (Kind::Ok, Some(done)) = (op.outcome, op.complete_ms) {
                    let slot = st.acked.entry(e).or_insert((done, op.process));
                    if done < slot.0 {
                        *slot = (done, op.process);
                    }
                }
            }
            "read" if op.outcome == Kind::Ok => {
                let Some(elems) = as_int_list(&op.value_out) else {
                    v.add("malformed", 1);
                    v.example(format!(
                        "key {:?}: ok read by process {} at {} ms returned non-integer-array {}",
                        op.key, op.process, op.invoke_ms, op.value_out
                    ));
                    continue;
                };
                let st = keys.entry(op.key.clone()).or_default();
                st.read_times.push(op.invoke_ms);
                let distinct: BTreeSet<i64> = elems.into_iter().collect();
                for e in distinct {
                    st.seen_at.entry(e).or_default().push(op.invoke_ms);
                    st.read_elements.push((e, op.process, op.invoke_ms));
                }
            }
            _ => {}
        }
    }
    for key in final_reads.keys() {
        keys.entry(key.clone()).or_default();
    }

    let empty = BTreeSet::new();
    for (key, st) in &mut keys {
        let fin = final_reads.get(key).unwrap_or(&empty);
        st.read_times.sort_unstable();
        for times in st.seen_at.values_mut() {
            times.sort_unstable();
        }

        v.add("acknowledged", st.acked.len() as u64);
        for (&e, &(acked_at, process)) in &st.acked {
            if fin.contains(&e) {
                v.add("ok", 1);
                if !st.seen_at.contains_key(&e) {
                    v.add("never_read", 1);
                }
            } else {
                v.add("lost", 1);
                v.example(format!(
                    "key {key:?}: element {e} acknowledged to process {process} at {acked_at} ms \
                     is missing from the final read"
                ));
            }
            // Stale iff some ok read invoked after the ack lacks e, i.e. there are more reads
            // after the ack than reads after the ack that contain e.
            let after = |times: &[u64]| times.len() - times.partition_point(|&t| t <= acked_at);
            let containing = st.seen_at.get(&e).map_or(0, |t| after(t));
            if after(&st.read_times) > containing {
                v.add("stale", 1);
            }
        }
        for &e in fin {
            if !st.attempted.contains(&e) {
                continue;
            }
            if !st.acked.contains_key(&e) {
                v.add("recovered", 1);
            }
        }

        let mut unexpected: BTreeSet<i64> = BTreeSet::new();
        for &(e, process, at) in &st.read_elements {
            if !st.attempted.contains(&e) && unexpected.insert(e) {
                v.example(format!(
                    "key {key:?}: read by process {process} invoked at {at} ms returned element \
                     {e}, which was never added"
                ));
            }
        }
        for &e in fin {
            if !st.attempted.contains(&e) && unexpected.insert(e) {
                v.example(format!(
                    "key {key:?}: final read returned element {e}, which was never added"
                ));
            }
        }
        v.add("unexpected", unexpected.len() as u64);
    }

    v.valid = v.get("lost") == 0 && v.get("unexpected") == 0 && v.get("malformed") == 0;
    v
}

/// Register read-after-write checker for strict quorums (R + W > N).
///
/// Each key has one writer process writing sequence numbers 1, 2, 3, … in order
/// (`f = "write"`, value = seq); readers return the seqs of all siblings (`[]` = not found).
/// With R + W > N every read quorum intersects the write quorum of every acknowledged write,
/// so a read that *starts after* a write was acknowledged must observe that write or a newer
/// one (possibly next to concurrent siblings). Hence, for an ok read invoked at `t` on key `k`:
///
/// * floor = the largest seq among writes on `k` whose ok completion time is `< t`. Reads
///   with a floor are `checked_reads`. Writes acknowledged at or after `t` are concurrent with
///   the read, so returning the older value is legal; failed or timed-out writes never set
///   the floor, and reading them is legal too.
/// * `stale_reads` (**violation**): the read has a floor but contains no seq `>= floor` that
///   was actually written (an empty read counts as missing everything).
/// * `unexpected` (**violation**): the read contains a seq never invoked as a write on `k`.
/// * `malformed` (**violation**): a write without an integer seq or an ok read whose value is
///   not an integer array.
///
/// Also counted: `reads` (ok reads) and `writes_ok`.
pub fn check_register(history: &[Event]) -> Verdict {
    let mut v = Verdict::new(
        "register",
        &[
            "reads",
            "writes_ok",
            "checked_reads",
            "stale_reads",
            "unexpected",
            "malformed",
        ],
    );

    #[derive(Default)]
    struct KeyWrites {
        invoked: BTreeSet<i64>,
        /// (ok completion time, seq).
        acked: Vec<(u64, i64)>,
    }
    let ops = pair(history);
    let mut writes: BTreeMap<&str, KeyWrites> = BTreeMap::new();
    for op in ops.iter().filter(|op| op.f == "write") {
        let Some(seq) = written_value(op) else {
            v.add("malformed", 1);
            v.example(format!(
                "key {:?}: write by process {} at {} ms has non-integer seq {}",
                op.key, op.process, op.invoke_ms, op.value_in
            ));
            continue;
        };
        let w = writes.entry(op.key.as_str()).or_default();
        w.invoked.insert(seq);
        if let (Kind::Ok, Some(done)) = (op.outcome, op.complete_ms) {
            v.add("writes_ok", 1);
            w.acked.push((done, seq));
        }
    }
    // Sort by completion time and turn seqs into a running maximum, so the floor for a read
    // is the last entry completed strictly before it.
    for w in writes.values_mut() {
        w.acked.sort_unstable();
        let mut max = i64::MIN;
        for (_, seq) in &mut w.acked {
            max = max.max(*seq);
            *seq = max;
        }
    }

    let none = KeyWrites::default();
    for op in ops
        .iter()
        .filter(|op| op.f == "read" && op.outcome == Kind::Ok)
    {
        v.add("reads", 1);
        let Some(seen) = as_int_list(&op.value_out) else {
            v.add("malformed", 1);
            v.example(format!(
                "key {:?}: ok read by process {} at {} ms returned non-integer-array {}",
                op.key, op.process, op.invoke_ms, op.value_out
            ));
            continue;
        };
        let w = writes.get(op.key.as_str()).unwrap_or(&none);
        let bogus: Vec<i64> = seen
            .iter()
            .copied()
            .filter(|s| !w.invoked.contains(s))
            .collect();
        if !bogus.is_empty() {
            v.add("unexpected", 1);
            v.example(format!(
                "key {:?}: read by process {} invoked at {} ms returned {:?}; seq(s) {:?} were \
                 never written",
                op.key, op.process, op.invoke_ms, seen, bogus
            ));
        }
        let idx = w.acked.partition_point(|&(done, _)| done < op.invoke_ms);
        let Some(&(_, floor)) = idx.checked_sub(1).and_then(|i| w.acked.get(i)) else {
            continue;
        };
        v.add("checked_reads", 1);
        if !seen.iter().any(|s| *s >= floor && w.invoked.contains(s)) {
            v.add("stale_reads", 1);
            let acked_at = w
                .acked
                .iter()
                .find(|&&(_, s)| s == floor)
                .map_or(0, |&(t, _)| t);
            v.example(format!(
                "key {:?}: read by process {} invoked at {} ms returned {:?}, but write {} was \
                 acknowledged at {} ms",
                op.key, op.process, op.invoke_ms, seen, floor, acked_at
            ));
        }
    }

    v.valid = v.get("stale_reads") == 0 && v.get("unexpected") == 0 && v.get("malformed") == 0;
    v
}

/// Delete workload checker: an acknowledged delete must not be undone after heal.
///
/// Keys are written (`f = "write"`) and later deleted (`f = "delete"`); `final_found[key]`
/// says whether the read after heal found the key. Per key, consider the last write/delete
/// *invoked* (ties broken by history order; reads are ignored):
///
/// * If it is an ok delete and every write on the key was acknowledged (ok) *before* the
///   delete was invoked, the key is `checked` and must be absent: found means `resurrected`
///   (**violation** — a tombstone lost to anti-entropy, hinted handoff or read repair, or a
///   version dominated by the delete winning anyway).
/// * If it is an ok delete but some write on the key failed, timed out, never completed, or
///   completed at or after the delete's invocation, that write may land concurrently with
///   (and legitimately survive) the delete, so the key is `uncertain`, not checked.
/// * If it is a failed or timed-out delete the key is `uncertain`.
/// * If it is a write, nothing is checked here.
///
/// `deleted` counts keys whose last operation is an ok delete. A checked key with no entry in
/// `final_found` counts as `missing_final` and makes the verdict invalid: the checker cannot
/// vouch for a key it never saw.
pub fn check_deletes(history: &[Event], final_found: &BTreeMap<String, bool>) -> Verdict {
    let mut v = Verdict::new(
        "deletes",
        &[
            "deleted",
            "checked",
            "resurrected",
            "uncertain",
            "missing_final",
        ],
    );

    let ops = pair(history);
    let mut by_key: BTreeMap<&str, Vec<&Op>> = BTreeMap::new();
    for op in ops.iter().filter(|op| op.f == "write" || op.f == "delete") {
        by_key.entry(op.key.as_str()).or_default().push(op);
    }

    for (key, key_ops) in by_key {
        // `pair` returns ops in history order, so a stable sort keeps ties in that order.
        let mut key_ops = key_ops;
        key_ops.sort_by_key(|op| op.invoke_ms);
        let Some(&last) = key_ops.last() else {
            continue;
        };
        if last.f != "delete" {
            continue;
        }
        if last.outcome != Kind::Ok {
            v.add("uncertain", 1);
            continue;
        }
        v.add("deleted", 1);
        let overlapping = key_ops.iter().any(|op| {
            op.f == "write"
                && !(op.outcome == Kind::Ok && op.complete_ms.is_some_and(|c| c < last.invoke_ms))
        });
        if overlapping {
            v.add("uncertain", 1);
            continue;
        }
        v.add("checked", 1);
        match final_found.get(key) {
            Some(false) => {}
            Some(true) => {
                v.add("resurrected", 1);
                v.example(format!(
                    "key {key:?}: delete by process {} invoked at {} ms was acknowledged{}, with \
                     no later write, but the final read found the key",
                    last.process,
                    last.invoke_ms,
                    last.complete_ms
                        .map(|c| format!(" at {c} ms"))
                        .unwrap_or_default(),
                ));
            }
            None => {
                v.add("missing_final", 1);
                v.example(format!(
                    "key {key:?}: deleted (last op {} by process {}) but has no final read",
                    outcome_name(last.outcome),
                    last.process
                ));
            }
        }
    }

    v.valid = v.get("resurrected") == 0 && v.get("missing_final") == 0;
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
            parse_history(r#"{"time_ms":1,"process":0,"type":"invoke","f":"read","key":"k"}"#)
                .unwrap();
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
}
