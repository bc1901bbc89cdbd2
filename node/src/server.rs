//! The running node: accepts connections, serves peers, and coordinates client requests over
//! each key's preference list with the quorum state machines from [`crate::coordinator`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use chorus_client::proto::{
    ErrorKind, ErrorReply, Level, NodeStatus, Request, Response, RingInfo, StatusInfo, ValueReply,
};
use chorus_client::wire::{self, WireError};
use chorus_ring::{Member, Ring};
use tokio::sync::{mpsc, Semaphore};
use tracing::Instrument;

use crate::config::{Engine, NodeConfig};
use crate::coordinator::{GetFsm, Outcome, Quorum};
use crate::membership::Membership;
use crate::replica::{Change, Replica, ReplicaError};
use crate::rpc::{PeerRequest, PeerResponse};
use crate::storage::{data_key, MemStorage, RocksStorage, Storage};
use crate::transport::{self, codes, Role, Transport, TransportError};
use crate::version::{Object, VersionVector};

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(transparent)]
    Storage(#[from] crate::storage::StorageError),
    #[error(transparent)]
    Replica(#[from] ReplicaError),
    #[error(transparent)]
    Transport(#[from] TransportError),
    #[error("ring: {0}")]
    Ring(#[from] chorus_ring::RingError),
}

/// A node that is serving. Dropping it doesn't stop it; call [`Node::shutdown`].
#[derive(Clone)]
pub struct Node {
    inner: Arc<Inner>,
}

struct Inner {
    cfg: NodeConfig,
    ring: Ring,
    replica: Replica,
    transport: Transport,
    members: Membership,
    inflight: Semaphore,
}

impl Node {
    /// Opens storage, binds the endpoint and starts serving and failure detection.
    pub async fn start(cfg: NodeConfig) -> Result<Node, ServerError> {
        let storage: Arc<dyn Storage> = match cfg.storage.engine {
            Engine::Rocksdb => {
                let path = cfg.data_dir.clone();
                let sync = cfg.storage.sync;
                Arc::new(
                    tokio::task::spawn_blocking(move || RocksStorage::open(&path, sync))
                        .await
                        .map_err(|e| crate::storage::StorageError::Open {
                            path: cfg.data_dir.display().to_string(),
                            reason: e.to_string(),
                        })??,
                )
            }
            Engine::Memory => {
                std::fs::create_dir_all(&cfg.data_dir).map_err(|e| {
                    crate::storage::StorageError::Open {
                        path: cfg.data_dir.display().to_string(),
                        reason: e.to_string(),
                    }
                })?;
                Arc::new(MemStorage::default())
            }
        };
        let replica = {
            let (id, batch, siblings) = (
                cfg.id.clone(),
                cfg.storage.max_batch,
                cfg.limits.max_siblings,
            );
            tokio::task::spawn_blocking(move || Replica::open(storage, &id, batch, siblings))
                .await
                .map_err(|_| ReplicaError::Closed)??
        };
        let members: Vec<Member> = cfg
            .cluster
            .members
            .iter()
            .map(|m| Member {
                id: m.id.clone(),
                zone: m.zone.clone(),
            })
            .collect();
        let ring = Ring::new(cfg.cluster.partitions, cfg.max_n(), members)?;
        let transport = Transport::bind(&cfg)?;
        let membership = Membership::new(&cfg.id, &cfg.cluster.members);
        let node = Node {
            inner: Arc::new(Inner {
                inflight: Semaphore::new(cfg.limits.max_inflight_requests),
                cfg,
                ring,
                replica,
                transport,
                members: membership,
            }),
        };
        tracing::info!(
            node = %node.inner.cfg.id,
            addr = %node.local_addr(),
            epoch = node.inner.replica.actor().epoch,
            "serving"
        );
        tokio::spawn(node.clone().accept_loop());
        for peer in node.inner.members.peers() {
            tokio::spawn(node.clone().probe_loop(peer));
        }
        Ok(node)
    }

    pub fn local_addr(&self) -> std::net::SocketAddr {
        self.inner
            .transport
            .endpoint()
            .local_addr()
            .unwrap_or(self.inner.cfg.listen)
    }

    /// Stops accepting work and closes every connection.
    pub async fn shutdown(&self) {
        self.inner.transport.close();
        let _ = tokio::time::timeout(
            Duration::from_secs(2),
            self.inner.transport.endpoint().wait_idle(),
        )
        .await;
    }

    async fn accept_loop(self) {
        while let Some(incoming) = self.inner.transport.endpoint().accept().await {
            let node = self.clone();
            tokio::spawn(async move {
                match incoming.await {
                    Ok(conn) => node.serve_connection(conn).await,
                    Err(e) => tracing::debug!(error = %e, "handshake failed"),
                }
            });
        }
    }

    async fn serve_connection(self, conn: quinn::Connection) {
        let Some(role) = transport::role_of(&conn) else {
            conn.close(codes::BAD_ALPN.into(), b"unknown protocol");
            return;
        };
        if role == Role::Peer && !transport::is_node_certificate(&conn) {
            tracing::warn!(remote = %conn.remote_address(), "peer protocol refused to a non-node certificate");
            conn.close(
                codes::NOT_A_NODE.into(),
                b"peer protocol needs a node certificate",
            );
            return;
        }
        while let Ok((send, recv)) = conn.accept_bi().await {
            let node = self.clone();
            tokio::spawn(async move { node.serve_stream(role, send, recv).await });
        }
    }

    async fn serve_stream(
        self,
        role: Role,
        mut send: quinn::SendStream,
        mut recv: quinn::RecvStream,
    ) {
        let Ok(_permit) = self.inner.inflight.acquire().await else {
            return;
        };
        let body = match wire::read_frame_bytes(&mut recv, self.inner.transport.max_frame()).await {
            Ok(b) => b,
            Err(e) => {
                // Don't read the rest of an oversized or broken frame; answer and move on.
                let _ = recv.stop(0u32.into());
                let kind = match e {
                    WireError::TooLarge { .. } => ErrorKind::TooLarge,
                    _ => ErrorKind::BadRequest,
                };
                let msg = format!("request rejected: {e}");
                match role {
                    Role::Client => reply(&mut send, &Response::error(kind, msg), 0).await,
                    Role::Peer => reply(&mut send, &PeerResponse::Error(msg), 0).await,
                }
                return;
            }
        };
        match role {
            Role::Client => {
                let (resp, trace) = match wire::decode::<Request>(&body) {
                    Ok((req, trace)) => {
                        let span = tracing::debug_span!("request", trace, op = op_name(&req));
                        (self.handle_client(req, false).instrument(span).await, trace)
                    }
                    Err(e) => (Response::error(ErrorKind::BadRequest, e.to_string()), 0),
                };
                let max = self.inner.transport.max_frame();
                let frame = match wire::encode(&resp, trace) {
                    Ok(f) if f.len() - 4 <= max => Ok(f),
                    // Many large siblings can outgrow a frame; say so instead of sending it.
                    Ok(f) => wire::encode(
                        &Response::error(
                            ErrorKind::TooLarge,
                            format!(
                                "response of {} bytes exceeds limits.max_frame_bytes; resolve the key's siblings",
                                f.len() - 4
                            ),
                        ),
                        trace,
                    ),
                    Err(e) => Err(e),
                };
                send_frame(&mut send, frame).await;
            }
            Role::Peer => {
                let (resp, trace) = match wire::decode::<PeerRequest>(&body) {
                    Ok((req, trace)) => (self.handle_peer(req).await, trace),
                    Err(e) => (PeerResponse::Error(e.to_string()), 0),
                };
                reply(&mut send, &resp, trace).await;
            }
        }
    }

    /// Serves a client request. `forwarded` is set when another node handed it over, so it
    /// is never forwarded again.
    pub async fn handle_client(&self, req: Request, forwarded: bool) -> Response {
        match req {
            Request::Get { bucket, key, r } => self.get(bucket, key, r).await,
            Request::Put {
                bucket,
                key,
                value,
                context,
                w,
            } => {
                if let Err(e) = self.check_value(&value) {
                    return Response::Error(e);
                }
                self.write(bucket, key, Some(value), context, w, forwarded)
                    .await
            }
            Request::Delete {
                bucket,
                key,
                context,
                w,
            } => self.write(bucket, key, None, context, w, forwarded).await,
            Request::Ring => Response::Ring(self.ring_info()),
            Request::Status => Response::Status(self.status()),
        }
    }

    async fn handle_peer(&self, req: PeerRequest) -> PeerResponse {
        match req {
            PeerRequest::Ping { .. } => PeerResponse::Pong {
                node: self.inner.cfg.id.clone(),
                epoch: self.inner.replica.actor().epoch,
            },
            PeerRequest::Read { bucket, key } => {
                if let Err(e) = self.check_key(&bucket, &key) {
                    return PeerResponse::Error(e.message);
                }
                match self
                    .inner
                    .replica
                    .get(self.storage_key(&bucket, &key))
                    .await
                {
                    Ok(o) => PeerResponse::Object(o.map(|o| o.encode())),
                    Err(e) => PeerResponse::Error(e.to_string()),
                }
            }
            PeerRequest::Replicate {
                bucket,
                key,
                object,
            } => {
                if let Err(e) = self.check_key(&bucket, &key) {
                    return PeerResponse::Error(e.message);
                }
                let obj = match Object::decode(&object) {
                    Ok(o) => o,
                    Err(e) => return PeerResponse::Error(format!("bad object: {e}")),
                };
                match self
                    .inner
                    .replica
                    .apply(self.storage_key(&bucket, &key), Change::Merge(obj))
                    .await
                {
                    Ok(_) => PeerResponse::Ack,
                    Err(e) => PeerResponse::Error(e.to_string()),
                }
            }
            PeerRequest::Coordinate(req) => {
                PeerResponse::Coordinated(Box::pin(self.handle_client(req, true)).await)
            }
        }
    }

    fn storage_key(&self, bucket: &[u8], key: &[u8]) -> Vec<u8> {
        data_key(self.inner.ring.partition_of(bucket, key), bucket, key)
    }

    fn check_key(&self, bucket: &[u8], key: &[u8]) -> Result<(), ErrorReply> {
        let l = &self.inner.cfg.limits;
        if key.is_empty() {
            return Err(reject(ErrorKind::BadRequest, "key is empty"));
        }
        if key.len() > l.max_key_bytes {
            return Err(reject(
                ErrorKind::TooLarge,
                format!(
                    "key of {} bytes exceeds the limit of {} bytes (limits.max_key_bytes)",
                    key.len(),
                    l.max_key_bytes
                ),
            ));
        }
        if bucket.len() > l.max_bucket_bytes {
            return Err(reject(
                ErrorKind::TooLarge,
                format!(
                    "bucket name of {} bytes exceeds the limit of {} bytes (limits.max_bucket_bytes)",
                    bucket.len(),
                    l.max_bucket_bytes
                ),
            ));
        }
        Ok(())
    }

    fn check_value(&self, value: &[u8]) -> Result<(), ErrorReply> {
        let max = self.inner.cfg.limits.max_value_bytes;
        if value.len() > max {
            return Err(reject(
                ErrorKind::TooLarge,
                format!(
                    "value of {} bytes exceeds the limit of {max} bytes (limits.max_value_bytes)",
                    value.len()
                ),
            ));
        }
        Ok(())
    }

    /// The preference list and the level resolved against it.
    fn plan(
        &self,
        bucket: &[u8],
        key: &[u8],
        level: Level,
    ) -> Result<(u32, Vec<String>, usize), ErrorReply> {
        self.check_key(bucket, key)?;
        let ring = &self.inner.ring;
        let n = self.inner.cfg.n_for(bucket).min(ring.members().len());
        let needed = level
            .resolve(n)
            .map_err(|e| reject(ErrorKind::BadRequest, e.to_string()))?;
        let partition = ring.partition_of(bucket, key);
        let pref = ring
            .preference_list(partition, n)
            .into_iter()
            .map(str::to_string)
            .collect();
        Ok((partition, pref, needed))
    }

    async fn get(&self, bucket: Vec<u8>, key: Vec<u8>, r: Level) -> Response {
        let (partition, pref, needed) = match self.plan(&bucket, &key, r) {
            Ok(p) => p,
            Err(e) => return Response::Error(e),
        };
        let me = self.inner.cfg.id.clone();
        let mut fsm = GetFsm::new(pref.clone(), needed);
        let (tx, mut rx) = mpsc::unbounded_channel::<(String, Result<Option<Object>, String>)>();
        let deadline = self.inner.cfg.timeouts.request;
        for node in pref {
            if node == me {
                let replica = self.inner.replica.clone();
                let skey = data_key(partition, &bucket, &key);
                let tx = tx.clone();
                tokio::spawn(async move {
                    let r = replica.get(skey).await.map_err(|e| e.to_string());
                    let _ = tx.send((node, r));
                });
            } else if !self.inner.members.is_up(&node) {
                fsm.fail(&node);
            } else {
                let this = self.clone();
                let tx = tx.clone();
                let req = PeerRequest::Read {
                    bucket: bucket.clone(),
                    key: key.clone(),
                };
                tokio::spawn(async move {
                    let r = match this.call_peer(&node, &req, deadline).await {
                        Ok(PeerResponse::Object(None)) => Ok(None),
                        Ok(PeerResponse::Object(Some(b))) => {
                            Object::decode(&b).map(Some).map_err(|e| e.to_string())
                        }
                        Ok(PeerResponse::Error(e)) => Err(e),
                        Ok(other) => Err(format!("unexpected answer {other:?}")),
                        Err(e) => Err(e.to_string()),
                    };
                    let _ = tx.send((node, r));
                });
            }
        }
        drop(tx);
        let outcome = self
            .drive(
                fsm.quorum().outcome(),
                deadline,
                &mut rx,
                |fsm: &mut GetFsm, ev| match ev {
                    Event::Answer(node, Ok(obj)) => fsm.reply(&node, obj),
                    Event::Answer(node, Err(e)) => {
                        tracing::debug!(%node, error = %e, "replica read failed");
                        fsm.fail(&node)
                    }
                    Event::Down(node) => fsm.fail(&node),
                    Event::Expired => fsm.expire(),
                },
                &mut fsm,
            )
            .await;
        match outcome {
            Outcome::Met => {
                let (found, values, context) = match fsm.merged() {
                    Some(o) => (
                        o.is_found(),
                        o.values()
                            .into_iter()
                            .map(|v| serde_bytes::ByteBuf::from(v.to_vec()))
                            .collect(),
                        o.context().to_context(),
                    ),
                    None => (false, Vec::new(), VersionVector::new().to_context()),
                };
                Response::Value(ValueReply {
                    found,
                    values,
                    context,
                })
            }
            Outcome::Failed { needed, answered } => quorum_error("read", needed, answered),
            Outcome::Pending => Response::error(ErrorKind::Internal, "read left undecided"),
        }
    }

    async fn write(
        &self,
        bucket: Vec<u8>,
        key: Vec<u8>,
        value: Option<Vec<u8>>,
        context: Vec<u8>,
        w: Level,
        forwarded: bool,
    ) -> Response {
        let (partition, pref, needed) = match self.plan(&bucket, &key, w) {
            Ok(p) => p,
            Err(e) => return Response::Error(e),
        };
        let ctx = if context.is_empty() {
            VersionVector::new()
        } else {
            match VersionVector::from_context(&context) {
                Ok(c) => c,
                Err(e) => {
                    return Response::error(
                        ErrorKind::BadRequest,
                        format!("invalid causal context: {e}"),
                    )
                }
            }
        };
        let me = self.inner.cfg.id.clone();
        if !pref.contains(&me) {
            let req = match value {
                Some(value) => Request::Put {
                    bucket,
                    key,
                    value,
                    context,
                    w,
                },
                None => Request::Delete {
                    bucket,
                    key,
                    context,
                    w,
                },
            };
            return self.forward(&pref, req, needed, forwarded).await;
        }
        // The coordinator writes locally first: the new version's dot is its own.
        let obj = match self
            .inner
            .replica
            .apply(
                data_key(partition, &bucket, &key),
                Change::Update { ctx, value },
            )
            .await
        {
            Ok(o) => o,
            Err(e @ ReplicaError::TooManySiblings { .. }) => {
                return Response::error(ErrorKind::BadRequest, e.to_string())
            }
            Err(e) => {
                tracing::error!(error = %e, "local write failed");
                return Response::error(ErrorKind::Internal, format!("local write failed: {e}"));
            }
        };
        let new_context = obj.context().to_context();
        let encoded = obj.encode();
        let mut q = Quorum::new(pref.clone(), needed);
        q.ok(&me);
        let deadline = self.inner.cfg.timeouts.request;
        let (tx, mut rx) = mpsc::unbounded_channel::<(String, Result<(), String>)>();
        for node in pref.into_iter().filter(|n| *n != me) {
            if !self.inner.members.is_up(&node) {
                q.fail(&node);
                continue;
            }
            let this = self.clone();
            let tx = tx.clone();
            let req = PeerRequest::Replicate {
                bucket: bucket.clone(),
                key: key.clone(),
                object: encoded.clone(),
            };
            // Runs to completion even after the client has its answer.
            tokio::spawn(async move {
                let r = match this.call_peer(&node, &req, deadline).await {
                    Ok(PeerResponse::Ack) => Ok(()),
                    Ok(PeerResponse::Error(e)) => Err(e),
                    Ok(other) => Err(format!("unexpected answer {other:?}")),
                    Err(e) => Err(e.to_string()),
                };
                if let Err(e) = &r {
                    tracing::debug!(%node, error = %e, "replicate failed");
                }
                let _ = tx.send((node, r));
            });
        }
        drop(tx);
        let outcome = self
            .drive(
                q.outcome(),
                deadline,
                &mut rx,
                |q: &mut Quorum, ev| match ev {
                    Event::Answer(node, Ok(())) => q.ok(&node),
                    Event::Answer(node, Err(_)) | Event::Down(node) => q.fail(&node),
                    Event::Expired => q.expire(),
                },
                &mut q,
            )
            .await;
        match outcome {
            Outcome::Met => Response::Written {
                context: new_context,
            },
            Outcome::Failed { needed, answered } => quorum_error("write", needed, answered),
            Outcome::Pending => Response::error(ErrorKind::Internal, "write left undecided"),
        }
    }

    /// Hands a write to a replica of the key: only a replica may issue its version.
    async fn forward(
        &self,
        pref: &[String],
        req: Request,
        needed: usize,
        forwarded: bool,
    ) -> Response {
        if forwarded {
            return Response::error(
                ErrorKind::Internal,
                "forwarded write reached a node outside the preference list (ring mismatch)",
            );
        }
        let deadline = self.inner.cfg.timeouts.request + Duration::from_secs(1);
        let wrapped = PeerRequest::Coordinate(req);
        for node in pref.iter().filter(|n| self.inner.members.is_up(n)) {
            match self.call_peer(node, &wrapped, deadline).await {
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

    /// Feeds events into a state machine until it decides: answers from replicas, replicas
    /// the failure detector marks down, and the deadline.
    async fn drive<M, T>(
        &self,
        mut outcome: Outcome,
        deadline: Duration,
        rx: &mut mpsc::UnboundedReceiver<(String, T)>,
        mut step: impl FnMut(&mut M, Event<T>) -> Outcome,
        machine: &mut M,
    ) -> Outcome
    where
        M: WaitingOn,
    {
        let until = tokio::time::Instant::now() + deadline;
        let mut changes = self.inner.members.subscribe();
        while outcome == Outcome::Pending {
            tokio::select! {
                ev = rx.recv() => match ev {
                    Some((node, r)) => outcome = step(machine, Event::Answer(node, r)),
                    None => outcome = step(machine, Event::Expired),
                },
                _ = tokio::time::sleep_until(until) => outcome = step(machine, Event::Expired),
                Ok(()) = changes.changed() => {
                    let down: Vec<String> = machine
                        .waiting_on()
                        .into_iter()
                        .filter(|n| !self.inner.members.is_up(n))
                        .collect();
                    for n in down {
                        outcome = step(machine, Event::Down(n));
                    }
                }
            }
        }
        outcome
    }

    async fn call_peer(
        &self,
        node: &str,
        req: &PeerRequest,
        deadline: Duration,
    ) -> Result<PeerResponse, TransportError> {
        let addr = self
            .inner
            .members
            .address(node)
            .ok_or_else(|| TransportError::Address {
                peer: node.to_string(),
                addr: String::new(),
            })?;
        self.inner.transport.call(node, &addr, req, deadline).await
    }

    /// Pings one peer forever, feeding the failure detector.
    async fn probe_loop(self, peer: String) {
        let fd = self.inner.cfg.failure_detector.clone();
        let timeout = fd
            .interval
            .max(Duration::from_millis(200))
            .min(fd.down_after)
            * 2;
        let ping = PeerRequest::Ping {
            from: self.inner.cfg.id.clone(),
        };
        loop {
            let started = Instant::now();
            let ok = matches!(
                self.call_peer(&peer, &ping, timeout).await,
                Ok(PeerResponse::Pong { .. })
            );
            if !ok {
                self.inner.transport.evict(&peer);
            }
            self.inner
                .members
                .observe(&peer, ok, Instant::now(), fd.down_after);
            tokio::time::sleep(fd.interval.saturating_sub(started.elapsed())).await;
        }
    }

    fn ring_info(&self) -> RingInfo {
        let cfg = &self.inner.cfg;
        let view = self.inner.members.view();
        RingInfo {
            down: view
                .iter()
                .filter(|m| !m.up)
                .map(|m| m.id.clone())
                .collect(),
            ring: self.inner.ring.clone(),
            addresses: view.into_iter().map(|m| (m.id, m.address)).collect(),
            default_n: cfg.cluster.n,
            bucket_n: cfg
                .cluster
                .buckets
                .iter()
                .map(|(b, c)| (b.clone(), c.n))
                .collect(),
        }
    }

    fn status(&self) -> StatusInfo {
        let ring = &self.inner.ring;
        let shares = ring.shares(self.inner.cfg.cluster.n);
        StatusInfo {
            node: self.inner.cfg.id.clone(),
            ring_version: ring.version(),
            partitions: ring.partition_count(),
            nodes: self
                .inner
                .members
                .view()
                .into_iter()
                .map(|m| NodeStatus {
                    partitions: shares
                        .iter()
                        .find(|(id, _)| *id == m.id)
                        .map(|(_, c)| *c)
                        .unwrap_or(0),
                    status: if m.up { "up" } else { "down" }.to_string(),
                    id: m.id,
                    address: m.address,
                    zone: m.zone,
                })
                .collect(),
        }
    }
}

/// One input to a request state machine.
enum Event<T> {
    Answer(String, T),
    Down(String),
    Expired,
}

/// A state machine that can say which replicas it still waits for.
trait WaitingOn {
    fn waiting_on(&self) -> Vec<String>;
}

impl WaitingOn for Quorum {
    fn waiting_on(&self) -> Vec<String> {
        Quorum::waiting_on(self)
            .into_iter()
            .map(str::to_string)
            .collect()
    }
}

impl WaitingOn for GetFsm {
    fn waiting_on(&self) -> Vec<String> {
        self.quorum()
            .waiting_on()
            .into_iter()
            .map(str::to_string)
            .collect()
    }
}

fn reject(kind: ErrorKind, message: impl Into<String>) -> ErrorReply {
    ErrorReply {
        kind,
        message: message.into(),
    }
}

fn quorum_error(op: &str, needed: usize, answered: usize) -> Response {
    Response::error(
        ErrorKind::Quorum {
            needed: needed as u32,
            answered: answered as u32,
        },
        format!("{op} quorum not met: needed {needed} replicas, {answered} answered"),
    )
}

fn op_name(req: &Request) -> &'static str {
    match req {
        Request::Get { .. } => "get",
        Request::Put { .. } => "put",
        Request::Delete { .. } => "delete",
        Request::Ring => "ring",
        Request::Status => "status",
    }
}

async fn reply<T: serde::Serialize>(send: &mut quinn::SendStream, msg: &T, trace: u64) {
    send_frame(send, wire::encode(msg, trace)).await
}

async fn send_frame(send: &mut quinn::SendStream, frame: Result<Vec<u8>, WireError>) {
    match frame {
        Ok(frame) => {
            if let Err(e) = send.write_all(&frame).await {
                tracing::debug!(error = %e, "could not send reply");
                return;
            }
            let _ = send.finish();
        }
        Err(e) => tracing::error!(error = %e, "could not encode reply"),
    }
}
