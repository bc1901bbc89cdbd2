//! The set workload checker: acknowledged adds survive the heal, nothing appears that nobody
//! added.

use std::collections::{BTreeMap, BTreeSet};

use super::{as_int_list, pair, written_value, Event, Kind, Verdict};

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
