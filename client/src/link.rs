//! Batched links: many requests in flight on one long-lived QUIC stream, each tagged with a
//! request id and answered in any order (framing in [`chorus_proto::wire`]).
//!
//! A stream per request costs a stream open, a spawned task on the serving side and, on a
//! multi-thread runtime, usually a datagram of its own. A link instead has one writer task
//! that takes everything queued when it wakes and hands it to QUIC as one write, never
//! waiting for more work: a lone request leaves at once, and under load many requests share
//! a packet. One reader task matches answers to waiting callers by id.
//!
//! [`Channel`] is what callers hold per connection: it sends small foreground requests on
//! the connection's link (opened on first use, reopened after it breaks) and everything
//! else, large frames and background work, on streams of their own, so a large value never
//! holds small requests up and background work keeps its lower stream priority.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::io::AsyncReadExt;
use tokio::sync::{mpsc, oneshot};

use crate::exchange::{exchange_encoded, Answer, Exchange, ExchangeError};
use crate::wire::{self, eof_is_truncated, Encoded, WireError, LINK_MAGIC};

/// Requests whose envelope is larger than this go on a stream of their own.
pub const LINK_MAX_REQUEST: usize = 64 * 1024;
/// One write carries at most this many queued bytes; the rest goes in the next.
const WRITE_BATCH: usize = 256 * 1024;
/// Requests queued for a link's writer; a caller past this waits for room.
const LINK_QUEUE: usize = 4096;

type Waiter = oneshot::Sender<Result<Vec<u8>, String>>;

/// Callers waiting for answers, or why the link is gone.
struct Pending {
    waiting: HashMap<u64, Waiter>,
    broken: Option<String>,
}

/// One link: the sending half of its writer queue and the table of waiting callers.
pub struct Link {
    queue: mpsc::Sender<Bytes>,
    pending: Arc<Mutex<Pending>>,
    next_id: AtomicU64,
}

impl Link {
    /// Opens a link on `conn`; answers over `max_frame` bytes break it.
    pub async fn open(
        conn: &quinn::Connection,
        max_frame: usize,
    ) -> Result<Arc<Link>, quinn::ConnectionError> {
        let (send, recv) = conn.open_bi().await?;
        let (queue, rx) = mpsc::channel(LINK_QUEUE);
        // Nothing else is queued yet, so the magic goes first.
        let _ = queue.try_send(Bytes::copy_from_slice(&LINK_MAGIC.to_be_bytes()));
        let pending = Arc::new(Mutex::new(Pending {
            waiting: HashMap::new(),
            broken: None,
        }));
        let p = pending.clone();
        tokio::spawn(async move {
            let why = match write_loop(send, rx).await {
                Ok(()) => "link closed".to_string(),
                Err(e) => format!("link write failed: {e}"),
            };
            fail_all(&p, why);
        });
        let p = pending.clone();
        tokio::spawn(async move {
            let why = read_loop(recv, max_frame, &p).await;
            fail_all(&p, why);
        });
        Ok(Arc::new(Link {
            queue,
            pending,
            next_id: AtomicU64::new(1),
        }))
    }

    /// Whether the link still carries requests.
    pub fn is_open(&self) -> bool {
        lock(&self.pending).broken.is_none()
    }

    /// Sends an encoded request and waits for its answer under `how.deadline`.
    pub async fn call<A: DeserializeOwned>(
        &self,
        req: Encoded,
        how: Exchange,
    ) -> Result<Answer<A>, ExchangeError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        {
            let mut p = lock(&self.pending);
            if let Some(why) = &p.broken {
                return Err(ExchangeError::NotSent(why.clone()));
            }
            p.waiting.insert(id, tx);
        }
        let sent = req.body_len() + wire::LINK_HEADER;
        if self
            .queue
            .send(Bytes::from(req.into_link_frame(id)))
            .await
            .is_err()
        {
            lock(&self.pending).waiting.remove(&id);
            return Err(ExchangeError::NotSent("link closed".into()));
        }
        let answer = match tokio::time::timeout(how.deadline, rx).await {
            Ok(Ok(Ok(body))) => body,
            Ok(Ok(Err(why))) => return Err(ExchangeError::Broken(why)),
            Ok(Err(_)) => return Err(ExchangeError::Broken("link closed".into())),
            Err(_) => {
                lock(&self.pending).waiting.remove(&id);
                return Err(ExchangeError::Timeout(how.deadline));
            }
        };
        if answer.len() > how.max_frame {
            return Err(WireError::TooLarge {
                size: answer.len(),
                limit: how.max_frame,
            }
            .into());
        }
        let (msg, trace) = wire::decode(&answer)?;
        Ok(Answer {
            msg,
            trace,
            bytes: (sent + wire::LINK_HEADER + answer.len()) as u64,
        })
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        fail_all(&self.pending, "link dropped".into());
    }
}

fn fail_all(pending: &Mutex<Pending>, why: String) {
    let waiting = {
        let mut p = lock(pending);
        if p.broken.is_none() {
            p.broken = Some(why.clone());
        }
        std::mem::take(&mut p.waiting)
    };
    for (_, w) in waiting {
        let _ = w.send(Err(why.clone()));
    }
}

