//! The local replica: reads, coordinator-local updates and merges of remote versions.
//!
//! Every mutation is a read-merge-write of one key, so mutations go through a single writer
//! thread. It drains whatever is queued (up to `max_batch`) and commits it as one RocksDB
//! write batch: concurrent writers share one WAL write (and one fsync when `storage.sync` is
//! on), and no two read-merge-writes of a key can interleave.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use crate::storage::{Op, Storage, StorageError, Table};
use crate::version::{Actor, Object, VersionVector};

const META_IDENTITY: &[u8] = b"identity";

#[derive(Debug, thiserror::Error)]
pub enum ReplicaError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("stored version of a key is corrupt: {0}")]
    Corrupt(String),
    #[error("key has {count} siblings, more than the limit of {limit}; resolve them by writing with the read's context")]
    TooManySiblings { count: usize, limit: usize },
    #[error("data directory belongs to node {found:?}, not {expected:?}")]
    WrongNode { found: String, expected: String },
    #[error("replica is shutting down")]
    Closed,
}

/// A mutation of one key.
pub enum Change {
    /// A write coordinated here: replace what `ctx` covers with `value` (None deletes).
    Update {
        ctx: VersionVector,
        value: Option<Vec<u8>>,
    },
    /// A version from another replica, merged in.
    Merge(Object),
}

struct Job {
    key: Vec<u8>,
    change: Change,
    reply: oneshot::Sender<Result<Object, ReplicaError>>,
}

/// Handle to the local replica. Cheap to clone.
#[derive(Clone)]
pub struct Replica {
    storage: Arc<dyn Storage>,
    jobs: mpsc::Sender<Job>,
    actor: Actor,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Identity {
    node: String,
    epoch: u64,
}

impl Replica {
    /// Opens the replica for node `node_id`. A data directory without an identity gets a new
    /// epoch, so a node whose data was lost never reuses version counters it issued before.
    pub fn open(
        storage: Arc<dyn Storage>,
        node_id: &str,
        max_batch: usize,
        max_siblings: usize,
    ) -> Result<Replica, ReplicaError> {
        let actor = match storage.get(Table::Meta, META_IDENTITY)? {
            Some(bytes) => {
                let id: Identity = rmp_serde::from_slice(&bytes)
                    .map_err(|e| ReplicaError::Corrupt(format!("identity: {e}")))?;
                if id.node != node_id {
                    return Err(ReplicaError::WrongNode {
                        found: id.node,
                        expected: node_id.to_string(),
                    });
                }
                Actor {
                    node: id.node,
                    epoch: id.epoch,
                }
            }
            None => {
                let epoch = fresh_epoch(node_id);
                let id = Identity {
                    node: node_id.to_string(),
                    epoch,
                };
                let bytes = rmp_serde::to_vec_named(&id)
                    .map_err(|e| ReplicaError::Corrupt(format!("identity: {e}")))?;
                storage.write(vec![Op::Put(Table::Meta, META_IDENTITY.to_vec(), bytes)])?;
                tracing::info!(
                    node = node_id,
                    epoch,
                    "new data directory: fresh actor epoch"
                );
                Actor {
                    node: node_id.to_string(),
                    epoch,
                }
            }
        };
        let (tx, rx) = mpsc::channel(max_batch * 4);
        let writer = Writer {
            storage: storage.clone(),
            actor: actor.clone(),
            max_batch,
            max_siblings,
        };
        std::thread::Builder::new()
            .name("replica-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| ReplicaError::Storage(StorageError::Write(e.to_string())))?;
        Ok(Replica {
            storage,
            jobs: tx,
            actor,
        })
    }

    /// This node's writer identity.
    pub fn actor(&self) -> &Actor {
        &self.actor
    }

    /// The stored version of a data key.
    pub async fn get(&self, key: Vec<u8>) -> Result<Option<Object>, ReplicaError> {
        let storage = self.storage.clone();
        tokio::task::spawn_blocking(move || read_object(&*storage, &key))
            .await
            .map_err(|_| ReplicaError::Closed)?
    }

    /// Applies a change and returns the key's resulting version.
    pub async fn apply(&self, key: Vec<u8>, change: Change) -> Result<Object, ReplicaError> {
        let (reply, rx) = oneshot::channel();
        self.jobs
            .send(Job { key, change, reply })
            .await
            .map_err(|_| ReplicaError::Closed)?;
        rx.await.map_err(|_| ReplicaError::Closed)?
    }
}

fn read_object(storage: &dyn Storage, key: &[u8]) -> Result<Option<Object>, ReplicaError> {
    match storage.get(Table::Data, key)? {
        Some(bytes) => Object::decode(&bytes)
            .map(Some)
            .map_err(|e| ReplicaError::Corrupt(e.to_string())),
        None => Ok(None),
    }
}

fn fresh_epoch(node_id: &str) -> u64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let mut h = blake3::Hasher::new();
    h.update(node_id.as_bytes());
    h.update(&now.to_le_bytes());
    h.update(&std::process::id().to_le_bytes());
    let d = h.finalize();
    let mut b = [0u8; 8];
    b.copy_from_slice(&d.as_bytes()[..8]);
    u64::from_le_bytes(b)
}

struct Writer {
    storage: Arc<dyn Storage>,
    actor: Actor,
    max_batch: usize,
    max_siblings: usize,
}

impl Writer {
    fn run(self, mut rx: mpsc::Receiver<Job>) {
        while let Some(first) = rx.blocking_recv() {
            let mut jobs = vec![first];
            while jobs.len() < self.max_batch {
                match rx.try_recv() {
                    Ok(j) => jobs.push(j),
                    Err(_) => break,
                }
            }
            self.commit(jobs);
        }
    }

