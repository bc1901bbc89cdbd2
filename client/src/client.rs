//! The QUIC client: connection cache, token-aware routing and failover.

mod config;
mod error;
mod values;

pub use config::ClientConfig;
pub use error::Error;
pub(crate) use error::{into_result, unexpected};
pub(crate) use values::checked_ttl_ms;
pub use values::{CausalContext, GetResult, WriteOptions};

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::dial::Dialer;
use crate::exchange::{Exchange, ExchangeError};
use crate::link::Channel;
use crate::proto::{Level, Request, Response, RingInfo, StatusInfo};
use crate::tls;
use crate::wire::{WireError, DEFAULT_MAX_FRAME};

/// How old routing information may get before the next request refreshes it.
const RING_REFRESH: Duration = Duration::from_secs(10);
/// Pauses before retries of a request a node refused as overloaded (each doubled, drawn
/// uniformly below the bound).
const OVERLOAD_FIRST_PAUSE: Duration = Duration::from_millis(2);
const OVERLOAD_MAX_PAUSE: Duration = Duration::from_millis(100);

/// A client connected to a Chorus cluster.
///
/// ```no_run
/// use chorus_client::{Client, ClientConfig, Level};
/// # async fn demo() -> Result<(), chorus_client::Error> {
/// let client = Client::connect(ClientConfig::load("cluster/client.toml".as_ref())?).await?;
/// client.put("users", "ada", b"engineer".to_vec(), None, Level::All).await?;
/// let read = client.get("users", "ada", Level::Quorum).await?;
/// assert_eq!(read.values, vec![b"engineer".to_vec()]);
/// // Replace what was read: the context says which versions the new value supersedes.
/// client.put("users", "ada", b"mathematician".to_vec(), Some(&read.context), Level::Quorum).await?;
/// let read = client.get("users", "ada", Level::One).await?;
/// client.delete("users", "ada", Some(&read.context), Level::Quorum).await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    dialer: Arc<Dialer>,
    seeds: Vec<SocketAddr>,
    token_aware: bool,
    timeout: Duration,
    overload_retries: u32,
    routing: Mutex<Option<(Arc<RingInfo>, Instant)>>,
}

/// Failure of one attempt against one node, and whether another node may be tried.
enum Attempt {
    /// Nothing reached the node; trying the next one is safe.
    NotSent(String),
    /// The connection died with the request in flight. It may have been applied; trying the
    /// next node is still fine: a repeated write of the same value and context adds at most
    /// an identical sibling, which reads report once.
    Lost(String),
    /// The request may have been applied, and the node is alive: don't repeat it.
    Failed(Error),
}

impl Client {
    /// Connects to the cluster and learns its ring.
    pub async fn connect(cfg: ClientConfig) -> Result<Client, Error> {
        let roots = tls::roots(&cfg.ca)?;
        let certs = tls::load_certs(&cfg.cert)?;
        let key = tls::load_key(&cfg.key)?;
        let crypto = tls::client_crypto(roots, certs, key, crate::proto::ALPN_CLIENT)?;
        let mut quic = tls::quinn_client(crypto)?;
        let mut transport = quinn::TransportConfig::default();
        // A node killed without closing its connection is noticed within the idle timeout;
        // keep-alives hold healthy connections open.
        transport.keep_alive_interval(Some(cfg.idle_timeout / 3));
        transport.max_idle_timeout(Some(
            quinn::IdleTimeout::try_from(cfg.idle_timeout)
                .map_err(|e| Error::Config(e.to_string()))?,
        ));
        quic.transport_config(Arc::new(transport));

        let mut seeds = Vec::new();
        for a in &cfg.addresses {
            let resolved = a
                .to_socket_addrs()
                .map_err(|e| Error::Config(format!("addresses: cannot resolve {a:?}: {e}")))?;
            seeds.extend(resolved);
        }
        if seeds.is_empty() {
            return Err(Error::Config("addresses: no usable address".into()));
        }
        let bind: SocketAddr = if seeds[0].is_ipv6() {
            "[::]:0".parse().map_err(|_| Error::Config("bind".into()))?
        } else {
            "0.0.0.0:0"
                .parse()
                .map_err(|_| Error::Config("bind".into()))?
        };
        let endpoint = quinn::Endpoint::client(bind)
            .map_err(|e| Error::Config(format!("cannot open a UDP socket: {e}")))?;
        let client = Client {
            inner: Arc::new(Inner {
                dialer: Dialer::new(endpoint, quic, cfg.connect_timeout, cfg.links),
                seeds,
                token_aware: cfg.token_aware,
                timeout: cfg.timeout,
                overload_retries: cfg.overload_retries,
                routing: Mutex::new(None),
            }),
        };
        client.refresh_ring().await?;
        Ok(client)
    }