/// Takes every frame queued when it wakes and writes them as one batch; returns when the
/// queue closes (every sender dropped), or the stream fails.
pub async fn write_loop(
    mut send: quinn::SendStream,
    mut rx: mpsc::Receiver<Bytes>,
) -> Result<(), quinn::WriteError> {
    let mut batch: Vec<Bytes> = Vec::new();
    while let Some(first) = rx.recv().await {
        let mut bytes = first.len();
        batch.push(first);
        while bytes < WRITE_BATCH {
            match rx.try_recv() {
                Ok(more) => {
                    bytes += more.len();
                    batch.push(more);
                }
                Err(_) => break,
            }
        }
        send.write_all_chunks(&mut batch).await?;
        batch.clear();
    }
    let _ = send.finish();
    Ok(())
}

/// Matches answers to waiting callers until the stream ends; returns why it ended.
async fn read_loop(
    mut recv: quinn::RecvStream,
    max_frame: usize,
    pending: &Mutex<Pending>,
) -> String {
    loop {
        match read_link_frame(&mut recv, max_frame).await {
            Ok(Some((id, body))) => {
                // A caller that gave up has left the table; its late answer is dropped.
                if let Some(w) = lock(pending).waiting.remove(&id) {
                    let _ = w.send(Ok(body));
                }
            }
            Ok(None) => return "link closed by the node".into(),
            Err(e) => {
                let _ = recv.stop(0u32.into());
                return format!("link broken: {e}");
            }
        }
    }
}

/// Reads one link frame's header: `None` at a clean end of the stream.
pub async fn read_link_header<R>(r: &mut R, max: usize) -> Result<Option<(u64, usize)>, WireError>
where
    R: tokio::io::AsyncRead + Unpin,
{
    let mut len = [0u8; 4];
    match r.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(WireError::Io(e)),
    }
    let len = u32::from_be_bytes(len) as usize;
    if len < 8 {
        return Err(WireError::Decode(format!(
            "link frame of {len} bytes has no id"
        )));
    }
    let size = len - 8;
    if size > max {
        return Err(WireError::TooLarge { size, limit: max });
    }
    let mut id = [0u8; 8];
    r.read_exact(&mut id).await.map_err(eof_is_truncated)?;
    Ok(Some((u64::from_be_bytes(id), size)))
}

/// Reads one whole link frame: its id and envelope.
async fn read_link_frame<R>(r: &mut R, max: usize) -> Result<Option<(u64, Vec<u8>)>, WireError>
where
    R: tokio::io::AsyncRead + Unpin,
{
    let Some((id, size)) = read_link_header(r, max).await? else {
        return Ok(None);
    };
    Ok(Some((id, wire::read_body(r, size).await?)))
}

/// A connection as callers hold it: its link for small foreground requests, and streams of
/// their own for the rest. Cheap to clone; clones share the link.
#[derive(Clone)]
pub struct Channel {
    conn: quinn::Connection,
    link: Arc<Mutex<Option<Arc<Link>>>>,
    /// Held while a link is being opened, so concurrent callers open one, not many.
    opening: Arc<tokio::sync::Mutex<()>>,
    batched: bool,
}

impl Channel {
    /// `batched`: whether small foreground requests use a link (nodes that predate links
    /// answer a link's magic as an oversized frame, so a caller may turn this off).
    pub fn new(conn: quinn::Connection, batched: bool) -> Channel {
        Channel {
            conn,
            link: Arc::new(Mutex::new(None)),
            opening: Arc::new(tokio::sync::Mutex::new(())),
            batched,
        }
    }

    pub fn connection(&self) -> &quinn::Connection {
        &self.conn
    }

    pub fn close_reason(&self) -> Option<quinn::ConnectionError> {
        self.conn.close_reason()
    }

    /// Sends `msg` and waits for its answer.
    pub async fn call<Q, A>(&self, msg: &Q, how: Exchange) -> Result<Answer<A>, ExchangeError>
    where
        Q: Serialize,
        A: DeserializeOwned,
    {
        let req = Encoded::new(msg, how.trace)?;
        if !self.batched || how.priority != 0 || req.body_len() > LINK_MAX_REQUEST {
            return exchange_encoded(&self.conn, req, how).await;
        }
        let link = self.link(how.max_frame).await?;
        link.call(req, how).await
    }

    /// The open link, opening a new one if there is none or the last one broke.
    async fn link(&self, max_frame: usize) -> Result<Arc<Link>, ExchangeError> {
        let open = || lock(&self.link).clone().filter(|l| l.is_open());
        if let Some(l) = open() {
            return Ok(l);
        }
        let _opening = self.opening.lock().await;
        if let Some(l) = open() {
            return Ok(l);
        }
        let l = Link::open(&self.conn, max_frame)
            .await
            .map_err(ExchangeError::Open)?;
        *lock(&self.link) = Some(l.clone());
        Ok(l)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The table stays consistent if a holder panicked: entries are whole.
    m.lock().unwrap_or_else(|p| p.into_inner())
}
