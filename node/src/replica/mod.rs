//! The local replica: reads, coordinator-local updates, merges of remote versions, purges
//! of tombstones, and the anti-entropy trees that summarise what it holds. What a change
//! does to a key is `chorus_core::replica`; this is the storage and the writer around it.
//!
//! Every mutation is a read-merge-write of one key, so mutations go through a single writer
//! thread. It drains whatever is queued (up to `max_batch`) and commits it as one RocksDB
//! write batch: concurrent writers share one WAL write (and one fsync when `storage.sync` is
//! on), and no two read-merge-writes of a key can interleave. The same batch carries the
//! changed anti-entropy tree leaves and the tombstone index, so they never disagree with the
//! data, whatever the crash.

mod scan;
#[cfg(test)]
mod tests;
mod trees;
mod writer;

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use crate::merkle::Hash;
use crate::storage::{segment_range, split_data_key, Op, Storage, StorageError, Table};
use crate::version::{Actor, Conflicts, Object};
pub use scan::ListAsk;
use trees::{load_trees, rebuild_trees, tree_id};
pub use trees::{TreeId, Trees};
use writer::Writer;

const META_IDENTITY: &[u8] = b"identity";
/// Names the tree layout the stored leaves were built for; a mismatch means rebuild.
const META_AAE_LAYOUT: &[u8] = b"aae-layout";
const AAE_FORMAT: u8 = 1;

pub use chorus_core::replica::{Applied, Change, Limits, Refused};

#[derive(Debug, thiserror::Error)]
pub enum ReplicaError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("stored version of a key is corrupt: {0}")]
    Corrupt(String),
    #[error("{}", Refused::TooManySiblings { count: *count, limit: *limit })]
    TooManySiblings { count: usize, limit: usize },
    #[error("{}", Refused::TooLarge { size: *size, limit: *limit })]
    TooLarge { size: usize, limit: usize },
    #[error("data directory belongs to node {found:?}, not {expected:?}")]
    WrongNode { found: String, expected: String },
    #[error("replica is shutting down")]
    Closed,
}

impl From<Refused> for ReplicaError {
    fn from(r: Refused) -> Self {
        match r {
            Refused::TooManySiblings { count, limit } => {
                ReplicaError::TooManySiblings { count, limit }
            }
            Refused::TooLarge { size, limit } => ReplicaError::TooLarge { size, limit },
        }
    }
}

enum Job {
    Mutate {
        key: Vec<u8>,
        change: Change,
        reply: oneshot::Sender<Result<Object, ReplicaError>>,
    },
    /// Delete every key of a partition, with its trees and tombstone index.
    Drop {
        partition: u32,
        reply: oneshot::Sender<Result<u64, ReplicaError>>,
    },
}

