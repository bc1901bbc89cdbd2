//! A fault-injecting UDP relay network for partition tests without root or network
//! namespaces.
//!
//! Every node gets a relay in front of it: the node listens on its real address but
//! advertises the relay's address to peers and clients. A relay forwards datagrams both
//! ways, and one rule set shared by all relays ([`Faults`]) decides per datagram, from the
//! directed pair (sender, receiver), whether the datagram is dropped, randomly lost or
//! delayed.
//!
//! How a relay works:
//!
//! * It owns a *downstream* socket bound on the relay address. Each distinct source address
//!   seen there gets a *session*: an upstream socket on an ephemeral port, connected to the
//!   node's real address. Datagrams from the source go out on the session socket; whatever
//!   the node sends back to the session socket is returned to the source from the
//!   downstream socket, so the source sees replies coming from the address it sent to.
//! * The sender of a datagram is identified by its source address: a node sends all of its
//!   traffic from its real listen socket (one QUIC endpoint, one socket), so a source equal
//!   to some node's real address is that [`Party::Node`]; any other source is a
//!   [`Party::Client`]. A datagram arriving at node `i`'s relay from source party `p` is
//!   judged as `p → Node(i)`; a reply from node `i` back to that source as `Node(i) → p`.
//!   Every datagram crosses exactly one relay once, so a delay is a one-way delay.
//! * Delayed datagrams wait on a per-relay FIFO delay line served by its own task, so the
//!   relay loops never block and a constant delay never reorders datagrams. Random loss
//!   uses a xorshift generator per relay, seeded from the node index.
//! * Sessions idle for longer than 60 s are dropped (a later datagram from the same source
//!   opens a new one, on a new ephemeral port).

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{
    Arc, Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard, Weak,
};
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// Receive buffer size: larger than any UDP payload, so nothing is ever truncated.
const BUF_SIZE: usize = 64 * 1024;
/// Sessions idle for longer than this are dropped.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Pause after an unexpected socket error, so a persistent error cannot spin a loop.
const ERROR_BACKOFF: Duration = Duration::from_millis(5);

/// Who sent a datagram: a node (by index) or a client.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Party {
    Node(usize),
    Client,
}

/// The fault rules, shared by every relay of a [`RelayNet`] and read per datagram.
#[derive(Clone, Debug, Default)]
pub struct Faults {
    /// Directed pairs (from, to) whose datagrams are dropped.
    pub blocked: HashSet<(Party, Party)>,
    /// Probability in `[0, 1]` of dropping any datagram between nodes (clients unaffected).
    /// Values above 1 act as 1; zero, negative values and NaN as 0.
    pub loss: f64,
    /// Extra one-way delay for datagrams between nodes (clients unaffected).
    pub delay: Duration,
}

/// Errors starting a [`RelayNet`].
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// `start` was not polled inside a tokio runtime.
    #[error("the relay network must be started inside a tokio runtime")]
    NoRuntime,
    /// A relay socket could not be bound (or set up).
    #[error("cannot bind the relay for node {node} on {addr}: {source}")]
    Bind {
        node: usize,
        addr: SocketAddr,
        source: io::Error,
    },
}

/// One relay per node, sharing one rule set. Stops every relay task when dropped.
pub struct RelayNet {
    shared: Arc<Shared>,
    /// The bound relay address of each node.
    addrs: Vec<SocketAddr>,
    /// Weak: the tasks own the relays, so the relay sockets close once the tasks stop.
    relays: Vec<Weak<Relay>>,
    tasks: Vec<JoinHandle<()>>,
}

impl fmt::Debug for RelayNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RelayNet")
            .field("relays", &self.addrs)
            .field("nodes", &self.shared.real)
            .finish_non_exhaustive()
    }
}

impl RelayNet {
    /// Starts one relay per node. `nodes[i] = (relay listen address, node's real address)`.
    /// Binds all relay sockets before returning (errors if a bind fails; a listen port of 0
    /// picks a free port, see [`RelayNet::relay_addr`]). Runs on the current tokio runtime.
    pub async fn start(nodes: Vec<(SocketAddr, SocketAddr)>) -> Result<RelayNet, RelayError> {
        Self::start_with_idle_timeout(nodes, IDLE_TIMEOUT).await
    }

