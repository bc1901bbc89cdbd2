//! The running node: accepts connections, serves peers, and coordinates client requests over
//! each key's preference list with the quorum state machines from [`crate::coordinator`].
//! Background work runs as workers under one [`crate::worker::Runner`]; each worker lives
//! in the module of its concept (gossip, probe, transfer, handoff, anti_entropy,
//! tombstone_gc, catch_up).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chorus_client::proto::{
    ErrorKind, ErrorReply, Level, NodeStatus, Request, Response, RingInfo, StatusInfo,
    TransferStatus, ValueReply, WorkerInfo,
};
use chorus_ring::Ring;
use tokio::sync::{mpsc, oneshot, Notify, Semaphore};

use crate::budget::{Budgets, Charge, Exhausted};
use crate::config::{Engine, NodeConfig};
use crate::context::ContextKey;
use crate::coordinator::{read_targets, GetFsm, Outcome, Quorum, Quorums};
use crate::hints::{now_ms, Hint, Hints};
use crate::membership::{ClusterState, MemberState, Membership};
use crate::replica::{Change, Replica, ReplicaError, ReplicaOptions};
use crate::rpc::{Item, PeerRequest, PeerResponse};
use crate::stats::Stats;
use crate::storage::{data_key, MemStorage, RocksStorage, Storage, StorageError};
use crate::transport::{self, codes, Priority, Role, Transport, TransportError};
use crate::version::{Dot, Object};
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

/// Reads coordinated by this process, for `read_repair.chance`.
static READS: AtomicU64 = AtomicU64::new(0);

/// A node that is serving. Dropping it doesn't stop it; call [`Node::shutdown`].
#[derive(Clone)]
pub struct Node {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) cfg: NodeConfig,
    pub(crate) replica: Replica,
    pub(crate) storage: Arc<dyn Storage>,
    pub(crate) transport: Transport,
    pub(crate) members: Membership,
    pub(crate) hints: Arc<Hints>,
    pub(crate) stats: Stats,
    /// Seals and checks the causal contexts clients hold.
    contexts: ContextKey,
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

