//! After the last heal: waiting for recovering nodes to be whole, for every key's replicas
//! to agree, and the final reads the checkers judge.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chorus_client::{Client, Error as ClientError, Level};

use crate::cluster::Cluster;
use crate::workload::{bucket_of, ints};

/// Waits until no node reports itself recovering (as every running node sees it).
pub(super) async fn all_whole(c: &Cluster, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    loop {
        let mut whole = true;
        for i in 0..c.initial {
            let st = match c.client_config_for(i) {
                Ok(cfg) => match Client::connect(cfg).await {
                    Ok(cl) => cl.status().await.ok(),
                    Err(_) => None,
                },
                Err(_) => None,
            };
            if st.is_none_or(|st| st.nodes.iter().any(|n| n.status == "recovering")) {
                whole = false;
                break;
            }
        }
        if whole {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Waits until every replica of every key holds the same version, after asking every node
/// for an anti-entropy round. Returns how long that took.
pub(super) async fn converge(c: &Cluster, keys: &[String], within: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut last_repair = Instant::now() - Duration::from_secs(60);
    loop {
        if last_repair.elapsed() > Duration::from_secs(3) {
            for i in 0..c.initial {
                if let Ok(cfg) = c.admin_config_for(i) {
                    if let Ok(cl) = Client::connect(cfg).await {
                        let _ = cl.repair().await;
                    }
                }
            }
            last_repair = Instant::now();
        }
        if let Ok(cfg) = c.client_config() {
            if let Ok(cl) = Client::connect(cfg).await {
                if identical(&cl, keys).await {
                    return Some(started.elapsed());
                }
            }
        }
        if started.elapsed() > within {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Whether each key's replicas (by the current ring) return the same values and context.
/// Keys are checked by several tasks at once: long runs leave hundreds of thousands.
async fn identical(cl: &Client, keys: &[String]) -> bool {
    let Ok(info) = cl.refresh_ring().await else {
        return false;
    };
    let info = Arc::new(info);
    let mut tasks = tokio::task::JoinSet::new();
    for chunk in keys.chunks(keys.len().div_ceil(32).max(1)) {
        let (cl, info, chunk) = (cl.clone(), info.clone(), chunk.to_vec());
        tasks.spawn(async move {
            for key in chunk {
                let bucket = bucket_of(&key);
                let p = info.ring.partition_of(bucket.as_bytes(), key.as_bytes());
                let mut seen = None;
                for node in info.ring.preference_list(p, info.n_for(bucket.as_bytes())) {
                    let Ok(r) = cl.get_replica(bucket, &key, node).await else {
                        return false;
                    };
                    let this = (r.found, r.values, r.context.to_string());
                    match &seen {
                        None => seen = Some(this),
                        Some(s) if *s == this => {}
                        Some(_) => return false,
                    }
                }
            }
            true
        });
    }
    let mut all = true;
    while let Some(r) = tasks.join_next().await {
        all &= r.unwrap_or(false);
    }
    all
}

/// Final R=all reads (R=quorum if all can't be had) of every key, several at a time.
pub(super) async fn final_reads(
    client: &Client,
    keys: &[String],
) -> anyhow::Result<Vec<(String, chorus_client::GetResult)>> {
    let mut tasks = tokio::task::JoinSet::new();
    for chunk in keys.chunks(keys.len().div_ceil(32).max(1)) {
        let (client, chunk) = (client.clone(), chunk.to_vec());
        tasks.spawn(async move {
            let mut out = Vec::with_capacity(chunk.len());
            for key in chunk {
                let bucket = bucket_of(&key);
                let r = match client.get(bucket, &key, Level::All).await {
                    Ok(r) => r,
                    Err(_) => client.get(bucket, &key, Level::Quorum).await?,
                };
                out.push((key, r));
            }
            Ok::<_, ClientError>(out)
        });
    }
    let mut all = Vec::with_capacity(keys.len());
    while let Some(r) = tasks.join_next().await {
        all.extend(r??);
    }
    Ok(all)
}

/// What each replica of each key (by the current ring) holds: the values of its own
/// answer, in preference-list order. A replica that does not answer is left out.
pub(super) async fn replica_values(
    client: &Client,
    keys: &[String],
) -> anyhow::Result<BTreeMap<String, Vec<Vec<i64>>>> {
    let info = client.refresh_ring().await?;
    let mut out = BTreeMap::new();
    for key in keys {
        let bucket = bucket_of(key);
        let p = info.ring.partition_of(bucket.as_bytes(), key.as_bytes());
        let mut answers = Vec::new();
        for node in info.ring.preference_list(p, info.n_for(bucket.as_bytes())) {
            if let Ok(r) = client.get_replica(bucket, key, node).await {
                answers.push(ints(&r.values));
            }
        }
        out.insert(key.clone(), answers);
    }
    Ok(out)
}