/// N of a bucket, as the node's config says.
pub type NOf = Arc<dyn Fn(&[u8]) -> usize + Send + Sync>;
/// The conflict policy of a bucket, as the node's config says.
pub type ConflictsOf = Arc<dyn Fn(&[u8]) -> Conflicts + Send + Sync>;
/// Handle to the local replica. Cheap to clone.
#[derive(Clone)]
pub struct Replica {
    storage: Arc<dyn Storage>,
    jobs: mpsc::Sender<Job>,
    actor: Actor,
    trees: Arc<Trees>,
    n_of: NOf,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Identity {
    node: String,
    epoch: u64,
}

/// Settings of the replica.
pub struct ReplicaOptions {
    pub max_batch: usize,
    pub max_siblings: usize,
    /// Largest version a coordinated write may leave (merges from peers are never refused).
    pub max_object_bytes: usize,
    /// N per bucket; changes here (between restarts) rebuild the trees.
    pub n_of: NOf,
    /// A fingerprint of what `n_of` answers, stored with the trees.
    pub layout: String,
    /// Conflict policy per bucket.
    pub conflicts_of: ConflictsOf,
    /// How far ahead of this node's wall clock a peer's timestamp may be and still be
    /// followed by the writer's hybrid logical clock.
    pub max_clock_offset: std::time::Duration,
}

impl Replica {
    /// Opens the replica for node `node_id`. Blocking. Every opening writes under a fresh
    /// random epoch, whatever the data directory holds: a restored copy, a log that lost its
    /// tail or a wiped disk can then never make it reuse a version counter (the stored
    /// identity only checks that the directory is this node's). Trees are loaded, or
    /// rebuilt from the data if their layout changed.
    pub fn open(
        storage: Arc<dyn Storage>,
        node_id: &str,
        opts: ReplicaOptions,
    ) -> Result<Replica, ReplicaError> {
        check_identity(&*storage, node_id)?;
        let epoch = fresh_epoch(node_id);
        tracing::info!(node = node_id, epoch, "fresh actor epoch for this process");
        let actor = Actor::new(node_id, epoch);
        let trees = Arc::new(Trees::default());
        let layout = format!("{AAE_FORMAT}:{}", opts.layout);
        if storage.get(Table::Meta, META_AAE_LAYOUT)?.as_deref() == Some(layout.as_bytes()) {
            load_trees(&*storage, &trees)?;
        } else {
            rebuild_trees(&*storage, &trees, &opts.n_of)?;
            storage.write(vec![Op::Put(
                Table::Meta,
                META_AAE_LAYOUT.to_vec(),
                layout.into_bytes(),
            )])?;
        }
        let (tx, rx) = mpsc::channel(opts.max_batch * 4);
        let writer = Writer {
            storage: storage.clone(),
            actor: actor.clone(),
            counter: 0,
            max_batch: opts.max_batch,
            limits: Limits {
                max_siblings: opts.max_siblings,
                max_object_bytes: opts.max_object_bytes,
            },
            trees: trees.clone(),
            n_of: opts.n_of.clone(),
            conflicts_of: opts.conflicts_of.clone(),
            hlc: chorus_core::hlc::Hlc::new(opts.max_clock_offset),
        };
        std::thread::Builder::new()
            .name("replica-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| ReplicaError::Storage(StorageError::Write(e.to_string())))?;
        Ok(Replica {
            storage,
            jobs: tx,
            actor,
            trees,
            n_of: opts.n_of,
        })
    }

    /// This node's writer identity.
    pub fn actor(&self) -> &Actor {
        &self.actor
    }

    pub fn trees(&self) -> &Trees {
        &self.trees
    }

    /// The anti-entropy tree a key of `bucket` in `partition` belongs to.
    pub fn tree_of(&self, partition: u32, bucket: &[u8]) -> TreeId {
        tree_id(partition, (self.n_of)(bucket))
    }

    /// The stored version of a data key.
    pub async fn get(&self, key: Vec<u8>) -> Result<Option<Object>, ReplicaError> {
        match self.get_encoded(key).await? {
            Some(bytes) => Object::decode(&bytes)
                .map(Some)
                .map_err(|e| ReplicaError::Corrupt(e.to_string())),
            None => Ok(None),
        }
    }

    /// The stored version of a data key as stored (the encoding of [`Object`]), for sending
    /// on without decoding it; the receiver decodes and checks it.
    pub async fn get_encoded(&self, key: Vec<u8>) -> Result<Option<Vec<u8>>, ReplicaError> {
        // Most reads are answered from the memtable or block cache: do those here, and
        // only hand reads that would touch the disk to a blocking thread.
        if let Some(found) = self.storage.get_cached(Table::Data, &key)? {
            return Ok(found);
        }
        let storage = self.storage.clone();
        tokio::task::spawn_blocking(move || storage.get(Table::Data, &key))
            .await
            .map_err(|_| ReplicaError::Closed)?
            .map_err(ReplicaError::from)
    }

    /// Applies a change and returns the key's resulting version (empty after a purge).
    pub async fn apply(&self, key: Vec<u8>, change: Change) -> Result<Object, ReplicaError> {
        let (reply, rx) = oneshot::channel();
        self.jobs
            .send(Job::Mutate { key, change, reply })
            .await
            .map_err(|_| ReplicaError::Closed)?;
        rx.await.map_err(|_| ReplicaError::Closed)?
    }

    /// Deletes a partition this node no longer replicates; returns the keys removed.
    pub async fn drop_partition(&self, partition: u32) -> Result<u64, ReplicaError> {
        let (reply, rx) = oneshot::channel();
        self.jobs
            .send(Job::Drop { partition, reply })
            .await
            .map_err(|_| ReplicaError::Closed)?;
        rx.await.map_err(|_| ReplicaError::Closed)?
    }

    /// `(bucket, key, digest)` of every key of tree `id` in the given segments.
    pub async fn segment_keys(
        &self,
        id: TreeId,
        segments: Vec<u16>,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>, Hash)>, ReplicaError> {
        let storage = self.storage.clone();
        let n_of = self.n_of.clone();
        tokio::task::spawn_blocking(move || {
            let mut out = Vec::new();
            for seg in segments {
                let (mut start, end) = segment_range(id.0, seg);
                loop {
                    let page = storage.scan(Table::Data, &start, &end, 1024)?;
                    let Some((last, _)) = page.last() else { break };
                    let mut next = last.clone();
                    next.push(0);
                    for (k, v) in &page {
                        let Some(dk) = split_data_key(k) else {
                            continue;
                        };
                        if tree_id(id.0, n_of(dk.bucket)) != id {
                            continue;
                        }
                        let obj =
                            Object::decode(v).map_err(|e| ReplicaError::Corrupt(e.to_string()))?;
                        out.push((dk.bucket.to_vec(), dk.key.to_vec(), obj.digest()));
                    }
                    start = next;
                }
            }
            Ok(out)
        })
        .await
        .map_err(|_| ReplicaError::Closed)?
    }

    /// Data keys that have held only tombstones (or values expired by then) since before
    /// `before_ms`, at most `limit`.
    pub async fn old_tombstones(
        &self,
        before_ms: u64,
        limit: usize,
    ) -> Result<Vec<Vec<u8>>, ReplicaError> {
        let storage = self.storage.clone();
        tokio::task::spawn_blocking(move || {
            let mut out = Vec::new();
            let mut start = Vec::new();
            while out.len() < limit {
                let page = storage.scan(Table::Tombstones, &start, &[0xff; 16], 1024)?;
                let Some((last, _)) = page.last() else { break };
                let mut next = last.clone();
                next.push(0);
                for (k, v) in page {
                    let since = v
                        .get(..8)
                        .and_then(|b| b.try_into().ok())
                        .map(u64::from_be_bytes);
                    if since.is_some_and(|s| s < before_ms) && out.len() < limit {
                        out.push(k);
                    }
                }
                start = next;
            }
            Ok(out)
        })
        .await
        .map_err(|_| ReplicaError::Closed)?
    }
}

/// Refuses another node's data directory; records this node's id in a new one.
fn check_identity(storage: &dyn Storage, node_id: &str) -> Result<(), ReplicaError> {
    if let Some(bytes) = storage.get(Table::Meta, META_IDENTITY)? {
        let id: Identity = rmp_serde::from_slice(&bytes)
            .map_err(|e| ReplicaError::Corrupt(format!("identity: {e}")))?;
        if id.node != node_id {
            return Err(ReplicaError::WrongNode {
                found: id.node,
                expected: node_id.to_string(),
            });
        }
        return Ok(());
    }
    // The epoch field is kept for the format's sake; it is not read back.
    let id = Identity {
        node: node_id.to_string(),
        epoch: 0,
    };
    let bytes = rmp_serde::to_vec_named(&id)
        .map_err(|e| ReplicaError::Corrupt(format!("identity: {e}")))?;
    storage.write(vec![Op::Put(Table::Meta, META_IDENTITY.to_vec(), bytes)])?;
    Ok(())
}

fn read_object(storage: &dyn Storage, key: &[u8]) -> Result<Option<Object>, ReplicaError> {
    match storage.get(Table::Data, key)? {
        Some(bytes) => Object::decode(&bytes)
            .map(Some)
            .map_err(|e| ReplicaError::Corrupt(e.to_string())),
        None => Ok(None),
    }
}

/// A random epoch. Should the system's random source fail, the clock and process id
/// still make a repeat very unlikely.
fn fresh_epoch(node_id: &str) -> u64 {
    let mut random = [0u8; 32];
    if let Err(e) = crate::entropy::random_bytes(&mut random) {
        tracing::warn!(error = %e, "no system randomness for the actor epoch; using the clock");
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let mut h = blake3::Hasher::new();
    h.update(&random);
    h.update(node_id.as_bytes());
    h.update(&now.to_le_bytes());
    h.update(&std::process::id().to_le_bytes());
    let d = h.finalize();
    let mut b = [0u8; 8];
    b.copy_from_slice(&d.as_bytes()[..8]);
    u64::from_le_bytes(b)
}
