//! `chorus.Client`: the blocking client. Each call releases the GIL while it waits, so
//! threads can share one client and overlap their requests.

use std::path::PathBuf;

use pyo3::prelude::*;

use crate::args;
use crate::batch;
use crate::ops::{self, Handle};
use crate::result::{GetResult, Json};
use crate::runtime::wait;

/// A blocking client for a Chorus cluster.
///
/// Connect with :meth:`Client.connect`. Every method takes its own consistency level
/// (``"one"``, ``"quorum"``, ``"all"`` or a replica count). Buckets, keys and values are
/// ``bytes`` or ``str`` (encoded as UTF-8). A client is safe to share between threads.
#[pyclass(module = "chorus", name = "Client", frozen)]
pub struct SyncClient {
    handle: Handle,
}

#[pymethods]
impl SyncClient {
    /// Connects to the cluster described by a ``client.toml`` and learns its ring.
    ///
    /// Raises ``NotFound`` if the file doesn't exist, ``InvalidArgument`` if it or the TLS
    /// material it names can't be used, and ``Unavailable`` if no node answers.
    #[staticmethod]
    fn connect(py: Python<'_>, config_path: PathBuf) -> PyResult<SyncClient> {
        let cfg = ops::load_config(py, &config_path)?;
        let client = wait(py, ops::connect(cfg))?;
        Ok(SyncClient {
            handle: Handle::new(client),
        })
    }

    /// Reads a key with read consistency ``r``; returns a :class:`GetResult`.
    #[pyo3(signature = (bucket, key, r = None), text_signature = "(self, bucket, key, r='quorum')")]
    fn get<'py>(
        &self,
        py: Python<'py>,
        bucket: &Bound<'py, PyAny>,
        key: &Bound<'py, PyAny>,
        r: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, GetResult>> {
        let c = self.handle.client(py)?;
        let bucket = args::blob("bucket", bucket)?;
        let key = args::blob("key", key)?;
        let r = args::optional_level(py, "r", r)?;
        wait(py, ops::get(c, bucket, key, r))?.into_pyobject(py)
    }

