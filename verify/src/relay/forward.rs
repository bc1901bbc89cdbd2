//! One relay's forwarding: its sessions, delay line and the tasks that move datagrams
//! between sources and the node, each judged by the fault rules.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};

use super::rules::{decide, Rng};
use super::{Party, Shared, BUF_SIZE, ERROR_BACKOFF};

/// The relay in front of one node.
pub(super) struct Relay {
    pub(super) node: usize,
    /// The node's real address.
    pub(super) upstream: SocketAddr,
    /// Bound on the relay address.
    pub(super) downstream: UdpSocket,
    pub(super) shared: Arc<Shared>,
    /// Sessions by downstream source address.
    pub(super) sessions: Mutex<HashMap<SocketAddr, Arc<Session>>>,
    pub(super) rng: Rng,
    /// Origin of the sessions' activity timestamps.
    pub(super) epoch: Instant,
    /// Queue of delayed datagrams, in arrival order (see [`delay_line_loop`]).
    pub(super) delay_line: mpsc::UnboundedSender<Delayed>,
}

/// A datagram waiting on a delay line.
pub(super) struct Delayed {
    due: tokio::time::Instant,
    dest: Dest,
    pub(super) data: Vec<u8>,
}

pub(super) struct Session {
    /// Ephemeral socket connected to the node's real address.
    pub(super) socket: UdpSocket,
    /// Milliseconds since the relay's epoch of the last datagram either way.
    last_active: AtomicU64,
}

/// Where a forwarded datagram goes.
pub(super) enum Dest {
    /// To the node, through a session socket.
    Upstream(Arc<Session>),
    /// Back to a source, from the downstream socket.
    Downstream(SocketAddr),
}

impl Relay {
    fn verdict(&self, from: Party, to: Party) -> Option<Duration> {
        #[cfg(test)]
        if self.shared.bypass.load(Ordering::Relaxed) {
            return Some(Duration::ZERO);
        }
        let faults = self.shared.read_faults();
        decide(&faults, from, to, || self.rng.next_f64())
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    pub(super) fn sessions(&self) -> MutexGuard<'_, HashMap<SocketAddr, Arc<Session>>> {
        self.sessions.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The session of `src`, opened (with its reply task) if there is none.
    fn session_for(self: &Arc<Self>, src: SocketAddr, party: Party) -> io::Result<Arc<Session>> {
        let now = self.now_ms();
        if let Some(session) = self.sessions().get(&src) {
            // Under the lock, so an expiry check cannot miss this activity.
            session.last_active.store(now, Ordering::Relaxed);
            return Ok(session.clone());
        }
        let socket = self.open_upstream()?;
        let session = Arc::new(Session {
            socket,
            last_active: AtomicU64::new(now),
        });
        // Only this relay's downstream loop opens sessions, so none appeared meanwhile.
        self.sessions().insert(src, session.clone());
        tokio::spawn(session_loop(self.clone(), src, party, session.clone()));
        Ok(session)
    }

    /// An ephemeral socket connected to the node: on loopback when the node is on loopback
    /// (or on an unspecified address, reached through loopback), else on any interface.
    fn open_upstream(&self) -> io::Result<UdpSocket> {
        let ip = self.upstream.ip();
        let loopback: IpAddr = match ip {
            IpAddr::V4(_) => Ipv4Addr::LOCALHOST.into(),
            IpAddr::V6(_) => Ipv6Addr::LOCALHOST.into(),
        };
        let (bind_ip, target) = if ip.is_unspecified() {
            (loopback, SocketAddr::new(loopback, self.upstream.port()))
        } else if ip.is_loopback() {
            (loopback, self.upstream)
        } else {
            let any: IpAddr = match ip {
                IpAddr::V4(_) => Ipv4Addr::UNSPECIFIED.into(),
                IpAddr::V6(_) => Ipv6Addr::UNSPECIFIED.into(),
            };
            (any, self.upstream)
        };
        let socket = std::net::UdpSocket::bind(SocketAddr::new(bind_ip, 0))?;
        socket.connect(target)?;
        socket.set_nonblocking(true)?;
        UdpSocket::from_std(socket)
    }

    /// Drops `session` of `src` if it has been idle for the timeout; true if dropped.
    fn expire(&self, src: SocketAddr, session: &Arc<Session>) -> bool {
        let mut sessions = self.sessions();
        let idle = self
            .now_ms()
            .saturating_sub(session.last_active.load(Ordering::Relaxed));
        if u128::from(idle) < self.shared.idle_timeout.as_millis() {
            return false;
        }
        if sessions.get(&src).is_some_and(|s| Arc::ptr_eq(s, session)) {
            sessions.remove(&src);
        }
        true
    }

    /// Sends `data` to `dest` now, or queues it on the relay's delay line to be sent
    /// after `delay`.
    async fn deliver(&self, dest: Dest, data: &[u8], delay: Duration) {
        if delay.is_zero() {
            self.send(&dest, data).await;
            return;
        }
        let due = tokio::time::Instant::now() + delay;
        let data = data.to_vec();
        // Fails only once the delay line has stopped, i.e. on shutdown.
        let _ = self.delay_line.send(Delayed { due, dest, data });
    }

    pub(super) async fn send(&self, dest: &Dest, data: &[u8]) {
        let sent = match dest {
            Dest::Upstream(session) => session.socket.send(data).await,
            Dest::Downstream(src) => self.downstream.send_to(data, *src).await,
        };
        match sent {
            Ok(_) => Shared::count(&self.shared.forwarded),
            Err(_) => Shared::count(&self.shared.errors),
        }
    }
}

/// Resolves once the net is shut down.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    // An error means the sender is gone, which also means stop.
    let _ = stop.wait_for(|stopped| *stopped).await;
}

