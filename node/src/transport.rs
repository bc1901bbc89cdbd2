//! QUIC endpoint of a node: one UDP socket serving clients and peers, mutual TLS against the
//! cluster CA, and one cached outgoing connection per peer.
//!
//! Small foreground requests share one long-lived stream per peer, many in flight and sent
//! in batches; large frames and background work use a stream per request (see
//! `chorus_client::link`). Connections negotiate an ALPN that says whether they carry the
//! client protocol or the peer protocol; the peer protocol is refused to any certificate that
//! wasn't issued to a node.

use std::collections::HashMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chorus_client::exchange::{Exchange, ExchangeError};
use chorus_client::link::Channel;
use chorus_client::tls::{self, TlsError};
use chorus_client::wire::WireError;
use chorus_proto::{ALPN_CLIENT, ALPN_PEER};
use rustls_pki_types::{CertificateDer, ServerName};

use crate::config::NodeConfig;
use crate::rpc::{PeerRequest, PeerResponse};

/// QUIC application error codes used when closing connections.
pub mod codes {
    pub const SHUTDOWN: u32 = 0;
    pub const NOT_A_NODE: u32 = 1;
    pub const BAD_ALPN: u32 = 2;
}

#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("cannot listen on {addr}: {reason}")]
    Bind { addr: SocketAddr, reason: String },
    #[error("peer {peer} has no usable address ({addr:?})")]
    Address { peer: String, addr: String },
    #[error("cannot connect to {peer}: {reason}")]
    Connect { peer: String, reason: String },
    #[error("no answer from {peer} within {after:?}")]
    Timeout { peer: String, after: Duration },
    #[error("exchange with {peer} failed: {reason}")]
    Stream { peer: String, reason: String },
    #[error(transparent)]
    Wire(#[from] WireError),
}

pub use crate::network::Priority;

/// Which protocol a connection speaks, from its ALPN.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Client,
    Peer,
}

pub struct Transport {
    endpoint: quinn::Endpoint,
    peer_config: quinn::ClientConfig,
    conns: Mutex<HashMap<String, Channel>>,
    connect_timeout: Duration,
    max_frame: usize,
    links: bool,
}

fn transport_config(cfg: &NodeConfig) -> Result<quinn::TransportConfig, TlsError> {
    let mut t = quinn::TransportConfig::default();
    t.max_concurrent_bidi_streams(cfg.limits.max_streams_per_connection.into());
    t.max_concurrent_uni_streams(0u32.into());
    t.keep_alive_interval(Some(Duration::from_secs(2)));
    t.max_idle_timeout(Some(
        quinn::IdleTimeout::try_from(Duration::from_secs(10))
            .map_err(|e| TlsError::Config(e.to_string()))?,
    ));
    Ok(t)
}

