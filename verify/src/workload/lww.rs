//! The last-writer-wins workload: several processes write distinct values to a few keys of
//! an `lww` bucket, blind or with a read's context, while others read them.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chorus_client::{CausalContext, Client, WriteOptions};
use serde_json::{json, Value};

use super::{ints, write_failure, History, Rng};
use crate::run::RunConfig;
use chorus_verify::checker::Kind;

/// The bucket the run's cluster config declares with `conflicts = "lww"`.
pub(crate) const LWW_BUCKET: &str = "lww";
/// Keys of the lww bucket; few, so writes to them are concurrent.
pub(crate) const LWW_KEYS: usize = 3;
pub(crate) const LWW_WRITERS: usize = 3;
pub(crate) const LWW_READERS: usize = 2;
const PAUSE: Duration = Duration::from_millis(20);

/// One read of `key`, recorded; returns its context.
async fn read(
    client: &Client,
    process: u64,
    h: &History,
    key: &str,
    cfg: &RunConfig,
) -> Option<CausalContext> {
    h.record(process, Kind::Invoke, "read", key, Value::Null);
    match client.get(LWW_BUCKET, key, cfg.r).await {
        Ok(r) => {
            h.record(process, Kind::Ok, "read", key, json!(ints(&r.values)));
            Some(r.context)
        }
        Err(_) => {
            h.record(process, Kind::Fail, "read", key, Value::Null);
            None
        }
    }
}

/// Writes process-unique values; every other write first reads the key for its context.
pub(crate) async fn lww_writer(
    client: Client,
    process: u64,
    h: Arc<History>,
    stop: Arc<AtomicBool>,
    cfg: RunConfig,
) {
    let mut rng = Rng(cfg.seed ^ (process << 36) ^ 0x1a3);
    let mut n = 0i64;
    while !stop.load(Ordering::Relaxed) {
        let key = format!("lww{}", rng.below(LWW_KEYS));
        n += 1;
        let value = (process as i64) * 1_000_000 + n;
        let mut opts = WriteOptions {
            context: None,
            w: cfg.w,
            sloppy: false,
            ttl: None,
        };
        if rng.below(2) == 0 {
            opts.context = read(&client, process, &h, &key, &cfg).await;
            if opts.context.is_none() {
                tokio::time::sleep(PAUSE).await;
                continue;
            }
        }
        h.record(process, Kind::Invoke, "write", &key, json!(value));
        match client
            .put_with(LWW_BUCKET, &key, value.to_string().into_bytes(), &opts)
            .await
        {
            Ok(_) => h.record(process, Kind::Ok, "write", &key, json!(value)),
            Err(e) => h.record(process, write_failure(&e), "write", &key, json!(value)),
        }
        tokio::time::sleep(PAUSE).await;
    }
}

pub(crate) async fn lww_reader(
    client: Client,
    process: u64,
    h: Arc<History>,
    stop: Arc<AtomicBool>,
    cfg: RunConfig,
) {
    let mut rng = Rng(cfg.seed ^ (process << 28) ^ 0x1a4);
    while !stop.load(Ordering::Relaxed) {
        let key = format!("lww{}", rng.below(LWW_KEYS));
        read(&client, process, &h, &key, &cfg).await;
        tokio::time::sleep(PAUSE).await;
    }
}
