//! The peer network as the node's drivers and workers see it: call a peer by id (or a seed
//! by address) with a deadline and a priority, and drop a peer's connection. [`Quic`] is
//! the real one, over [`Transport`]; a test double or a simulator can stand in for it
//! ([`crate::node::Node::start_with_network`]). Typed calls over it: [`call`].

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use crate::call::{CallError, PeerCall};
use crate::membership::Membership;
use crate::rpc::{PeerRequest, PeerResponse};
use crate::transport::{Transport, TransportError};

/// Stream priority: background work (hint replay, anti-entropy, transfers) yields to client
/// traffic on a shared connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Priority {
    Client,
    Background,
}

/// A peer's answer and the frame bytes sent and received, or why there is none.
pub type Answer<'a> =
    Pin<Box<dyn Future<Output = Result<(PeerResponse, u64), TransportError>> + Send + 'a>>;

/// Node-to-node requests, as the drivers and workers make them.
pub trait Network: Send + Sync {
    /// Sends `req` to the node `peer` and waits up to `deadline` for its answer.
    fn call<'a>(
        &'a self,
        peer: &'a str,
        req: &'a PeerRequest,
        deadline: Duration,
        priority: Priority,
    ) -> Answer<'a>;

    /// Sends `req` to a seed known only by its address (any node of the cluster).
    fn call_seed<'a>(
        &'a self,
        addr: &'a str,
        req: &'a PeerRequest,
        deadline: Duration,
    ) -> Answer<'a>;

    /// Forgets the connection to `peer`, e.g. after it stopped answering, so the next call
    /// dials afresh.
    fn evict(&self, peer: &str);
}

/// Sends a typed call over `net`; returns its reply and the frame bytes it cost.
pub async fn call<C: PeerCall>(
    net: &dyn Network,
    peer: &str,
    call: C,
    deadline: Duration,
    priority: Priority,
) -> Result<(C::Reply, u64), CallError> {
    let req = call.into_request();
    let (resp, bytes) = net.call(peer, &req, deadline, priority).await?;
    Ok((C::reply(resp)?, bytes))
}

/// Sends a typed call over `net` to a seed known only by its address.
pub async fn call_seed<C: PeerCall>(
    net: &dyn Network,
    addr: &str,
    call: C,
    deadline: Duration,
) -> Result<C::Reply, CallError> {
    let req = call.into_request();
    let (resp, _) = net.call_seed(addr, &req, deadline).await?;
    C::reply(resp)
}

/// The QUIC network: peers' addresses from the membership, exchanges on [`Transport`].
pub struct Quic {
    transport: Arc<Transport>,
    members: Membership,
}

impl Quic {
    pub fn new(transport: Arc<Transport>, members: Membership) -> Quic {
        Quic { transport, members }
    }
}

impl Network for Quic {
    fn call<'a>(
        &'a self,
        peer: &'a str,
        req: &'a PeerRequest,
        deadline: Duration,
        priority: Priority,
    ) -> Answer<'a> {
        Box::pin(async move {
            let addr = self
                .members
                .address(peer)
                .ok_or_else(|| TransportError::Address {
                    peer: peer.to_string(),
                    addr: String::new(),
                })?;
            self.transport
                .call_metered(peer, &addr, req, deadline, priority)
                .await
        })
    }

    fn call_seed<'a>(
        &'a self,
        addr: &'a str,
        req: &'a PeerRequest,
        deadline: Duration,
    ) -> Answer<'a> {
        Box::pin(self.transport.call_seed(addr, req, deadline))
    }

    fn evict(&self, peer: &str) {
        self.transport.evict(peer)
    }
}

#[cfg(test)]
mod tests;
