//! The tokio runtime every client shares, and the two ways Python waits on it: blocking
//! with the GIL released (`Client`) or as an asyncio awaitable (`AsyncClient`).

use std::future::Future;
use std::time::Duration;

use chorus_client::Error;
use pyo3::prelude::*;

use crate::errors;

/// How often a blocking call looks for a pending signal (Ctrl-C) while it waits.
const SIGNAL_CHECK: Duration = Duration::from_millis(100);

/// The runtime shared with the asyncio bridge, so one connection pool serves both kinds of
/// client and a client made by either works in the other's calls.
pub fn runtime() -> &'static tokio::runtime::Runtime {
    pyo3_async_runtimes::tokio::get_runtime()
}

/// Runs `fut` to completion with the GIL released. A signal handler that raises (Ctrl-C's
/// `KeyboardInterrupt`) cancels the request.
pub fn wait<F, T>(py: Python<'_>, fut: F) -> PyResult<T>
where
    F: Future<Output = Result<T, Error>> + Send,
    T: Send,
{
    let rt = runtime();
    let mut fut = std::pin::pin!(fut);
    loop {
        // The timer is made inside `block_on`: it needs the runtime's context.
        let step = py.detach(|| {
            rt.block_on(async { tokio::time::timeout(SIGNAL_CHECK, fut.as_mut()).await })
        });
        match step {
            Ok(done) => return done.map_err(|e| errors::to_py(py, e)),
            Err(_still_waiting) => py.check_signals()?,
        }
    }
}

/// Wraps `fut` as an asyncio awaitable running on the shared runtime; cancelling the
/// awaitable drops the request.
pub fn spawn<'py, F, T>(py: Python<'py>, fut: F) -> PyResult<Bound<'py, PyAny>>
where
    F: Future<Output = Result<T, Error>> + Send + 'static,
    T: for<'a> IntoPyObject<'a> + Send + 'static,
{
    pyo3_async_runtimes::tokio::future_into_py(py, async move {
        fut.await
            .map_err(|e| Python::attach(|py| errors::to_py(py, e)))
    })
}
