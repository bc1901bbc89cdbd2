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
//! * [`check_ttl`]: a value is gone once its time to live has surely passed (allowing for
//!   the run's clock skews), and its expiry never brings back what it overwrote.
//! * [`check_lww`]: an `lww` bucket shows one value per key, only written ones, and its
//!   replicas settle on the same one.
//!
//! Every checker is conservative in one direction only: when the history cannot decide
//! whether something was a bug (an operation timed out, or overlapped another one), the case
//! is counted as uncertain rather than as a violation. Values that do not have the shape the
//! workload promises are counted as `malformed` and make the verdict invalid, so a bug in the
//! recording can never silently turn into a pass.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

mod deletes;
mod lww;
mod register;
mod set;
mod ttl;

pub use deletes::check_deletes;
pub use lww::check_lww;
pub use register::check_register;
pub use set::check_set;
pub use ttl::{check_ttl, ClockBounds, SkewWindow};

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
    /// add: the element (integer). write: the sequence number written (integer), or for a
    /// write with a time to live `{"value": n, "ttl_ms": t}`.
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

#[cfg(test)]
mod tests;
