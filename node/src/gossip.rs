//! Membership gossip: every node periodically swaps its cluster state with a few peers and
//! merges what comes back; the claimant turns member changes into ring changes. Also the
//! start-up state of a node and the `leave`/`remove` requests.

use chorus_client::proto::{ErrorKind, Response};
use chorus_ring::{Member, Ring};

use crate::call::{self, CallError};
use crate::config::NodeConfig;
use crate::membership::{ClusterState, MemberInfo, MemberState};
use crate::network::Priority;
use crate::rpc::{PeerError, PeerResponse};
use crate::server::{Node, ServerError};
use crate::storage::{Op, Storage, StorageError, Table};
use crate::worker::{Worker, WorkerError, WorkerState};

pub(crate) use crate::persist::META_STATE;

/// Refuses a data directory that belongs to another cluster, or whose cluster was created
/// with other settings than this node's config, before anything else touches it.
pub(crate) fn check_identity(cfg: &NodeConfig, storage: &dyn Storage) -> Result<(), ServerError> {
    match storage
        .get(Table::Meta, META_STATE)?
        .as_deref()
        .map(ClusterState::decode)
    {
        Some(Some(stored)) => {
            crate::identity::check_stored(cfg, &stored).map_err(ServerError::Identity)
        }
        _ => Ok(()),
    }
}

/// The state a node starts with: what it persisted, else the initial members of its
/// config (the first ring), else just itself, joining through its seeds. Its own entry is
/// brought up to date: a new address bumps its incarnation so the change wins everywhere.
pub(crate) async fn initial_state(
    cfg: &NodeConfig,
    storage: &dyn Storage,
) -> Result<ClusterState, ServerError> {
    let stored = storage.get(Table::Meta, META_STATE)?;
    let mut state = match stored.as_deref().map(ClusterState::decode) {
        Some(Some(s)) => s,
        Some(None) => {
            return Err(ServerError::Storage(StorageError::Read(
                "stored cluster state is unreadable".into(),
            )))
        }
        None if !cfg.cluster.members.is_empty() => {
            let members: Vec<MemberInfo> = cfg
                .cluster
                .members
                .iter()
                .map(|m| MemberInfo {
                    id: m.id.clone(),
                    address: m.address.clone(),
                    zone: m.zone.clone(),
                    state: MemberState::Up,
                    incarnation: 0,
                    generation: 0,
                })
                .collect();
            let ring = Ring::new(
                cfg.cluster.partitions,
                cfg.max_n(),
                members
                    .iter()
                    .map(|m| Member {
                        id: m.id.clone(),
                        zone: m.zone.clone(),
                    })
                    .collect(),
            )?;
            ClusterState {
                members: members.into_iter().map(|m| (m.id.clone(), m)).collect(),
                ring: Some(ring),
                ..Default::default()
            }
        }
        None => ClusterState::default(),
    };
    state.cluster_id = cfg.cluster.id.clone();
    state.settings = crate::identity::settings(cfg);
    if let Some(ring) = &state.ring {
        if ring.partition_count() != cfg.cluster.partitions {
            return Err(ServerError::Admin(format!(
                "cluster.partitions is {} but this node's ring has {}; the partition count is fixed when a cluster is created",
                cfg.cluster.partitions,
                ring.partition_count()
            )));
        }
    }
    let address = cfg.advertised();
    match state.members.get_mut(&cfg.id) {
        Some(me) => {
            if me.address != address || me.zone != cfg.zone {
                me.address = address;
                me.zone = cfg.zone.clone();
                me.incarnation += 1;
            }
        }
        None => {
            state.members.insert(
                cfg.id.clone(),
                MemberInfo {
                    id: cfg.id.clone(),
                    address,
                    zone: cfg.zone.clone(),
                    state: MemberState::Joining,
                    incarnation: 1,
                    generation: 0,
                },
            );
        }
    }
    storage.write(vec![Op::Put(
        Table::Meta,
        META_STATE.to_vec(),
        state.encode(),
    )])?;
    Ok(state)
}

/// A small xorshift for picking gossip partners; no need for cryptographic randomness.
fn next_random(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}

/// Gossip as a background worker: a round every `gossip.interval`.
pub(crate) struct Gossip {
    node: Node,
    seed: u64,
    /// Partners of the last round, and whether it went to the seeds.
    partners: usize,
    seeds: bool,
}

