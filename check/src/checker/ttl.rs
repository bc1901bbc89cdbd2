//! The TTL checker: a value stops being read once its time to live has surely passed, and
//! its expiry never brings back the value it overwrote.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{as_int_list, pair, Event, Kind, Op, Verdict};

/// A stretch of the run during which some node's wall clock was off by `offset_ms`
/// (positive: ahead). Times are history milliseconds; the window must cover the whole time
/// the skewed process could run, from before it started to after it was stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkewWindow {
    pub from_ms: u64,
    pub to_ms: u64,
    pub offset_ms: i64,
}

/// What the checker needs to know about the run's clocks.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClockBounds {
    /// Every clock skew the nemesis injected. Nodes outside a window run on the host clock.
    pub skews: Vec<SkewWindow>,
    /// Slack on top of the skews, for what the history's clock cannot see (rounding to
    /// milliseconds, the host clock against the monotonic one).
    pub margin_ms: u64,
}

impl ClockBounds {
    /// How far ahead of real time any node's clock may have been during `[from, to]`.
    fn lead(&self, from: u64, to: u64) -> u64 {
        self.overlapping(from, to)
            .map(|w| w.offset_ms.max(0).unsigned_abs())
            .max()
            .unwrap_or(0)
    }

    /// How far behind real time any node's clock may have been during `[from, to]`.
    fn lag(&self, from: u64, to: u64) -> u64 {
        self.overlapping(from, to)
            .map(|w| w.offset_ms.min(0).unsigned_abs())
            .max()
            .unwrap_or(0)
    }

    fn overlapping(&self, from: u64, to: u64) -> impl Iterator<Item = &SkewWindow> {
        self.skews
            .iter()
            .filter(move |w| w.from_ms <= to && from <= w.to_ms)
    }
}

/// A write as the TTL workload records it: an integer, or `{"value": n, "ttl_ms": t}`.
fn ttl_write(v: &Value) -> Option<(i64, Option<u64>)> {
    if let Some(n) = v.as_i64() {
        return Some((n, None));
    }
    let n = v.get("value")?.as_i64()?;
    let ttl = v.get("ttl_ms")?.as_u64()?;
    Some((n, Some(ttl)))
}