    /// Writes a value with write consistency ``w`` and returns the new causal context.
    ///
    /// With the ``context`` of an earlier read the write replaces what that read saw;
    /// without one it is added next to any existing values as a sibling. ``ttl``
    /// (seconds as ``int`` or ``float``, or a ``datetime.timedelta``) makes the value read
    /// as deleted after that long, by the coordinating node's clock; ``None`` takes the
    /// bucket's default TTL, if any. Zero, negative or over ten years is
    /// ``InvalidArgument``.
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
        Ok(wait(py, ops::put(c, bucket, key, value, context, w, ttl))?
            .into_pyobject(py)?
            .into_any())
    }

    /// Deletes the values that ``context`` (from a read) saw, with write consistency ``w``.
    /// Returns the causal context of the delete.
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
        Ok(wait(py, ops::delete(c, bucket, key, context, w))?
            .into_pyobject(py)?
            .into_any())
    }

    /// Reads several keys of ``bucket`` in one request, each with read consistency ``r``.
    ///
    /// Returns a list in the order of ``keys``: a :class:`GetResult` for each key read, or
    /// the exception (a ``ChorusError`` subclass, not raised) for a key that failed, e.g.
    /// ``QuorumError``. Raises only if the batch as a whole fails: no node answers, or it
    /// has more keys than the cluster's ``limits.max_batch_keys`` (``InvalidArgument``).
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
        Ok(wait(py, batch::get_many(c, bucket, keys, r))?
            .into_pyobject(py)?
            .into_any())
    }

    /// Writes several keys of ``bucket`` in one request, each with write consistency ``w``.
    ///
    /// ``items`` holds dicts ``{"key": ..., "value": ..., "context": ...}`` or tuples
    /// ``(key, value)`` / ``(key, value, context)``; a ``None`` value deletes what the
    /// context saw. Returns a list in the order of ``items``: the new causal context
    /// (``bytes``) for each key written, or the exception (not raised) for a key that
    /// failed, e.g. ``TooLarge``. Raises only if the batch as a whole fails. ``ttl`` applies
    /// to every put of the batch, as in :meth:`put`.
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
        Ok(wait(py, batch::put_many(c, bucket, items, w, ttl))?
            .into_pyobject(py)?
            .into_any())
    }

    /// The cluster as the first reachable node sees it: a dict shaped like the output of
    /// ``chorus status --json`` (``nodes[].id/status/hints_pending``,
    /// ``transfers_pending``, ``tombstones_purged``, ...).
    fn status<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let c = self.handle.client(py)?;
        wait(py, ops::status(c))?.into_pyobject(py)
    }

    /// The ring, fetched afresh: a dict shaped like ``chorus ring --json``. With a ``key``,
    /// where that key of ``bucket`` lives (``preference_list``, ``fallbacks``, ...).
    #[pyo3(signature = (key = None, bucket = None), text_signature = "(self, key=None, bucket='default')")]
    fn ring<'py>(
        &self,
        py: Python<'py>,
        key: Option<&Bound<'py, PyAny>>,
        bucket: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let c = self.handle.client(py)?;
        let (bucket, key) = args::ring_target(key, bucket)?;
        let report: Json = wait(py, ops::ring(c, bucket, key))?;
        report.into_pyobject(py)
    }

    /// Asks the cluster to move ``node``'s partitions to the other nodes (admin only).
    /// ``force`` allows leaving fewer members than some bucket's N.
    #[pyo3(signature = (node, force = false))]
    fn leave(&self, py: Python<'_>, node: String, force: bool) -> PyResult<()> {
        let c = self.handle.client(py)?;
        wait(py, ops::leave(c, node, force))
    }

    /// Takes a dead ``node`` out of the ring (admin only). ``force`` allows removing a live
    /// node, or leaving fewer members than some bucket's N.
    #[pyo3(signature = (node, force = false))]
    fn remove(&self, py: Python<'_>, node: String, force: bool) -> PyResult<()> {
        let c = self.handle.client(py)?;
        wait(py, ops::remove(c, node, force))
    }

    /// A page of the keys of ``bucket`` that start with ``prefix``, in byte order, after
    /// the page whose ``next`` token is ``after``; returns a :class:`KeyPage`.
    ///
    /// ``limit`` is at most 10,000. Asks one replica of every partition: a tool for bulk
    /// jobs, not for the request path. A key written with W < N may be missing, and a
    /// deleted one still listed, until replicas converge. Raises ``InvalidArgument`` for a
    /// malformed token or limit, ``Unavailable`` if some partition has no reachable replica.
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
    ) -> PyResult<Bound<'py, crate::listing::KeyPage>> {
        let c = self.handle.client(py)?;
        let bucket = args::blob("bucket", bucket)?;
        let prefix = match prefix {
            Some(p) if !p.is_none() => args::blob("prefix", p)?,
            _ => Vec::new(),
        };
        wait(py, crate::listing::keys(c, bucket, prefix, limit, after))?.into_pyobject(py)
    }

    /// Deletes every key of ``bucket`` (admin only); returns how many were deleted.
    ///
    /// Every replica of every partition must be up: otherwise raises ``Unavailable``
    /// naming the node, and calling again once it is back is safe.
    fn truncate(&self, py: Python<'_>, bucket: &Bound<'_, PyAny>) -> PyResult<u64> {
        let c = self.handle.client(py)?;
        let bucket = args::blob("bucket", bucket)?;
        wait(py, crate::listing::truncate(c, bucket))
    }

    /// Starts an anti-entropy round on the first reachable node (admin only).
    fn repair(&self, py: Python<'_>) -> PyResult<()> {
        let c = self.handle.client(py)?;
        wait(py, ops::repair(c))
    }

    /// Diagnostic for ``python/bench/overhead.py``, not part of the API: reads ``keys`` one
    /// after another from a loop in Rust, on this client's connections, and returns each
    /// read's latency in nanoseconds: the baseline the Python calls are compared with.
    #[pyo3(signature = (bucket, keys, r = None))]
    fn _rust_get_latencies(
        &self,
        py: Python<'_>,
        bucket: &Bound<'_, PyAny>,
        keys: Vec<Bound<'_, PyAny>>,
        r: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Vec<u64>> {
        let c = self.handle.client(py)?;
        let bucket = args::blob("bucket", bucket)?;
        let keys = keys
            .iter()
            .map(|k| args::blob("key", k))
            .collect::<PyResult<Vec<_>>>()?;
        let r = args::optional_level(py, "r", r)?;
        wait(py, async move {
            let mut out = Vec::with_capacity(keys.len());
            for k in &keys {
                let t = std::time::Instant::now();
                c.get(&bucket, k, r).await?;
                out.push(u64::try_from(t.elapsed().as_nanos()).unwrap_or(u64::MAX));
            }
            Ok(out)
        })
    }

    /// Lets go of the connections; later calls raise ``ChorusError``. Requests in flight
    /// in other threads finish first.
    fn close(&self) {
        self.handle.close();
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_exc))]
    fn __exit__(&self, _exc: &Bound<'_, pyo3::types::PyTuple>) -> bool {
        self.handle.close();
        false
    }
}