impl Gossip {
    pub(crate) fn new(node: Node) -> Gossip {
        Gossip {
            node,
            seed: crate::hints::now_ms() | 1,
            partners: 0,
            seeds: false,
        }
    }
}

impl Worker for Gossip {
    fn name(&self) -> &'static str {
        "gossip"
    }

    fn progress(&self) -> String {
        let seeds = if self.seeds { " and the seeds" } else { "" };
        format!("last round: {} peers{seeds}", self.partners)
    }

    async fn step(&mut self) -> Result<WorkerState, WorkerError> {
        (self.partners, self.seeds) = self.node.gossip_round(&mut self.seed).await;
        Ok(WorkerState::Idle)
    }

    async fn wait_for_work(&mut self) {
        tokio::time::sleep(self.node.inner.cfg.gossip.interval).await;
    }
}

impl Node {
    /// Swaps state with up to three peers (and the seeds while this node knows no ring or
    /// no peer), then lets the claimant plan. Returns the partners and whether the seeds
    /// were asked.
    async fn gossip_round(&self, seed: &mut u64) -> (usize, bool) {
        // A member that left and is gone needs no more news.
        let state = self.cluster();
        let mut peers: Vec<String> = self
            .inner
            .members
            .peers()
            .into_iter()
            .filter(|p| {
                self.inner.members.is_up(p)
                    || state
                        .members
                        .get(p)
                        .is_some_and(|m| m.state != MemberState::Left)
            })
            .collect();
        // Live peers first; a few at random each round spreads changes in O(log n) rounds.
        peers.sort_by_key(|p| (!self.inner.members.is_up(p), next_random(seed)));
        let partners: Vec<String> = peers.into_iter().take(3).collect();
        let knows_a_ring = self.cluster().ring.is_some();
        for p in &partners {
            self.gossip_with(p).await;
        }
        let seeds = !knows_a_ring || partners.is_empty();
        if seeds {
            for s in self.inner.cfg.cluster.seeds.clone() {
                self.gossip_with_seed(&s).await;
            }
        }
        self.plan_if_claimant().await;
        (partners.len(), seeds)
    }

    async fn gossip_with(&self, peer: &str) {
        let req = call::Gossip(Box::new((*self.cluster()).clone()));
        let deadline = self.inner.cfg.timeouts.request;
        match self.call(peer, req, deadline, Priority::Client).await {
            Ok(theirs) => self.merge_from(peer, &theirs).await,
            Err(CallError::Peer(e @ PeerError::WrongCluster { .. })) => {
                self.inner.identity.refuse(peer, &e.to_string(), true)
            }
            Err(_) => {}
        }
    }

    async fn gossip_with_seed(&self, addr: &str) {
        let req = call::Gossip(Box::new((*self.cluster()).clone()));
        let deadline = self.inner.cfg.timeouts.request;
        let seed = format!("seed {addr}");
        match crate::network::call_seed(&*self.inner.network, addr, req, deadline).await {
            Ok(theirs) => self.merge_from(&seed, &theirs).await,
            Err(CallError::Peer(e @ PeerError::WrongCluster { .. })) => {
                self.inner.identity.refuse(&seed, &e.to_string(), true)
            }
            Err(e @ (CallError::Peer(_) | CallError::Unexpected { .. })) => {
                tracing::debug!(seed = addr, error = %e, "seed refused gossip")
            }
            Err(e) => tracing::debug!(seed = addr, error = %e, "seed unreachable"),
        }
    }

    /// Merges a peer's answer, unless it comes from another cluster or disagrees on the
    /// cluster-wide settings.
    async fn merge_from(&self, peer: &str, theirs: &ClusterState) {
        let cfg = &self.inner.cfg;
        if let Some(why) = crate::identity::mismatch(cfg, &theirs.cluster_id, &theirs.settings) {
            self.inner.identity.refuse(peer, &why, false);
            return;
        }
        self.inner.identity.agree(peer);
        self.merge_state(theirs).await;
    }

