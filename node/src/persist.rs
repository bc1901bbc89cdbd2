//! Writes of the cluster state to the data directory, one at a time and in order.
//!
//! The stored state is what the next start of this node compares with the cluster's view
//! of it (see [`crate::recovery`]): an entry for this node older than the one it announced
//! makes that start take its own directory for a restored copy and drop it. So a write of
//! an older snapshot must never land after a newer one. Each write takes its snapshot under
//! one lock and finishes before the next snapshot is taken; as the state only grows by
//! merges, the last write is always the newest state.

use std::sync::Arc;

use crate::storage::{Op, Storage, StorageError, Table};

/// The key of the cluster state in [`Table::Meta`].
pub(crate) const META_STATE: &[u8] = b"cluster-state";

pub(crate) struct StatePersister {
    storage: Arc<dyn Storage>,
    order: tokio::sync::Mutex<()>,
}

impl StatePersister {
    pub(crate) fn new(storage: Arc<dyn Storage>) -> StatePersister {
        StatePersister {
            storage,
            order: tokio::sync::Mutex::new(()),
        }
    }

    /// Under the lock: takes the snapshot (`None`: nothing to write), writes it, and once it
    /// is on disk runs `then` (which may publish what was written, e.g. announce it).
    /// `Ok(false)` if there was nothing to write.
    pub(crate) async fn write(
        &self,
        snapshot: impl FnOnce() -> Option<Vec<u8>>,
        then: impl FnOnce(),
    ) -> Result<bool, StorageError> {
        let _order = self.order.lock().await;
        let Some(bytes) = snapshot() else {
            return Ok(false);
        };
        let storage = self.storage.clone();
        tokio::task::spawn_blocking(move || {
            storage.write(vec![Op::Put(Table::Meta, META_STATE.to_vec(), bytes)])
        })
        .await
        .map_err(|_| StorageError::Write("the writing task failed".into()))??;
        then();
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::mpsc;
    use std::sync::Mutex;
    use std::time::Duration;

    use super::*;
    use crate::storage::{Entries, MemStorage};

    /// Storage whose first write blocks until released: a slow disk under the first writer.
    struct SlowFirstWrite {
        inner: MemStorage,
        first: AtomicBool,
        release: Mutex<mpsc::Receiver<()>>,
    }

    impl Storage for SlowFirstWrite {
        fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
            self.inner.get(table, key)
        }
        fn write(&self, ops: Vec<Op>) -> Result<(), StorageError> {
            if !self.first.swap(true, Ordering::SeqCst) {
                let rx = self
                    .release
                    .lock()
                    .map_err(|_| StorageError::Write("lock".into()))?;
                let _ = rx.recv_timeout(Duration::from_secs(10));
            }
            self.inner.write(ops)
        }
        fn scan(
            &self,
            table: Table,
            from: &[u8],
            to: &[u8],
            limit: usize,
        ) -> Result<Entries, StorageError> {
            self.inner.scan(table, from, to, limit)
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_slow_write_of_an_older_snapshot_never_lands_after_a_newer_one() {
        let (tx, rx) = mpsc::channel();
        let storage = Arc::new(SlowFirstWrite {
            inner: MemStorage::default(),
            first: AtomicBool::new(false),
            release: Mutex::new(rx),
        });
        let p = Arc::new(StatePersister::new(storage.clone()));
        // The older snapshot is taken first; its write stalls on the disk.
        let older = tokio::spawn({
            let p = p.clone();
            async move { p.write(|| Some(b"older".to_vec()), || {}).await }
        });
        while !storage.first.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let newer = tokio::spawn({
            let p = p.clone();
            async move { p.write(|| Some(b"newer".to_vec()), || {}).await }
        });
        // Give the newer write every chance to overtake before the slow one finishes.
        let _ = tokio::time::timeout(Duration::from_millis(300), async {
            while !newer.is_finished() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await;
        tx.send(()).expect("release the slow write");
        assert!(older.await.expect("older write").expect("written"));
        assert!(newer.await.expect("newer write").expect("written"));
        let stored = storage.get(Table::Meta, META_STATE).expect("read");
        assert_eq!(stored.as_deref(), Some(&b"newer"[..]));
    }
}
