//! Connections to nodes: a cache, a memory of nodes that recently failed, and dialing
//! several nodes at once so that one dead address costs a short head start, not a connect
//! timeout.
//!
//! The first candidate gets [`HEAD_START`] to answer; then the next is dialed too, and so
//! on, and the first connection established wins (the "happy eyeballs" of RFC 8305). Dials
//! that lose the race run on in the background: a node that answers late is cached for the
//! next request, one that doesn't is remembered as down until [`DOWN_BACKOFF`] passes, and
//! later requests try it last.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use crate::link::Channel;
use crate::tls;

/// How long a node that failed (or lost a race without answering) goes to the back of the
/// line before it is tried first again.
pub(crate) const DOWN_BACKOFF: Duration = Duration::from_secs(5);
/// How long one candidate has to connect before the next is dialed as well.
const HEAD_START: Duration = Duration::from_millis(150);

pub(crate) struct Dialer {
    endpoint: quinn::Endpoint,
    quic: quinn::ClientConfig,
    connect_timeout: Duration,
    links: bool,
    conns: Mutex<HashMap<SocketAddr, Channel>>,
    down: Mutex<HashMap<SocketAddr, Instant>>,
}

impl Dialer {
    pub(crate) fn new(
        endpoint: quinn::Endpoint,
        quic: quinn::ClientConfig,
        connect_timeout: Duration,
        links: bool,
    ) -> Arc<Dialer> {
        Arc::new(Dialer {
            endpoint,
            quic,
            connect_timeout,
            links,
            conns: Mutex::new(HashMap::new()),
            down: Mutex::new(HashMap::new()),
        })
    }

    pub(crate) fn endpoint(&self) -> &quinn::Endpoint {
        &self.endpoint
    }

    /// `targets` in order, with nodes that recently failed moved to the end.
    pub(crate) fn order(&self, targets: &[SocketAddr]) -> Vec<SocketAddr> {
        let down = lock(&self.down);
        let recently = |t: &SocketAddr| down.get(t).is_some_and(|at| at.elapsed() < DOWN_BACKOFF);
        let (mut up, later): (Vec<SocketAddr>, Vec<SocketAddr>) =
            targets.iter().partition(|t| !recently(t));
        up.extend(later);
        up
    }

    /// A node took a request: it is up.
    pub(crate) fn mark_up(&self, addr: SocketAddr) {
        lock(&self.down).remove(&addr);
    }

    /// A node failed a request: skip it for a while and drop its connection.
    pub(crate) fn mark_down(&self, addr: SocketAddr) {
        lock(&self.down).insert(addr, Instant::now());
        lock(&self.conns).remove(&addr);
    }

    /// Drops a cached connection that failed (the node may still be up).
    pub(crate) fn forget(&self, addr: SocketAddr) {
        lock(&self.conns).remove(&addr);
    }

    /// A connection to the first of `candidates` to answer, dialing them with staggered
    /// starts. Candidates that failed to connect are added to `failed` (and remembered as
    /// down); `None` when all of them failed.
    pub(crate) async fn first(
        self: &Arc<Self>,
        candidates: &[SocketAddr],
        failed: &mut Vec<(SocketAddr, String)>,
    ) -> Option<(SocketAddr, Channel)> {
        if let Some(&first) = candidates.first() {
            if let Some(c) = self.cached(first) {
                return Some((first, c));
            }
        }
        let (tx, mut rx) = mpsc::unbounded_channel();
        let mut next = 0;
        let mut pending = 0usize;
        loop {
            if next < candidates.len() && pending == 0 {
                self.spawn_dial(candidates[next], tx.clone());
                next += 1;
                pending += 1;
            }
            if pending == 0 {
                return None;
            }
            let more = next < candidates.len();
            tokio::select! {
                Some((addr, r)) = rx.recv() => {
                    pending -= 1;
                    match r {
                        Ok(conn) => {
                            // Those dialed earlier didn't answer in their head start:
                            // later requests try them last until they answer.
                            let mut down = lock(&self.down);
                            for slow in candidates[..next].iter().filter(|a| **a != addr) {
                                if !failed.iter().any(|(f, _)| f == slow) {
                                    down.entry(*slow).or_insert_with(Instant::now);
                                }
                            }
                            return Some((addr, conn));
                        }
                        Err(why) => failed.push((addr, why)),
                    }
                }
                _ = tokio::time::sleep(HEAD_START), if more => {
                    self.spawn_dial(candidates[next], tx.clone());
                    next += 1;
                    pending += 1;
                }
            }
        }
    }

    fn cached(&self, addr: SocketAddr) -> Option<Channel> {
        lock(&self.conns)
            .get(&addr)
            .filter(|c| c.close_reason().is_none())
            .cloned()
    }

    /// Dials `addr` in its own task, which runs to the end even if another dial wins: its
    /// outcome updates the cache and the down list, then goes to `tx` if anyone listens.
    fn spawn_dial(
        self: &Arc<Self>,
        addr: SocketAddr,
        tx: mpsc::UnboundedSender<(SocketAddr, Result<Channel, String>)>,
    ) {
        if let Some(c) = self.cached(addr) {
            let _ = tx.send((addr, Ok(c)));
            return;
        }
        let this = self.clone();
        tokio::spawn(async move {
            let r = this.dial(addr).await;
            match &r {
                Ok(c) => {
                    lock(&this.conns).insert(addr, c.clone());
                    this.mark_up(addr);
                }
                Err(_) => {
                    lock(&this.down).insert(addr, Instant::now());
                }
            }
            let _ = tx.send((addr, r));
        });
    }

    async fn dial(&self, addr: SocketAddr) -> Result<Channel, String> {
        let connecting = self
            .endpoint
            .connect_with(self.quic.clone(), addr, tls::NODE_NAME)
            .map_err(|e| e.to_string())?;
        tokio::time::timeout(self.connect_timeout, connecting)
            .await
            .map_err(|_| format!("no answer within {:?}", self.connect_timeout))?
            .map(|c| Channel::new(c, self.links))
            .map_err(|e| e.to_string())
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding these locks can't leave their maps inconsistent, so go on.
    m.lock().unwrap_or_else(|p| p.into_inner())
}
