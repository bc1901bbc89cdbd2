//! The register checker: read-after-write under strict quorums (R + W > N).

use std::collections::{BTreeMap, BTreeSet};

use super::{as_int_list, pair, written_value, Event, Kind, Verdict};

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
