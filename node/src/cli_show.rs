//! How the CLI shows answers: a read, the ring and the cluster status, for people or as one
//! JSON object (the JSON shapes come from `chorus_client::report`, shared with Python).

use chorus_client::proto::{RingInfo, StatusInfo, WorkerInfo};
use chorus_client::{report, GetResult};
use serde_json::json;

/// The cluster as the contacted node sees it.
pub(crate) fn print_status(st: &StatusInfo, json: bool) {
    if json {
        println!("{}", report::status(st));
        return;
    }
    println!(
        "as seen by {} (ring version {}, {} partitions)",
        st.node, st.ring_version, st.partitions
    );
    println!(
        "{:<12} {:<24} {:<8} {:>10} {:>8}",
        "ID", "ADDRESS", "STATUS", "PARTITIONS", "HINTS"
    );
    for n in &st.nodes {
        println!(
            "{:<12} {:<24} {:<8} {:>10} {:>8}",
            n.id, n.address, n.status, n.partitions, n.hints_pending
        );
    }
    if st.transfers_pending > 0 {
        println!("{} partition transfers pending", st.transfers_pending);
    }
    if !st.ring_waits_for.is_empty() {
        println!(
            "ring changes wait for: {} (down members hold them until back or removed)",
            st.ring_waits_for.join(", ")
        );
    }
    for r in &st.refused {
        println!("refused: {r}");
    }
    let c = &st.convergence;
    let never = c
        .partitions
        .iter()
        .filter(|p| p.ms_since_clean.is_none())
        .count();
    let worst = c.partitions.iter().filter_map(|p| p.ms_since_clean).max();
    println!(
            "read repairs {}, hints replayed {}, anti-entropy rounds {} ({} keys repaired), tombstones purged {}",
            c.read_repairs,
            c.hints_replayed,
            c.anti_entropy_rounds,
            c.anti_entropy_keys_repaired,
            c.tombstones_purged
        );
    match (never, worst) {
        (0, Some(ms)) => println!(
            "every partition checked clean within the last {:.1} s",
            ms as f64 / 1000.0
        ),
        (0, None) => {}
        (n, _) => {
            println!("{n} partitions not yet checked clean since this node started")
        }
    }
    print_workers(&st.workers);
}

/// One line with every worker's state, then a line per worker whose last step failed.
fn print_workers(workers: &[WorkerInfo]) {
    if workers.is_empty() {
        return;
    }
    let states: Vec<String> = workers
        .iter()
        .map(|w| format!("{} {}", w.name, w.state))
        .collect();
    println!("workers: {}", states.join(", "));
    for w in workers.iter().filter(|w| w.state == "error") {
        let why = w.last_error.as_deref().unwrap_or("unknown");
        println!("worker {} failed its last step: {why}", w.name);
    }
}

/// A read: the values on standard output, the rest on standard error; or one JSON object.
pub(crate) fn print_get(res: &GetResult, json: bool) {
    if json {
        let values: Vec<String> = res
            .values
            .iter()
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .collect();
        let out = json!({
            "found": res.found,
            "values": values,
            "siblings": res.values.len(),
            "tombstones": res.tombstones,
            "context": res.context.to_string(),
            "truncated": res.truncated,
        });
        println!("{out}");
        return;
    }
    if !res.found {
        eprintln!("not found");
    }
    for v in &res.values {
        println!("{}", String::from_utf8_lossy(v));
    }
    if res.truncated {
        eprintln!(
            "some values were left out (too large together): a write with this context replaces them all"
        );
    }
    if res.values.len() > 1 {
        eprintln!(
            "{} siblings: write with --context to resolve them",
            res.values.len()
        );
    }
    eprintln!("context: {}", res.context);
}

/// The whole ring (each node's share), or where one key lives.
pub(crate) fn print_ring(info: &RingInfo, key: Option<&str>, bucket: &str, json: bool) {
    if json {
        let out = match key {
            Some(key) => report::ring_for_key(info, bucket.as_bytes(), key.as_bytes()),
            None => report::ring(info),
        };
        println!("{out}");
        return;
    }
    let ring = &info.ring;
    if let Some(key) = key {
        let n = info.n_for(bucket.as_bytes());
        let p = ring.partition_of(bucket.as_bytes(), key.as_bytes());
        println!("{bucket}/{key}: partition {p}, N={n}");
        println!("preference list: {}", ring.preference_list(p, n).join(", "));
        println!("fallbacks: {}", ring.fallbacks(p, n).join(", "));
        return;
    }
    let n = info.default_n;
    let shares = ring.shares(n);
    println!(
        "ring version {}, {} partitions, N={n}",
        ring.version(),
        ring.partition_count()
    );
    let even =
        ring.partition_count() as f64 * n.min(shares.len()) as f64 / shares.len().max(1) as f64;
    for (id, c) in &shares {
        println!(
            "{id:<12} {c:>6} partitions ({:+.1} from even)",
            *c as f64 - even
        );
    }
}
