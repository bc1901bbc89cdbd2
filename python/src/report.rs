//! Status and ring reports in the shapes `chorus status --json` and `chorus ring --json`
//! print, so scripts can move between the CLI and Python without renaming fields.

use chorus_client::proto::{RingInfo, StatusInfo};
use serde_json::{json, Value};

/// The cluster as one node sees it, as `chorus status --json` prints it.
pub fn status(st: &StatusInfo) -> Value {
    let nodes: Vec<Value> = st
        .nodes
        .iter()
        .map(|n| {
            json!({
                "id": n.id,
                "address": n.address,
                "zone": n.zone,
                "status": n.status,
                "partitions": n.partitions,
                "hints_pending": n.hints_pending,
                "recovery": n.recovery.as_ref().map(|r| json!({
                    "reason": r.reason,
                    "partitions_exchanged": r.partitions_exchanged,
                    "partitions_total": r.partitions_total,
                })),
            })
        })
        .collect();
    let c = &st.convergence;
    let partitions: Vec<Value> = c
        .partitions
        .iter()
        .map(|p| {
            json!({
                "partition": p.partition,
                "ms_since_clean": p.ms_since_clean,
                "keys_repaired": p.keys_repaired,
            })
        })
        .collect();
    let transfers: Vec<Value> = st
        .transfers
        .iter()
        .map(|t| json!({"partition": t.partition, "node": t.node}))
        .collect();
    let workers: Vec<Value> = st
        .workers
        .iter()
        .map(|w| {
            json!({
                "name": w.name,
                "state": w.state,
                "progress": w.progress,
                "iterations": w.iterations,
                "errors": w.errors,
                "last_error": w.last_error,
                "ms_since_step": w.ms_since_step,
            })
        })
        .collect();
    // Unknown while any partition has never been found clean.
    let max_ms_since_clean = c
        .partitions
        .iter()
        .map(|p| p.ms_since_clean)
        .try_fold(0u64, |a, x| x.map(|x| a.max(x)));
    json!({
        "node": st.node,
        "ring_version": st.ring_version,
        "partitions": st.partitions,
        "nodes": nodes,
        "transfers_pending": st.transfers_pending,
        "transfers": transfers,
        "refused": st.refused,
        "workers": workers,
        "read_repairs": c.read_repairs,
        "hints_replayed": c.hints_replayed,
        "hints_expired": c.hints_expired,
        "tombstones_purged": c.tombstones_purged,
        "anti_entropy": {
            "rounds": c.anti_entropy_rounds,
            "keys_repaired": c.anti_entropy_keys_repaired,
            "bytes": c.anti_entropy_bytes,
            "max_ms_since_clean": max_ms_since_clean,
            "partitions": partitions,
        },
    })
}

/// Where `bucket/key` lives, as `chorus ring --key KEY --json` prints it.
pub fn ring_for_key(info: &RingInfo, bucket: &[u8], key: &[u8]) -> Value {
    let ring = &info.ring;
    let n = info.n_for(bucket);
    let p = ring.partition_of(bucket, key);
    json!({
        "bucket": String::from_utf8_lossy(bucket),
        "key": String::from_utf8_lossy(key),
        "partition": p,
        "n": n,
        "preference_list": ring.preference_list(p, n),
        "fallbacks": ring.fallbacks(p, n),
        "ring_version": ring.version(),
    })
}

/// The whole ring, as `chorus ring --json` prints it.
pub fn ring(info: &RingInfo) -> Value {
    let ring = &info.ring;
    let n = info.default_n;
    let partitions: Vec<Value> = (0..ring.partition_count())
        .map(|p| json!({"partition": p, "nodes": ring.preference_list(p, n)}))
        .collect();
    let shares: serde_json::Map<String, Value> = ring
        .shares(n)
        .into_iter()
        .map(|(id, c)| (id, json!(c)))
        .collect();
    json!({
        "version": ring.version(),
        "partition_count": ring.partition_count(),
        "n": n,
        "shares": shares,
        "partitions": partitions,
    })
}
