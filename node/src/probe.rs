//! The failure detector: pings every peer on its own schedule, every
//! `failure_detector.interval`, and feeds the answers to the membership's view of who is
//! up (a peer silent for `failure_detector.down_after` is down; the first answer brings it
//! back). Each peer's ping runs on its own, so a peer that doesn't answer never delays the
//! pings of the others.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use tokio::task::{Id, JoinSet};
use tokio::time::Instant;

use crate::rpc::{PeerRequest, PeerResponse};
use crate::server::Node;
use crate::worker::{Worker, WorkerError, WorkerState};

pub(crate) struct FailureDetector {
    node: Node,
    ping: PeerRequest,
    interval: Duration,
    timeout: Duration,
    /// Every peer ever seen and when its next ping is due; `None` while one is in flight.
    /// A member that left stays: it still learns that it left from the answers it gets.
    due: BTreeMap<String, Option<Instant>>,
    /// Pings in flight.
    pings: JoinSet<()>,
    /// The peer and start of each ping in flight.
    started: HashMap<Id, (String, Instant)>,
    /// Pings that ended while waiting (and whether they panicked), for the next step.
    ended: Vec<(Id, bool)>,
}

impl FailureDetector {
    pub(crate) fn new(node: Node) -> FailureDetector {
        let cfg = &node.inner.cfg;
        let fd = &cfg.failure_detector;
        let ping = PeerRequest::Ping {
            from: cfg.id.clone(),
            cluster: cfg.cluster.id.clone(),
            settings: crate::identity::settings(cfg),
        };
        let timeout = fd
            .interval
            .max(Duration::from_millis(200))
            .min(fd.down_after)
            * 2;
        FailureDetector {
            interval: fd.interval,
            timeout,
            ping,
            node,
            due: BTreeMap::new(),
            pings: JoinSet::new(),
            started: HashMap::new(),
            ended: Vec::new(),
        }
    }

    /// A ping ended: the next one is due an interval after this one started, or at once
    /// if it took longer than that. Returns the peer.
    fn finished(&mut self, id: Id) -> Option<String> {
        let (peer, started) = self.started.remove(&id)?;
        let next = (started + self.interval).max(Instant::now());
        self.due.insert(peer.clone(), Some(next));
        Some(peer)
    }
}

impl Worker for FailureDetector {
    fn name(&self) -> &'static str {
        "failure-detector"
    }

    fn progress(&self) -> String {
        let members = &self.node.inner.members;
        let down = self.due.keys().filter(|p| !members.is_up(p)).count();
        format!("pinging {} peers, {down} down", self.due.len())
    }

    async fn step(&mut self) -> Result<WorkerState, WorkerError> {
        let now = Instant::now();
        for peer in self.node.inner.members.peers() {
            self.due.entry(peer).or_insert(Some(now));
        }
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
        for (peer, due) in self.due.iter_mut() {
            if due.is_some_and(|t| t <= now) {
                *due = None;
                let (node, ping, timeout, p) = (
                    self.node.clone(),
                    self.ping.clone(),
                    self.timeout,
                    peer.clone(),
                );
                let task = self
                    .pings
                    .spawn(async move { node.probe(&p, &ping, timeout).await });
                self.started.insert(task.id(), (peer.clone(), now));
            }
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
        let next = self.due.values().flatten().copied().min();
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
    async fn probe(&self, peer: &str, ping: &PeerRequest, timeout: Duration) {
        // The epoch changes on every start; a peer that lost data says so itself.
        let answer = match self.call_peer(peer, ping, timeout).await {
            Ok(PeerResponse::Pong { recovering, .. }) => {
                self.inner.identity.agree(peer);
                Some(recovering)
            }
            Ok(PeerResponse::Error(e)) if e.starts_with(crate::gossip::REFUSED) => {
                self.inner.identity.refuse(peer, &e, true);
                None
            }
            _ => None,
        };
        if answer.is_none() {
            // A restarted peer can't revive the cached connection.
            self.inner.transport.evict(peer);
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
