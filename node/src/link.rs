//! Serving a link: one long-lived stream on which a client or a peer sends many requests,
//! each tagged with an id, answered in any order (framing in `chorus_proto::wire`).
//!
//! The same limits hold as for a stream per request: each request's body is read under the
//! read deadline once its header arrived and charged to its role's byte budget when large;
//! each request then takes a slot from its role's pool or is answered "overloaded" at once.
//! At most `limits.max_streams_per_connection` requests of one link are served at a time;
//! past that the link is not read, so QUIC's flow control holds the sender back. Answers go
//! to one writer that sends whatever is ready as one write.

use std::sync::Arc;

use bytes::Bytes;
use chorus_client::link::{read_link_header, write_loop};
use chorus_client::wire::WireError;
use tokio::io::AsyncReadExt;
use tokio::sync::{mpsc, Semaphore};

use crate::intake::{read_request, refusal, ReadError};
use crate::server::Node;
use crate::transport::Role;

impl Node {
    /// Serves a stream that opened as a link, until the other side finishes it or breaks
    /// the framing.
    pub(crate) async fn serve_link(
        self,
        role: Role,
        admin: bool,
        send: quinn::SendStream,
        mut recv: quinn::RecvStream,
    ) {
        let limits = &self.inner.cfg.limits;
        let budget = match role {
            Role::Client => self.inner.budgets.client.clone(),
            Role::Peer => self.inner.budgets.peer.clone(),
        };
        let max = self.inner.transport.max_frame();
        let cap = limits.max_streams_per_connection as usize;
        // Answers wait here for the writer; a reader that doesn't take them holds its
        // requests' slots, so the link stops being read.
        let (answers, rx) = mpsc::channel::<Bytes>(cap.max(1));
        let writer = tokio::spawn(write_loop(send, rx));
        let in_flight = Arc::new(Semaphore::new(cap));
        loop {
            let Ok(slot) = in_flight.clone().acquire_owned().await else {
                break;
            };
            // An idle link waits for its next request as long as the connection lives.
            let (id, size) = match read_link_header(&mut recv, max).await {
                Ok(Some(h)) => h,
                Ok(None) => break,
                Err(e) => {
                    tracing::debug!(error = %e, "link closed: bad frame header");
                    let _ = recv.stop(0u32.into());
                    break;
                }
            };
            let body = tokio::time::timeout(
                limits.request_read_timeout,
                read_request(&mut recv, size, max, &budget),
            )
            .await;
            let (body, charge) = match body {
                Ok(Ok(b)) => b,
                Ok(Err(e @ ReadError::Overloaded(_))) => {
                    // Skip the body so the framing holds, and say why.
                    if skip(&mut recv, size).await.is_err() {
                        break;
                    }
                    if let Ok(r) = refusal(role, e) {
                        let _ = answers.send(Bytes::from(r.into_link_frame(id))).await;
                    }
                    continue;
                }
                Ok(Err(ReadError::Wire(e))) => {
                    tracing::debug!(error = %e, "link closed: bad frame");
                    let _ = recv.stop(0u32.into());
                    break;
                }
                Err(_) => {
                    tracing::debug!("link closed: a request frame stalled");
                    let _ = recv.stop(0u32.into());
                    break;
                }
            };
            let node = self.clone();
            let answers = answers.clone();
            tokio::spawn(async move {
                let reply = match role {
                    Role::Client => node.respond_client(&body, admin).await,
                    Role::Peer => node.respond_peer(&body).await,
                };
                drop(charge);
                // The slot is held until the answer is queued for the writer.
                match reply {
                    Ok(r) => {
                        let _ = answers.send(Bytes::from(r.into_link_frame(id))).await;
                    }
                    Err(e) => tracing::error!(error = %e, "could not encode reply"),
                }
                drop(slot);
            });
        }
        // The writer ends once every answer still being worked on has been queued.
        drop(answers);
        let _ = writer.await;
    }
}

/// Reads and discards `size` bytes.
async fn skip(recv: &mut quinn::RecvStream, size: usize) -> Result<(), WireError> {
    let n = tokio::io::copy(&mut recv.take(size as u64), &mut tokio::io::sink()).await?;
    if (n as usize) < size {
        return Err(WireError::Truncated);
    }
    Ok(())
}
