//! Python bindings for the Chorus client: the native module `chorus._chorus`, which the
//! `chorus` package re-exports.
//!
//! Both clients wrap the async Rust client (`chorus-client`) and share one tokio runtime:
//! `Client` blocks with the GIL released, `AsyncClient` returns asyncio awaitables.
//! Exceptions are classes of `chorus.errors`.

use pyo3::prelude::*;

mod args;
mod async_client;
mod batch;
mod errors;
mod listing;
mod ops;
mod result;
mod runtime;
mod sync_client;

#[pymodule]
fn _chorus(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_class::<sync_client::SyncClient>()?;
    m.add_class::<async_client::AsyncClient>()?;
    m.add_class::<result::GetResult>()?;
    m.add_class::<listing::KeyPage>()?;
    Ok(())
}
