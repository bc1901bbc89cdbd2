//! Batch calls (`get_many`, `put_many`): their arguments from Python and their per-key
//! results, in the order given, each a value or the exception that key's request got.

use chorus_client::{Client, Error, KeyGet, KeyPut, Level, WriteEntry};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyTuple};

use crate::args;
use crate::errors;
use crate::result::{Context, Read};

/// The keys of a `get_many`: any iterable of `bytes` or `str`.
pub fn keys(v: &Bound<'_, PyAny>) -> PyResult<Vec<Vec<u8>>> {
    if v.cast::<pyo3::types::PyString>().is_ok() || v.cast::<pyo3::types::PyBytes>().is_ok() {
        return Err(pyo3::exceptions::PyTypeError::new_err(
            "keys must be a list of keys, not a single key",
        ));
    }
    v.try_iter()?.map(|k| args::blob("key", &k?)).collect()
}

/// The writes of a `put_many`: dicts `{"key", "value", "context"}` (as `chorus put-many`
/// reads them) or tuples `(key, value)` / `(key, value, context)`. A `None` value deletes.
pub fn items(v: &Bound<'_, PyAny>) -> PyResult<Vec<WriteEntry>> {
    let mut out = Vec::new();
    for item in v.try_iter()? {
        let item = item?;
        let (key, value, context) = if let Ok(d) = item.cast::<PyDict>() {
            let key = d
                .get_item("key")?
                .ok_or_else(|| pyo3::exceptions::PyKeyError::new_err("item without \"key\""))?;
            (key, d.get_item("value")?, d.get_item("context")?)
        } else if let Ok(t) = item.cast::<PyTuple>() {
            match t.len() {
                2 => (t.get_item(0)?, Some(t.get_item(1)?), None),
                3 => (t.get_item(0)?, Some(t.get_item(1)?), Some(t.get_item(2)?)),
                n => {
                    return Err(pyo3::exceptions::PyTypeError::new_err(format!(
                        "an item tuple is (key, value) or (key, value, context), not {n} long"
                    )))
                }
            }
        } else {
            return Err(pyo3::exceptions::PyTypeError::new_err(
                "each item is a dict {\"key\", \"value\", \"context\"} or a (key, value[, context]) tuple",
            ));
        };
        let value = match value {
            Some(v) if !v.is_none() => Some(args::blob("value", &v)?),
            _ => None,
        };
        out.push(WriteEntry {
            key: args::blob("key", &key)?,
            value,
            context: args::context(context.as_ref())?,
        });
    }
    Ok(out)
}

/// Per-key reads: a `GetResult`, or the exception instance for a key that failed.
pub struct Reads(Vec<KeyGet>);

/// Per-key writes: the new context (`bytes`), or the exception instance for a key that failed.
pub struct Writes(Vec<KeyPut>);

pub async fn get_many(
    c: Client,
    bucket: Vec<u8>,
    keys: Vec<Vec<u8>>,
    r: Level,
) -> Result<Reads, Error> {
    c.get_many(bucket, &keys, r).await.map(Reads)
}

pub async fn put_many(
    c: Client,
    bucket: Vec<u8>,
    items: Vec<WriteEntry>,
    w: Level,
    ttl: Option<std::time::Duration>,
) -> Result<Writes, Error> {
    c.put_many_with(bucket, items, w, ttl).await.map(Writes)
}

fn exception<'py>(py: Python<'py>, e: Error) -> Bound<'py, PyAny> {
    errors::to_py(py, e)
        .into_value(py)
        .into_bound(py)
        .into_any()
}

impl<'py> IntoPyObject<'py> for Reads {
    type Target = PyList;
    type Output = Bound<'py, PyList>;
    type Error = PyErr;

    fn into_pyobject(self, py: Python<'py>) -> PyResult<Self::Output> {
        let list = PyList::empty(py);
        for kg in self.0 {
            match kg.result {
                Ok(g) => list.append(Read(g).into_pyobject(py)?)?,
                Err(e) => list.append(exception(py, e))?,
            }
        }
        Ok(list)
    }
}

impl<'py> IntoPyObject<'py> for Writes {
    type Target = PyList;
    type Output = Bound<'py, PyList>;
    type Error = PyErr;

    fn into_pyobject(self, py: Python<'py>) -> PyResult<Self::Output> {
        let list = PyList::empty(py);
        for kp in self.0 {
            match kp.result {
                Ok(c) => list.append(Context(c).into_pyobject(py)?)?,
                Err(e) => list.append(exception(py, e))?,
            }
        }
        Ok(list)
    }
}
