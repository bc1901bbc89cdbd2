//! Serving one request stream, with bounded resources.
//!
//! A stream's request frame is read under a deadline before the stream holds anything but
//! the bytes that arrived: a client that opens streams and stalls gives everything back when
//! the deadline passes. The buffer grows with the bytes that arrive, charged to the budget
//! of the stream's role, never sized from the length prefix. Only then does the request take
//! a slot, from the pool of its role: clients and peers never take each other's slots.
//! Pings and gossip take none, so a peer's liveness never waits behind client work. Past a
//! budget, a request is answered "overloaded" at once instead of queued.

use std::sync::Arc;

use chorus_client::wire::{self, Encoded, WireError, LINK_MAGIC};
use chorus_proto::{ErrorKind, Request, Response};
use tokio::io::AsyncReadExt;
use tracing::Instrument;

use crate::budget::{Budget, Charge, Exhausted};
use crate::rpc::{PeerError, PeerRequest, PeerResponse};
use crate::server::{op_name, Node};
use crate::transport::Role;

/// Frames up to this size are read without charging the byte budget, so small requests
/// (pings above all) get through when large ones have used it up. Their memory is bounded
/// by the connection and stream limits.
const FREE_FRAME: usize = 4096;
/// The first step of a frame buffer; it then doubles with what arrives.
const FIRST_CHUNK: usize = 64 * 1024;

/// Why a request frame could not be taken.
pub(crate) enum ReadError {
    Wire(WireError),
    Overloaded(Exhausted),
}

impl Node {
    /// Serves one stream. `admin`: the client's certificate is an admin's (cluster changes
    /// need one).
    pub(crate) async fn serve_stream(
        self,
        role: Role,
        admin: bool,
        mut send: quinn::SendStream,
        mut recv: quinn::RecvStream,
    ) {
        let limits = &self.inner.cfg.limits;
        let budget = match role {
            Role::Client => &self.inner.budgets.client,
            Role::Peer => &self.inner.budgets.peer,
        };
        let max = self.inner.transport.max_frame();
        let read = tokio::time::timeout(limits.request_read_timeout, async {
            let size = read_length(&mut recv).await?;
            if size == LINK_MAGIC as usize {
                return Ok(None);
            }
            read_request(&mut recv, size, max, budget).await.map(Some)
        })
        .await;
        let body = match read {
            Ok(Ok(None)) => {
                self.serve_link(role, admin, send, recv).await;
                return;
            }
            Ok(Ok(Some((body, _charge)))) => body,
            Err(_) => {
                // Stalled: drop the stream and everything it held.
                let _ = recv.stop(0u32.into());
                let _ = send.reset(0u32.into());
                return;
            }
            Ok(Err(e)) => {
                // Don't read the rest of an oversized or refused frame; answer and move on.
                let _ = recv.stop(0u32.into());
                self.send_bounded(&mut send, refusal(role, e)).await;
                return;
            }
        };
        match role {
            Role::Client => self.serve_client(send, &body, admin).await,
            Role::Peer => self.serve_peer(send, &body).await,
        }
    }

    async fn serve_client(&self, mut send: quinn::SendStream, body: &[u8], admin: bool) {
        let reply = self.respond_client(body, admin).await;
        self.send_bounded(&mut send, reply).await;
    }

    async fn serve_peer(&self, mut send: quinn::SendStream, body: &[u8]) {
        let reply = self.respond_peer(body).await;
        self.send_bounded(&mut send, reply).await;
    }

    /// The encoded answer to a client's request frame.
    pub(crate) async fn respond_client(
        &self,
        body: &[u8],
        admin: bool,
    ) -> Result<Encoded, WireError> {
        let max = self.inner.transport.max_frame();
        let (resp, trace) = match wire::decode::<Request>(body) {
            Ok((req, _)) if !admin && crate::roles::needs_admin(&req) => {
                (crate::roles::denied(&req), 0)
            }
            Ok((req, trace)) => match self.inner.budgets.client.try_charge(1, 0) {
                Ok(_slot) => {
                    let span = tracing::debug_span!("request", trace, op = op_name(&req));
                    (self.handle_client(req, false).instrument(span).await, trace)
                }
                Err(e) => (Response::error(ErrorKind::Overloaded, e.to_string()), trace),
            },
            Err(e) => (Response::error(ErrorKind::BadRequest, e.to_string()), 0),
        };
        match Encoded::new(&resp, trace) {
            Ok(f) if f.body_len() <= max => Ok(f),
            // Many large siblings can outgrow a frame; say so instead of sending it.
            Ok(f) => Encoded::new(
                &Response::error(
                    ErrorKind::TooLarge,
                    format!(
                        "response of {} bytes exceeds limits.max_frame_bytes; resolve the key's siblings",
                        f.body_len()
                    ),
                ),
                trace,
            ),
            Err(e) => Err(e),
        }
    }

    /// The encoded answer to a peer's request frame.
    pub(crate) async fn respond_peer(&self, body: &[u8]) -> Result<Encoded, WireError> {
        let (resp, trace) = match wire::decode::<PeerRequest>(body) {
            // Liveness and membership: answered without a slot, never queued.
            Ok((req @ (PeerRequest::Ping { .. } | PeerRequest::Gossip(_)), trace)) => {
                (self.handle_peer(req).await, trace)
            }
            Ok((req, trace)) => match self.inner.budgets.peer.try_charge(1, 0) {
                Ok(_slot) => (self.handle_peer(req).await, trace),
                Err(e) => (PeerResponse::Error(e.into()), trace),
            },
            Err(e) => (PeerResponse::Error(PeerError::BadRequest(e.to_string())), 0),
        };
        Encoded::new(&resp, trace)
    }