    async fn start_with_idle_timeout(
        nodes: Vec<(SocketAddr, SocketAddr)>,
        idle_timeout: Duration,
    ) -> Result<RelayNet, RelayError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| RelayError::NoRuntime)?;
        let mut sockets = Vec::with_capacity(nodes.len());
        for (node, (listen, _)) in nodes.iter().enumerate() {
            let bind_error = |source| RelayError::Bind {
                node,
                addr: *listen,
                source,
            };
            let socket = UdpSocket::bind(listen).await.map_err(bind_error)?;
            let local = socket.local_addr().map_err(bind_error)?;
            sockets.push((socket, local));
        }
        let (stop, _) = watch::channel(false);
        let shared = Arc::new(Shared {
            faults: RwLock::new(Faults::default()),
            real: nodes.iter().map(|(_, real)| *real).collect(),
            forwarded: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            stop,
            idle_timeout,
            #[cfg(test)]
            bypass: std::sync::atomic::AtomicBool::new(false),
        });
        let epoch = Instant::now();
        let mut net = RelayNet {
            shared: shared.clone(),
            addrs: Vec::with_capacity(sockets.len()),
            relays: Vec::with_capacity(sockets.len()),
            tasks: Vec::with_capacity(2 * sockets.len()),
        };
        for (node, ((socket, local), (_, real))) in sockets.into_iter().zip(nodes).enumerate() {
            let (delay_line, delayed) = mpsc::unbounded_channel();
            let relay = Arc::new(Relay {
                node,
                upstream: real,
                downstream: socket,
                shared: shared.clone(),
                sessions: Mutex::new(HashMap::new()),
                rng: Rng::new(node),
                epoch,
                delay_line,
            });
            net.addrs.push(local);
            net.relays.push(Arc::downgrade(&relay));
            net.tasks
                .push(runtime.spawn(delay_line_loop(relay.clone(), delayed)));
            net.tasks.push(runtime.spawn(downstream_loop(relay)));
        }
        Ok(net)
    }

    /// The (bound) relay address of `node`, the address the node advertises.
    ///
    /// # Panics
    /// If `node` is not an index of the `nodes` given to [`RelayNet::start`].
    pub fn relay_addr(&self, node: usize) -> SocketAddr {
        self.addrs[node]
    }

    /// The relay addresses of all nodes, by node index.
    pub fn relay_addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// Replaces all rules; takes effect from the next datagram.
    pub fn set(&self, faults: Faults) {
        *self.shared.write_faults() = faults;
    }

    /// Removes every rule (`Faults::default()`).
    pub fn heal(&self) {
        self.set(Faults::default());
    }

    /// Partitions the nodes into groups: traffic between two nodes is dropped (both ways)
    /// when both are listed in some group but no group lists both. Replaces the `blocked`
    /// set and keeps loss and delay. Clients keep reaching every node; nodes listed in no
    /// group are not cut off from anyone. Overlapping groups make bridges: with
    /// `[[0, 1], [1, 2]]`, node 1 reaches both sides but 0 and 2 don't reach each other.
    pub fn partition(&self, groups: &[Vec<usize>]) {
        let blocked = partition_pairs(self.addrs.len(), groups);
        self.shared.write_faults().blocked = blocked;
    }

    /// Cuts `node` off from every other node, both directions (clients still reach it).
    /// Same as `partition(&[vec![node], all the others])`.
    pub fn isolate(&self, node: usize) {
        let others = (0..self.addrs.len()).filter(|&i| i != node).collect();
        self.partition(&[vec![node], others]);
    }

    /// Sets the random loss probability between nodes; keeps the other rules.
    pub fn set_loss(&self, p: f64) {
        self.shared.write_faults().loss = p;
    }

    /// Sets the extra one-way delay between nodes; keeps the other rules.
    pub fn set_delay(&self, d: Duration) {
        self.shared.write_faults().delay = d;
    }

    /// The rules in force.
    pub fn faults(&self) -> Faults {
        self.shared.read_faults().clone()
    }

    /// Datagram counters for reports, over all relays and both directions:
    /// (sent on by the relay, dropped by the rules). A datagram whose send failed is in
    /// neither; see [`RelayNet::errors`].
    pub fn stats(&self) -> (u64, u64) {
        (
            self.shared.forwarded.load(Ordering::Relaxed),
            self.shared.dropped.load(Ordering::Relaxed),
        )
    }

    /// Delivery errors, counted apart from [`RelayNet::stats`]: failed sends, sessions that
    /// could not be opened, and "connection refused" reports (ICMP) for datagrams sent to a
    /// node that is down. The kernel reports a refusal to whichever call on the session
    /// socket comes next, so a refused datagram is usually also counted as forwarded, and
    /// several refusals may be reported as one: a rough indicator, not an exact count.
    pub fn errors(&self) -> u64 {
        self.shared.errors.load(Ordering::Relaxed)
    }

    /// Stops every relay task (also on Drop). Idempotent. The tasks end, and their sockets
    /// close, asynchronously shortly afterwards; delayed datagrams still pending are
    /// discarded.
    pub fn shutdown(&self) {
        self.shared.stop.send_replace(true);
        for task in &self.tasks {
            task.abort();
        }
        for relay in self.relays.iter().filter_map(Weak::upgrade) {
            relay.sessions().clear();
        }
    }

    #[cfg(test)]
    fn session_count(&self) -> usize {
        self.relays
            .iter()
            .filter_map(Weak::upgrade)
            .map(|relay| relay.sessions().len())
            .sum()
    }
}

