//! What calls return to Python: the result of a read, contexts as `bytes`, and reports
//! (status, ring) as plain dicts and lists.

use chorus_client::{CausalContext, GetResult as RustGetResult};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList};

/// The result of a read.
///
/// ``values`` has one entry per sibling: more than one means concurrent writes that a
/// later write with ``context`` resolves. ``found`` is ``False`` (and ``values`` empty) when
/// the key has no live value; ``context`` is still worth passing to the next write.
#[pyclass(module = "chorus", name = "GetResult", frozen)]
pub struct GetResult {
    /// Whether the key has any live value.
    #[pyo3(get)]
    found: bool,
    /// The values, one per sibling (``list[bytes]``).
    #[pyo3(get)]
    values: Py<PyList>,
    /// The causal context of this read: pass it to the next ``put`` or ``delete``.
    #[pyo3(get)]
    context: Py<PyBytes>,
    /// Deletes (tombstones) still held for the key.
    #[pyo3(get)]
    tombstones: u32,
    /// Some values were left out (too large together); ``context`` covers them all.
    #[pyo3(get)]
    truncated: bool,
}

#[pymethods]
impl GetResult {
    /// The number of values (siblings).
    #[getter]
    fn siblings(&self, py: Python<'_>) -> usize {
        self.values.bind(py).len()
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!(
            "GetResult(found={}, values={}, tombstones={}, truncated={})",
            if self.found { "True" } else { "False" },
            self.values.bind(py).repr()?,
            self.tombstones,
            if self.truncated { "True" } else { "False" },
        ))
    }
}

/// A read on its way to Python.
pub struct Read(pub RustGetResult);

impl<'py> IntoPyObject<'py> for Read {
    type Target = GetResult;
    type Output = Bound<'py, GetResult>;
    type Error = PyErr;

    fn into_pyobject(self, py: Python<'py>) -> PyResult<Self::Output> {
        let r = self.0;
        let values = PyList::new(py, r.values.iter().map(|v| PyBytes::new(py, v)))?;
        Bound::new(
            py,
            GetResult {
                found: r.found,
                values: values.unbind(),
                context: PyBytes::new(py, r.context.as_bytes()).unbind(),
                tombstones: r.tombstones,
                truncated: r.truncated,
            },
        )
    }
}

/// A write's new causal context, returned as `bytes`.
pub struct Context(pub CausalContext);

impl<'py> IntoPyObject<'py> for Context {
    type Target = PyBytes;
    type Output = Bound<'py, PyBytes>;
    type Error = PyErr;

    fn into_pyobject(self, py: Python<'py>) -> PyResult<Self::Output> {
        Ok(PyBytes::new(py, self.0.as_bytes()))
    }
}

/// A JSON-shaped report, returned as dicts, lists, strings, numbers, bools and `None`.
pub struct Json(pub serde_json::Value);

impl<'py> IntoPyObject<'py> for Json {
    type Target = PyAny;
    type Output = Bound<'py, PyAny>;
    type Error = PyErr;

    fn into_pyobject(self, py: Python<'py>) -> PyResult<Self::Output> {
        to_python(py, &self.0)
    }
}

fn to_python<'py>(py: Python<'py>, v: &serde_json::Value) -> PyResult<Bound<'py, PyAny>> {
    use serde_json::Value;
    Ok(match v {
        Value::Null => py.None().into_bound(py),
        Value::Bool(b) => b.into_pyobject(py)?.to_owned().into_any(),
        Value::Number(n) => match (n.as_u64(), n.as_i64()) {
            (Some(u), _) => u.into_pyobject(py)?.into_any(),
            (None, Some(i)) => i.into_pyobject(py)?.into_any(),
            _ => n.as_f64().unwrap_or(f64::NAN).into_pyobject(py)?.into_any(),
        },
        Value::String(s) => s.into_pyobject(py)?.into_any(),
        Value::Array(items) => {
            let list = PyList::empty(py);
            for item in items {
                list.append(to_python(py, item)?)?;
            }
            list.into_any()
        }
        Value::Object(fields) => {
            let dict = PyDict::new(py);
            for (k, item) in fields {
                dict.set_item(k, to_python(py, item)?)?;
            }
            dict.into_any()
        }
    })
}