/// TTL checker.
///
/// Each key is written one or more times by one process (`f = "write"`); every write but
/// the first carries the context of a read that saw the one before, so it overwrites it. The
/// last write has a TTL (value `{"value": n, "ttl_ms": t}`; a write without TTL records a
/// plain integer). Ok reads (`f = "read"`) return the values seen (`[]` = not found).
///
/// A key is `checked` when its last write was acknowledged and every earlier write was
/// acknowledged before it was invoked; otherwise a write may still land later and the key
/// is `uncertain`. For a checked key whose TTL write `L` was acknowledged at `a`:
///
/// * The expiry is the coordinator's clock at write time plus the TTL. The coordinator ran
///   between `L`'s invoke and `a`, so the expiry is at most `a + ttl + lead` in real time,
///   where `lead` is the largest positive skew in effect during `L`. A read answered by a
///   node running `lag` behind leaves the value out once its clock passes the expiry, so
///   a read invoked at or after `a + ttl + lead + lag + margin` (`lag` the largest negative
///   skew during the read) must not return `L`'s value: `expired_read` (**violation**).
///   Such reads are `checked_reads`.
/// * `stale` (**violation**): a read invoked after `a`, but before that bound, returns an
///   overwritten value: read-after-write under R + W > N, as in the register checker.
/// * `resurrected` (**violation**): the same after the bound: expiry brought back what the
///   TTL write overwrote (`resurrection_checks` counts reads after the bound on keys with an
///   overwritten value).
/// * `unexpected` (**violation**): a read returns a value never written to the key.
/// * `malformed` (**violation**): a write or an ok read without the promised shape.
///
/// `skew_windows` reports how many clock skews the bounds allowed for.
pub fn check_ttl(history: &[Event], clocks: &ClockBounds) -> Verdict {
    let mut v = Verdict::new(
        "ttl",
        &[
            "keys",
            "checked",
            "overwrites",
            "uncertain",
            "reads",
            "checked_reads",
            "resurrection_checks",
            "expired_read",
            "stale",
            "resurrected",
            "unexpected",
            "malformed",
            "skew_windows",
        ],
    );
    v.add("skew_windows", clocks.skews.len() as u64);

    /// A parsed write: (value, ttl, op).
    type Write<'a> = (i64, Option<u64>, &'a Op);
    let ops = pair(history);
    let mut writes: BTreeMap<&str, Vec<Write>> = BTreeMap::new();
    let mut reads: BTreeMap<&str, Vec<(&Op, Vec<i64>)>> = BTreeMap::new();
    for op in &ops {
        match (op.f.as_str(), op.outcome) {
            ("write", _) => match ttl_write(&op.value_in) {
                Some((n, ttl)) => writes.entry(&op.key).or_default().push((n, ttl, op)),
                None => {
                    v.add("malformed", 1);
                    v.example(format!(
                        "key {:?}: write by process {} at {} ms has no value/ttl: {}",
                        op.key, op.process, op.invoke_ms, op.value_in
                    ));
                }
            },
            ("read", Kind::Ok) => {
                v.add("reads", 1);
                match as_int_list(&op.value_out) {
                    Some(seen) => reads.entry(&op.key).or_default().push((op, seen)),
                    None => {
                        v.add("malformed", 1);
                        v.example(format!(
                            "key {:?}: ok read by process {} at {} ms returned {}",
                            op.key, op.process, op.invoke_ms, op.value_out
                        ));
                    }
                }
            }
            _ => {}
        }
    }

    let keys: BTreeSet<&str> = writes.keys().chain(reads.keys()).copied().collect();
    for key in keys {
        let mut ws = writes.remove(key).unwrap_or_default();
        let rs = reads.remove(key).unwrap_or_default();
        // `pair` keeps history order, so a stable sort keeps ties in that order.
        ws.sort_by_key(|w| w.2.invoke_ms);
        v.add("keys", 1);
        let written: BTreeSet<i64> = ws.iter().map(|w| w.0).collect();
        for (op, seen) in &rs {
            let bogus: Vec<i64> = seen
                .iter()
                .filter(|x| !written.contains(x))
                .copied()
                .collect();
            if !bogus.is_empty() {
                v.add("unexpected", 1);
                v.example(format!(
                    "key {key:?}: read by process {} invoked at {} ms returned {seen:?}; {bogus:?} \
                     never written",
                    op.process, op.invoke_ms
                ));
            }
        }

        let Some(&(last, Some(ttl), last_op)) = ws.last() else {
            continue;
        };
        let (Kind::Ok, Some(acked)) = (last_op.outcome, last_op.complete_ms) else {
            v.add("uncertain", 1);
            continue;
        };
        let older = &ws[..ws.len() - 1];
        let settled = older.iter().all(|(_, _, op)| {
            op.outcome == Kind::Ok && op.complete_ms.is_some_and(|c| c < last_op.invoke_ms)
        });
        if !settled {
            v.add("uncertain", 1);
            continue;
        }
        v.add("checked", 1);
        if !older.is_empty() {
            v.add("overwrites", 1);
        }
        let overwritten: BTreeSet<i64> = older.iter().map(|w| w.0).filter(|x| *x != last).collect();
        let expiry = acked
            .saturating_add(ttl)
            .saturating_add(clocks.lead(last_op.invoke_ms, acked));
        for (op, seen) in &rs {
            let done = op.complete_ms.unwrap_or(u64::MAX);
            let bound = expiry
                .saturating_add(clocks.lag(op.invoke_ms, done))
                .saturating_add(clocks.margin_ms);
            let expired = op.invoke_ms >= bound;
            if expired {
                v.add("checked_reads", 1);
                if !overwritten.is_empty() {
                    v.add("resurrection_checks", 1);
                }
                if seen.contains(&last) {
                    v.add("expired_read", 1);
                    v.example(format!(
                        "key {key:?}: read by process {} invoked at {} ms returned {last}, \
                         written with ttl {ttl} ms and acknowledged at {acked} ms (bound {bound} \
                         ms)",
                        op.process, op.invoke_ms
                    ));
                }
            }
            let old: Vec<i64> = seen
                .iter()
                .filter(|x| overwritten.contains(x))
                .copied()
                .collect();
            if op.invoke_ms > acked && !old.is_empty() {
                let what = if expired { "resurrected" } else { "stale" };
                v.add(what, 1);
                v.example(format!(
                    "key {key:?} ({what}): read by process {} invoked at {} ms returned \
                     overwritten {old:?}; the overwrite with ttl {ttl} ms was acknowledged at \
                     {acked} ms",
                    op.process, op.invoke_ms
                ));
            }
        }
    }

    v.valid = [
        "expired_read",
        "stale",
        "resurrected",
        "unexpected",
        "malformed",
    ]
    .iter()
    .all(|n| v.get(n) == 0);
    v
}

#[cfg(test)]
mod tests;