    pub(crate) async fn receive_gossip(&self, theirs: ClusterState) -> PeerResponse {
        let cfg = &self.inner.cfg;
        let sender = theirs.members.keys().cloned().collect::<Vec<_>>().join(",");
        let sender = format!("gossip from [{sender}]");
        if let Some(why) = crate::identity::mismatch(cfg, &theirs.cluster_id, &theirs.settings) {
            self.inner.identity.refuse(&sender, &why, false);
            return PeerResponse::Error(PeerError::WrongCluster {
                by: cfg.id.clone(),
                why,
            });
        }
        self.inner.identity.agree(&sender);
        if let Some(r) = &theirs.ring {
            if r.partition_count() != self.inner.cfg.cluster.partitions {
                return PeerResponse::Error(PeerError::BadRequest(format!(
                    "ring with {} partitions; this cluster has {}",
                    r.partition_count(),
                    self.inner.cfg.cluster.partitions
                )));
            }
        }
        self.merge_state(&theirs).await;
        PeerResponse::Gossip(Box::new((*self.cluster()).clone()))
    }

    async fn merge_state(&self, theirs: &ClusterState) {
        if theirs
            .ring
            .as_ref()
            .is_some_and(|r| r.partition_count() != self.inner.cfg.cluster.partitions)
        {
            return;
        }
        let prior = self.cluster();
        let before = prior.ring.as_ref().map(|r| r.version());
        let merged = self.inner.members.update(|s| s.merge(theirs));
        self.recovery_gossip(theirs, &prior).await;
        if merged {
            let after = self.cluster().ring.as_ref().map(|r| r.version());
            if before != after {
                tracing::info!(from = ?before, to = ?after, "adopted a new ring");
            }
            self.persist_state().await;
        }
    }

    /// Persists the cluster state, so a restart resumes where the cluster was.
    pub(crate) async fn persist_state(&self) {
        let written = self
            .inner
            .persist
            .write(|| Some(self.cluster().encode()), || {})
            .await;
        if let Err(e) = written {
            tracing::error!(error = %e, "could not persist the cluster state");
        }
    }

    /// The claimant applies the planner's next step, if one is due.
    async fn plan_if_claimant(&self) {
        let state = self.cluster();
        let me = &self.inner.cfg.id;
        if state.claimant(|id| self.inner.members.is_up(id)).as_deref() != Some(me.as_str()) {
            return;
        }
        match state.plan() {
            Ok(Some(next)) => {
                let v = next.ring.as_ref().map(|r| r.version());
                let pending = next.pending().len();
                self.inner.members.update(|s| {
                    *s = next;
                    true
                });
                tracing::info!(ring = ?v, transfers = pending, "planned a cluster change");
                self.persist_state().await;
            }
            Ok(None) => {}
            Err(e) => tracing::error!(error = %e, "could not plan a ring change"),
        }
    }

    /// `leave` (Leaving) and `remove` (Left): accepted here, spread by gossip, carried out
    /// by the claimant. Without `force`, `remove` refuses a live node (`leave` retires one
    /// without losing copies) and neither goes below the largest N of any bucket.
    pub(crate) fn change_member(&self, node: &str, to: MemberState, force: bool) -> Response {
        let state = self.cluster();
        let Some(m) = state.members.get(node) else {
            return Response::error(ErrorKind::BadRequest, format!("unknown node {node:?}"));
        };
        if m.state >= to {
            return Response::Ok;
        }
        if to == MemberState::Leaving && state.active().len() <= 1 {
            return Response::error(
                ErrorKind::BadRequest,
                "the last member can't leave: nowhere to move its data",
            );
        }
        if to == MemberState::Left && !force && self.inner.members.is_up(node) {
            return Response::error(
                ErrorKind::BadRequest,
                format!("{node} is up: remove is for dead nodes and drops its copies at once; retire a live node with `chorus leave {node}`, or pass --force"),
            );
        }
        let remaining = state.active().iter().filter(|a| a.id != node).count();
        let n = self.inner.cfg.max_n();
        if !force && remaining < n {
            return Response::error(
                ErrorKind::BadRequest,
                format!("without {node} only {remaining} members would remain, fewer than N={n}: keys would keep fewer than N copies; add a node first, or pass --force"),
            );
        }
        self.inner
            .members
            .update(|s| match s.members.get_mut(node) {
                Some(m) if m.state < to => {
                    m.state = to;
                    true
                }
                _ => false,
            });
        tracing::info!(node, state = to.name(), "membership change accepted");
        let this = self.clone();
        tokio::spawn(async move { this.persist_state().await });
        Response::Ok
    }
}