    /// Reads a key with read consistency `r`.
    pub async fn get(
        &self,
        bucket: impl AsRef<[u8]>,
        key: impl AsRef<[u8]>,
        r: Level,
    ) -> Result<GetResult, Error> {
        let (bucket, key) = (bucket.as_ref().to_vec(), key.as_ref().to_vec());
        let targets = self.targets_for(&bucket, &key).await;
        let req = Request::Get { bucket, key, r };
        match self.call(&targets, &req).await? {
            Response::Value(v) => Ok(GetResult::from(v)),
            other => Err(unexpected(other)),
        }
    }

    /// Writes a value with write consistency `w`. With the context of an earlier read, the
    /// write replaces the versions that read saw; without one, it is added next to any
    /// existing values as a sibling. Returns the context of the new version.
    pub async fn put(
        &self,
        bucket: impl AsRef<[u8]>,
        key: impl AsRef<[u8]>,
        value: Vec<u8>,
        context: Option<&CausalContext>,
        w: Level,
    ) -> Result<CausalContext, Error> {
        let opts = WriteOptions {
            context: context.cloned(),
            w,
            sloppy: false,
            ttl: None,
        };
        self.put_with(bucket, key, value, &opts).await
    }

    /// [`Client::put`] with every write option, e.g. a sloppy quorum or a TTL.
    pub async fn put_with(
        &self,
        bucket: impl AsRef<[u8]>,
        key: impl AsRef<[u8]>,
        value: Vec<u8>,
        opts: &WriteOptions,
    ) -> Result<CausalContext, Error> {
        let ttl_ms = opts.ttl_ms()?;
        let (bucket, key) = (bucket.as_ref().to_vec(), key.as_ref().to_vec());
        let targets = self.targets_for(&bucket, &key).await;
        let req = Request::Put {
            bucket,
            key,
            value,
            context: opts.context_bytes(),
            w: opts.w,
            sloppy: opts.sloppy,
            ttl_ms,
        };
        written(self.call(&targets, &req).await?)
    }

    /// Deletes the versions that `context` saw, with write consistency `w`.
    pub async fn delete(
        &self,
        bucket: impl AsRef<[u8]>,
        key: impl AsRef<[u8]>,
        context: Option<&CausalContext>,
        w: Level,
    ) -> Result<CausalContext, Error> {
        let opts = WriteOptions {
            context: context.cloned(),
            w,
            sloppy: false,
            ttl: None,
        };
        self.delete_with(bucket, key, &opts).await
    }

    /// [`Client::delete`] with every write option.
    pub async fn delete_with(
        &self,
        bucket: impl AsRef<[u8]>,
        key: impl AsRef<[u8]>,
        opts: &WriteOptions,
    ) -> Result<CausalContext, Error> {
        let (bucket, key) = (bucket.as_ref().to_vec(), key.as_ref().to_vec());
        let targets = self.targets_for(&bucket, &key).await;
        let req = Request::Delete {
            bucket,
            key,
            context: opts.context_bytes(),
            w: opts.w,
            sloppy: opts.sloppy,
        };
        written(self.call(&targets, &req).await?)
    }

    /// One replica's local copy of a key, read without coordination or repair. For
    /// operators debugging divergence.
    pub async fn get_replica(
        &self,
        bucket: impl AsRef<[u8]>,
        key: impl AsRef<[u8]>,
        node: &str,
    ) -> Result<GetResult, Error> {
        let mut targets = Vec::new();
        if let Some(addr) = self
            .ring()
            .and_then(|info| info.address_of(node).and_then(resolve))
        {
            targets.push(addr);
        }
        for t in self.all_targets().await {
            push_unique(&mut targets, t);
        }
        let req = Request::GetReplica {
            bucket: bucket.as_ref().to_vec(),
            key: key.as_ref().to_vec(),
            node: node.to_string(),
        };
        match self.call(&targets, &req).await? {
            Response::Value(v) => Ok(GetResult::from(v)),
            other => Err(unexpected(other)),
        }
    }

    /// Asks the cluster to move `node`'s partitions to the other nodes. Returns once the
    /// change is accepted; the transfers proceed in the background (see `status`).
    /// Needs an admin certificate.
    pub async fn leave(&self, node: &str) -> Result<(), Error> {
        self.leave_with(node, false).await
    }

    /// [`Client::leave`]; `force` allows leaving fewer members than some bucket's N.
    pub async fn leave_with(&self, node: &str, force: bool) -> Result<(), Error> {
        self.admin(Request::Leave {
            node: node.to_string(),
            force,
        })
        .await
    }

