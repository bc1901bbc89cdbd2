//! The failure detector: pings every peer on its own schedule, every
//! `failure_detector.interval`, and feeds the answers to the membership's view of who is
//! up (a peer silent for `failure_detector.down_after` is down; the first answer brings it
//! back). Each peer's ping runs on its own, so a peer that doesn't answer never delays the
//! pings of the others. The schedule and the up/down rule are
//! `chorus_core::failure_detector`; this runs the pings.

use std::collections::HashMap;
use std::time::Duration;

use chorus_core::failure_detector::{ping_timeout, Schedule};

use tokio::task::{Id, JoinSet};
use tokio::time::Instant;

use crate::call::{CallError, Ping, Pong};
use crate::network::Priority;
use crate::rpc::PeerError;
use crate::server::Node;
use crate::worker::{Worker, WorkerError, WorkerState};

pub(crate) struct FailureDetector {
    node: Node,
    ping: Ping,
    interval: Duration,
    timeout: Duration,
    /// The schedule's times are measured from here.
    origin: Instant,
    schedule: Schedule,
    /// Pings in flight.
    pings: JoinSet<()>,
    /// The peer of each ping in flight.
    started: HashMap<Id, String>,
    /// Pings that ended while waiting (and whether they panicked), for the next step.
    ended: Vec<(Id, bool)>,
}

impl FailureDetector {
    pub(crate) fn new(node: Node) -> FailureDetector {
        let cfg = &node.inner.cfg;
        let fd = &cfg.failure_detector;
        let ping = Ping {
            from: cfg.id.clone(),
            cluster: cfg.cluster.id.clone(),
            settings: crate::identity::settings(cfg),
        };
        let (interval, timeout) = (fd.interval, ping_timeout(fd.interval, fd.down_after));
        FailureDetector {
            interval,
            timeout,
            ping,
            node,
            origin: Instant::now(),
            schedule: Schedule::new(interval),
            pings: JoinSet::new(),
            started: HashMap::new(),
            ended: Vec::new(),
        }
    }

    fn now(&self) -> Duration {
        Instant::now().saturating_duration_since(self.origin)
    }

    /// A ping ended; returns its peer.
    fn finished(&mut self, id: Id) -> Option<String> {
        let peer = self.started.remove(&id)?;
        let now = self.now();
        self.schedule.finished(&peer, now);
        Some(peer)
    }
}

impl Worker for FailureDetector {
    fn name(&self) -> &'static str {
        "failure-detector"
    }

    fn progress(&self) -> String {
        let members = &self.node.inner.members;
        let peers: Vec<&str> = self.schedule.peers().collect();
        let down = peers.iter().filter(|p| !members.is_up(p)).count();
        format!("pinging {} peers, {down} down", peers.len())
    }

    async fn step(&mut self) -> Result<WorkerState, WorkerError> {
        let peers = self.node.inner.members.peers();
        let now = self.now();
        self.schedule.track(peers.iter().map(String::as_str), now);
        let mut ended = std::mem::take(&mut self.ended);
        while let Some(done) = self.pings.try_join_next_with_id() {
            ended.push(joined(done));
        }
        // A ping that panicked is reported; its peer is pinged again like any other.
        let mut lost = Vec::new();
        for (id, panicked) in ended {
            let peer = self.finished(id);
            if panicked {
                lost.extend(peer);
            }
        }
        for peer in self.schedule.start_due(now) {
            let (node, ping, timeout, p) = (
                self.node.clone(),
                self.ping.clone(),
                self.timeout,
                peer.clone(),
            );
            let task = self
                .pings
                .spawn(async move { node.probe(&p, &ping, timeout).await });
            self.started.insert(task.id(), peer);
        }
        if lost.is_empty() {
            Ok(WorkerState::Idle)
        } else {
            Err(format!("pinging {} failed unexpectedly", lost.join(", ")).into())
        }
    }

    async fn wait_for_work(&mut self) {
        // At most an interval, so that new members are pinged soon after gossip brings them.
        let latest = Instant::now() + self.interval;
        let next = self.schedule.next_due().map(|t| self.origin + t);
        let next = next.map_or(latest, |t| t.min(latest));
        tokio::select! {
            Some(done) = self.pings.join_next_with_id(), if !self.pings.is_empty() => {
                self.ended.push(joined(done));
            }
            _ = tokio::time::sleep_until(next) => {}
        }
    }
}

/// A ping task's id, and whether it panicked.
fn joined(done: Result<(Id, ()), tokio::task::JoinError>) -> (Id, bool) {
    match done {
        Ok((id, ())) => (id, false),
        Err(e) => (e.id(), true),
    }
}

impl Node {
    /// Pings `peer` once and records the outcome.
    async fn probe(&self, peer: &str, ping: &Ping, timeout: Duration) {
        // The epoch changes on every start; a peer that lost data says so itself.
        let answer = match self
            .call(peer, ping.clone(), timeout, Priority::Client)
            .await
        {
            Ok(Pong { recovering, .. }) => {
                self.inner.identity.agree(peer);
                Some(recovering)
            }
            Err(CallError::Peer(e @ PeerError::WrongCluster { .. })) => {
                self.inner.identity.refuse(peer, &e.to_string(), true);
                None
            }
            Err(_) => None,
        };
        if answer.is_none() {
            // A restarted peer can't revive the cached connection.
            self.inner.network.evict(peer);
        }
        let down_after = self.inner.cfg.failure_detector.down_after;
        self.inner.members.observe(
            peer,
            answer.is_some(),
            std::time::Instant::now(),
            down_after,
        );
        if let Some(recovering) = answer {
            self.observe_peer_recovery(peer, recovering);
        }
    }
}