impl Transport {
    /// Binds the node's endpoint with its certificate and the cluster CA.
    pub fn bind(cfg: &NodeConfig) -> Result<Transport, TransportError> {
        let roots = Arc::new(tls::roots(&cfg.tls.ca)?);
        let certs = tls::load_certs(&cfg.tls.cert)?;
        let key = tls::load_key(&cfg.tls.key)?;
        let provider = tls::provider();

        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            roots.clone(),
            provider.clone(),
        )
        .build()
        .map_err(|e| TlsError::Config(e.to_string()))?;
        let mut server_tls = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| TlsError::Config(e.to_string()))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(certs.clone(), key.clone_key())
            .map_err(|e| TlsError::Config(format!("node certificate: {e}")))?;
        server_tls.alpn_protocols = vec![ALPN_CLIENT.to_vec(), ALPN_PEER.to_vec()];
        let quic_server = quinn::crypto::rustls::QuicServerConfig::try_from(server_tls)
            .map_err(|e| TlsError::Config(e.to_string()))?;
        let mut server = quinn::ServerConfig::with_crypto(Arc::new(quic_server));
        server.transport_config(Arc::new(transport_config(cfg)?));

        let peer_tls = tls::client_crypto((*roots).clone(), certs, key, ALPN_PEER)?;
        let mut peer_config = tls::quinn_client(peer_tls)?;
        peer_config.transport_config(Arc::new(transport_config(cfg)?));

        let endpoint =
            quinn::Endpoint::server(server, cfg.listen).map_err(|e| TransportError::Bind {
                addr: cfg.listen,
                reason: e.to_string(),
            })?;
        Ok(Transport {
            endpoint,
            peer_config,
            conns: Mutex::new(HashMap::new()),
            connect_timeout: cfg.timeouts.connect,
            max_frame: cfg.limits.max_frame_bytes,
            links: cfg.runtime.links,
        })
    }

    pub fn endpoint(&self) -> &quinn::Endpoint {
        &self.endpoint
    }

    pub fn max_frame(&self) -> usize {
        self.max_frame
    }

    /// Sends one request to a peer at a given priority and waits up to `deadline` (for the
    /// connection and the exchange) for its answer; also returns the frame bytes sent and
    /// received.
    pub async fn call_metered(
        &self,
        peer: &str,
        addr: &str,
        req: &PeerRequest,
        deadline: Duration,
        priority: Priority,
    ) -> Result<(PeerResponse, u64), TransportError> {
        // Pings and gossip travel on a connection of their own, so they never wait for
        // stream credit behind replica traffic on the data connection.
        let control = matches!(req, PeerRequest::Ping { .. } | PeerRequest::Gossip(_));
        let key = if control {
            control_key(peer)
        } else {
            peer.to_string()
        };
        let priority = match priority {
            Priority::Client => 0,
            Priority::Background => -1,
        };
        let call = async {
            let conn = self.connect_as(&key, addr, &tls::node_name(peer)).await?;
            self.exchange(peer, &key, &conn, req, deadline, priority)
                .await
        };
        match tokio::time::timeout(deadline, call).await {
            Ok(r) => r,
            Err(_) => Err(TransportError::Timeout {
                peer: peer.to_string(),
                after: deadline,
            }),
        }
    }

    /// Sends one request to a seed known only by address: the peer is checked to be a node
    /// of the cluster, not a particular one.
    pub async fn call_seed(
        &self,
        addr: &str,
        req: &PeerRequest,
        deadline: Duration,
    ) -> Result<(PeerResponse, u64), TransportError> {
        let key = format!("seed {addr}");
        let call = async {
            let conn = self.connect_as(&key, addr, tls::NODE_NAME).await?;
            self.exchange(addr, &key, &conn, req, deadline, 0).await
        };
        match tokio::time::timeout(deadline, call).await {
            Ok(Err(TransportError::Timeout { .. })) | Err(_) => {
                self.evict(&key);
                Err(TransportError::Timeout {
                    peer: addr.to_string(),
                    after: deadline,
                })
            }
            Ok(r) => r,
        }
    }

    /// One exchange on `conn`, the connection cached under `key`, which is dropped from the
    /// cache when no stream can be opened on it.
    async fn exchange(
        &self,
        peer: &str,
        key: &str,
        conn: &Channel,
        req: &PeerRequest,
        deadline: Duration,
        priority: i32,
    ) -> Result<(PeerResponse, u64), TransportError> {
        let how = Exchange {
            trace: 0,
            max_frame: self.max_frame,
            deadline,
            priority,
        };
        let stream_err = |reason: String| TransportError::Stream {
            peer: peer.to_string(),
            reason,
        };
        match conn.call(req, how).await {
            Ok(answer) => Ok((answer.msg, answer.bytes)),
            Err(ExchangeError::Open(e)) => {
                self.evict_if(key, conn);
                Err(stream_err(e.to_string()))
            }
            Err(ExchangeError::NotSent(why) | ExchangeError::Broken(why)) => Err(stream_err(why)),
            Err(ExchangeError::Send(e)) => Err(stream_err(e.to_string())),
            Err(ExchangeError::Wire(e)) => Err(TransportError::Wire(e)),
            Err(ExchangeError::Timeout(after)) => Err(TransportError::Timeout {
                peer: peer.to_string(),
                after,
            }),
        }
    }

    /// Drops the cached connection to a peer, e.g. after it stopped answering: a restarted
    /// peer can't revive the old connection, so the next call dials afresh.
    pub fn evict(&self, peer: &str) {
        let mut conns = lock(&self.conns);
        for key in [peer.to_string(), control_key(peer)] {
            if let Some(c) = conns.remove(&key) {
                c.connection().close(codes::SHUTDOWN.into(), b"evicted");
            }
        }
    }

    fn evict_if(&self, peer: &str, conn: &Channel) {
        let mut conns = lock(&self.conns);
        let id = |c: &Channel| c.connection().stable_id();
        if conns.get(peer).map(id) == Some(id(conn)) {
            conns.remove(peer);
        }
    }

    /// The cached connection under `key`, or a new one to `addr` that must present a
    /// certificate for `server_name`.
    async fn connect_as(
        &self,
        peer: &str,
        addr: &str,
        server_name: &str,
    ) -> Result<Channel, TransportError> {
        if let Some(c) = lock(&self.conns).get(peer) {
            if c.close_reason().is_none() {
                return Ok(c.clone());
            }
        }
        let sock = addr
            .to_socket_addrs()
            .ok()
            .and_then(|mut a| a.next())
            .ok_or_else(|| TransportError::Address {
                peer: peer.to_string(),
                addr: addr.to_string(),
            })?;
        let connect_err = |reason: String| TransportError::Connect {
            peer: peer.to_string(),
            reason,
        };
        let connecting = self
            .endpoint
            .connect_with(self.peer_config.clone(), sock, server_name)
            .map_err(|e| connect_err(e.to_string()))?;
        let conn = tokio::time::timeout(self.connect_timeout, connecting)
            .await
            .map_err(|_| connect_err(format!("no handshake within {:?}", self.connect_timeout)))?
            .map_err(|e| connect_err(e.to_string()))?;
        let conn = Channel::new(conn, self.links);
        let mut conns = lock(&self.conns);
        // Another task may have connected meanwhile; keep one connection per peer.
        if let Some(existing) = conns.get(peer) {
            if existing.close_reason().is_none() {
                conn.connection()
                    .close(codes::SHUTDOWN.into(), b"duplicate");
                return Ok(existing.clone());
            }
        }
        conns.insert(peer.to_string(), conn.clone());
        Ok(conn)
    }

    /// Closes every connection and the endpoint.
    pub fn close(&self) {
        self.endpoint
            .close(codes::SHUTDOWN.into(), b"node shutting down");
    }
}

