//! What a request can end with: the client's error type, and node error replies mapped
//! onto it.

use std::time::Duration;

use crate::proto::{ErrorKind, Response};
use crate::tls::TlsError;
use crate::wire::WireError;

/// What went wrong with a request.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("client config: {0}")]
    Config(String),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("no node reachable: {0}")]
    Unavailable(String),
    #[error("request timed out after {0:?}; it may or may not have been applied")]
    Timeout(Duration),
    #[error("{message}")]
    Quorum {
        needed: u32,
        answered: u32,
        message: String,
    },
    #[error("{0}")]
    TooLarge(String),
    #[error("bad request: {0}")]
    BadRequest(String),
    #[error("node overloaded: {0}")]
    Overloaded(String),
    #[error("node error: {0}")]
    Server(String),
    #[error("permission denied: {0}")]
    PermissionDenied(String),
    #[error("protocol error: {0}")]
    Protocol(#[from] WireError),
    #[error("invalid causal context: {0}")]
    InvalidContext(String),
    #[error("unexpected response from node: {0}")]
    Unexpected(String),
}

pub(crate) fn into_result(resp: Response) -> Result<Response, Error> {
    match resp {
        Response::Error(e) => Err(match e.kind {
            ErrorKind::Quorum { needed, answered } => Error::Quorum {
                needed,
                answered,
                message: e.message,
            },
            ErrorKind::TooLarge => Error::TooLarge(e.message),
            ErrorKind::BadRequest => Error::BadRequest(e.message),
            ErrorKind::Overloaded => Error::Overloaded(e.message),
            ErrorKind::Unavailable => Error::Unavailable(e.message),
            ErrorKind::Internal => Error::Server(e.message),
            ErrorKind::PermissionDenied => Error::PermissionDenied(e.message),
        }),
        other => Ok(other),
    }
}

pub(crate) fn unexpected(resp: Response) -> Error {
    Error::Unexpected(format!("{resp:?}").chars().take(200).collect())
}
