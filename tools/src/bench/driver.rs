//! What the workload engine needs from a store, and what the drivers share.

use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;

/// How long one request may take before it counts as an error (the Chorus client's default
/// timeout, so every store gets the same allowance).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long connecting to a server may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_millis(1500);

/// One store under test. Keys are record numbers; each driver names them with
/// [`super::key_name`] (and Chorus puts them in the bench bucket).
///
/// The futures are `Send` so the engine can run operations on any worker thread.
pub trait Driver: Send + Sync + 'static {
    /// Reads a record; `Ok(false)` when the store has no value for it.
    fn read(&self, key: u64) -> impl Future<Output = Result<bool, DriverError>> + Send;

    /// Writes (inserts or replaces) a record.
    fn write(&self, key: u64, value: Bytes)
        -> impl Future<Output = Result<(), DriverError>> + Send;

    /// YCSB's read-modify-write: a read, then a write of the same record.
    fn read_modify_write(
        &self,
        key: u64,
        value: Bytes,
    ) -> impl Future<Output = Result<(), DriverError>> + Send {
        async move {
            self.read(key).await?;
            self.write(key, value).await
        }
    }

    /// The read consistency, as the summary reports it.
    fn read_level(&self) -> String;

    /// The write acknowledgement, as the summary reports it.
    fn write_level(&self) -> String;
}

#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error(transparent)]
    Chorus(#[from] chorus_client::Error),
    #[error("redis: {0}")]
    Redis(#[from] Box<redis::RedisError>),
    #[error("redis: WAIT: {acked} of {wanted} replicas acknowledged the write within {timeout:?}")]
    NotReplicated {
        acked: i64,
        wanted: usize,
        timeout: Duration,
    },
    #[error("etcd: {0}")]
    Etcd(#[from] Box<tonic::Status>),
    #[error("etcd: {endpoint}: {source}")]
    EtcdConnect {
        endpoint: String,
        #[source]
        source: Box<tonic::transport::Error>,
    },
    #[error("{0}")]
    Setup(String),
}

impl From<redis::RedisError> for DriverError {
    fn from(e: redis::RedisError) -> Self {
        DriverError::Redis(Box::new(e))
    }
}

impl From<tonic::Status> for DriverError {
    fn from(e: tonic::Status) -> Self {
        DriverError::Etcd(Box::new(e))
    }
}

/// A fixed set of connections, each lent to one request at a time: a Redis connection
/// blocked in `WAIT` then holds up no other request.
pub struct Pool<T> {
    items: Mutex<Vec<T>>,
    permits: tokio::sync::Semaphore,
}

pub struct Lease<'a, T> {
    pool: &'a Pool<T>,
    item: Option<T>,
}

impl<T> Pool<T> {
    pub fn new(items: Vec<T>) -> Pool<T> {
        let n = items.len();
        Pool {
            items: Mutex::new(items),
            permits: tokio::sync::Semaphore::new(n),
        }
    }

    /// Waits for a free item.
    pub async fn get(&self) -> Result<Lease<'_, T>, DriverError> {
        let permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| DriverError::Setup("connection pool closed".into()))?;
        let item = self
            .items
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop()
            .ok_or_else(|| DriverError::Setup("connection pool is empty".into()))?;
        // The permit comes back with the item, when the lease drops.
        permit.forget();
        Ok(Lease {
            pool: self,
            item: Some(item),
        })
    }
}

impl<T> std::ops::Deref for Lease<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // Present from creation until drop.
        self.item
            .as_ref()
            .expect("lease holds its item until dropped")
    }
}

impl<T> std::ops::DerefMut for Lease<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        self.item
            .as_mut()
            .expect("lease holds its item until dropped")
    }
}

impl<T> Drop for Lease<'_, T> {
    fn drop(&mut self) {
        if let Some(item) = self.item.take() {
            self.pool
                .items
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(item);
            self.pool.permits.add_permits(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn pool_lends_each_item_to_one_holder_at_a_time() {
        let pool = Arc::new(Pool::new(
            (0..3).map(|_| Arc::new(AtomicUsize::new(0))).collect(),
        ));
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..16 {
            let pool = pool.clone();
            tasks.spawn(async move {
                for _ in 0..50 {
                    let lease = pool.get().await.expect("lease");
                    assert_eq!(lease.fetch_add(1, Ordering::SeqCst), 0, "item shared");
                    tokio::task::yield_now().await;
                    lease.fetch_sub(1, Ordering::SeqCst);
                }
            });
        }
        while let Some(r) = tasks.join_next().await {
            r.expect("task");
        }
        assert_eq!(pool.items.lock().unwrap().len(), 3);
        assert_eq!(pool.permits.available_permits(), 3);
    }
}
