//! The client workloads of a verification run. Each worker records every operation it
//! invokes and how it ended in the shared [`History`]; the checkers read that history.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chorus_client::{CausalContext, Client, Error as ClientError, WriteOptions};
use serde_json::{json, Value};

use crate::run::RunConfig;
use chorus_verify::checker::{Event, Kind};

mod expiry;
mod lww;

pub(crate) use expiry::ttl_worker;
pub(crate) use lww::{lww_reader, lww_writer, LWW_BUCKET, LWW_READERS, LWW_WRITERS};

/// Records events with a shared clock, and writes them out as JSONL.
pub(crate) struct History {
    pub(crate) start: Instant,
    events: Mutex<Vec<Event>>,
}

impl History {
    pub(crate) fn new() -> History {
        History {
            start: Instant::now(),
            events: Mutex::new(Vec::new()),
        }
    }

    pub(crate) fn record(&self, process: u64, kind: Kind, f: &str, key: &str, value: Value) {
        let e = Event {
            time_ms: self.start.elapsed().as_millis() as u64,
            process,
            kind,
            f: f.to_string(),
            key: key.to_string(),
            value,
        };
        self.events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(e);
    }

    pub(crate) fn snapshot(&self) -> Vec<Event> {
        self.events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        // splitmix64: good enough, and reproducible from the seed.
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Outcome kind of a failed write: definitely not applied, or maybe.
pub(crate) fn write_failure(e: &ClientError) -> Kind {
    match e {
        ClientError::Unavailable(_)
        | ClientError::BadRequest(_)
        | ClientError::TooLarge(_)
        | ClientError::InvalidContext(_)
        | ClientError::Config(_) => Kind::Fail,
        _ => Kind::Info,
    }
}

pub(crate) fn ints(values: &[Vec<u8>]) -> Vec<i64> {
    values
        .iter()
        .filter_map(|v| std::str::from_utf8(v).ok()?.parse().ok())
        .collect()
}

/// Set elements stored as a JSON array in each sibling.
pub(crate) fn set_union(values: &[Vec<u8>], drop_siblings: bool) -> BTreeSet<i64> {
    let take = if drop_siblings { 1 } else { values.len() };
    values
        .iter()
        .take(take)
        .filter_map(|v| serde_json::from_slice::<Vec<i64>>(v).ok())
        .flatten()
        .collect()
}

const SET_KEYS: usize = 4;
const SET_GENERATION: Duration = Duration::from_secs(10);
pub(crate) const REGISTER_KEYS: usize = 4;
pub(crate) const BUCKET: &str = "jepsen";

/// The bucket a key lives in: the lww workload's keys in the lww bucket, the rest in
/// [`BUCKET`].
pub(crate) fn bucket_of(key: &str) -> &'static str {
    if key.starts_with("lww") {
        LWW_BUCKET
    } else {
        BUCKET
    }
}

/// Which keys a set worker adds to.
#[derive(Clone)]
pub(crate) enum SetKeys {
    /// A few keys, rotating over time.
    Spread,
    /// One hot key shared by every hot worker, and only while the flag is set (the
    /// nemesis's hot-keys fault): many concurrent read-modify-writes of the same key.
    Hot(Arc<AtomicBool>),
}

pub(crate) async fn set_worker(
    client: Client,
    process: u64,
    h: Arc<History>,
    stop: Arc<AtomicBool>,
    cfg: RunConfig,
    keys: SetKeys,
) {
    let mut rng = Rng(cfg.seed ^ (process << 32));
    let mut n = 0i64;
    while !stop.load(Ordering::Relaxed) {
        // Keys rotate every SET_GENERATION so a set, rewritten whole on each add, stays
        // small over long runs.
        let generation = h.start.elapsed().as_secs() / SET_GENERATION.as_secs();
        let key = match &keys {
            SetKeys::Spread => format!("set{}.{generation}", rng.below(SET_KEYS)),
            SetKeys::Hot(on) => {
                if !on.load(Ordering::Relaxed) {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
                format!("sethot.{generation}")
            }
        };
        // Reads return the whole set: a few of them per generation bound the history's size
        // (and its memory) while still checking what reads see.
        if rng.below(10) == 0 {
            h.record(process, Kind::Invoke, "read", &key, Value::Null);
            match client.get(BUCKET, &key, cfg.r).await {
                Ok(r) => {
                    let seen: Vec<i64> = set_union(&r.values, false).into_iter().collect();
                    h.record(process, Kind::Ok, "read", &key, json!(seen));
                }
                Err(_) => h.record(process, Kind::Fail, "read", &key, Value::Null),
            }
            continue;
        }
        n += 1;
        let element = (process as i64) * 1_000_000 + n;
        h.record(process, Kind::Invoke, "add", &key, json!(element));
        let read = match client.get(BUCKET, &key, cfg.r).await {
            Ok(r) => r,
            Err(_) => {
                h.record(process, Kind::Fail, "add", &key, json!(element));
                continue;
            }
        };
        let mut set = set_union(&read.values, cfg.drop_siblings);
        set.insert(element);
        let body = serde_json::to_vec(&set.into_iter().collect::<Vec<_>>()).unwrap_or_default();
        let opts = WriteOptions {
            context: Some(read.context),
            w: cfg.w,
            sloppy: false,
            ttl: None,
        };
        match client.put_with(BUCKET, &key, body, &opts).await {
            Ok(_) => h.record(process, Kind::Ok, "add", &key, json!(element)),
            Err(e) => h.record(process, write_failure(&e), "add", &key, json!(element)),
        }
    }
}

/// One writer per register key: writes 1, 2, 3... each with the context of its last write.
pub(crate) async fn register_writer(
    client: Client,
    process: u64,
    key: String,
    h: Arc<History>,
    stop: Arc<AtomicBool>,
    cfg: RunConfig,
) {
    let mut seq = 0i64;
    let mut ctx: Option<CausalContext> = None;
    while !stop.load(Ordering::Relaxed) {
        if ctx.is_none() {
            match client.get(BUCKET, &key, cfg.r).await {
                Ok(r) => ctx = Some(r.context),
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            }
        }
        seq += 1;
        h.record(process, Kind::Invoke, "write", &key, json!(seq));
        let opts = WriteOptions {
            context: ctx.clone(),
            w: cfg.w,
            sloppy: false,
            ttl: None,
        };
        match client
            .put_with(BUCKET, &key, seq.to_string().into_bytes(), &opts)
            .await
        {
            Ok(c) => {
                h.record(process, Kind::Ok, "write", &key, json!(seq));
                ctx = Some(c);
            }
            Err(e) => {
                h.record(process, write_failure(&e), "write", &key, json!(seq));
                ctx = None;
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

pub(crate) async fn register_reader(
    client: Client,
    process: u64,
    h: Arc<History>,
    stop: Arc<AtomicBool>,
    cfg: RunConfig,
) {
    let mut rng = Rng(cfg.seed ^ (process << 24) ^ 0xabcd);
    while !stop.load(Ordering::Relaxed) {
        let key = format!("reg{}", rng.below(REGISTER_KEYS));
        h.record(process, Kind::Invoke, "read", &key, Value::Null);
        match client.get(BUCKET, &key, cfg.r).await {
            Ok(r) => h.record(process, Kind::Ok, "read", &key, json!(ints(&r.values))),
            Err(_) => h.record(process, Kind::Fail, "read", &key, Value::Null),
        }
    }
}

/// Writes fresh keys and deletes them with the context of a read.
pub(crate) async fn delete_worker(
    client: Client,
    process: u64,
    h: Arc<History>,
    stop: Arc<AtomicBool>,
    cfg: RunConfig,
) {
    const SLOTS: usize = 200;
    let mut i = 0usize;
    // A bounded key space: long runs stay cheap to check, and keys cycle through write and
    // delete many times. A write or delete that may or may not have happened makes its key
    // uncertain for good (it can still surface as a sibling), so the slot moves on to a
    // fresh key, and later deletes stay checkable.
    let mut generation = [0u64; SLOTS];
    while !stop.load(Ordering::Relaxed) {
        i += 1;
        let slot = i % SLOTS;
        let key = format!("del{process}-{slot}.{}", generation[slot]);
        h.record(process, Kind::Invoke, "write", &key, json!(1));
        match client.put(BUCKET, &key, b"1".to_vec(), None, cfg.w).await {
            Ok(_) => h.record(process, Kind::Ok, "write", &key, json!(1)),
            Err(e) => {
                h.record(process, write_failure(&e), "write", &key, json!(1));
                generation[slot] += 1;
                continue;
            }
        }
        let Ok(read) = client.get(BUCKET, &key, cfg.r).await else {
            continue;
        };
        h.record(process, Kind::Invoke, "delete", &key, Value::Null);
        match client
            .delete(BUCKET, &key, Some(&read.context), cfg.w)
            .await
        {
            Ok(_) => h.record(process, Kind::Ok, "delete", &key, Value::Null),
            Err(e) => {
                h.record(process, write_failure(&e), "delete", &key, Value::Null);
                generation[slot] += 1;
            }
        }
    }
}

/// Bytes of a large value: big enough that a batch of them outgrows a frame.
const BLOB_BYTES: usize = 256 * 1024;

/// Blind writes of large values to fresh keys while `on` is set (the nemesis's large-values
/// fault, which also takes a replica down so the values travel as hints). Each value is a
/// one-element set padded with JSON whitespace, so the set checker checks them.
pub(crate) async fn blob_worker(
    client: Client,
    process: u64,
    h: Arc<History>,
    stop: Arc<AtomicBool>,
    cfg: RunConfig,
    on: Arc<AtomicBool>,
) {
    let mut n = 0i64;
    while !stop.load(Ordering::Relaxed) {
        if !on.load(Ordering::Relaxed) {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        }
        n += 1;
        let element = (process as i64) * 1_000_000 + n;
        let key = format!("setblob{process}.{n}");
        let mut body = format!("[{element}]").into_bytes();
        body.resize(BLOB_BYTES, b' ');
        h.record(process, Kind::Invoke, "add", &key, json!(element));
        let opts = WriteOptions {
            context: None,
            w: cfg.w,
            sloppy: false,
            ttl: None,
        };
        match client.put_with(BUCKET, &key, body, &opts).await {
            Ok(_) => h.record(process, Kind::Ok, "add", &key, json!(element)),
            Err(e) => h.record(process, write_failure(&e), "add", &key, json!(element)),
        }
    }
}

/// Delete-and-re-create cycles (see `chorus_verify::recreate`): write 1, delete it with a
/// read's context, wait past the tombstone grace so the purge can happen, re-create with a
/// blind write 2, then write 3 with the stale context from before the delete.
pub(crate) async fn recreate_worker(
    client: Client,
    process: u64,
    h: Arc<History>,
    stop: Arc<AtomicBool>,
    cfg: RunConfig,
) {
    let mut n = 0u64;
    let blind = WriteOptions {
        context: None,
        w: cfg.w,
        sloppy: false,
        ttl: None,
    };
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let key = format!("rc{process}-{n}");
        let write = |v: i64, opts: WriteOptions| {
            let (client, h, key) = (client.clone(), h.clone(), key.clone());
            async move {
                h.record(process, Kind::Invoke, "write", &key, json!(v));
                match client
                    .put_with(BUCKET, &key, v.to_string().into_bytes(), &opts)
                    .await
                {
                    Ok(_) => {
                        h.record(process, Kind::Ok, "write", &key, json!(v));
                        true
                    }
                    Err(e) => {
                        h.record(process, write_failure(&e), "write", &key, json!(v));
                        false
                    }
                }
            }
        };
        if !write(1, blind.clone()).await {
            continue;
        }
        let Ok(read) = client.get(BUCKET, &key, cfg.r).await else {
            continue;
        };
        h.record(process, Kind::Invoke, "delete", &key, Value::Null);
        match client
            .delete(BUCKET, &key, Some(&read.context), cfg.w)
            .await
        {
            Ok(_) => h.record(process, Kind::Ok, "delete", &key, Value::Null),
            Err(e) => {
                h.record(process, write_failure(&e), "delete", &key, Value::Null);
                continue;
            }
        }
        // Past the grace (and a few purge rounds) the tombstone is gone where every replica
        // held it; a stop ends the wait early, the cycle is still checkable.
        let until = Instant::now() + cfg.tombstone_grace + Duration::from_secs(3);
        while Instant::now() < until && !stop.load(Ordering::Relaxed) {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        if !write(2, blind.clone()).await {
            continue;
        }
        let stale = WriteOptions {
            context: Some(read.context),
            w: cfg.w,
            sloppy: false,
            ttl: None,
        };
        write(3, stale).await;
    }
}
