//! Mapping of the Rust client's errors onto the exception classes of `chorus.errors`.
//!
//! The classes are defined in Python (so they can also derive from `ValueError` or
//! `TimeoutError`); this module looks each one up once and raises it.

use chorus_client::tls::TlsError;
use chorus_client::Error;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyType;

const MODULE: &str = "chorus.errors";

/// The exception classes, by the name `chorus.errors` gives them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Chorus,
    InvalidArgument,
    TooLarge,
    NotFound,
    PermissionDenied,
    Quorum,
    Overloaded,
    Unavailable,
    Timeout,
}

impl Kind {
    fn class_name(self) -> &'static str {
        match self {
            Kind::Chorus => "ChorusError",
            Kind::InvalidArgument => "InvalidArgument",
            Kind::TooLarge => "TooLarge",
            Kind::NotFound => "NotFound",
            Kind::PermissionDenied => "PermissionDenied",
            Kind::Quorum => "QuorumError",
            Kind::Overloaded => "Overloaded",
            Kind::Unavailable => "Unavailable",
            Kind::Timeout => "ChorusTimeout",
        }
    }

    fn class<'py>(self, py: Python<'py>) -> PyResult<&'py Bound<'py, PyType>> {
        static CLASSES: [PyOnceLock<Py<PyType>>; 9] = [const { PyOnceLock::new() }; 9];
        CLASSES[self as usize].import(py, MODULE, self.class_name())
    }
}

/// Which class an error of the Rust client is raised as.
pub fn kind_of(e: &Error) -> Kind {
    match e {
        Error::Config(_) | Error::BadRequest(_) | Error::InvalidContext(_) => Kind::InvalidArgument,
        Error::Tls(TlsError::Certs { .. } | TlsError::Key { .. } | TlsError::Config(_)) => {
            Kind::InvalidArgument
        }
        Error::TooLarge(_) => Kind::TooLarge,
        Error::PermissionDenied(_) => Kind::PermissionDenied,
        Error::Quorum { .. } => Kind::Quorum,
        Error::Overloaded(_) => Kind::Overloaded,
        Error::Unavailable(_) => Kind::Unavailable,
        Error::Timeout(_) => Kind::Timeout,
        Error::Server(_) | Error::Protocol(_) | Error::Unexpected(_) => Kind::Chorus,
    }
}

/// The Python exception for an error of the Rust client.
pub fn to_py(py: Python<'_>, e: Error) -> PyErr {
    let message = e.to_string();
    match e {
        Error::Quorum {
            needed, answered, ..
        } => raise(py, Kind::Quorum, (message, needed, answered)),
        other => raise(py, kind_of(&other), (message,)),
    }
}

/// An exception of class `kind` with the given constructor arguments.
pub fn raise<'py, A>(py: Python<'py>, kind: Kind, args: A) -> PyErr
where
    A: pyo3::call::PyCallArgs<'py>,
{
    let made = kind.class(py).and_then(|class| class.call1(args));
    match made {
        Ok(exc) => PyErr::from_value(exc),
        // `chorus.errors` missing or broken: say so rather than lose the original error.
        Err(e) => e,
    }
}

/// `InvalidArgument(message)`.
pub fn invalid(py: Python<'_>, message: impl Into<String>) -> PyErr {
    raise(py, Kind::InvalidArgument, (message.into(),))
}
