//! The delete checker: an acknowledged delete is not undone once the cluster heals.

use std::collections::BTreeMap;

use super::{outcome_name, pair, Event, Kind, Op, Verdict};

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
