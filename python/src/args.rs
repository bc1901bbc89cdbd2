//! Arguments from Python: names and values as `bytes` or `str`, consistency levels,
//! causal contexts and time to live.

use std::time::Duration;

use chorus_client::{CausalContext, Level};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyByteArray, PyBytes, PyInt, PyString};

use crate::errors;

/// A bucket, key or value: `bytes`, `bytearray` or `str` (encoded as UTF-8).
pub fn blob(what: &str, v: &Bound<'_, PyAny>) -> PyResult<Vec<u8>> {
    if let Ok(b) = v.cast::<PyBytes>() {
        return Ok(b.as_bytes().to_vec());
    }
    if let Ok(s) = v.cast::<PyString>() {
        return Ok(s.to_cow()?.as_bytes().to_vec());
    }
    if let Ok(b) = v.cast::<PyByteArray>() {
        return Ok(b.to_vec());
    }
    Err(pyo3::exceptions::PyTypeError::new_err(format!(
        "{what} must be bytes or str, not {}",
        type_name(v)
    )))
}

/// A consistency level: `"one"`, `"quorum"`, `"all"` (any case) or a count from 1.
pub fn level(py: Python<'_>, what: &str, v: &Bound<'_, PyAny>) -> PyResult<Level> {
    if let Ok(s) = v.cast::<PyString>() {
        let s = s.to_cow()?;
        return match s.to_ascii_lowercase().as_str() {
            "one" => Ok(Level::One),
            "quorum" => Ok(Level::Quorum),
            "all" => Ok(Level::All),
            _ => Err(errors::invalid(
                py,
                format!("{what}: invalid consistency level {s:?}: expected \"one\", \"quorum\", \"all\" or a number"),
            )),
        };
    }
    // bool is an int in Python, but `r=True` is a mistake, not a count of 1.
    if v.cast::<PyInt>().is_ok() && v.cast::<PyBool>().is_err() {
        return match v.extract::<u32>() {
            Ok(c) if c > 0 => Ok(Level::Count(c)),
            _ => Err(errors::invalid(
                py,
                format!("{what}: a replica count must be from 1 to N, not {v}"),
            )),
        };
    }
    Err(errors::invalid(
        py,
        format!(
            "{what}: a level is \"one\", \"quorum\", \"all\" or an int, not {}",
            type_name(v)
        ),
    ))
}

/// A level argument whose default (`None`) is `"quorum"`.
pub fn optional_level(py: Python<'_>, what: &str, v: Option<&Bound<'_, PyAny>>) -> PyResult<Level> {
    match v {
        Some(v) if !v.is_none() => level(py, what, v),
        _ => Ok(Level::Quorum),
    }
}

/// The bucket (default `"default"`, as in the CLI) and optional key of a ring query.
pub fn ring_target(
    key: Option<&Bound<'_, PyAny>>,
    bucket: Option<&Bound<'_, PyAny>>,
) -> PyResult<(Vec<u8>, Option<Vec<u8>>)> {
    let bucket = match bucket {
        Some(b) if !b.is_none() => blob("bucket", b)?,
        _ => b"default".to_vec(),
    };
    let key = match key {
        Some(k) if !k.is_none() => Some(blob("key", k)?),
        _ => None,
    };
    Ok((bucket, key))
}

/// The causal context of an earlier read (`bytes`), or none.
pub fn context(v: Option<&Bound<'_, PyAny>>) -> PyResult<Option<CausalContext>> {
    match v {
        None => Ok(None),
        Some(v) if v.is_none() => Ok(None),
        Some(v) => {
            if let Ok(b) = v.cast::<PyBytes>() {
                return Ok(Some(CausalContext::from_bytes(b.as_bytes().to_vec())));
            }
            if let Ok(b) = v.cast::<PyByteArray>() {
                return Ok(Some(CausalContext::from_bytes(b.to_vec())));
            }
            Err(pyo3::exceptions::PyTypeError::new_err(format!(
                "context must be bytes (a read's .context) or None, not {}",
                type_name(v)
            )))
        }
    }
}

/// A time to live: seconds (`int` or `float`) or a `datetime.timedelta`; `None` means the
/// bucket's default. Zero, negative, not-a-number or over ten years is `InvalidArgument`.
pub fn ttl(py: Python<'_>, v: Option<&Bound<'_, PyAny>>) -> PyResult<Option<Duration>> {
    let Some(v) = v.filter(|v| !v.is_none()) else {
        return Ok(None);
    };
    let secs: f64 = if v.cast::<PyBool>().is_ok() {
        return Err(errors::invalid(
            py,
            "ttl must be seconds or a timedelta, not bool",
        ));
    } else if v.hasattr("total_seconds")? {
        v.call_method0("total_seconds")?.extract()?
    } else if let Ok(s) = v.extract::<f64>() {
        s
    } else {
        return Err(pyo3::exceptions::PyTypeError::new_err(format!(
            "ttl must be seconds (int or float) or a datetime.timedelta, not {}",
            type_name(v)
        )));
    };
    if !secs.is_finite() || secs <= 0.0 {
        return Err(errors::invalid(
            py,
            format!("ttl must be more than zero seconds, not {secs}"),
        ));
    }
    let ttl = Duration::try_from_secs_f64(secs)
        .map_err(|e| errors::invalid(py, format!("ttl {secs}: {e}")))?;
    chorus_client::proto::check_ttl(ttl)
        .map_err(|why| errors::invalid(py, format!("ttl: {why}")))?;
    Ok(Some(ttl))
}

fn type_name(v: &Bound<'_, PyAny>) -> String {
    v.get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "an unknown type".into())
}