    /// Applies a group of jobs in order and writes them in one batch. A key touched twice in
    /// the group sees its own earlier result, not the stale stored value.
    fn commit(&self, jobs: Vec<Job>) {
        let mut pending: HashMap<Vec<u8>, Object> = HashMap::new();
        let mut results = Vec::with_capacity(jobs.len());
        let mut ops = Vec::new();
        for job in jobs {
            let current = match pending.get(&job.key) {
                Some(o) => Ok(Some(o.clone())),
                None => read_object(&*self.storage, &job.key),
            };
            let outcome = current.and_then(|cur| self.apply(cur, job.change));
            match outcome {
                Ok((obj, changed)) => {
                    if changed {
                        ops.push(Op::Put(Table::Data, job.key.clone(), obj.encode()));
                        pending.insert(job.key, obj.clone());
                    }
                    results.push((job.reply, Ok(obj)));
                }
                Err(e) => results.push((job.reply, Err(e))),
            }
        }
        let written = if ops.is_empty() {
            Ok(())
        } else {
            self.storage.write(ops)
        };
        match written {
            Ok(()) => {
                for (reply, r) in results {
                    let _ = reply.send(r);
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "write batch failed");
                for (reply, _) in results {
                    let _ = reply.send(Err(ReplicaError::Storage(StorageError::Write(
                        e.to_string(),
                    ))));
                }
            }
        }
    }

    fn apply(
        &self,
        current: Option<Object>,
        change: Change,
    ) -> Result<(Object, bool), ReplicaError> {
        let mut obj = current.unwrap_or_default();
        match change {
            Change::Update { ctx, value } => {
                obj.update(&ctx, &self.actor, value);
                let count = obj.sibling_count();
                if count > self.max_siblings {
                    return Err(ReplicaError::TooManySiblings {
                        count,
                        limit: self.max_siblings,
                    });
                }
                Ok((obj, true))
            }
            Change::Merge(other) => {
                let before = obj.clone();
                obj.merge(&other);
                let changed = obj != before;
                Ok((obj, changed))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::MemStorage;

    #[tokio::test]
    async fn update_merge_and_epoch() {
        let mem = MemStorage::default();
        let r = Replica::open(Arc::new(mem.clone()), "n1", 16, 4).expect("open");
        let epoch = r.actor().epoch;
        let a = r
            .apply(
                b"k".to_vec(),
                Change::Update {
                    ctx: VersionVector::new(),
                    value: Some(b"v1".to_vec()),
                },
            )
            .await
            .expect("update");
        assert_eq!(a.values(), vec![&b"v1"[..]]);
        let b = r
            .apply(
                b"k".to_vec(),
                Change::Update {
                    ctx: VersionVector::new(),
                    value: Some(b"v2".to_vec()),
                },
            )
            .await
            .expect("update");
        assert_eq!(b.sibling_count(), 2);
        let stored = r.get(b"k".to_vec()).await.expect("get").expect("present");
        assert_eq!(stored, b);
        // Too many siblings is refused, and the stored state is unchanged.
        for _ in 0..2 {
            r.apply(
                b"k".to_vec(),
                Change::Update {
                    ctx: VersionVector::new(),
                    value: Some(b"x".to_vec()),
                },
            )
            .await
            .expect("within limit");
        }
        let err = r
            .apply(
                b"k".to_vec(),
                Change::Update {
                    ctx: VersionVector::new(),
                    value: Some(b"x".to_vec()),
                },
            )
            .await;
        assert!(matches!(err, Err(ReplicaError::TooManySiblings { .. })));
        assert_eq!(
            r.get(b"k".to_vec())
                .await
                .expect("get")
                .expect("present")
                .sibling_count(),
            4
        );
        // Same storage, same node: the epoch is kept. Another node id is refused.
        let again = Replica::open(Arc::new(mem.clone()), "n1", 16, 4).expect("reopen");
        assert_eq!(again.actor().epoch, epoch);
        assert!(matches!(
            Replica::open(Arc::new(mem), "n2", 16, 4),
            Err(ReplicaError::WrongNode { .. })
        ));
        // Empty storage: a new epoch.
        let fresh = Replica::open(Arc::new(MemStorage::default()), "n1", 16, 4).expect("fresh");
        assert_ne!(fresh.actor().epoch, epoch);
    }
}
