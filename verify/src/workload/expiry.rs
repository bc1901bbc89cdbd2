//! The time-to-live workload: keys written once with a short TTL, and keys overwritten
//! (with the read's context) by a value with a short TTL, each read until well past its
//! expiry, so the TTL checker sees reads on both sides of it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chorus_client::{CausalContext, Client, WriteOptions};
use serde_json::{json, Value};

use super::{ints, write_failure, History, Rng, BUCKET};
use crate::run::{Bug, RunConfig};
use chorus_verify::checker::Kind;

/// Shortest and longest TTL written: short, so a run sees many keys expire.
const TTL_MS: (u64, u64) = (2_000, 4_000);
/// How long a key is read after its TTL write was acknowledged, beyond the TTL itself.
const READ_PAST_EXPIRY: Duration = Duration::from_secs(3);
const READ_EVERY: Duration = Duration::from_millis(250);
/// Earlier keys a worker keeps to re-read: they are past the tombstone grace by then, so
/// those reads also cover expired values after their purge.
const REREAD_KEYS: usize = 100;

/// One read of `key`, recorded; returns what it saw and the context.
async fn read(
    client: &Client,
    process: u64,
    h: &History,
    key: &str,
    cfg: &RunConfig,
) -> Option<(Vec<i64>, CausalContext)> {
    h.record(process, Kind::Invoke, "read", key, Value::Null);
    match client.get(BUCKET, key, cfg.r).await {
        Ok(r) => {
            let seen = ints(&r.values);
            h.record(process, Kind::Ok, "read", key, json!(seen));
            Some((seen, r.context))
        }
        Err(_) => {
            h.record(process, Kind::Fail, "read", key, Value::Null);
            None
        }
    }
}

/// One write, recorded with its TTL (as the workload means it, even where a negative
/// control leaves the TTL out); returns whether it was acknowledged.
async fn write(
    client: &Client,
    process: u64,
    h: &History,
    key: &str,
    value: i64,
    ttl_ms: Option<u64>,
    opts: WriteOptions,
) -> bool {
    let recorded = match ttl_ms {
        Some(t) => json!({"value": value, "ttl_ms": t}),
        None => json!(value),
    };
    h.record(process, Kind::Invoke, "write", key, recorded.clone());
    match client
        .put_with(BUCKET, key, value.to_string().into_bytes(), &opts)
        .await
    {
        Ok(_) => {
            h.record(process, Kind::Ok, "write", key, recorded);
            true
        }
        Err(e) => {
            h.record(process, write_failure(&e), "write", key, recorded);
            false
        }
    }
}

/// Alternates the two shapes of TTL key: `ttl{p}-{n}` written once with a TTL, and
/// `ttlo{p}-{n}` written without one, read, then overwritten with the read's context by a
/// value with a TTL. Each key is then read every [`READ_EVERY`] until [`READ_PAST_EXPIRY`]
/// after its TTL, and one earlier key is read again.
pub(crate) async fn ttl_worker(
    client: Client,
    process: u64,
    h: Arc<History>,
    stop: Arc<AtomicBool>,
    cfg: RunConfig,
) {
    let mut rng = Rng(cfg.seed ^ (process << 40) ^ 0x7711);
    let mut earlier: Vec<String> = Vec::new();
    let mut n = 0i64;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let ttl_ms = TTL_MS.0 + rng.below((TTL_MS.1 - TTL_MS.0 + 1) as usize) as u64;
        let overwrite = n % 2 == 0;
        let key = if overwrite {
            format!("ttlo{process}-{n}")
        } else {
            format!("ttl{process}-{n}")
        };
        let value = (process as i64) * 1_000_000 + n * 10;
        let mut opts = WriteOptions {
            context: None,
            w: cfg.w,
            sloppy: false,
            ttl: Some(Duration::from_millis(ttl_ms)),
        };
        if overwrite {
            let first = WriteOptions {
                ttl: None,
                ..opts.clone()
            };
            if !write(&client, process, &h, &key, value, None, first).await {
                continue;
            }
            // The overwrite must carry a context that covers the first value.
            match read(&client, process, &h, &key, &cfg).await {
                Some((seen, ctx)) if seen == [value] => {
                    if !cfg.bugs.contains(&Bug::BlindOverwrite) {
                        opts.context = Some(ctx);
                    }
                }
                _ => continue,
            }
        } else if cfg.bugs.contains(&Bug::TtlIgnored) {
            opts.ttl = None;
        }
        let last = value + 1;
        if !write(&client, process, &h, &key, last, Some(ttl_ms), opts).await {
            continue;
        }
        let until = Instant::now() + Duration::from_millis(ttl_ms) + READ_PAST_EXPIRY;
        while Instant::now() < until && !stop.load(Ordering::Relaxed) {
            read(&client, process, &h, &key, &cfg).await;
            tokio::time::sleep(READ_EVERY).await;
        }
        if !earlier.is_empty() {
            let old = earlier[rng.below(earlier.len())].clone();
            read(&client, process, &h, &old, &cfg).await;
        }
        if earlier.len() >= REREAD_KEYS {
            earlier.remove(0);
        }
        earlier.push(key);
    }
}
