//! `chorus._chorus.AsyncClient`, which `chorus.AsyncClient` wraps in coroutines: each call
//! returns an asyncio future; requests run on the shared tokio runtime, so many can be in
//! flight from one event loop.

use std::path::PathBuf;

use pyo3::prelude::*;

use crate::args;
use crate::batch;
use crate::ops::{self, Handle};
use crate::runtime::spawn;

/// The native asyncio client, wrapped in coroutines by ``chorus.AsyncClient``.
///
/// The methods mirror :class:`Client` and return asyncio futures, so they must be called
/// with an event loop running; cancelling one drops its request (a write may still have
/// been applied).
#[pyclass(module = "chorus", name = "AsyncClient", frozen)]
pub struct AsyncClient {
    handle: Handle,
}

#[pymethods]
impl AsyncClient {
    /// Connects to the cluster described by a ``client.toml`` and learns its ring.
    ///
    /// Raises ``NotFound`` if the file doesn't exist, ``InvalidArgument`` if it or the TLS
    /// material it names can't be used, and ``Unavailable`` if no node answers.
    #[staticmethod]
    fn connect(py: Python<'_>, config_path: PathBuf) -> PyResult<Bound<'_, PyAny>> {
        let cfg = ops::load_config(py, &config_path)?;
        spawn(py, async move {
            let client = ops::connect(cfg).await?;
            Ok(AsyncClient {
                handle: Handle::new(client),
            })
        })
    }

    /// Reads a key with read consistency ``r``; the awaitable gives a :class:`GetResult`.
    #[pyo3(signature = (bucket, key, r = None), text_signature = "(self, bucket, key, r='quorum')")]
    fn get<'py>(
        &self,
        py: Python<'py>,
        bucket: &Bound<'py, PyAny>,
        key: &Bound<'py, PyAny>,
        r: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let c = self.handle.client(py)?;
        let bucket = args::blob("bucket", bucket)?;
        let key = args::blob("key", key)?;
        let r = args::optional_level(py, "r", r)?;
        spawn(py, ops::get(c, bucket, key, r))
    }

