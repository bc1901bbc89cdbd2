//! What recovery keeps in the data directory: the run marker (a start after an unclean
//! shutdown), the unfinished recovery's reason, when the directory was last alive, and
//! this run's generation. The state machine deciding whether this node's data is whole is
//! `chorus_core::recovery`, re-exported here.

use serde::Serialize;

pub use chorus_core::recovery::{
    copy_predates_no_purge, power_loss, split_restored, Action, OtherReplica, Phase, Previous,
    Progress, Reason, Recovery, RestoredSplit, RunMarker, Verdict,
};

use crate::storage::{Op, Storage, StorageError, Table};

const META_RUN: &[u8] = b"recovery-run";
const META_REASON: &[u8] = b"recovery-reason";
const META_ALIVE: &[u8] = b"recovery-alive";

/// When (ms since the epoch, node clock) a run last marked this directory alive: the age of
/// a copy of it. Blocking.
pub fn last_alive(storage: &dyn Storage) -> Result<Option<u64>, StorageError> {
    Ok(storage
        .get(Table::Meta, META_ALIVE)?
        .and_then(|b| <[u8; 8]>::try_from(b.as_slice()).ok())
        .map(u64::from_be_bytes))
}

/// Marks the directory alive now. Blocking.
pub fn mark_alive(storage: &dyn Storage, now_ms: u64) -> Result<(), StorageError> {
    storage.write(vec![Op::Put(
        Table::Meta,
        META_ALIVE.to_vec(),
        now_ms.to_be_bytes().to_vec(),
    )])
}

/// The boot id of the running kernel, where the platform has one.
pub fn boot_id() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    rmp_serde::to_vec_named(v).unwrap_or_default()
}

/// Reads the previous run's marker (if it didn't shut down cleanly) and the recovery it
/// left unfinished, then marks this run as started. Blocking.
pub fn begin_run(
    storage: &dyn Storage,
    sync: bool,
) -> Result<(Option<RunMarker>, Option<Reason>), StorageError> {
    let left = storage
        .get(Table::Meta, META_RUN)?
        .and_then(|b| rmp_serde::from_slice::<RunMarker>(&b).ok());
    let resumed = storage
        .get(Table::Meta, META_REASON)?
        .and_then(|b| rmp_serde::from_slice::<Reason>(&b).ok());
    let now = RunMarker {
        boot: boot_id(),
        sync,
    };
    storage.write(vec![Op::Put(Table::Meta, META_RUN.to_vec(), encode(&now))])?;
    Ok((left, resumed))
}

/// Records (or clears) an unfinished recovery. Blocking.
pub fn store_reason(storage: &dyn Storage, reason: Option<Reason>) -> Result<(), StorageError> {
    let op = match reason {
        Some(r) => Op::Put(Table::Meta, META_REASON.to_vec(), encode(&r)),
        None => Op::Delete(Table::Meta, META_REASON.to_vec()),
    };
    storage.write(vec![op])
}

/// Marks a clean shutdown. Blocking.
pub fn end_run(storage: &dyn Storage, now_ms: u64) -> Result<(), StorageError> {
    storage.write(vec![
        Op::Delete(Table::Meta, META_RUN.to_vec()),
        Op::Put(
            Table::Meta,
            META_ALIVE.to_vec(),
            now_ms.to_be_bytes().to_vec(),
        ),
    ])
}

/// A random generation, never 0 (0 means "none announced").
pub fn fresh_generation(node_id: &str) -> u64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let mut h = blake3::Hasher::new();
    h.update(b"generation");
    h.update(node_id.as_bytes());
    h.update(&now.to_le_bytes());
    h.update(&std::process::id().to_le_bytes());
    let mut b = [0u8; 8];
    b.copy_from_slice(&h.finalize().as_bytes()[..8]);
    u64::from_le_bytes(b).max(1)
}
