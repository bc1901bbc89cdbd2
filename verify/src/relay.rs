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

mod forward;
mod rules;

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard, Weak};
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use forward::{delay_line_loop, downstream_loop, Relay};
use rules::{is_node_addr, partition_pairs, Rng};

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

#[cfg(test)]
mod tests;
