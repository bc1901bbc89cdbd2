//! Status and ring reports as JSON: the one rendering `chorus status --json` and
//! `chorus ring --json` print and the Python package returns, so scripts can move between
//! the two without renaming fields.

use crate::proto::{RingInfo, StatusInfo};
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
        "ring_waits_for": st.ring_waits_for,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::tests::info;

    /// The common test ring, with a bucket of its own N.
    fn with_pairs() -> RingInfo {
        let mut info = info(&[]);
        info.bucket_n = vec![("pairs".to_string(), 2)];
        info
    }

    #[test]
    fn a_keys_report_names_its_replicas_with_the_buckets_n() {
        let info = with_pairs();
        let out = ring_for_key(&info, b"pairs", b"k");
        let p = info.ring.partition_of(b"pairs", b"k");
        assert_eq!(out["bucket"], "pairs");
        assert_eq!(out["key"], "k");
        assert_eq!(out["partition"], json!(p));
        assert_eq!(out["n"], 2);
        assert_eq!(
            out["preference_list"],
            json!(info.ring.preference_list(p, 2))
        );
        assert_eq!(out["fallbacks"], json!(info.ring.fallbacks(p, 2)));
        assert_eq!(out["ring_version"], json!(info.ring.version()));
    }

    #[test]
    fn the_ring_report_lists_every_partition_and_every_share() {
        let info = info(&[]);
        let out = ring(&info);
        assert_eq!(out["partition_count"], 64);
        assert_eq!(out["n"], 3);
        let partitions = out["partitions"].as_array().expect("partitions");
        assert_eq!(partitions.len(), 64);
        assert_eq!(
            partitions[5],
            json!({"partition": 5, "nodes": info.ring.preference_list(5, 3)})
        );
        let shares = out["shares"].as_object().expect("shares");
        let total: u64 = shares.values().filter_map(Value::as_u64).sum();
        assert_eq!(shares.len(), 5);
        assert_eq!(total, 64 * 3, "each partition counted once per replica");
    }
}
