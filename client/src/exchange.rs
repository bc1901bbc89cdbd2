//! One request/response exchange on a QUIC connection, shared by the client and by nodes
//! calling each other: open a bidirectional stream, write one frame, finish the stream, read
//! one bounded frame back and decode it, all under one deadline.

use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::wire::{self, Encoded, WireError};

/// Why an exchange produced no answer.
#[derive(Debug, thiserror::Error)]
pub enum ExchangeError {
    /// No stream could be opened: the request was not sent.
    #[error("cannot open a stream: {0}")]
    Open(#[source] quinn::ConnectionError),
    /// The request could not be written; it may have been partly sent.
    #[error("could not send the request: {0}")]
    Send(#[source] quinn::WriteError),
    /// The answer was missing, too large or malformed (or the request could not be encoded).
    #[error(transparent)]
    Wire(#[from] WireError),
    /// The request was not sent (its link had already broken).
    #[error("request not sent: {0}")]
    NotSent(String),
    /// The link carrying the request broke before its answer came: it may have been served.
    #[error("{0}")]
    Broken(String),
    /// No complete answer within the deadline.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
}

/// How one exchange runs.
#[derive(Clone, Copy, Debug)]
pub struct Exchange {
    /// Trace id carried in the request's envelope.
    pub trace: u64,
    /// Largest answer frame accepted; a larger one is refused before its body is read.
    pub max_frame: usize,
    /// For the whole exchange, from opening the stream to the decoded answer.
    pub deadline: Duration,
    /// QUIC stream priority; 0 is the default, lower yields to higher on one connection.
    pub priority: i32,
}

/// A decoded answer and what the exchange cost.
#[derive(Debug)]
pub struct Answer<T> {
    pub msg: T,
    /// The answer's trace id.
    pub trace: u64,
    /// Frame bytes sent and received, length prefixes included.
    pub bytes: u64,
}

/// Sends `msg` on a new stream of `conn` and reads the one answer frame.
pub async fn exchange<Q, A>(
    conn: &quinn::Connection,
    msg: &Q,
    how: Exchange,
) -> Result<Answer<A>, ExchangeError>
where
    Q: Serialize,
    A: DeserializeOwned,
{
    exchange_encoded(conn, Encoded::new(msg, how.trace)?, how).await
}

/// [`exchange`] of a request already encoded.
pub async fn exchange_encoded<A: DeserializeOwned>(
    conn: &quinn::Connection,
    req: Encoded,
    how: Exchange,
) -> Result<Answer<A>, ExchangeError> {
    let (buf, start) = req.into_stream_frame();
    let frame = &buf[start..];
    let run = async {
        let (mut send, mut recv) = conn.open_bi().await.map_err(ExchangeError::Open)?;
        if how.priority != 0 {
            let _ = send.set_priority(how.priority);
        }
        send.write_all(frame).await.map_err(ExchangeError::Send)?;
        let _ = send.finish();
        let body = wire::read_frame_bytes(&mut recv, how.max_frame).await?;
        let (msg, trace) = wire::decode(&body)?;
        Ok(Answer {
            msg,
            trace,
            bytes: (frame.len() + 4 + body.len()) as u64,
        })
    };
    tokio::time::timeout(how.deadline, run)
        .await
        .map_err(|_| ExchangeError::Timeout(how.deadline))?
}
