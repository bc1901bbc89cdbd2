//! Forwarding a client write to a replica of its key, which coordinates it there (only a
//! replica may issue the key's version). Who forwards, and to whom, is decided by
//! [`chorus_core::plan::route_write`].

use std::time::Duration;

use chorus_client::proto::{ErrorKind, Request, Response};

use crate::call::CallError;
use crate::call::Coordinate;
use crate::client_api::quorum_error;
use crate::network::Priority;
use crate::node::Node;

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
        for node in replicas {
            let call = Coordinate(req.clone());
            match self.call(&node, call, deadline, Priority::Client).await {
                Ok(resp) => return resp,
                // Not sent: the next replica may take it.
                Err(e) if e.not_sent() => continue,
                // Refused: the next replica may take it.
                Err(e @ (CallError::Peer(_) | CallError::Unexpected { .. })) => {
                    tracing::debug!(%node, error = %e, "forward refused");
                }
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