/// Waits a little after an unexpected receive error. Errors caused by ICMP messages
/// (a node not listening) say nothing about our socket, and are skipped at once.
async fn backoff(error: &io::Error) {
    match error.kind() {
        io::ErrorKind::ConnectionRefused
        | io::ErrorKind::ConnectionReset
        | io::ErrorKind::Interrupted
        | io::ErrorKind::WouldBlock => {}
        _ => tokio::time::sleep(ERROR_BACKOFF).await,
    }
}

/// Sends the delayed datagrams of one relay (both directions), each when due, in the order
/// they were queued. One queue rather than a task per datagram, so that delay never
/// reorders datagrams: a spurious reordering makes QUIC declare packets lost and shrink
/// its congestion window. When the delay is lowered, datagrams queued later wait for those
/// queued before them, like on a real link.
pub(super) async fn delay_line_loop(
    relay: Arc<Relay>,
    mut delayed: mpsc::UnboundedReceiver<Delayed>,
) {
    let mut stop = relay.shared.stop.subscribe();
    let stop = stopped(&mut stop);
    tokio::pin!(stop);
    loop {
        let item = tokio::select! {
            biased;
            () = &mut stop => break,
            item = delayed.recv() => item,
        };
        // The relay holds the sender, so the queue never closes while this task runs.
        let Some(Delayed { due, dest, data }) = item else {
            break;
        };
        tokio::select! {
            biased;
            () = &mut stop => break,
            () = tokio::time::sleep_until(due) => {}
        }
        relay.send(&dest, &data).await;
    }
}

/// Receives on the relay address and forwards to the node.
pub(super) async fn downstream_loop(relay: Arc<Relay>) {
    let mut stop = relay.shared.stop.subscribe();
    let stop = stopped(&mut stop);
    tokio::pin!(stop);
    let mut buf = vec![0u8; BUF_SIZE];
    let to = Party::Node(relay.node);
    loop {
        let received = tokio::select! {
            biased;
            () = &mut stop => break,
            received = relay.downstream.recv_from(&mut buf) => received,
        };
        let (len, src) = match received {
            Ok(received) => received,
            Err(error) => {
                backoff(&error).await;
                continue;
            }
        };
        let from = relay.shared.party_of(src);
        let Some(delay) = relay.verdict(from, to) else {
            Shared::count(&relay.shared.dropped);
            continue;
        };
        match relay.session_for(src, from) {
            Ok(session) => {
                let data = buf.get(..len).unwrap_or_default();
                relay.deliver(Dest::Upstream(session), data, delay).await;
            }
            Err(_) => Shared::count(&relay.shared.errors),
        }
    }
}

/// Receives the node's replies on one session and returns them to the session's source.
async fn session_loop(relay: Arc<Relay>, src: SocketAddr, party: Party, session: Arc<Session>) {
    let mut stop = relay.shared.stop.subscribe();
    let stop = stopped(&mut stop);
    tokio::pin!(stop);
    let mut buf = vec![0u8; BUF_SIZE];
    let from = Party::Node(relay.node);
    loop {
        let received = tokio::select! {
            biased;
            () = &mut stop => break,
            received = tokio::time::timeout(relay.shared.idle_timeout, session.socket.recv(&mut buf)) => received,
        };
        match received {
            Err(_idle) => {
                if relay.expire(src, &session) {
                    break;
                }
            }
            Ok(Err(error)) => {
                if error.kind() == io::ErrorKind::ConnectionRefused {
                    Shared::count(&relay.shared.errors);
                }
                backoff(&error).await;
            }
            Ok(Ok(len)) => {
                session.last_active.store(relay.now_ms(), Ordering::Relaxed);
                match relay.verdict(from, party) {
                    Some(delay) => {
                        let data = buf.get(..len).unwrap_or_default();
                        relay.deliver(Dest::Downstream(src), data, delay).await;
                    }
                    None => Shared::count(&relay.shared.dropped),
                }
            }
        }
    }
}