impl Drop for RelayNet {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The blocked pairs of [`RelayNet::partition`] over nodes `0..n`.
fn partition_pairs(n: usize, groups: &[Vec<usize>]) -> HashSet<(Party, Party)> {
    let listed = |a: usize| groups.iter().any(|g| g.contains(&a));
    let together = |a: usize, b: usize| groups.iter().any(|g| g.contains(&a) && g.contains(&b));
    let mut blocked = HashSet::new();
    for a in (0..n).filter(|&a| listed(a)) {
        for b in (0..n).filter(|&b| b != a && listed(b)) {
            if !together(a, b) {
                blocked.insert((Party::Node(a), Party::Node(b)));
            }
        }
    }
    blocked
}

/// What the rules say about one datagram: `None` to drop it, else the delay before
/// sending it. `sample` draws a uniform number in `[0, 1)` and is only called when loss is
/// in play.
fn decide(
    faults: &Faults,
    from: Party,
    to: Party,
    sample: impl FnOnce() -> f64,
) -> Option<Duration> {
    if faults.blocked.contains(&(from, to)) {
        return None;
    }
    match (from, to) {
        (Party::Node(_), Party::Node(_)) => {
            // `loss > 0.0` is false for NaN; a sample in [0,1) is always below a loss >= 1.
            if faults.loss > 0.0 && sample() < faults.loss {
                None
            } else {
                Some(faults.delay)
            }
        }
        _ => Some(Duration::ZERO),
    }
}

/// Whether `src` is the node whose real address is `real`. A node listening on an
/// unspecified address (0.0.0.0 / ::) matches by port alone; IPv4-mapped IPv6 addresses
/// compare equal to their IPv4 form.
fn is_node_addr(real: SocketAddr, src: SocketAddr) -> bool {
    if real.port() != src.port() {
        return false;
    }
    let real_ip = real.ip().to_canonical();
    real_ip.is_unspecified() || real_ip == src.ip().to_canonical()
}

/// State shared by all relays of a net.
struct Shared {
    faults: RwLock<Faults>,
    /// Real address of each node.
    real: Vec<SocketAddr>,
    forwarded: AtomicU64,
    dropped: AtomicU64,
    errors: AtomicU64,
    /// Set to true to stop every task.
    stop: watch::Sender<bool>,
    idle_timeout: Duration,
    /// Test only: forward everything, ignoring the rules (for negative controls).
    #[cfg(test)]
    bypass: std::sync::atomic::AtomicBool,
}

impl Shared {
    fn party_of(&self, src: SocketAddr) -> Party {
        self.real
            .iter()
            .position(|&real| is_node_addr(real, src))
            .map_or(Party::Client, Party::Node)
    }

    fn read_faults(&self) -> RwLockReadGuard<'_, Faults> {
        self.faults.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write_faults(&self) -> RwLockWriteGuard<'_, Faults> {
        self.faults.write().unwrap_or_else(PoisonError::into_inner)
    }

