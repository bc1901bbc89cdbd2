//! Key listing and bucket truncation for both clients: the page a listing returns to
//! Python, and the operations as futures over owned arguments.

use chorus_client::{Client, Error, KeyPage as RustKeyPage};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyTuple};

/// Keys a page holds when the caller names no limit (the server's default).
pub const DEFAULT_LIMIT: u32 = 1_000;

/// One page of a bucket's keys, in byte order.
///
/// ``keys`` is a ``list[bytes]``; ``next`` is the token for the following page (pass it as
/// ``after``), or ``None`` when the listing is done. Unpacks as ``keys, next = page``.
#[pyclass(module = "chorus", name = "KeyPage", frozen)]
pub struct KeyPage {
    /// The keys of this page (``list[bytes]``).
    #[pyo3(get)]
    keys: Py<PyList>,
    /// The token of the next page, or ``None`` at the end.
    #[pyo3(get)]
    next: Option<String>,
}

#[pymethods]
impl KeyPage {
    fn __iter__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let pair = PyTuple::new(
            py,
            [
                self.keys.bind(py).clone().into_any(),
                self.next.clone().into_pyobject(py)?.into_any(),
            ],
        )?;
        Ok(pair.try_iter()?.into_any())
    }

    fn __len__(&self, py: Python<'_>) -> usize {
        self.keys.bind(py).len()
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!(
            "KeyPage(keys={}, next={})",
            self.keys.bind(py).repr()?,
            match &self.next {
                Some(t) => format!("{t:?}"),
                None => "None".into(),
            }
        ))
    }
}

/// A page on its way to Python.
pub struct Page(pub RustKeyPage);

impl<'py> IntoPyObject<'py> for Page {
    type Target = KeyPage;
    type Output = Bound<'py, KeyPage>;
    type Error = PyErr;

    fn into_pyobject(self, py: Python<'py>) -> PyResult<Self::Output> {
        let keys = PyList::new(py, self.0.keys.iter().map(|k| PyBytes::new(py, k)))?;
        Bound::new(
            py,
            KeyPage {
                keys: keys.unbind(),
                next: self.0.next,
            },
        )
    }
}

pub async fn keys(
    c: Client,
    bucket: Vec<u8>,
    prefix: Vec<u8>,
    limit: u32,
    after: Option<String>,
) -> Result<Page, Error> {
    c.keys(bucket, prefix, limit, after.as_deref())
        .await
        .map(Page)
}

pub async fn truncate(c: Client, bucket: Vec<u8>) -> Result<u64, Error> {
    c.truncate(bucket).await
}