/// The cache key of a peer's control connection (pings and gossip).
fn control_key(peer: &str) -> String {
    format!("{peer} control")
}

/// The protocol an accepted connection negotiated, if it is one we speak.
pub fn role_of(conn: &quinn::Connection) -> Option<Role> {
    let data = conn.handshake_data()?;
    let hd = data
        .downcast::<quinn::crypto::rustls::HandshakeData>()
        .ok()?;
    match hd.protocol.as_deref() {
        Some(p) if p == ALPN_CLIENT => Some(Role::Client),
        Some(p) if p == ALPN_PEER => Some(Role::Peer),
        _ => None,
    }
}

/// Whether the (already CA-verified) client certificate on a connection was issued to a
/// node rather than to a client.
pub fn is_node_certificate(conn: &quinn::Connection) -> bool {
    certificate_names(conn, tls::NODE_NAME)
}

/// Whether the (already CA-verified) client certificate on a connection names `name`:
/// how a certificate's role (node, admin) is read.
pub fn certificate_names(conn: &quinn::Connection, name: &str) -> bool {
    let Some(identity) = conn.peer_identity() else {
        return false;
    };
    let Ok(certs) = identity.downcast::<Vec<CertificateDer<'static>>>() else {
        return false;
    };
    let Some(leaf) = certs.first() else {
        return false;
    };
    let Ok(ee) = webpki::EndEntityCert::try_from(leaf) else {
        return false;
    };
    let Ok(name) = ServerName::try_from(name) else {
        return false;
    };
    ee.verify_is_valid_for_subject_name(&name).is_ok()
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