    fn count(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// A cheap xorshift64 generator, shared by the tasks of one relay.
struct Rng(AtomicU64);

impl Rng {
    fn new(node: usize) -> Rng {
        // Spread the index over the bits (splitmix64 finaliser); never zero.
        let mut x = (node as u64)
            .wrapping_add(1)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15);
        x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        x ^= x >> 31;
        Rng(AtomicU64::new(if x == 0 {
            0x2545_F491_4F6C_DD1D
        } else {
            x
        }))
    }

    /// A uniform number in `[0, 1)`.
    fn next_f64(&self) -> f64 {
        let step = |x: u64| Some(xorshift64(x));
        let prev = match self
            .0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, step)
        {
            Ok(prev) | Err(prev) => prev,
        };
        (xorshift64(prev) >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn xorshift64(mut x: u64) -> u64 {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    x
}

/// The relay in front of one node.
struct Relay {
    node: usize,
    /// The node's real address.
    upstream: SocketAddr,
    /// Bound on the relay address.
    downstream: UdpSocket,
    shared: Arc<Shared>,
    /// Sessions by downstream source address.
    sessions: Mutex<HashMap<SocketAddr, Arc<Session>>>,
    rng: Rng,
    /// Origin of the sessions' activity timestamps.
    epoch: Instant,
    /// Queue of delayed datagrams, in arrival order (see [`delay_line_loop`]).
    delay_line: mpsc::UnboundedSender<Delayed>,
}

/// A datagram waiting on a delay line.
struct Delayed {
    due: tokio::time::Instant,
    dest: Dest,
    data: Vec<u8>,
}

struct Session {
    /// Ephemeral socket connected to the node's real address.
    socket: UdpSocket,
    /// Milliseconds since the relay's epoch of the last datagram either way.
    last_active: AtomicU64,
}

/// Where a forwarded datagram goes.
enum Dest {
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

    fn sessions(&self) -> MutexGuard<'_, HashMap<SocketAddr, Arc<Session>>> {
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

    async fn send(&self, dest: &Dest, data: &[u8]) {
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
async fn delay_line_loop(relay: Arc<Relay>, mut delayed: mpsc::UnboundedReceiver<Delayed>) {
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
async fn downstream_loop(relay: Arc<Relay>) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::mpsc;
    use tokio::time::timeout;

    /// How long a datagram that should not arrive is waited for.
    const ABSENT: Duration = Duration::from_millis(300);
    /// How long a datagram that should arrive is waited for at most.
    const PRESENT: Duration = Duration::from_secs(3);

    /// A fake node: answers `ping<tag>` with `pong<tag>` and reports every datagram it
    /// receives (pings and pongs) in `inbox`. Its socket can also send, as a node's QUIC
    /// endpoint does.
    struct TestNode {
        sock: Arc<UdpSocket>,
        addr: SocketAddr,
        inbox: mpsc::UnboundedReceiver<(SocketAddr, Vec<u8>)>,
        task: JoinHandle<()>,
    }

    impl Drop for TestNode {
        fn drop(&mut self) {
            self.task.abort();
        }
    }

    async fn test_node_on(addr: SocketAddr) -> io::Result<TestNode> {
        let sock = Arc::new(UdpSocket::bind(addr).await?);
        let addr = sock.local_addr()?;
        let (tx, inbox) = mpsc::unbounded_channel();
        let echo = sock.clone();
        let task = tokio::spawn(async move {
            let mut buf = vec![0u8; BUF_SIZE];
            loop {
                let Ok((len, src)) = echo.recv_from(&mut buf).await else {
                    continue;
                };
                let data = buf[..len].to_vec();
                if let Some(tag) = data.strip_prefix(b"ping") {
                    let reply = [b"pong", tag].concat();
                    let _ = echo.send_to(&reply, src).await;
                }
                let _ = tx.send((src, data));
            }
        });
        Ok(TestNode {
            sock,
            addr,
            inbox,
            task,
        })
    }

    async fn test_node() -> TestNode {
        test_node_on("127.0.0.1:0".parse().unwrap()).await.unwrap()
    }

    async fn setup(n: usize) -> (RelayNet, Vec<TestNode>) {
        setup_with_idle(n, IDLE_TIMEOUT).await
    }

    async fn setup_with_idle(n: usize, idle: Duration) -> (RelayNet, Vec<TestNode>) {
        let mut nodes = Vec::new();
        for _ in 0..n {
            nodes.push(test_node().await);
        }
        let pairs = nodes
            .iter()
            .map(|node| ("127.0.0.1:0".parse().unwrap(), node.addr))
            .collect();
        let net = RelayNet::start_with_idle_timeout(pairs, idle)
            .await
            .unwrap();
        (net, nodes)
    }

    async fn client() -> UdpSocket {
        UdpSocket::bind("127.0.0.1:0").await.unwrap()
    }

    /// Waits up to `wait` for an inbox entry with exactly `payload`, skipping others.
    async fn inbox_get(node: &mut TestNode, payload: &[u8], wait: Duration) -> Option<SocketAddr> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match tokio::time::timeout_at(deadline, node.inbox.recv()).await {
                Ok(Some((src, data))) if data == payload => return Some(src),
                Ok(Some(_)) => continue,
                _ => return None,
            }
        }
    }

    /// Node `from` pings relay `to` with a fresh tag; the round-trip time if the pong came
    /// back within `wait`.
    async fn node_ping(
        net: &RelayNet,
        nodes: &mut [TestNode],
        from: usize,
        to: usize,
        wait: Duration,
    ) -> Option<Duration> {
        static TAG: AtomicU64 = AtomicU64::new(0);
        let tag = format!("-n{from}-n{to}-{}", TAG.fetch_add(1, Ordering::Relaxed));
        let start = Instant::now();
        nodes[from]
            .sock
            .send_to(format!("ping{tag}").as_bytes(), net.relay_addr(to))
            .await
            .unwrap();
        let src = inbox_get(&mut nodes[from], format!("pong{tag}").as_bytes(), wait).await?;
        assert_eq!(
            src,
            net.relay_addr(to),
            "the pong comes from the relay address"
        );
        Some(start.elapsed())
    }

    /// The client pings relay `to`; the round-trip time if the pong came back in `wait`.
    async fn client_ping(
        net: &RelayNet,
        client: &UdpSocket,
        to: usize,
        wait: Duration,
    ) -> Option<Duration> {
        static TAG: AtomicU64 = AtomicU64::new(0);
        let tag = format!("-c-n{to}-{}", TAG.fetch_add(1, Ordering::Relaxed));
        let start = Instant::now();
        client
            .send_to(format!("ping{tag}").as_bytes(), net.relay_addr(to))
            .await
            .unwrap();
        let expected = format!("pong{tag}");
        let mut buf = vec![0u8; BUF_SIZE];
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match tokio::time::timeout_at(deadline, client.recv_from(&mut buf)).await {
                Ok(Ok((len, src))) if &buf[..len] == expected.as_bytes() => {
                    assert_eq!(
                        src,
                        net.relay_addr(to),
                        "the pong comes from the relay address"
                    );
                    return Some(start.elapsed());
                }
                Ok(_) => continue,
                Err(_) => return None,
            }
        }
    }

    fn pairs(list: &[(Party, Party)]) -> HashSet<(Party, Party)> {
        list.iter().copied().collect()
    }

    use Party::{Client, Node};

    #[tokio::test]
    async fn client_round_trip_through_each_relay() {
        let (net, mut nodes) = setup(2).await;
        let client = client().await;
        for to in 0..2 {
            assert!(
                client_ping(&net, &client, to, PRESENT).await.is_some(),
                "client via relay {to}"
            );
        }
        // Payloads arrive unchanged, in both directions; the node sees the relay's session
        // socket as the sender, not the client.
        client
            .send_to(b"ping-exact", net.relay_addr(1))
            .await
            .unwrap();
        let src = inbox_get(&mut nodes[1], b"ping-exact", PRESENT)
            .await
            .unwrap();
        assert_ne!(src, client.local_addr().unwrap());
        assert!(src.ip().is_loopback());
        let mut buf = [0u8; 64];
        let (len, from) = timeout(PRESENT, client.recv_from(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert_eq!((&buf[..len], from), (&b"pong-exact"[..], net.relay_addr(1)));
        let (forwarded, dropped) = net.stats();
        assert_eq!((forwarded, dropped), (6, 0));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn node_to_node_round_trip_both_ways() {
        let (net, mut nodes) = setup(2).await;
        assert!(node_ping(&net, &mut nodes, 0, 1, PRESENT).await.is_some());
        assert!(node_ping(&net, &mut nodes, 1, 0, PRESENT).await.is_some());
        // Node 1 saw node 0's ping from a relay session address, not node 0's own.
        nodes[0]
            .sock
            .send_to(b"ping-seen", net.relay_addr(1))
            .await
            .unwrap();
        let src = inbox_get(&mut nodes[1], b"ping-seen", PRESENT)
            .await
            .unwrap();
        assert_ne!(src, nodes[0].addr);
        assert!(src.ip().is_loopback());
    }

    #[tokio::test]
    async fn node_source_is_classified_as_node() {
        let (net, mut nodes) = setup(3).await;
        let client = client().await;
        assert_eq!(net.shared.party_of(nodes[0].addr), Node(0));
        assert_eq!(net.shared.party_of(nodes[2].addr), Node(2));
        assert_eq!(net.shared.party_of(client.local_addr().unwrap()), Client);

        // Only node 0 → node 1 is blocked: the node socket is recognised as Node(0).
        net.set(Faults {
            blocked: pairs(&[(Node(0), Node(1))]),
            ..Faults::default()
        });
        assert!(node_ping(&net, &mut nodes, 0, 1, ABSENT).await.is_none());
        assert!(node_ping(&net, &mut nodes, 2, 1, PRESENT).await.is_some());
        assert!(client_ping(&net, &client, 1, PRESENT).await.is_some());

        // Only clients → node 1 is blocked: node 0 passes, the client does not.
        net.set(Faults {
            blocked: pairs(&[(Client, Node(1))]),
            ..Faults::default()
        });
        assert!(node_ping(&net, &mut nodes, 0, 1, PRESENT).await.is_some());
        assert!(client_ping(&net, &client, 1, ABSENT).await.is_none());
        assert!(client_ping(&net, &client, 0, PRESENT).await.is_some());
    }

    #[tokio::test]
    async fn reply_direction_is_judged_separately() {
        let (net, mut nodes) = setup(2).await;
        net.set(Faults {
            blocked: pairs(&[(Node(1), Node(0))]),
            ..Faults::default()
        });
        // Node 0's ping reaches node 1, but node 1's pong to node 0 is dropped.
        nodes[0]
            .sock
            .send_to(b"ping-oneway", net.relay_addr(1))
            .await
            .unwrap();
        assert!(inbox_get(&mut nodes[1], b"ping-oneway", PRESENT)
            .await
            .is_some());
        assert!(inbox_get(&mut nodes[0], b"pong-oneway", ABSENT)
            .await
            .is_none());
        // And node 1 cannot reach node 0 at all.
        assert!(node_ping(&net, &mut nodes, 1, 0, ABSENT).await.is_none());
        assert_eq!(net.stats().1, 2);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn partition_drops_between_groups_and_heal_restores() {
        let (net, mut nodes) = setup(2).await;
        let client = client().await;
        net.partition(&[vec![0], vec![1]]);
        assert_eq!(
            net.faults().blocked,
            pairs(&[(Node(0), Node(1)), (Node(1), Node(0))])
        );
        assert!(node_ping(&net, &mut nodes, 0, 1, ABSENT).await.is_none());
        assert!(node_ping(&net, &mut nodes, 1, 0, ABSENT).await.is_none());
        assert!(client_ping(&net, &client, 0, PRESENT).await.is_some());
        assert!(client_ping(&net, &client, 1, PRESENT).await.is_some());
        assert_eq!(net.stats().1, 2);

        net.heal();
        assert!(net.faults().blocked.is_empty());
        assert!(node_ping(&net, &mut nodes, 0, 1, PRESENT).await.is_some());
        assert!(node_ping(&net, &mut nodes, 1, 0, PRESENT).await.is_some());
    }

    #[tokio::test]
    async fn partition_rules() {
        let (net, _nodes) = setup(4).await;
        let both = |a, b| [(Node(a), Node(b)), (Node(b), Node(a))];
        net.set_loss(0.25);
        net.partition(&[vec![0, 1], vec![2, 3]]);
        let expected: Vec<_> = [both(0, 2), both(0, 3), both(1, 2), both(1, 3)].concat();
        assert_eq!(net.faults().blocked, pairs(&expected));
        assert_eq!(net.faults().loss, 0.25, "partition keeps loss");

        // A bridge: 1 sees both sides, 0 and 2 don't see each other; 3 is unlisted.
        net.partition(&[vec![0, 1], vec![1, 2]]);
        assert_eq!(net.faults().blocked, pairs(&both(0, 2)));

        net.isolate(3);
        let expected: Vec<_> = [both(3, 0), both(3, 1), both(3, 2)].concat();
        assert_eq!(net.faults().blocked, pairs(&expected));

        // Out-of-range indices are ignored.
        net.partition(&[vec![0, 9], vec![1]]);
        assert_eq!(net.faults().blocked, pairs(&both(0, 1)));
        net.partition(&[]);
        assert!(net.faults().blocked.is_empty());
    }

    #[tokio::test]
    async fn isolate_cuts_one_node_from_the_rest() {
        let (net, mut nodes) = setup(3).await;
        let client = client().await;
        net.isolate(0);
        for (from, to) in [(0, 1), (1, 0), (0, 2), (2, 0)] {
            assert!(
                node_ping(&net, &mut nodes, from, to, ABSENT)
                    .await
                    .is_none(),
                "{from} -> {to}"
            );
        }
        assert!(node_ping(&net, &mut nodes, 1, 2, PRESENT).await.is_some());
        assert!(node_ping(&net, &mut nodes, 2, 1, PRESENT).await.is_some());
        assert!(client_ping(&net, &client, 0, PRESENT).await.is_some());
    }

    #[tokio::test]
    async fn loss_one_drops_everything_between_nodes_and_zero_nothing() {
        let (net, mut nodes) = setup(2).await;
        let client = client().await;
        net.set_loss(1.0);
        for i in 0..20 {
            nodes[0]
                .sock
                .send_to(format!("ping-loss{i}").as_bytes(), net.relay_addr(1))
                .await
                .unwrap();
        }
        assert!(
            client_ping(&net, &client, 1, PRESENT).await.is_some(),
            "clients are unaffected"
        );
        tokio::time::sleep(ABSENT).await;
        while let Ok((src, data)) = nodes[1].inbox.try_recv() {
            assert_ne!(
                data.get(..9),
                Some(&b"ping-loss"[..]),
                "lost datagram from {src} arrived"
            );
        }
        assert_eq!(net.stats().1, 20);

        net.set_loss(0.0);
        for i in 0..20 {
            nodes[0]
                .sock
                .send_to(format!("ping-kept{i}").as_bytes(), net.relay_addr(1))
                .await
                .unwrap();
        }
        for i in 0..20 {
            let pong = format!("pong-kept{i}");
            assert!(
                inbox_get(&mut nodes[0], pong.as_bytes(), PRESENT)
                    .await
                    .is_some(),
                "{pong}"
            );
        }
        assert_eq!(net.stats().1, 20);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn delay_applies_between_nodes_only() {
        let (net, mut nodes) = setup(2).await;
        let client = client().await;
        let delay = Duration::from_millis(150);
        net.set_delay(delay);
        // The ping is delayed at relay 1 (0 → 1) and the pong too (1 → 0).
        let rtt = node_ping(&net, &mut nodes, 0, 1, PRESENT).await.unwrap();
        assert!(rtt >= 2 * delay, "node rtt {rtt:?}");
        assert!(rtt < 2 * delay + Duration::from_secs(1), "node rtt {rtt:?}");
        let rtt = client_ping(&net, &client, 1, PRESENT).await.unwrap();
        assert!(rtt < delay, "client rtt {rtt:?}");

        net.set_delay(Duration::ZERO);
        let rtt = node_ping(&net, &mut nodes, 0, 1, PRESENT).await.unwrap();
        assert!(rtt < delay, "undelayed node rtt {rtt:?}");
    }

    #[tokio::test]
    async fn delayed_datagrams_do_not_block_the_relay() {
        let (net, mut nodes) = setup(2).await;
        let client = client().await;
        net.set_delay(Duration::from_millis(400));
        nodes[0]
            .sock
            .send_to(b"ping-slow", net.relay_addr(1))
            .await
            .unwrap();
        // While that datagram waits, the same relay serves a client at once.
        let rtt = client_ping(&net, &client, 1, PRESENT).await.unwrap();
        assert!(rtt < Duration::from_millis(300), "client rtt {rtt:?}");
        assert!(inbox_get(&mut nodes[0], b"pong-slow", PRESENT)
            .await
            .is_some());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn delay_keeps_datagram_order() {
        let (net, mut nodes) = setup(2).await;
        net.set_delay(Duration::from_millis(20));
        let count = 300u32;
        for i in 0..count {
            let payload = [&b"seq"[..], &i.to_be_bytes()].concat();
            nodes[0]
                .sock
                .send_to(&payload, net.relay_addr(1))
                .await
                .unwrap();
            if i % 50 == 0 {
                tokio::time::sleep(Duration::from_millis(3)).await;
            }
        }
        let mut seen = Vec::new();
        while seen.len() < count as usize {
            let (_, data) = timeout(PRESENT, nodes[1].inbox.recv())
                .await
                .unwrap()
                .unwrap();
            if let Some(seq) = data.strip_prefix(b"seq") {
                seen.push(u32::from_be_bytes(seq.try_into().unwrap()));
            }
        }
        assert_eq!(
            seen,
            (0..count).collect::<Vec<_>>(),
            "delayed datagrams were reordered"
        );
    }

    /// Negative control: the "not received within ABSENT" check used by the partition
    /// tests does catch a relay that forwards blocked traffic.
    #[tokio::test]
    async fn negative_control_partition_check_detects_a_leaky_relay() {
        let (net, mut nodes) = setup(2).await;
        net.partition(&[vec![0], vec![1]]);
        assert!(
            node_ping(&net, &mut nodes, 0, 1, ABSENT).await.is_none(),
            "blocked"
        );

        // Same partition, but the relay ignores the rules: the same check sees the leak.
        net.shared.bypass.store(true, Ordering::Relaxed);
        assert!(
            node_ping(&net, &mut nodes, 0, 1, ABSENT).await.is_some(),
            "leak detected"
        );
        net.shared.bypass.store(false, Ordering::Relaxed);
        assert!(
            node_ping(&net, &mut nodes, 0, 1, ABSENT).await.is_none(),
            "blocked again"
        );

        // And traffic that bypasses the relay altogether is seen too.
        nodes[0]
            .sock
            .send_to(b"ping-direct", nodes[1].addr)
            .await
            .unwrap();
        assert!(inbox_get(&mut nodes[1], b"ping-direct", ABSENT)
            .await
            .is_some());
    }

    #[tokio::test]
    async fn odd_datagrams_are_forwarded_intact() {
        let (net, mut nodes) = setup(1).await;
        let client = client().await;
        let big: Vec<u8> = (0..60_000u32).map(|i| (i * 7) as u8).collect();
        let junk = [0xffu8, 0, 1, 2, 0x80];
        for payload in [&[][..], &big[..], &junk[..]] {
            client.send_to(payload, net.relay_addr(0)).await.unwrap();
            assert!(
                inbox_get(&mut nodes[0], payload, PRESENT).await.is_some(),
                "len {}",
                payload.len()
            );
        }
        let big_ping = [&b"ping"[..], &big].concat();
        client.send_to(&big_ping, net.relay_addr(0)).await.unwrap();
        let mut buf = vec![0u8; BUF_SIZE];
        let (len, _) = timeout(PRESENT, client.recv_from(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&buf[..len], [&b"pong"[..], &big].concat());
        assert!(client_ping(&net, &client, 0, PRESENT).await.is_some());
    }

    #[tokio::test]
    async fn sessions_are_per_source_and_expire_when_idle() {
        let (net, mut nodes) = setup_with_idle(1, Duration::from_millis(200)).await;
        let (a, b) = (client().await, client().await);
        a.send_to(b"a1", net.relay_addr(0)).await.unwrap();
        let first = inbox_get(&mut nodes[0], b"a1", PRESENT).await.unwrap();
        a.send_to(b"a2", net.relay_addr(0)).await.unwrap();
        assert_eq!(
            inbox_get(&mut nodes[0], b"a2", PRESENT).await,
            Some(first),
            "same session"
        );
        b.send_to(b"b1", net.relay_addr(0)).await.unwrap();
        let other = inbox_get(&mut nodes[0], b"b1", PRESENT).await.unwrap();
        assert_ne!(other, first, "one session per source");
        assert_eq!(net.session_count(), 2);

        let deadline = Instant::now() + Duration::from_secs(3);
        while net.session_count() > 0 {
            assert!(Instant::now() < deadline, "idle sessions were not dropped");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // A new datagram opens a new session and goes through.
        assert!(client_ping(&net, &a, 0, PRESENT).await.is_some());
        assert_eq!(net.session_count(), 1);
    }

    #[tokio::test]
    async fn survives_a_node_going_down_and_coming_back() {
        let (net, mut nodes) = setup(1).await;
        let client = client().await;
        assert!(client_ping(&net, &client, 0, PRESENT).await.is_some());
        let addr = nodes[0].addr;
        drop(nodes.pop());
        // Nothing listens on the node's address now: sends are refused.
        tokio::time::sleep(Duration::from_millis(50)).await;
        for _ in 0..3 {
            assert!(client_ping(&net, &client, 0, Duration::from_millis(100))
                .await
                .is_none());
        }
        // The node comes back on the same address (the old socket closes asynchronously).
        let deadline = Instant::now() + Duration::from_secs(3);
        let node = loop {
            match test_node_on(addr).await {
                Ok(node) => break node,
                Err(e) => assert!(Instant::now() < deadline, "rebinding {addr}: {e}"),
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        nodes.push(node);
        assert!(client_ping(&net, &client, 0, PRESENT).await.is_some());
        assert!(net.errors() >= 1, "refusals are counted as errors");
    }

    #[tokio::test]
    async fn start_reports_a_failed_bind() {
        let taken = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let taken_addr = taken.local_addr().unwrap();
        let real: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let nodes = vec![("127.0.0.1:0".parse().unwrap(), real), (taken_addr, real)];
        match RelayNet::start(nodes).await {
            Err(RelayError::Bind { node, addr, .. }) => assert_eq!((node, addr), (1, taken_addr)),
            other => panic!("expected a bind error, got {other:?}"),
        }
        let empty = RelayNet::start(Vec::new()).await.unwrap();
        assert_eq!(empty.stats(), (0, 0));
    }

    #[test]
    fn start_outside_a_runtime_is_an_error() {
        use std::future::Future;
        // Polled by hand with a no-op waker, outside any tokio runtime.
        let fut = RelayNet::start(vec![(
            "127.0.0.1:0".parse().unwrap(),
            "127.0.0.1:9".parse().unwrap(),
        )]);
        let mut fut = std::pin::pin!(fut);
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        match fut.as_mut().poll(&mut cx) {
            std::task::Poll::Ready(Err(RelayError::NoRuntime)) => {}
            other => panic!("expected NoRuntime, got {:?}", other.map(|r| r.map(|_| ()))),
        }
    }

    #[tokio::test]
    async fn shutdown_stops_forwarding_and_frees_the_ports() {
        let (net, _nodes) = setup(2).await;
        let client = client().await;
        assert!(client_ping(&net, &client, 0, PRESENT).await.is_some());
        net.set_delay(Duration::from_secs(30));
        net.shutdown();
        net.shutdown();
        assert!(client_ping(&net, &client, 0, ABSENT).await.is_none());
        for addr in net.relay_addrs() {
            let deadline = Instant::now() + Duration::from_secs(3);
            while let Err(e) = UdpSocket::bind(addr).await {
                assert!(
                    Instant::now() < deadline,
                    "relay port {addr} still bound: {e}"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }

    #[tokio::test]
    async fn drop_frees_the_ports() {
        let (net, mut nodes) = setup(2).await;
        net.set_delay(Duration::from_secs(30));
        // Leave a session and a delayed datagram behind.
        nodes[0]
            .sock
            .send_to(b"ping-late", net.relay_addr(1))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        let addrs = net.relay_addrs().to_vec();
        drop(net);
        for addr in addrs {
            let deadline = Instant::now() + Duration::from_secs(3);
            while let Err(e) = UdpSocket::bind(addr).await {
                assert!(
                    Instant::now() < deadline,
                    "relay port {addr} still bound: {e}"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        assert!(
            inbox_get(&mut nodes[1], b"ping-late", Duration::from_millis(100))
                .await
                .is_none()
        );
    }

    #[test]
    fn decide_rules() {
        let never = || -> f64 { panic!("sampled") };
        let mut faults = Faults::default();
        assert_eq!(
            decide(&faults, Node(0), Node(1), never),
            Some(Duration::ZERO)
        );
        assert_eq!(
            decide(&faults, Client, Node(1), never),
            Some(Duration::ZERO)
        );

        faults.blocked = pairs(&[(Client, Node(1)), (Node(1), Client), (Node(0), Node(1))]);
        assert_eq!(decide(&faults, Client, Node(1), never), None);
        assert_eq!(decide(&faults, Node(1), Client, never), None);
        assert_eq!(decide(&faults, Node(0), Node(1), never), None);
        assert_eq!(
            decide(&faults, Node(1), Node(0), never),
            Some(Duration::ZERO)
        );
        assert_eq!(
            decide(&faults, Client, Node(0), never),
            Some(Duration::ZERO)
        );

        faults.blocked.clear();
        faults.delay = Duration::from_millis(7);
        faults.loss = 0.5;
        assert_eq!(decide(&faults, Node(0), Node(1), || 0.49), None);
        assert_eq!(
            decide(&faults, Node(0), Node(1), || 0.5),
            Some(faults.delay)
        );
        assert_eq!(
            decide(&faults, Node(2), Node(2), || 0.9),
            Some(faults.delay)
        );
        assert_eq!(
            decide(&faults, Client, Node(1), never),
            Some(Duration::ZERO),
            "clients unaffected"
        );
        assert_eq!(
            decide(&faults, Node(1), Client, never),
            Some(Duration::ZERO),
            "clients unaffected"
        );

        for (loss, dropped) in [
            (f64::NAN, false),
            (-1.0, false),
            (0.0, false),
            (1.0, true),
            (7.0, true),
        ] {
            faults.loss = loss;
            let got = decide(&faults, Node(0), Node(1), || 0.999_999);
            assert_eq!(got.is_none(), dropped, "loss {loss}");
        }
    }

    #[test]
    fn rng_is_deterministic_uniform_and_per_node() {
        let (a, b, c) = (Rng::new(0), Rng::new(0), Rng::new(1));
        let xs: Vec<f64> = (0..1000).map(|_| a.next_f64()).collect();
        let ys: Vec<f64> = (0..1000).map(|_| b.next_f64()).collect();
        let zs: Vec<f64> = (0..1000).map(|_| c.next_f64()).collect();
        assert_eq!(xs, ys);
        assert_ne!(xs, zs);
        assert!(xs.iter().chain(&zs).all(|x| (0.0..1.0).contains(x)));

        let faults = Faults {
            loss: 0.3,
            ..Faults::default()
        };
        for node in [0, 1, 2, 1000] {
            let rng = Rng::new(node);
            let lost = (0..20_000)
                .filter(|_| decide(&faults, Node(0), Node(1), || rng.next_f64()).is_none())
                .count();
            assert!(
                (5_400..6_600).contains(&lost),
                "node {node}: lost {lost} of 20000 at 0.3"
            );
        }
    }

    #[test]
    fn node_addresses_match_sources() {
        let src: SocketAddr = "127.0.0.1:7001".parse().unwrap();
        assert!(is_node_addr(src, src));
        assert!(is_node_addr("0.0.0.0:7001".parse().unwrap(), src));
        assert!(is_node_addr(
            "[::ffff:127.0.0.1]:7001".parse().unwrap(),
            src
        ));
        assert!(is_node_addr(
            src,
            "[::ffff:127.0.0.1]:7001".parse().unwrap()
        ));
        assert!(!is_node_addr(src, "127.0.0.1:7002".parse().unwrap()));
        assert!(!is_node_addr(src, "127.0.0.2:7001".parse().unwrap()));
        assert!(!is_node_addr("[::1]:7001".parse().unwrap(), src));
    }

    #[test]
    fn relay_net_is_send_and_sync() {
        fn check<T: Send + Sync + 'static>() {}
        check::<RelayNet>();
        check::<Faults>();
        check::<RelayError>();
    }
}