    /// Writes a value with write consistency ``w``; the awaitable gives the new causal
    /// context. ``ttl`` (seconds or a ``datetime.timedelta``) makes the value read as
    /// deleted after that long; ``None`` takes the bucket's default TTL, if any.
    #[pyo3(
        signature = (bucket, key, value, context = None, w = None, ttl = None),
        text_signature = "(self, bucket, key, value, context=None, w='quorum', ttl=None)"
    )]
    #[allow(clippy::too_many_arguments)]
    fn put<'py>(
        &self,
        py: Python<'py>,
        bucket: &Bound<'py, PyAny>,
        key: &Bound<'py, PyAny>,
        value: &Bound<'py, PyAny>,
        context: Option<&Bound<'py, PyAny>>,
        w: Option<&Bound<'py, PyAny>>,
        ttl: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let c = self.handle.client(py)?;
        let bucket = args::blob("bucket", bucket)?;
        let key = args::blob("key", key)?;
        let value = args::blob("value", value)?;
        let context = args::context(context)?;
        let w = args::optional_level(py, "w", w)?;
        let ttl = args::ttl(py, ttl)?;
        spawn(py, ops::put(c, bucket, key, value, context, w, ttl))
    }

    /// Deletes the values that ``context`` (from a read) saw, with write consistency ``w``;
    /// the awaitable gives the causal context of the delete.
    #[pyo3(
        signature = (bucket, key, context, w = None),
        text_signature = "(self, bucket, key, context, w='quorum')"
    )]
    fn delete<'py>(
        &self,
        py: Python<'py>,
        bucket: &Bound<'py, PyAny>,
        key: &Bound<'py, PyAny>,
        context: Option<&Bound<'py, PyAny>>,
        w: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let c = self.handle.client(py)?;
        let bucket = args::blob("bucket", bucket)?;
        let key = args::blob("key", key)?;
        let context = args::context(context)?;
        let w = args::optional_level(py, "w", w)?;
        spawn(py, ops::delete(c, bucket, key, context, w))
    }

    /// Reads several keys in one request; the awaitable gives what
    /// :meth:`Client.get_many` returns.
    #[pyo3(signature = (bucket, keys, r = None), text_signature = "(self, bucket, keys, r='quorum')")]
    fn get_many<'py>(
        &self,
        py: Python<'py>,
        bucket: &Bound<'py, PyAny>,
        keys: &Bound<'py, PyAny>,
        r: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let c = self.handle.client(py)?;
        let bucket = args::blob("bucket", bucket)?;
        let keys = batch::keys(keys)?;
        let r = args::optional_level(py, "r", r)?;
        spawn(py, batch::get_many(c, bucket, keys, r))
    }

    /// Writes several keys in one request; the awaitable gives what
    /// :meth:`Client.put_many` returns.
    #[pyo3(
        signature = (bucket, items, w = None, ttl = None),
        text_signature = "(self, bucket, items, w='quorum', ttl=None)"
    )]
    fn put_many<'py>(
        &self,
        py: Python<'py>,
        bucket: &Bound<'py, PyAny>,
        items: &Bound<'py, PyAny>,
        w: Option<&Bound<'py, PyAny>>,
        ttl: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let c = self.handle.client(py)?;
        let bucket = args::blob("bucket", bucket)?;
        let items = batch::items(items)?;
        let w = args::optional_level(py, "w", w)?;
        let ttl = args::ttl(py, ttl)?;
        spawn(py, batch::put_many(c, bucket, items, w, ttl))
    }

    /// The cluster as the first reachable node sees it, as :meth:`Client.status` gives it.
    fn status<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let c = self.handle.client(py)?;
        spawn(py, ops::status(c))
    }

    /// The ring, fetched afresh, as :meth:`Client.ring` gives it.
    #[pyo3(signature = (key = None, bucket = None), text_signature = "(self, key=None, bucket='default')")]
    fn ring<'py>(
        &self,
        py: Python<'py>,
        key: Option<&Bound<'py, PyAny>>,
        bucket: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let c = self.handle.client(py)?;
        let (bucket, key) = args::ring_target(key, bucket)?;
        spawn(py, ops::ring(c, bucket, key))
    }

    /// Asks the cluster to move ``node``'s partitions to the other nodes (admin only).
    #[pyo3(signature = (node, force = false))]
    fn leave<'py>(
        &self,
        py: Python<'py>,
        node: String,
        force: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let c = self.handle.client(py)?;
        spawn(py, ops::leave(c, node, force))
    }

    /// Takes a dead ``node`` out of the ring (admin only).
    #[pyo3(signature = (node, force = false))]
    fn remove<'py>(
        &self,
        py: Python<'py>,
        node: String,
        force: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let c = self.handle.client(py)?;
        spawn(py, ops::remove(c, node, force))
    }

    /// A page of a bucket's keys; the awaitable gives what :meth:`Client.keys` returns.
    #[pyo3(
        signature = (bucket, prefix = None, limit = crate::listing::DEFAULT_LIMIT, after = None),
        text_signature = "(self, bucket, prefix=None, limit=1000, after=None)"
    )]
    fn keys<'py>(
        &self,
        py: Python<'py>,
        bucket: &Bound<'py, PyAny>,
        prefix: Option<&Bound<'py, PyAny>>,
        limit: u32,
        after: Option<String>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let c = self.handle.client(py)?;
        let bucket = args::blob("bucket", bucket)?;
        let prefix = match prefix {
            Some(p) if !p.is_none() => args::blob("prefix", p)?,
            _ => Vec::new(),
        };
        spawn(py, crate::listing::keys(c, bucket, prefix, limit, after))
    }

    /// Deletes every key of a bucket (admin only); the awaitable gives the count.
    fn truncate<'py>(
        &self,
        py: Python<'py>,
        bucket: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let c = self.handle.client(py)?;
        let bucket = args::blob("bucket", bucket)?;
        spawn(py, crate::listing::truncate(c, bucket))
    }

    /// Starts an anti-entropy round on the first reachable node (admin only).
    fn repair<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let c = self.handle.client(py)?;
        spawn(py, ops::repair(c))
    }

    /// Lets go of the connections; later calls raise ``ChorusError``. Requests in flight
    /// finish first.
    fn close(&self) {
        self.handle.close();
    }
}