    /// Sends a reply, giving up on a reader that doesn't take it within the read deadline.
    async fn send_bounded(&self, send: &mut quinn::SendStream, frame: Result<Encoded, WireError>) {
        let (buf, start) = match frame {
            Ok(f) => f.into_stream_frame(),
            Err(e) => {
                tracing::error!(error = %e, "could not encode reply");
                return;
            }
        };
        let within = self.inner.cfg.limits.request_read_timeout;
        match tokio::time::timeout(within, send.write_all(&buf[start..])).await {
            Ok(Ok(())) => {
                let _ = send.finish();
            }
            Ok(Err(e)) => tracing::debug!(error = %e, "could not send reply"),
            Err(_) => {
                tracing::debug!("reply not taken within limits.request_read_timeout");
                let _ = send.reset(0u32.into());
            }
        }
    }
}

/// The answer to a request frame that could not be taken, in the protocol of `role`.
pub(crate) fn refusal(role: Role, e: ReadError) -> Result<Encoded, WireError> {
    let (kind, msg) = match &e {
        ReadError::Wire(e @ WireError::TooLarge { .. }) => {
            (ErrorKind::TooLarge, format!("request rejected: {e}"))
        }
        ReadError::Wire(e) => (ErrorKind::BadRequest, format!("request rejected: {e}")),
        ReadError::Overloaded(e) => (ErrorKind::Overloaded, e.to_string()),
    };
    match role {
        Role::Client => Encoded::new(&Response::error(kind, msg), 0),
        Role::Peer => {
            let err = match e {
                ReadError::Wire(WireError::TooLarge { size, limit }) => PeerError::TooLarge {
                    what: "request frame".into(),
                    size: size as u64,
                    limit: limit as u64,
                },
                ReadError::Wire(_) => PeerError::BadRequest(msg),
                ReadError::Overloaded(e) => e.into(),
            };
            Encoded::new(&PeerResponse::Error(err), 0)
        }
    }
}

/// Reads a frame's length prefix.
async fn read_length<R>(r: &mut R) -> Result<usize, ReadError>
where
    R: tokio::io::AsyncRead + Unpin,
{
    let mut len = [0u8; 4];
    r.read_exact(&mut len).await.map_err(wire_err)?;
    Ok(u32::from_be_bytes(len) as usize)
}

fn wire_err(e: std::io::Error) -> ReadError {
    ReadError::Wire(if e.kind() == std::io::ErrorKind::UnexpectedEof {
        WireError::Truncated
    } else {
        WireError::Io(e)
    })
}

/// Reads the `size` bytes of one request frame's body. The buffer grows with the bytes that
/// arrive (doubling from [`FIRST_CHUNK`]); each step is charged to `budget` before it is
/// allocated.
pub(crate) async fn read_request<R>(
    r: &mut R,
    size: usize,
    max: usize,
    budget: &Arc<Budget>,
) -> Result<(Vec<u8>, Option<Charge>), ReadError>
where
    R: tokio::io::AsyncRead + Unpin,
{
    if size > max {
        return Err(ReadError::Wire(WireError::TooLarge { size, limit: max }));
    }
    let mut charge = if size > FREE_FRAME {
        Some(budget.try_charge(0, 0).map_err(ReadError::Overloaded)?)
    } else {
        None
    };
    let mut body: Vec<u8> = Vec::new();
    while body.len() < size {
        if body.len() == body.capacity() {
            let step = (size - body.len()).min(body.len().max(FIRST_CHUNK));
            if let Some(c) = charge.as_mut() {
                c.try_grow(step).map_err(ReadError::Overloaded)?;
            }
            body.reserve_exact(step);
        }
        let room = (body.capacity() - body.len()).min(size - body.len());
        let n = (&mut *r)
            .take(room as u64)
            .read_buf(&mut body)
            .await
            .map_err(wire_err)?;
        if n == 0 {
            return Err(ReadError::Wire(WireError::Truncated));
        }
    }
    Ok((body, charge))
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn read_whole(
        r: &mut &[u8],
        max: usize,
        budget: &Arc<Budget>,
    ) -> Result<(Vec<u8>, Option<Charge>), ReadError> {
        let size = read_length(r).await?;
        read_request(r, size, max, budget).await
    }

    #[tokio::test]
    async fn frames_are_read_as_they_arrive_and_charged() {
        let budget = Budget::new("count", 10, "bytes", 300_000);
        let body = vec![7u8; 200_000];
        let mut frame = (body.len() as u32).to_be_bytes().to_vec();
        frame.extend_from_slice(&body);
        let (got, charge) = read_whole(&mut &frame[..], 1 << 20, &budget)
            .await
            .ok()
            .expect("read");
        assert_eq!(got, body);
        assert!(charge.as_ref().map(Charge::bytes).unwrap_or(0) >= 200_000);
        assert!(budget.used().1 >= 200_000);
        // A second large frame doesn't fit while the first is held.
        let r = read_whole(&mut &frame[..], 1 << 20, &budget).await;
        assert!(matches!(r, Err(ReadError::Overloaded(_))));
        drop(charge);
        assert_eq!(budget.used(), (0, 0));

        // A prefix announcing a large frame allocates only what arrived.
        let mut lying = (1_000_000u32).to_be_bytes().to_vec();
        lying.extend_from_slice(&[1, 2, 3]);
        let r = read_whole(&mut &lying[..], 1 << 21, &budget).await;
        assert!(matches!(r, Err(ReadError::Wire(WireError::Truncated))));
        assert_eq!(budget.used(), (0, 0));
    }
}