    /// Takes a dead node out of the ring; its replicas are recreated from surviving copies.
    /// Needs an admin certificate.
    pub async fn remove(&self, node: &str) -> Result<(), Error> {
        self.remove_with(node, false).await
    }

    /// [`Client::remove`]; `force` allows removing a live node, or leaving fewer members
    /// than some bucket's N.
    pub async fn remove_with(&self, node: &str, force: bool) -> Result<(), Error> {
        self.admin(Request::Remove {
            node: node.to_string(),
            force,
        })
        .await
    }

    async fn admin(&self, req: Request) -> Result<(), Error> {
        let targets = self.all_targets().await;
        match self.call(&targets, &req).await? {
            Response::Ok => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    /// Starts an anti-entropy round on the first reachable node. Needs an admin certificate.
    pub async fn repair(&self) -> Result<(), Error> {
        let targets = self.all_targets().await;
        match self.call(&targets, &Request::Repair).await? {
            Response::Ok => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    /// The cluster as the first reachable node sees it.
    pub async fn status(&self) -> Result<StatusInfo, Error> {
        let targets = self.all_targets().await;
        match self.call(&targets, &Request::Status).await? {
            Response::Status(s) => Ok(s),
            other => Err(unexpected(other)),
        }
    }

    /// Fetches the ring and member addresses from the first reachable node.
    pub async fn refresh_ring(&self) -> Result<Arc<RingInfo>, Error> {
        let targets = self.all_targets().await;
        match self.call(&targets, &Request::Ring).await? {
            Response::Ring(info) => {
                let info = Arc::new(info);
                *lock(&self.inner.routing) = Some((info.clone(), Instant::now()));
                Ok(info)
            }
            other => Err(unexpected(other)),
        }
    }

    /// The routing information currently in use.
    pub fn ring(&self) -> Option<Arc<RingInfo>> {
        lock(&self.inner.routing).as_ref().map(|(r, _)| r.clone())
    }

    async fn routing(&self) -> Option<Arc<RingInfo>> {
        let current = lock(&self.inner.routing).clone();
        match current {
            Some((info, at)) if at.elapsed() < RING_REFRESH => Some(info),
            stale => match self.refresh_ring().await {
                Ok(info) => Some(info),
                Err(_) => stale.map(|(info, _)| info),
            },
        }
    }

    /// Preference-list nodes first (token-aware), then every other known node.
    pub(crate) async fn targets_for(&self, bucket: &[u8], key: &[u8]) -> Vec<SocketAddr> {
        if !self.inner.token_aware {
            return self.inner.seeds.clone();
        }
        let info = self.routing().await;
        route(info.as_deref(), bucket, key, &self.inner.seeds)
    }

    pub(crate) async fn all_targets(&self) -> Vec<SocketAddr> {
        let mut out = self.inner.seeds.clone();
        if let Some((info, _)) = lock(&self.inner.routing).clone() {
            for (_, a) in &info.addresses {
                if let Some(addr) = resolve(a) {
                    push_unique(&mut out, addr);
                }
            }
        }
        out
    }

    /// Sends `req` to the first target that takes it; a request a node refused as
    /// overloaded is sent again after a growing, jittered pause while the request's deadline
    /// allows. A node refuses so before it applies anything, so a write is never doubled.
    pub(crate) async fn call(
        &self,
        targets: &[SocketAddr],
        req: &Request,
    ) -> Result<Response, Error> {
        let started = Instant::now();
        let mut pause = OVERLOAD_FIRST_PAUSE;
        let mut retries = 0;
        loop {
            match self.call_once(targets, req).await {
                Err(Error::Overloaded(why)) if retries < self.inner.overload_retries => {
                    // Full jitter: clients refused together come back spread out.
                    let wait = pause.mul_f64(jitter());
                    if started.elapsed() + wait >= self.inner.timeout {
                        return Err(Error::Overloaded(why));
                    }
                    tracing::debug!(?wait, %why, "node overloaded, retrying");
                    tokio::time::sleep(wait).await;
                    pause = (pause * 2).min(OVERLOAD_MAX_PAUSE);
                    retries += 1;
                }
                r => return r,
            }
        }
    }

    /// Sends `req` to the first target that takes it. Nodes that recently failed go last;
    /// several are dialed at once when the first doesn't answer quickly.
    async fn call_once(&self, targets: &[SocketAddr], req: &Request) -> Result<Response, Error> {
        let dialer = &self.inner.dialer;
        let mut untried = dialer.order(targets);
        let mut failures = Vec::new();
        while !untried.is_empty() {
            let mut failed = Vec::new();
            let found = dialer.first(&untried, &mut failed).await;
            for (addr, why) in failed {
                tracing::debug!(%addr, %why, "node unreachable");
                untried.retain(|a| *a != addr);
                failures.push(format!("{addr}: {why}"));
                self.routing_is_stale();
            }
            let Some((addr, conn)) = found else {
                break;
            };
            untried.retain(|a| *a != addr);
            match self.attempt(addr, &conn, req).await {
                Ok(resp) => {
                    dialer.mark_up(addr);
                    return into_result(resp);
                }
                Err(Attempt::NotSent(why) | Attempt::Lost(why)) => {
                    tracing::debug!(%addr, %why, "node unreachable, trying the next");
                    dialer.mark_down(addr);
                    self.routing_is_stale();
                    failures.push(format!("{addr}: {why}"));
                }
                Err(Attempt::Failed(e)) => return Err(e),
            }
        }
        Err(Error::Unavailable(failures.join("; ")))
    }

    /// Learn what the cluster thinks is down before the next request.
    fn routing_is_stale(&self) {
        if let Some((_, at)) = lock(&self.inner.routing).as_mut() {
            *at = Instant::now() - RING_REFRESH;
        }
    }

    async fn attempt(
        &self,
        addr: SocketAddr,
        conn: &Channel,
        req: &Request,
    ) -> Result<Response, Attempt> {
        let timeout = self.inner.timeout;
        let how = Exchange {
            trace: next_trace(),
            max_frame: DEFAULT_MAX_FRAME,
            deadline: timeout,
            priority: 0,
        };
        // An I/O error on a connection that died means the request may be lost in flight.
        let lost = |e: std::io::Error| {
            if conn.close_reason().is_some() {
                Attempt::Lost(e.to_string())
            } else {
                Attempt::Failed(Error::Protocol(WireError::Io(e)))
            }
        };
        match conn.call(req, how).await {
            Ok(answer) => Ok(answer.msg),
            Err(ExchangeError::Open(e)) => {
                self.inner.dialer.forget(addr);
                Err(Attempt::NotSent(e.to_string()))
            }
            Err(ExchangeError::NotSent(why)) => {
                self.inner.dialer.forget(addr);
                Err(Attempt::NotSent(why))
            }
            Err(ExchangeError::Send(e)) => Err(lost(e.into())),
            Err(ExchangeError::Broken(why)) => Err(Attempt::Lost(why)),
            Err(ExchangeError::Wire(WireError::Io(e))) => Err(lost(e)),
            Err(ExchangeError::Wire(e)) => Err(Attempt::Failed(Error::Protocol(e))),
            Err(ExchangeError::Timeout(_)) => Err(Attempt::Failed(Error::Timeout(timeout))),
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.dialer.endpoint().close(0u32.into(), b"client closed");
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding these locks can't leave their maps inconsistent, so go on.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Where to send a request for `bucket/key`: the key's live replicas in preference order,
/// then the rest of its ring order, then replicas reported down, then any seed not listed.
pub fn route(
    info: Option<&RingInfo>,
    bucket: &[u8],
    key: &[u8],
    seeds: &[SocketAddr],
) -> Vec<SocketAddr> {
    let mut out = Vec::new();
    if let Some(info) = info {
        let p = info.ring.partition_of(bucket, key);
        let (live, down): (Vec<&str>, Vec<&str>) = info
            .ring
            .order(p)
            .into_iter()
            .partition(|id| !info.down.iter().any(|d| d == id));
        for id in live.into_iter().chain(down) {
            if let Some(addr) = info.address_of(id).and_then(resolve) {
                push_unique(&mut out, addr);
            }
        }
    }
    for s in seeds {
        push_unique(&mut out, *s);
    }
    out
}

/// A fresh trace id: a per-process random-ish seed plus a counter, so ids from different
/// clients rarely collide and ids from one client never do.
/// A factor in [0, 1), from the trace sequence (good enough to spread retries apart).
fn jitter() -> f64 {
    let mut x = next_trace();
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    (x >> 11) as f64 / (1u64 << 53) as f64
}

fn next_trace() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::OnceLock;
    static SEED: OnceLock<u64> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let seed = *SEED.get_or_init(|| {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or_default();
        nanos ^ (u64::from(std::process::id()) << 40)
    });
    seed.wrapping_add(
        COUNTER
            .fetch_add(1, Ordering::Relaxed)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15),
    )
}

fn resolve(a: &str) -> Option<SocketAddr> {
    a.to_socket_addrs().ok()?.next()
}

fn push_unique(v: &mut Vec<SocketAddr>, a: SocketAddr) {
    if !v.contains(&a) {
        v.push(a);
    }
}

fn written(resp: Response) -> Result<CausalContext, Error> {
    match resp {
        Response::Written { context } => Ok(CausalContext::from_bytes(context)),
        other => Err(unexpected(other)),
    }
}

#[cfg(test)]
pub(crate) mod tests;
