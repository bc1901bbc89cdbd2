//! The node handle: opening storage, binding the endpoint, starting the background workers,
//! accepting connections, and shutting down. Requests arriving on a stream are served by
//! [`crate::client_api`] and [`crate::peer_api`]; background work runs as workers under one
//! [`crate::worker::Runner`], each in the module of its concept (gossip, probe, transfer,
//! handoff, anti_entropy, tombstone_gc, catch_up).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{Notify, Semaphore};

use crate::budget::Budgets;
use crate::call::{CallError, PeerCall};
use crate::config::{Engine, NodeConfig};
use crate::context::ContextKey;
use crate::hints::Hints;
use crate::membership::{ClusterState, Membership};
use crate::network::{Network, Quic};
use crate::replica::{Replica, ReplicaError, ReplicaOptions};
use crate::stats::Stats;
use crate::storage::{data_key, MemStorage, RocksStorage, Storage, StorageError};
use crate::transport::{self, codes, Priority, Role, Transport, TransportError};
use crate::worker::Runner;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Replica(#[from] ReplicaError),
    #[error(transparent)]
    Transport(#[from] TransportError),
    #[error("ring: {0}")]
    Ring(#[from] chorus_ring::RingError),
    #[error("admin endpoint: {0}")]
    Admin(String),
    #[error("cluster.secret is not set; add the same 64 hex digits to every node's [cluster] (generate them with `openssl rand -hex 32`)")]
    NoSecret,
    #[error("{0}")]
    Identity(String),
}

/// How long shutdown waits for background workers to finish their current step.
pub const WORKERS_STOP_WITHIN: Duration = Duration::from_secs(3);

/// A node that is serving. Dropping it doesn't stop it; call [`Node::shutdown`].
#[derive(Clone)]
pub struct Node {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) cfg: NodeConfig,
    pub(crate) replica: Replica,
    pub(crate) storage: Arc<dyn Storage>,
    /// The endpoint: serves clients and peers, and dials peers for [`Quic`].
    pub(crate) transport: Arc<Transport>,
    /// How this node calls its peers (see [`crate::network`]).
    pub(crate) network: Arc<dyn Network>,
    pub(crate) members: Membership,
    pub(crate) hints: Arc<Hints>,
    pub(crate) stats: Stats,
    /// Seals and checks the causal contexts clients hold.
    pub(crate) contexts: ContextKey,
    /// What requests and the work they leave behind may hold (see [`crate::budget`]).
    pub(crate) budgets: Budgets,
    /// Wakes hint replay early (a new hint for a live node).
    pub(crate) handoff_kick: Notify,
    /// Starts an anti-entropy round now.
    pub(crate) repair_now: Notify,
    /// Peers refused for another cluster id or other cluster-wide settings.
    pub(crate) identity: crate::identity::Conflicts,
    /// Whether this node's data is whole (see [`crate::recovery`]).
    pub(crate) recovery: crate::catch_up::Tracker,
    /// Writes the cluster state in order (see [`crate::persist`]).
    pub(crate) persist: crate::persist::StatePersister,
    /// The background workers.
    pub(crate) workers: Runner,
}

/// How far ahead of this node's wall clock a peer's `lww` timestamp may be and still be
/// followed by the replica writer's hybrid logical clock (see `chorus_core::hlc`).
const MAX_CLOCK_OFFSET: Duration = Duration::from_secs(10);

impl Node {
    /// Opens storage, binds the endpoint and starts serving and the background workers.
    pub async fn start(cfg: NodeConfig) -> Result<Node, ServerError> {
        Node::start_on(cfg, None).await
    }

    /// [`Node::start`], calling peers through `network` instead of QUIC; the endpoint still
    /// serves clients and peers.
    pub async fn start_with_network(
        cfg: NodeConfig,
        network: Arc<dyn Network>,
    ) -> Result<Node, ServerError> {
        Node::start_on(cfg, Some(network)).await
    }

    async fn start_on(
        cfg: NodeConfig,
        network: Option<Arc<dyn Network>>,
    ) -> Result<Node, ServerError> {
        let contexts = ContextKey::new(cfg.cluster.secret.as_ref().ok_or(ServerError::NoSecret)?);
        let storage = open_storage(&cfg).await?;
        crate::gossip::check_identity(&cfg, &*storage)?;
        let recovery = {
            let (cfg, storage) = (cfg.clone(), storage.clone());
            tokio::task::spawn_blocking(move || crate::catch_up::Tracker::open(&cfg, &*storage))
                .await
                .map_err(|_| ReplicaError::Closed)??
        };
        let n_cfg = cfg.clone();
        let c_cfg = cfg.clone();
        let opts = ReplicaOptions {
            conflicts_of: Arc::new(move |bucket: &[u8]| c_cfg.conflicts_for(bucket)),
            max_clock_offset: MAX_CLOCK_OFFSET,
            max_batch: cfg.storage.max_batch,
            max_siblings: cfg.limits.max_siblings,
            max_object_bytes: cfg.limits.object_bytes(),
            n_of: Arc::new(move |bucket: &[u8]| n_cfg.n_for(bucket)),
            layout: format!("n={};buckets={:?}", cfg.cluster.n, cfg.cluster.buckets_n()),
        };
        let (replica, hints) = {
            let (storage, id, expiry) =
                (storage.clone(), cfg.id.clone(), cfg.hinted_handoff.expiry);
            tokio::task::spawn_blocking(move || {
                let replica = Replica::open(storage.clone(), &id, opts)?;
                let hints = Hints::open(storage, expiry)?;
                Ok::<_, ServerError>((replica, hints))
            })
            .await
            .map_err(|_| ReplicaError::Closed)??
        };
        let state = crate::gossip::initial_state(&cfg, &*storage).await?;
        let transport = Arc::new(Transport::bind(&cfg)?);
        let membership = Membership::new(&cfg.id, state);
        let network =
            network.unwrap_or_else(|| Arc::new(Quic::new(transport.clone(), membership.clone())));
        if let Some(addr) = cfg.admin.listen {
            metrics_exporter_prometheus::PrometheusBuilder::new()
                .with_http_listener(addr)
                .install()
                .map_err(|e| ServerError::Admin(format!("{addr}: {e}")))?;
        }
        let node = Node {
            inner: Arc::new(Inner {
                contexts,
                budgets: Budgets::new(&cfg.limits),
                cfg,
                replica,
                persist: crate::persist::StatePersister::new(storage.clone()),
                storage,
                transport,
                network,
                members: membership,
                hints: Arc::new(hints),
                stats: Stats::default(),
                handoff_kick: Notify::new(),
                repair_now: Notify::new(),
                identity: Default::default(),
                recovery,
                workers: Runner::new(),
            }),
        };
        node.check_removed();
        let cfg = &node.inner.cfg;
        tracing::info!(
            node = %cfg.id,
            addr = %node.local_addr(),
            epoch = node.inner.replica.actor().epoch,
            hints = node.inner.hints.pending().values().sum::<u64>(),
            read_repair = cfg.read_repair.enabled,
            hinted_handoff = cfg.hinted_handoff.enabled,
            anti_entropy = cfg.anti_entropy.enabled,
            "serving"
        );
        tokio::spawn(node.clone().accept_loop());
        let workers = &node.inner.workers;
        workers.spawn(crate::gossip::Gossip::new(node.clone()));
        workers.spawn(crate::probe::FailureDetector::new(node.clone()));
        workers.spawn(crate::transfer::Transfers::new(node.clone()));
        // These two are listed even when switched off, so status says why they are idle.
        workers.spawn(crate::handoff::HintReplay::new(node.clone()));
        workers.spawn(crate::anti_entropy::AntiEntropy::new(node.clone()));
        workers.spawn(crate::tombstone_gc::TombstoneGc::new(node.clone()));
        workers.spawn(crate::catch_up::CatchUp::new(node.clone()));
        Ok(node)
    }

    pub fn local_addr(&self) -> std::net::SocketAddr {
        self.inner
            .transport
            .endpoint()
            .local_addr()
            .unwrap_or(self.inner.cfg.listen)
    }

    /// Stops the background workers (a step still running after [`WORKERS_STOP_WITHIN`]
    /// is abandoned), then stops accepting work and closes every connection.
    pub async fn shutdown(&self) {
        let started = Instant::now();
        let aborted = self.inner.workers.shutdown(WORKERS_STOP_WITHIN).await;
        if !aborted.is_empty() {
            tracing::warn!(?aborted, "background workers stopped mid-step");
        }
        let ms = started.elapsed().as_millis() as u64;
        tracing::debug!(ms, "background workers stopped");
        self.inner.transport.close();
        self.end_run().await;
        let _ = tokio::time::timeout(
            Duration::from_secs(2),
            self.inner.transport.endpoint().wait_idle(),
        )
        .await;
    }

    async fn accept_loop(self) {
        let slots = Arc::new(Semaphore::new(self.inner.cfg.limits.max_connections));
        let handshakes = Arc::new(AtomicUsize::new(0));
        let retry_above = self.inner.cfg.limits.handshakes_before_retry;
        while let Some(incoming) = self.inner.transport.endpoint().accept().await {
            // When handshakes flood, a new one must first prove its address (QUIC retry),
            // so spoofed sources cost one stateless packet each.
            if handshakes.load(Ordering::Acquire) >= retry_above
                && !incoming.remote_address_validated()
                && incoming.may_retry()
            {
                let _ = incoming.retry();
                continue;
            }
            // Past the connection limit, refuse at once rather than queue handshakes.
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                tracing::warn!(remote = %incoming.remote_address(), "connection refused: limits.max_connections reached");
                incoming.refuse();
                continue;
            };
            let node = self.clone();
            let pending = HandshakeGuard::new(&handshakes);
            tokio::spawn(async move {
                let handshake = incoming.await;
                drop(pending);
                match handshake {
                    Ok(conn) => node.serve_connection(conn).await,
                    Err(e) => tracing::debug!(error = %e, "handshake failed"),
                }
                drop(slot);
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
        let admin = role == Role::Client && crate::roles::is_admin_certificate(&conn);
        while let Ok((send, recv)) = conn.accept_bi().await {
            let node = self.clone();
            tokio::spawn(async move { node.serve_stream(role, admin, send, recv).await });
        }
    }

    /// Sends a typed call to the node `peer` and waits up to `deadline` for its reply.
    pub async fn call<C: PeerCall>(
        &self,
        peer: &str,
        call: C,
        deadline: Duration,
        priority: Priority,
    ) -> Result<C::Reply, CallError> {
        self.call_metered(peer, call, deadline, priority)
            .await
            .map(|(r, _)| r)
    }

    /// [`Node::call`], also returning the frame bytes sent and received.
    pub async fn call_metered<C: PeerCall>(
        &self,
        peer: &str,
        call: C,
        deadline: Duration,
        priority: Priority,
    ) -> Result<(C::Reply, u64), CallError> {
        crate::network::call(&*self.inner.network, peer, call, deadline, priority).await
    }

    /// Those of `nodes` the failure detector sees down: what a request machine still waits
    /// on and will not hear from.
    pub(crate) fn down_among(&self, nodes: Vec<&str>) -> Vec<String> {
        nodes
            .into_iter()
            .filter(|n| !self.inner.members.is_up(n))
            .map(str::to_string)
            .collect()
    }

    pub(crate) fn storage_key(&self, bucket: &[u8], key: &[u8]) -> Vec<u8> {
        data_key(self.partition_of(bucket, key), bucket, key)
    }

    /// A key's partition: fixed for the cluster's life, whatever the ring.
    pub(crate) fn partition_of(&self, bucket: &[u8], key: &[u8]) -> u32 {
        chorus_ring::partition_for(self.inner.cfg.cluster.partitions, bucket, key)
    }

    /// The current cluster state.
    pub(crate) fn cluster(&self) -> Arc<ClusterState> {
        self.inner.members.state()
    }

    /// Partitions this node replicates (for the default N), with the other replicas.
    pub(crate) fn shared_partitions(&self) -> Vec<(u32, Vec<String>)> {
        let state = self.cluster();
        let Some(ring) = state.ring.as_ref() else {
            return Vec::new();
        };
        let me = &self.inner.cfg.id;
        let n = self.inner.cfg.cluster.n;
        ring.partitions_of(me, n)
            .into_iter()
            .map(|p| {
                let peers = ring
                    .preference_list(p, n)
                    .into_iter()
                    .filter(|x| *x != me)
                    .map(str::to_string)
                    .collect();
                (p, peers)
            })
            .collect()
    }
}

async fn open_storage(cfg: &NodeConfig) -> Result<Arc<dyn Storage>, StorageError> {
    let path = cfg.data_dir.clone();
    let open_err = |reason: String| StorageError::Open {
        path: cfg.data_dir.display().to_string(),
        reason,
    };
    match cfg.storage.engine {
        Engine::Rocksdb => {
            let sync = cfg.storage.sync;
            let db = tokio::task::spawn_blocking(move || RocksStorage::open(&path, sync))
                .await
                .map_err(|e| open_err(e.to_string()))??;
            Ok(Arc::new(db))
        }
        Engine::Memory => {
            std::fs::create_dir_all(&path).map_err(|e| open_err(e.to_string()))?;
            Ok(Arc::new(MemStorage::default()))
        }
    }
}

/// Counts a handshake in progress while it lives.
struct HandshakeGuard(Arc<AtomicUsize>);

impl HandshakeGuard {
    fn new(count: &Arc<AtomicUsize>) -> HandshakeGuard {
        count.fetch_add(1, Ordering::AcqRel);
        HandshakeGuard(count.clone())
    }
}

impl Drop for HandshakeGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}