impl Node {
    /// Opens storage, binds the endpoint and starts serving and the background workers.
    pub async fn start(cfg: NodeConfig) -> Result<Node, ServerError> {
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
        let opts = ReplicaOptions {
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
        let transport = Transport::bind(&cfg)?;
        let membership = Membership::new(&cfg.id, state);
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

    /// Serves a client request. `forwarded` is set when another node handed it over, so it
    /// is never forwarded again.
    pub async fn handle_client(&self, req: Request, forwarded: bool) -> Response {
        let started = Instant::now();
        let op = op_name(&req);
        if !matches!(req, Request::Status | Request::Ring) {
            if let Some(why) = self.inner.identity.out_of_cluster() {
                return Response::error(ErrorKind::Unavailable, why);
            }
        }
        let resp = match req {
            Request::Get { bucket, key, r } => self.get(bucket, key, r).await,
            Request::Put {
                bucket,
                key,
                value,
                context,
                w,
                sloppy,
            } => {
                if let Err(e) = self.check_value(&value) {
                    return Response::Error(e);
                }
                let write = Write {
                    bucket,
                    key,
                    value: Some(value),
                    context,
                    w,
                    sloppy,
                };
                self.write(write, forwarded).await
            }
            Request::Delete {
                bucket,
                key,
                context,
                w,
                sloppy,
            } => {
                let write = Write {
                    bucket,
                    key,
                    value: None,
                    context,
                    w,
                    sloppy,
                };
                self.write(write, forwarded).await
            }
            Request::GetReplica { bucket, key, node } => self.get_replica(bucket, key, node).await,
            Request::Ring => match self.ring_info() {
                Some(info) => Response::Ring(info),
                None => Response::error(
                    ErrorKind::Unavailable,
                    (self.inner.identity.out_of_cluster()).unwrap_or_else(|| NOT_JOINED.into()),
                ),
            },
            Request::Leave { node, force } => {
                self.change_member(&node, MemberState::Leaving, force)
            }
            Request::Remove { node, force } => self.change_member(&node, MemberState::Left, force),
            Request::Status => Response::Status(self.status()),
            Request::Repair => {
                if self.inner.cfg.anti_entropy.enabled {
                    self.inner.repair_now.notify_one();
                    Response::Ok
                } else {
                    Response::error(
                        ErrorKind::BadRequest,
                        "anti-entropy is switched off on this node (anti_entropy.enabled = false)",
                    )
                }
            }
        };
        let outcome = match &resp {
            Response::Error(e) => match e.kind {
                ErrorKind::Quorum { .. } => "quorum_failed",
                _ => "error",
            },
            _ => "ok",
        };
        metrics::counter!("chorus_requests_total", "op" => op, "outcome" => outcome).increment(1);
        metrics::histogram!("chorus_request_seconds", "op" => op)
            .record(started.elapsed().as_secs_f64());
        resp
    }

    pub(crate) async fn handle_peer(&self, req: PeerRequest) -> PeerResponse {
        match req {
            PeerRequest::Ping {
                from,
                cluster,
                settings,
            } => {
                if let Some(why) = crate::identity::mismatch(&self.inner.cfg, &cluster, &settings) {
                    self.inner.identity.refuse(&from, &why, false);
                    let me = &self.inner.cfg.id;
                    return PeerResponse::Error(format!(
                        "{} by {me}: {why}",
                        crate::gossip::REFUSED
                    ));
                }
                PeerResponse::Pong {
                    node: self.inner.cfg.id.clone(),
                    epoch: self.inner.replica.actor().epoch,
                    recovering: self.recovery_report(),
                }
            }
            PeerRequest::Read { .. } if self.is_removed() => PeerResponse::Error(REMOVED.into()),
            PeerRequest::Read { bucket, key } => match self.read_local(&bucket, &key).await {
                // Say why instead of sending a frame the requester refuses.
                Ok(Some(o)) if o.len() > self.reply_budget() => PeerResponse::Error(format!(
                    "stored version of {} bytes exceeds limits.max_frame_bytes; resolve the key's siblings",
                    o.len()
                )),
                Ok(o) if self.is_whole() => PeerResponse::Object(o),
                Ok(o) => PeerResponse::Recovering(o),
                Err(e) => PeerResponse::Error(e),
            },
            PeerRequest::Replicate(_) | PeerRequest::MergeMany(_) if !self.accepts_writes() => {
                PeerResponse::Error(NOT_TAKING_WRITES.into())
            }
            PeerRequest::Replicate(item) => self.merge_items(vec![item]).await,
            PeerRequest::MergeMany(items) => self.merge_items(items).await,
            PeerRequest::PartitionScan { .. }
            | PeerRequest::TreeRoots(_)
            | PeerRequest::TreeBranches(_)
            | PeerRequest::TreeLeaves { .. }
            | PeerRequest::SegmentKeys { .. }
            | PeerRequest::ReadMany(_)
                if !self.serves_data() =>
            {
                PeerResponse::Error(NOT_SERVING.into())
            }
            PeerRequest::Gossip(theirs) => self.receive_gossip(*theirs).await,
            PeerRequest::PartitionScan {
                partition,
                after,
                limit,
            } => self.partition_scan(partition, after, limit).await,
            PeerRequest::StoreHint { target, item } => {
                if !self.inner.members.state().members.contains_key(&target) {
                    return PeerResponse::Error(format!("hint for unknown node {target:?}"));
                }
                if let Err(e) = self.check_key(&item.bucket, &item.key) {
                    return PeerResponse::Error(e.message);
                }
                if let Err(e) = Object::decode(&item.object) {
                    return PeerResponse::Error(format!("bad object: {e}"));
                }
                match self.store_hint(&target, item).await {
                    Ok(()) => PeerResponse::Ack,
                    Err(e) => PeerResponse::Error(e),
                }
            }
            // Forwarding is for data requests; cluster changes come from admins directly.
            PeerRequest::Coordinate(req) if crate::roles::needs_admin(&req) => {
                PeerResponse::Coordinated(crate::roles::denied(&req))
            }
            PeerRequest::Coordinate(req) => {
                PeerResponse::Coordinated(Box::pin(self.handle_client(req, true)).await)
            }
            PeerRequest::TreeRoots(_)
            | PeerRequest::TreeBranches(_)
            | PeerRequest::TreeLeaves { .. }
            | PeerRequest::SegmentKeys { .. }
            | PeerRequest::ReadMany(_)
            | PeerRequest::Purge { .. } => self.handle_sync(req).await,
        }
    }

    /// This replica's encoded version of a key, after checking the key's limits.
    pub(crate) async fn read_local(
        &self,
        bucket: &[u8],
        key: &[u8],
    ) -> Result<Option<Vec<u8>>, String> {
        self.check_key(bucket, key).map_err(|e| e.message)?;
        self.inner
            .replica
            .get_encoded(self.storage_key(bucket, key))
            .await
            .map_err(|e| e.to_string())
    }

    /// Merges versions from another node into the local replica, as one write batch.
    pub(crate) async fn merge_items(&self, items: Vec<Item>) -> PeerResponse {
        if items.len() > 4 * self.inner.cfg.storage.max_batch.max(1024) {
            return PeerResponse::Error(format!(
                "{} items in one message is too many",
                items.len()
            ));
        }
        let mut jobs = tokio::task::JoinSet::new();
        for item in items {
            if let Err(e) = self.check_key(&item.bucket, &item.key) {
                return PeerResponse::Error(e.message);
            }
            let obj = match Object::decode(&item.object) {
                Ok(o) => o,
                Err(e) => return PeerResponse::Error(format!("bad object: {e}")),
            };
            let replica = self.inner.replica.clone();
            let key = self.storage_key(&item.bucket, &item.key);
            // Submitted together, so the writer groups them into one batch.
            jobs.spawn(async move { replica.apply(key, Change::Merge(obj)).await });
        }
        while let Some(r) = jobs.join_next().await {
            match r {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return PeerResponse::Error(e.to_string()),
                Err(e) => return PeerResponse::Error(e.to_string()),
            }
        }
        PeerResponse::Ack
    }

    /// Stores a hint for `target` durably and wakes hint replay.
    pub(crate) async fn store_hint(&self, target: &str, item: Item) -> Result<(), String> {
        let hints = self.inner.hints.clone();
        let target_owned = target.to_string();
        let hint = Hint {
            bucket: item.bucket,
            key: item.key,
            object: item.object,
            created_ms: now_ms(),
        };
        tokio::task::spawn_blocking(move || hints.add(&target_owned, &hint))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        metrics::gauge!("chorus_hints_pending", "target" => target.to_string())
            .set(self.inner.hints.pending_for(target) as f64);
        self.inner.handoff_kick.notify_one();
        Ok(())
    }

    /// Bytes of values and context a read reply may carry and still fit in a frame.
    fn reply_budget(&self) -> usize {
        self.inner
            .cfg
            .limits
            .max_frame_bytes
            .saturating_sub(REPLY_OVERHEAD)
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

    pub(crate) fn check_key(&self, bucket: &[u8], key: &[u8]) -> Result<(), ErrorReply> {
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

    /// The key's partition, N and preference list, and the level resolved against N.
    /// While the partition moves to new owners, `pref` is the old replica set (which holds
    /// all of its data) and `also` the new one.
    fn plan(&self, bucket: &[u8], key: &[u8], level: Level) -> Result<Plan, ErrorReply> {
        self.check_key(bucket, key)?;
        let state = self.cluster();
        let ring = state
            .ring
            .as_ref()
            .ok_or_else(|| reject(ErrorKind::Unavailable, NOT_JOINED))?;
        let n = self.inner.cfg.n_for(bucket).min(ring.members().len());
        let needed = level
            .resolve(n)
            .map_err(|e| reject(ErrorKind::BadRequest, e.to_string()))?;
        let partition = self.partition_of(bucket, key);
        let list = |r: &Ring, n: usize| -> Vec<String> {
            r.preference_list(partition, n)
                .into_iter()
                .map(str::to_string)
                .collect()
        };
        let new = list(ring, n);
        let (pref, also) = match state.old_ring_for(partition) {
            Some(old) => {
                let old_pref = list(old, n.min(old.members().len()));
                if old_pref == new || needed > old_pref.len() {
                    (new, None)
                } else {
                    (old_pref, Some(new))
                }
            }
            None => (new, None),
        };
        Ok(Plan {
            partition,
            pref,
            also,
            needed,
            fallbacks: ring
                .fallbacks(partition, n)
                .into_iter()
                .map(str::to_string)
                .collect(),
        })
    }

    async fn get(&self, bucket: Vec<u8>, key: Vec<u8>, r: Level) -> Response {
        let plan = match self.plan(&bucket, &key, r) {
            Ok(p) => p,
            Err(e) => return Response::Error(e),
        };
        let me = self.inner.cfg.id.clone();
        let mut fsm = GetFsm::new(plan.pref.clone(), plan.needed);
        let (tx, mut rx) = mpsc::unbounded_channel::<(String, ReadAnswer)>();
        let deadline = self.inner.cfg.timeouts.request;
        let skey = data_key(plan.partition, &bucket, &key);
        let rr = &self.inner.cfg.read_repair;
        // Every k-th read goes to all replicas, k = 1 / chance.
        let every = (1.0 / rr.chance).round().max(1.0) as u64;
        let full = rr.chance >= 1.0
            || (rr.chance > 0.0 && READS.fetch_add(1, Ordering::Relaxed).is_multiple_of(every));
        let is_up = |n: &str| self.inner.members.is_up(n);
        let (first, reserve) = read_targets(&plan.pref, &me, plan.needed, is_up, full);
        for node in plan.pref.iter().filter(|n| **n != me && !is_up(n)) {
            fsm.fail(node);
        }
        for node in first {
            self.ask_replica(node.clone(), &bucket, &key, &skey, &tx);
        }
        // The reserve is asked when a contacted replica fails, or after `speculative_after`,
        // unless the read is decided by then.
        let escalate = Arc::new(Notify::new());
        let decided = Arc::new(AtomicBool::new(false));
        if !reserve.is_empty() {
            let reserve: Vec<String> = reserve.into_iter().cloned().collect();
            let (escalate, decided) = (escalate.clone(), decided.clone());
            let after = rr.speculative_after;
            let this = self.clone();
            let tx = tx.clone();
            let (bucket, key, skey) = (bucket.clone(), key.clone(), skey.clone());
            tokio::spawn(async move {
                tokio::select! {
                    _ = tokio::time::sleep(after) => {}
                    _ = escalate.notified() => {}
                }
                if decided.load(Ordering::Acquire) {
                    return;
                }
                for node in reserve {
                    this.ask_replica(node, &bucket, &key, &skey, &tx);
                }
            });
        }
        drop(tx);
        // The request runs in its own task: after the reply it keeps listening for late
        // answers, then repairs the replicas that were stale.
        let (reply_tx, reply_rx) = oneshot::channel();
        let this = self.clone();
        tokio::spawn(async move {
            let wake = escalate.clone();
            let step = |fsm: &mut GetFsm, ev: Event<ReadAnswer>| match ev {
                Event::Answer(node, Ok(obj)) => fsm.reply(&node, obj),
                Event::Answer(node, Err(ReadFail::Recovering)) => {
                    wake.notify_one();
                    fsm.recovering(&node)
                }
                Event::Answer(node, Err(ReadFail::Failed(e))) => {
                    tracing::debug!(%node, error = %e, "replica read failed");
                    wake.notify_one();
                    fsm.fail(&node)
                }
                Event::Down(node) => {
                    wake.notify_one();
                    fsm.fail(&node)
                }
                Event::Expired => fsm.expire(),
            };
            let outcome = this
                .drive(
                    fsm.quorum().outcome(),
                    deadline,
                    &mut rx,
                    step,
                    &mut fsm,
                    &HashMap::new(),
                )
                .await;
            let resp = match outcome {
                Outcome::Met => Response::Value(this.value_reply(&bucket, &key, fsm.merged())),
                Outcome::Failed { needed, answered } => {
                    read_quorum_error(needed, answered, fsm.recovering_replicas())
                }
                Outcome::Pending => Response::error(ErrorKind::Internal, "read left undecided"),
            };
            // Decided: the reserve is not needed any more (it still may be for read repair,
            // but anti-entropy covers replicas a read skipped).
            decided.store(true, Ordering::Release);
            escalate.notify_one();
            let _ = reply_tx.send(resp);
            if outcome == Outcome::Met && this.inner.cfg.read_repair.enabled {
                this.read_repair(fsm, rx, bucket, key, skey).await;
            }
        });
        reply_rx
            .await
            .unwrap_or_else(|_| Response::error(ErrorKind::Internal, "read task failed"))
    }

    /// Reads one replica's copy of a key in its own task and sends the answer to `tx`:
    /// the local replica directly, another through a peer `Read`.
    fn ask_replica(
        &self,
        node: String,
        bucket: &[u8],
        key: &[u8],
        skey: &[u8],
        tx: &mpsc::UnboundedSender<(String, ReadAnswer)>,
    ) {
        let tx = tx.clone();
        if node == self.inner.cfg.id {
            if !self.is_whole() {
                let _ = tx.send((node, Err(ReadFail::Recovering)));
                return;
            }
            let replica = self.inner.replica.clone();
            let skey = skey.to_vec();
            tokio::spawn(async move {
                let r = replica
                    .get(skey)
                    .await
                    .map_err(|e| ReadFail::Failed(e.to_string()));
                let _ = tx.send((node, r));
            });
        } else {
            let this = self.clone();
            let req = PeerRequest::Read {
                bucket: bucket.to_vec(),
                key: key.to_vec(),
            };
            let deadline = self.inner.cfg.timeouts.request;
            tokio::spawn(async move {
                let r = match this.call_peer(&node, &req, deadline).await {
                    Ok(PeerResponse::Recovering(_)) => Err(ReadFail::Recovering),
                    other => object_answer(other).map_err(ReadFail::Failed),
                };
                let _ = tx.send((node, r));
            });
        }
    }

    /// Waits (up to the repair window) for replicas that hadn't answered, then sends the
    /// merged version to every replica whose answer lacked part of it.
    async fn read_repair(
        &self,
        mut fsm: GetFsm,
        mut rx: mpsc::UnboundedReceiver<(String, ReadAnswer)>,
        bucket: Vec<u8>,
        key: Vec<u8>,
        skey: Vec<u8>,
    ) {
        let until = tokio::time::Instant::now() + self.inner.cfg.read_repair.window;
        while fsm.quorum().waiting() > 0 {
            tokio::select! {
                ev = rx.recv() => match ev {
                    Some((node, Ok(obj))) => { fsm.reply(&node, obj); }
                    Some((node, Err(ReadFail::Recovering))) => { fsm.recovering(&node); }
                    Some((node, Err(ReadFail::Failed(_)))) => { fsm.fail(&node); }
                    None => break,
                },
                _ = tokio::time::sleep_until(until) => break,
            }
        }
        let Some(merged) = fsm.merged().cloned() else {
            return;
        };
        let stale: Vec<String> = fsm
            .stale_replicas()
            .into_iter()
            .map(str::to_string)
            .collect();
        if stale.is_empty() {
            return;
        }
        let item = Item {
            bucket,
            key,
            object: merged.encode(),
        };
        let me = &self.inner.cfg.id;
        // A single item goes alone; one too large for any frame can't go at all.
        let sendable = item_bytes(&item) <= self.reply_budget();
        for node in stale {
            let ok = if node == *me {
                self.inner
                    .replica
                    .apply(skey.clone(), Change::Merge(merged.clone()))
                    .await
                    .is_ok()
            } else if !sendable {
                tracing::warn!(
                    %node,
                    bytes = item_bytes(&item),
                    "read repair skipped: the merged version is larger than a frame; resolve the key's siblings"
                );
                false
            } else {
                let req = PeerRequest::Replicate(item.clone());
                matches!(
                    self.call_peer(&node, &req, self.inner.cfg.timeouts.request)
                        .await,
                    Ok(PeerResponse::Ack)
                )
            };
            if ok {
                Stats::add(
                    &self.inner.stats.read_repairs,
                    "chorus_read_repairs_total",
                    1,
                );
                tracing::debug!(%node, "read repair");
            }
        }
    }

    async fn get_replica(&self, bucket: Vec<u8>, key: Vec<u8>, node: String) -> Response {
        if let Err(e) = self.check_key(&bucket, &key) {
            return Response::Error(e);
        }
        if !self.inner.members.state().members.contains_key(&node) {
            return Response::error(ErrorKind::BadRequest, format!("unknown node {node:?}"));
        }
        let (b, k) = (bucket.clone(), key.clone());
        let obj = if node == self.inner.cfg.id {
            self.inner
                .replica
                .get(self.storage_key(&bucket, &key))
                .await
                .map_err(|e| e.to_string())
        } else {
            let req = PeerRequest::Read { bucket, key };
            object_answer(
                self.call_peer(&node, &req, self.inner.cfg.timeouts.request)
                    .await,
            )
        };
        match obj {
            Ok(o) => Response::Value(self.value_reply(&b, &k, o.as_ref())),
            Err(e) => Response::error(ErrorKind::Internal, format!("reading {node}'s copy: {e}")),
        }
    }

    /// What a client sees of a version (or of its absence), with its sealed context. Values
    /// beyond the reply budget are left out and the reply says so (`truncated`): the context
    /// then covers only the values shown, so a write with it keeps the others as siblings.
    fn value_reply(&self, bucket: &[u8], key: &[u8], obj: Option<&Object>) -> ValueReply {
        let ctx = obj.map(Object::context).unwrap_or_default();
        let mut context = self.inner.contexts.seal(bucket, key, &ctx);
        match obj {
            Some(o) => {
                let room = self.reply_budget().saturating_sub(context.len());
                let all = distinct(o.values());
                let total = all.len();
                let mut used = 0usize;
                let mut values = Vec::with_capacity(total);
                for v in all {
                    let cost = v.len() + VALUE_OVERHEAD;
                    if used + cost <= room {
                        used += cost;
                        values.push(serde_bytes::ByteBuf::from(v.to_vec()));
                    }
                }
                let truncated = values.len() < total;
                if truncated {
                    // The context covers only what the reply shows. Its single dots (a bounded
                    // few) fit in the room the reply keeps beyond its values.
                    let shown = o.context_showing(|v| values.iter().any(|s| s.as_slice() == v));
                    context = self.inner.contexts.seal(bucket, key, &shown);
                }
                ValueReply {
                    found: o.is_found(),
                    truncated,
                    values,
                    context,
                    tombstones: o.siblings().iter().filter(|s| s.is_tombstone()).count() as u32,
                }
            }
            None => ValueReply {
                found: false,
                values: Vec::new(),
                context,
                tombstones: 0,
                truncated: false,
            },
        }
    }

    async fn write(&self, w: Write, forwarded: bool) -> Response {
        let plan = match self.plan(&w.bucket, &w.key, w.w) {
            Ok(p) => p,
            Err(e) => return Response::Error(e),
        };
        let handoff = self.inner.cfg.hinted_handoff.enabled;
        if w.sloppy && !handoff {
            return Response::error(
                ErrorKind::BadRequest,
                "sloppy quorum needs hinted handoff, which is switched off (hinted_handoff.enabled = false)",
            );
        }
        let ctx = match self.inner.contexts.open(&w.bucket, &w.key, &w.context) {
            Ok(c) => c,
            Err(e) => return Response::error(ErrorKind::BadRequest, e.to_string()),
        };
        let me = self.inner.cfg.id.clone();
        if !plan.pref.contains(&me) || !self.coordinates_writes() {
            if forwarded && plan.pref.contains(&me) {
                return Response::error(ErrorKind::Unavailable, NOT_TAKING_WRITES);
            }
            return self.forward(&plan, w.into_request(), forwarded).await;
        }
        // Replica writes outlive the request; they hold a share of the fan-out budget until
        // they end. A write that would pass it is refused before anything is applied.
        let _at_key = match self.inner.budgets.keys.enter(
            &data_key(plan.partition, &w.bucket, &w.key),
            w.value.as_ref().map_or(0, Vec::len) + ITEM_OVERHEAD,
        ) {
            Ok(p) => p,
            Err(e) => return Response::error(ErrorKind::Overloaded, e.to_string()),
        };
        let mut fanout = match self.charge_fanout(&plan, &w) {
            Ok(c) => c,
            Err(e) => {
                metrics::counter!("chorus_overloaded_total", "what" => e.what).increment(1);
                return Response::error(ErrorKind::Overloaded, e.to_string());
            }
        };
        // The coordinator writes locally first: the new version's dot is its own.
        let obj = match self
            .inner
            .replica
            .apply(
                data_key(plan.partition, &w.bucket, &w.key),
                Change::Update {
                    ctx: ctx.clone(),
                    value: w.value,
                },
            )
            .await
        {
            Ok(o) => o,
            Err(e @ ReplicaError::TooManySiblings { .. }) => {
                return Response::error(ErrorKind::BadRequest, e.to_string())
            }
            Err(e @ ReplicaError::TooLarge { .. }) => {
                return Response::error(ErrorKind::TooLarge, e.to_string())
            }
            Err(e) => {
                tracing::error!(error = %e, "local write failed");
                return Response::error(ErrorKind::Internal, format!("local write failed: {e}"));
            }
        };
        // The local write's dot is the highest of this node's actor in the result.
        let actor = self.inner.replica.actor();
        let dot = Dot::new(actor.clone(), obj.clock().get(actor));
        let new_context =
            self.inner
                .contexts
                .seal(&w.bucket, &w.key, &obj.written_context(&ctx, &dot));
        let item = Item {
            bucket: w.bucket,
            key: w.key,
            object: obj.encode(),
        };
        let fanout = {
            let per_replica = item_bytes(&item);
            self.inner.budgets.sizes.note(
                &data_key(plan.partition, &item.bucket, &item.key),
                item.object.len(),
            );
            let charged = fanout.bytes() / fanout.count().max(1);
            if per_replica > charged {
                // Larger than known before the write: admitted already, so the budget may
                // run over by this once; the next write to the key is charged in full.
                fanout.grow((per_replica - charged) * fanout.count());
            }
            Arc::new(fanout)
        };
        let mut sets = vec![Quorum::new(plan.pref.clone(), plan.needed)];
        let mut targets = plan.pref.clone();
        if let Some(also) = &plan.also {
            sets.push(Quorum::new(also.clone(), plan.needed));
            for n in also {
                if !targets.contains(n) {
                    targets.push(n.clone());
                }
            }
        }
        let mut q = Quorums::new(sets);
        q.ok(&me);
        let deadline = self.inner.cfg.timeouts.request;
        let (tx, mut rx) = mpsc::unbounded_channel::<(String, Result<(), String>)>();
        // Fallbacks (the next distinct nodes on the ring) stand in for down replicas.
        let mut fallbacks = plan
            .fallbacks
            .iter()
            .filter(|f| self.inner.members.is_up(f) && !targets.contains(f))
            .cloned()
            .collect::<Vec<_>>()
            .into_iter();
        let mut via = HashMap::new();
        for node in targets.into_iter().filter(|n| *n != me) {
            let stand_in = if self.inner.members.is_up(&node) {
                None
            } else if w.sloppy {
                match fallbacks.next() {
                    Some(f) => Some(f),
                    None => {
                        q.fail(&node);
                        self.spawn_local_hint(node, item.clone(), fanout.clone());
                        continue;
                    }
                }
            } else {
                q.fail(&node);
                if handoff {
                    self.spawn_local_hint(node, item.clone(), fanout.clone());
                }
                continue;
            };
            if let Some(f) = &stand_in {
                via.insert(node.clone(), f.clone());
            }
            let this = self.clone();
            let tx = tx.clone();
            let item = item.clone();
            let fanout = fanout.clone();
            // Runs to completion even after the client has its answer, holding its share of
            // the fan-out budget until then.
            tokio::spawn(async move {
                let _fanout = fanout;
                let (to, req) = match &stand_in {
                    Some(f) => (
                        f.as_str(),
                        PeerRequest::StoreHint {
                            target: node.clone(),
                            item,
                        },
                    ),
                    None => (node.as_str(), PeerRequest::Replicate(item)),
                };
                let r = match this.call_peer(to, &req, deadline).await {
                    Ok(PeerResponse::Ack) => Ok(()),
                    Ok(PeerResponse::Error(e)) => Err(e),
                    Ok(other) => Err(format!("unexpected answer {other:?}")),
                    Err(e) => Err(e.to_string()),
                };
                if let Err(e) = &r {
                    tracing::debug!(replica = %node, via = %to, error = %e, "replica missed a write");
                    if let (
                        true,
                        PeerRequest::Replicate(item) | PeerRequest::StoreHint { item, .. },
                    ) = (handoff, req)
                    {
                        if let Err(e) = this.store_hint(&node, item).await {
                            tracing::error!(replica = %node, error = %e, "could not store a hint");
                        }
                    }
                }
                let _ = tx.send((node, r));
            });
        }
        drop(tx);
        let step = |q: &mut Quorums, ev: Event<Result<(), String>>| match ev {
            Event::Answer(node, Ok(())) => q.ok(&node),
            Event::Answer(node, Err(_)) | Event::Down(node) => q.fail(&node),
            Event::Expired => q.expire(),
        };
        let outcome = self
            .drive(q.outcome(), deadline, &mut rx, step, &mut q, &via)
            .await;
        match outcome {
            Outcome::Met => Response::Written {
                context: new_context,
            },
            Outcome::Failed { needed, answered } => quorum_error("write", needed, answered),
            Outcome::Pending => Response::error(ErrorKind::Internal, "write left undecided"),
        }
    }

    /// Charges the fan-out budget for a write: one slot and the write's size for each
    /// replica, this one included (its apply waits in the replica writer's queue, which this
    /// bounds), or the "overloaded" answer.
    fn charge_fanout(&self, plan: &Plan, w: &Write) -> Result<Charge, Exhausted> {
        let me = &self.inner.cfg.id;
        let mut others: Vec<&String> = plan.pref.iter().chain(plan.also.iter().flatten()).collect();
        others.sort();
        others.dedup();
        let copies = others.into_iter().filter(|n| *n != me).count() + 1;
        // The object replicated is the key's whole version: its siblings too, when known.
        let known = self
            .inner
            .budgets
            .sizes
            .get(&data_key(plan.partition, &w.bucket, &w.key));
        let size = known
            + w.value.as_ref().map_or(0, Vec::len)
            + w.key.len()
            + w.bucket.len()
            + w.context.len()
            + ITEM_OVERHEAD;
        self.inner.budgets.fanout.try_charge(copies, size * copies)
    }

    fn spawn_local_hint(&self, target: String, item: Item, fanout: Arc<Charge>) {
        let this = self.clone();
        tokio::spawn(async move {
            let _fanout = fanout;
            if let Err(e) = this.store_hint(&target, item).await {
                tracing::error!(replica = %target, error = %e, "could not store a hint");
            }
        });
    }

    /// Hands a write to a replica of the key: only a replica may issue its version.
    async fn forward(&self, plan: &Plan, req: Request, forwarded: bool) -> Response {
        if forwarded {
            return Response::error(
                ErrorKind::Internal,
                "forwarded write reached a node outside the preference list (ring mismatch)",
            );
        }
        let deadline = self.inner.cfg.timeouts.request + Duration::from_secs(1);
        let wrapped = PeerRequest::Coordinate(req);
        let me = &self.inner.cfg.id;
        for node in plan
            .pref
            .iter()
            .filter(|n| *n != me && self.inner.members.is_up(n))
        {
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
        quorum_error("write", plan.needed, 0)
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
        via: &HashMap<String, String>,
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
                    // A slot a stand-in serves fails when the stand-in goes down.
                    let down: Vec<String> = machine
                        .waiting_on()
                        .into_iter()
                        .filter(|n| !self.inner.members.is_up(via.get(n).unwrap_or(n)))
                        .collect();
                    for n in down {
                        outcome = step(machine, Event::Down(n));
                    }
                }
            }
        }
        outcome
    }

    pub(crate) async fn call_peer(
        &self,
        node: &str,
        req: &PeerRequest,
        deadline: Duration,
    ) -> Result<PeerResponse, TransportError> {
        self.call_peer_metered(node, req, deadline, Priority::Client)
            .await
            .map(|(r, _)| r)
    }

    pub(crate) async fn call_peer_metered(
        &self,
        node: &str,
        req: &PeerRequest,
        deadline: Duration,
        priority: Priority,
    ) -> Result<(PeerResponse, u64), TransportError> {
        let addr = self
            .inner
            .members
            .address(node)
            .ok_or_else(|| TransportError::Address {
                peer: node.to_string(),
                addr: String::new(),
            })?;
        self.inner
            .transport
            .call_metered(node, &addr, req, deadline, priority)
            .await
    }

    fn ring_info(&self) -> Option<RingInfo> {
        let cfg = &self.inner.cfg;
        let view = self.inner.members.view();
        let ring = self.cluster().ring.clone()?;
        Some(RingInfo {
            down: view
                .iter()
                .filter(|m| !m.up)
                .map(|m| m.id.clone())
                .collect(),
            ring,
            addresses: view.into_iter().map(|m| (m.id, m.address)).collect(),
            default_n: cfg.cluster.n,
            bucket_n: cfg.cluster.buckets_n(),
        })
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

    fn status(&self) -> StatusInfo {
        let state = self.cluster();
        let shares = state
            .ring
            .as_ref()
            .map(|r| r.shares(self.inner.cfg.cluster.n))
            .unwrap_or_default();
        let hints = self.inner.hints.pending();
        let pending = state.pending();
        StatusInfo {
            node: self.inner.cfg.id.clone(),
            ring_version: state.ring.as_ref().map(|r| r.version()).unwrap_or(0),
            partitions: self.inner.cfg.cluster.partitions,
            transfers_pending: pending.len() as u64,
            transfers: pending
                .into_iter()
                .map(|(partition, node)| TransferStatus { partition, node })
                .collect(),
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
                    recovery: (m.status() == "up")
                        .then(|| self.recovery_of(&m.id))
                        .flatten(),
                    status: match m.status() {
                        "up" if self.recovery_of(&m.id).is_some() => "recovering".to_string(),
                        other => other.to_string(),
                    },
                    hints_pending: hints.get(&m.id).copied().unwrap_or(0),
                    id: m.id,
                    address: m.address,
                    zone: m.zone,
                })
                .collect(),
            convergence: self.inner.stats.convergence(&self.shared_partitions()),
            refused: self.inner.identity.recent(),
            workers: self
                .inner
                .workers
                .statuses()
                .into_iter()
                .map(|w| WorkerInfo {
                    name: w.name.to_string(),
                    state: w.state_name().to_string(),
                    progress: w.progress,
                    iterations: w.iterations,
                    errors: w.errors,
                    last_error: w.last_error,
                    ms_since_step: w.last_step.map(|t| t.elapsed().as_millis() as u64),
                })
                .collect(),
        }
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

/// Where a key lives and what a request needs.
struct Plan {
    partition: u32,
    /// The replicas that coordinate and answer reads.
    pref: Vec<String>,
    /// During a transition, the new replica set, which writes must also reach.
    also: Option<Vec<String>>,
    needed: usize,
    fallbacks: Vec<String>,
}

const NOT_JOINED: &str = "this node has not joined a cluster yet (no ring); check cluster.seeds";
const REMOVED: &str = "this node has left or was removed from the cluster";
const NOT_TAKING_WRITES: &str =
    "recovering: this node's start is not yet confirmed by a peer; hold a hint for it";
const NOT_SERVING: &str =
    "recovering: this node's data may be incomplete or stale, and is not served to peers";

/// A put or delete, as the coordinator sees it.
struct Write {
    bucket: Vec<u8>,
    key: Vec<u8>,
    /// `None` deletes.
    value: Option<Vec<u8>>,
    context: Vec<u8>,
    w: Level,
    sloppy: bool,
}

impl Write {
    fn into_request(self) -> Request {
        match self.value {
            Some(value) => Request::Put {
                bucket: self.bucket,
                key: self.key,
                value,
                context: self.context,
                w: self.w,
                sloppy: self.sloppy,
            },
            None => Request::Delete {
                bucket: self.bucket,
                key: self.key,
                context: self.context,
                w: self.w,
                sloppy: self.sloppy,
            },
        }
    }
}

/// Bytes a replica write holds beyond its object, key and bucket (request, frame, task).
const ITEM_OVERHEAD: usize = 256;

fn item_bytes(item: &Item) -> usize {
    item.object.len() + item.key.len() + item.bucket.len() + ITEM_OVERHEAD
}

/// A replica's answer to a read, as the read's state machine takes it.
type ReadAnswer = Result<Option<Object>, ReadFail>;

enum ReadFail {
    /// The replica is recovering: its answer doesn't count toward R.
    Recovering,
    Failed(String),
}

/// A replica's answer to a `Read`: its version of the key (even from a recovering replica),
/// or why there is none.
fn object_answer(r: Result<PeerResponse, TransportError>) -> Result<Option<Object>, String> {
    match r {
        Ok(PeerResponse::Object(None) | PeerResponse::Recovering(None)) => Ok(None),
        Ok(PeerResponse::Object(Some(b)) | PeerResponse::Recovering(Some(b))) => {
            Object::decode(&b).map(Some).map_err(|e| e.to_string())
        }
        Ok(PeerResponse::Error(e)) => Err(e),
        Ok(other) => Err(format!("unexpected answer {other:?}")),
        Err(e) => Err(e.to_string()),
    }
}

/// Sibling values with repeats removed, first occurrence kept: a write retried on another
/// coordinator can leave two siblings with the same bytes, and they are one value to the
/// user. The context still covers both.
fn distinct(values: Vec<&[u8]>) -> Vec<&[u8]> {
    let mut out: Vec<&[u8]> = Vec::with_capacity(values.len());
    for v in values {
        if !out.contains(&v) {
            out.push(v);
        }
    }
    out
}

/// Bytes a value costs in a reply beyond its own length.
const VALUE_OVERHEAD: usize = 16;
/// Room a read reply keeps for everything but the values and the context.
const REPLY_OVERHEAD: usize = 64 * 1024;

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

impl WaitingOn for Quorums {
    fn waiting_on(&self) -> Vec<String> {
        Quorums::waiting_on(self)
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
    metrics::counter!("chorus_quorum_failures_total", "op" => op.to_string()).increment(1);
    Response::error(
        ErrorKind::Quorum {
            needed: needed as u32,
            answered: answered as u32,
        },
        format!("{op} quorum not met: needed {needed} replicas, {answered} answered"),
    )
}

/// A read that found fewer than R whole replicas; names those that answered as recovering,
/// so the error says why rather than "not found".
fn read_quorum_error(needed: usize, answered: usize, recovering: &[String]) -> Response {
    if recovering.is_empty() {
        return quorum_error("read", needed, answered);
    }
    metrics::counter!("chorus_quorum_failures_total", "op" => "read").increment(1);
    Response::error(
        ErrorKind::Quorum {
            needed: needed as u32,
            answered: answered as u32,
        },
        format!(
            "read quorum not met: needed {needed} whole replicas, {answered} answered; recovering (lost or restored data, not counted until exchanged with the other replicas): {}",
            recovering.join(", ")
        ),
    )
}

pub(crate) fn op_name(req: &Request) -> &'static str {
    match req {
        Request::Get { .. } => "get",
        Request::Put { .. } => "put",
        Request::Delete { .. } => "delete",
        Request::GetReplica { .. } => "get_replica",
        Request::Ring => "ring",
        Request::Status => "status",
        Request::Repair => "repair",
        Request::Leave { .. } => "leave",
        Request::Remove { .. } => "remove",
    }
}
