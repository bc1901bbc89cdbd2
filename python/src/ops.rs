//! The operations both clients offer, as futures over owned arguments: the sync client
//! blocks on them, the async one hands them to asyncio.

use std::path::Path;
use std::sync::Mutex;

use chorus_client::{report, CausalContext, Client, ClientConfig, Error, Level};
use pyo3::prelude::*;

use crate::errors::{self, Kind};
use crate::result::{Context, Json, Read};

/// A connected client that `close()` can let go of.
pub struct Handle(Mutex<Option<Client>>);

impl Handle {
    pub fn new(client: Client) -> Handle {
        Handle(Mutex::new(Some(client)))
    }

    /// The client, or `ChorusError` once closed. A clone shares the connections.
    pub fn client(&self, py: Python<'_>) -> PyResult<Client> {
        self.lock()
            .clone()
            .ok_or_else(|| errors::raise(py, Kind::Chorus, ("the client is closed",)))
    }

    /// Drops this handle's share of the connections; requests in flight finish first.
    pub fn close(&self) {
        self.lock().take();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Client>> {
        // Nothing panics while holding the lock, and an Option can't be left half-set.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Reads a client config; a missing file is `NotFound`, a malformed one `InvalidArgument`.
pub fn load_config(py: Python<'_>, path: &Path) -> PyResult<ClientConfig> {
    if !path.exists() {
        return Err(errors::raise(
            py,
            Kind::NotFound,
            (format!("client config {} does not exist", path.display()),),
        ));
    }
    ClientConfig::load(path).map_err(|e| errors::to_py(py, e))
}

pub async fn connect(cfg: ClientConfig) -> Result<Client, Error> {
    Client::connect(cfg).await
}

pub async fn get(c: Client, bucket: Vec<u8>, key: Vec<u8>, r: Level) -> Result<Read, Error> {
    c.get(bucket, key, r).await.map(Read)
}

pub async fn put(
    c: Client,
    bucket: Vec<u8>,
    key: Vec<u8>,
    value: Vec<u8>,
    context: Option<CausalContext>,
    w: Level,
    ttl: Option<std::time::Duration>,
) -> Result<Context, Error> {
    let opts = chorus_client::WriteOptions {
        context,
        w,
        ttl,
        ..Default::default()
    };
    c.put_with(bucket, key, value, &opts).await.map(Context)
}

pub async fn delete(
    c: Client,
    bucket: Vec<u8>,
    key: Vec<u8>,
    context: Option<CausalContext>,
    w: Level,
) -> Result<Context, Error> {
    c.delete(bucket, key, context.as_ref(), w)
        .await
        .map(Context)
}

pub async fn status(c: Client) -> Result<Json, Error> {
    let st = c.status().await?;
    Ok(Json(report::status(&st)))
}

/// The ring freshly fetched; with a key, where that key lives.
pub async fn ring(c: Client, bucket: Vec<u8>, key: Option<Vec<u8>>) -> Result<Json, Error> {
    let info = c.refresh_ring().await?;
    Ok(Json(match key {
        Some(key) => report::ring_for_key(&info, &bucket, &key),
        None => report::ring(&info),
    }))
}

pub async fn leave(c: Client, node: String, force: bool) -> Result<(), Error> {
    c.leave_with(&node, force).await
}

pub async fn remove(c: Client, node: String, force: bool) -> Result<(), Error> {
    c.remove_with(&node, force).await
}

pub async fn repair(c: Client) -> Result<(), Error> {
    c.repair().await
}
