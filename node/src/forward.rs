//! Forwarding a client write to a replica of its key, which coordinates it there (only a
//! replica may issue the key's version). Who forwards, and to whom, is decided by
//! [`chorus_core::plan::route_write`].

use std::time::Duration;

use chorus_client::proto::{ErrorKind, Request, Response};

use crate::client_api::quorum_error;
use crate::node::Node;
use crate::rpc::{PeerRequest, PeerResponse};
use crate::transport::TransportError;

impl Node {
    /// Hands `req` to the first of `replicas` that takes it. `needed` is for the error when
    /// none does.
    pub(crate) async fn forward(
        &self,
        replicas: Vec<String>,
        needed: usize,
        req: Request,
    ) -> Response {
        let deadline = self.inner.cfg.timeouts.request + Duration::from_secs(1);
        let wrapped = PeerRequest::Coordinate(req);
        for node in replicas {
            match self.call_peer(&node, &wrapped, deadline).await {
                Ok(PeerResponse::Coordinated(resp)) => return resp,
                Ok(other) => {
                    tracing::debug!(%node, ?other, "forward refused");
                }
                // Not sent: the next replica may take it.
                Err(TransportError::Connect { .. } | TransportError::Address { .. }) => continue,
                Err(e) => {
                    return Response::error(
                        ErrorKind::Internal,
                        format!(
                            "forwarding to {node} failed: {e}; the write may have been applied"
                        ),
                    )
                }
            }
        }
        quorum_error("write", needed, 0)
    }
}
