//! The local replica: reads, coordinator-local updates, merges of remote versions, purges
//! of tombstones, and the anti-entropy trees that summarise what it holds.
//!
//! Every mutation is a read-merge-write of one key, so mutations go through a single writer
//! thread. It drains whatever is queued (up to `max_batch`) and commits it as one RocksDB
//! write batch: concurrent writers share one WAL write (and one fsync when `storage.sync` is
//! on), and no two read-merge-writes of a key can interleave. The same batch carries the
//! changed anti-entropy tree leaves and the tombstone index, so they never disagree with the
//! data, whatever the crash.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, oneshot};

use crate::context::Context;
use crate::hints::now_ms;
use crate::merkle::{Hash, Tree};
use crate::storage::{segment_range, split_data_key, Op, Storage, StorageError, Table};
use crate::version::{Actor, Object};

const META_IDENTITY: &[u8] = b"identity";
/// Names the tree layout the stored leaves were built for; a mismatch means rebuild.
const META_AAE_LAYOUT: &[u8] = b"aae-layout";
const AAE_FORMAT: u8 = 1;

#[derive(Debug, thiserror::Error)]
pub enum ReplicaError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("stored version of a key is corrupt: {0}")]
    Corrupt(String),
    #[error("key has {count} siblings, more than the limit of {limit}; resolve them by writing with the read's context")]
    TooManySiblings { count: usize, limit: usize },
    #[error("the key's stored version would be {size} bytes, more than the limit of {limit} bytes (limits.max_object_bytes); write with the context of a read to replace its siblings, or write a smaller value")]
    TooLarge { size: usize, limit: usize },
    #[error("data directory belongs to node {found:?}, not {expected:?}")]
    WrongNode { found: String, expected: String },
    #[error("replica is shutting down")]
    Closed,
}

/// A mutation of one key.
pub enum Change {
    /// A write coordinated here: replace what `ctx` covers with `value` (None deletes).
    Update {
        ctx: Context,
        value: Option<Vec<u8>>,
    },
    /// A version from another replica, merged in.
    Merge(Object),
    /// Remove the key if its version is still exactly the one with this digest (a tombstone
    /// every replica holds).
    Purge(Hash),
}

enum Job {
    Mutate {
        key: Vec<u8>,
        change: Change,
        reply: oneshot::Sender<Result<Object, ReplicaError>>,
    },
    /// Delete every key of a partition, with its trees and tombstone index.
    Drop {
        partition: u32,
        reply: oneshot::Sender<Result<u64, ReplicaError>>,
    },
}

/// Identifies one anti-entropy tree: a partition and the N of the buckets it covers, since
/// replicas of a partition share only the keys of buckets whose N includes them both.
pub type TreeId = (u32, u8);

/// N of a bucket, as the node's config says.
pub type NOf = Arc<dyn Fn(&[u8]) -> usize + Send + Sync>;

/// The node's anti-entropy trees, kept in memory and persisted leaf by leaf.
#[derive(Default)]
pub struct Trees {
    trees: Mutex<HashMap<TreeId, Tree>>,
}

impl Trees {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<TreeId, Tree>> {
        self.trees.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A copy of one tree (empty if the node holds no key of it).
    pub fn snapshot(&self, id: TreeId) -> Tree {
        self.lock().get(&id).cloned().unwrap_or_default()
    }

    pub fn root(&self, id: TreeId) -> Hash {
        self.lock().get(&id).map(|t| t.root()).unwrap_or([0; 32])
    }

    /// Applies a key's change and returns the leaf's new value.
    fn update(
        &self,
        id: TreeId,
        bucket: &[u8],
        key: &[u8],
        old: Option<&Hash>,
        new: Option<&Hash>,
    ) -> (u16, Hash) {
        let segment = crate::merkle::segment_of(bucket, key);
        let mut trees = self.lock();
        let tree = trees.entry(id).or_default();
        tree.update(bucket, key, old, new);
        (segment, tree.leaf(segment))
    }
}

fn tree_id(partition: u32, n: usize) -> TreeId {
    (partition, n.min(u8::MAX as usize) as u8)
}

fn leaf_key(id: TreeId, segment: u16) -> Vec<u8> {
    let mut k = id.0.to_be_bytes().to_vec();
    k.push(id.1);
    k.extend_from_slice(&segment.to_be_bytes());
    k
}

/// Handle to the local replica. Cheap to clone.
#[derive(Clone)]
pub struct Replica {
    storage: Arc<dyn Storage>,
    jobs: mpsc::Sender<Job>,
    actor: Actor,
    trees: Arc<Trees>,
    n_of: NOf,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Identity {
    node: String,
    epoch: u64,
}

/// Settings of the replica.
pub struct ReplicaOptions {
    pub max_batch: usize,
    pub max_siblings: usize,
    /// Largest version a coordinated write may leave (merges from peers are never refused).
    pub max_object_bytes: usize,
    /// N per bucket; changes here (between restarts) rebuild the trees.
    pub n_of: NOf,
    /// A fingerprint of what `n_of` answers, stored with the trees.
    pub layout: String,
}

impl Replica {
    /// Opens the replica for node `node_id`. Blocking. Every opening writes under a fresh
    /// random epoch, whatever the data directory holds: a restored copy, a log that lost its
    /// tail or a wiped disk can then never make it reuse a version counter (the stored
    /// identity only checks that the directory is this node's). Trees are loaded, or
    /// rebuilt from the data if their layout changed.
    pub fn open(
        storage: Arc<dyn Storage>,
        node_id: &str,
        opts: ReplicaOptions,
    ) -> Result<Replica, ReplicaError> {
        check_identity(&*storage, node_id)?;
        let epoch = fresh_epoch(node_id);
        tracing::info!(node = node_id, epoch, "fresh actor epoch for this process");
        let actor = Actor::new(node_id, epoch);
        let trees = Arc::new(Trees::default());
        let layout = format!("{AAE_FORMAT}:{}", opts.layout);
        if storage.get(Table::Meta, META_AAE_LAYOUT)?.as_deref() == Some(layout.as_bytes()) {
            load_trees(&*storage, &trees)?;
        } else {
            rebuild_trees(&*storage, &trees, &opts.n_of)?;
            storage.write(vec![Op::Put(
                Table::Meta,
                META_AAE_LAYOUT.to_vec(),
                layout.into_bytes(),
            )])?;
        }
        let (tx, rx) = mpsc::channel(opts.max_batch * 4);
        let writer = Writer {
            storage: storage.clone(),
            actor: actor.clone(),
            counter: 0,
            max_batch: opts.max_batch,
            max_siblings: opts.max_siblings,
            max_object_bytes: opts.max_object_bytes,
            trees: trees.clone(),
            n_of: opts.n_of.clone(),
        };
        std::thread::Builder::new()
            .name("replica-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| ReplicaError::Storage(StorageError::Write(e.to_string())))?;
        Ok(Replica {
            storage,
            jobs: tx,
            actor,
            trees,
            n_of: opts.n_of,
        })
    }

    /// This node's writer identity.
    pub fn actor(&self) -> &Actor {
        &self.actor
    }

    pub fn trees(&self) -> &Trees {
        &self.trees
    }

    /// The anti-entropy tree a key of `bucket` in `partition` belongs to.
    pub fn tree_of(&self, partition: u32, bucket: &[u8]) -> TreeId {
        tree_id(partition, (self.n_of)(bucket))
    }

    /// The stored version of a data key.
    pub async fn get(&self, key: Vec<u8>) -> Result<Option<Object>, ReplicaError> {
        match self.get_encoded(key).await? {
            Some(bytes) => Object::decode(&bytes)
                .map(Some)
                .map_err(|e| ReplicaError::Corrupt(e.to_string())),
            None => Ok(None),
        }
    }

    /// The stored version of a data key as stored (the encoding of [`Object`]), for sending
    /// on without decoding it; the receiver decodes and checks it.
    pub async fn get_encoded(&self, key: Vec<u8>) -> Result<Option<Vec<u8>>, ReplicaError> {
        // Most reads are answered from the memtable or block cache: do those here, and
        // only hand reads that would touch the disk to a blocking thread.
        if let Some(found) = self.storage.get_cached(Table::Data, &key)? {
            return Ok(found);
        }
        let storage = self.storage.clone();
        tokio::task::spawn_blocking(move || storage.get(Table::Data, &key))
            .await
            .map_err(|_| ReplicaError::Closed)?
            .map_err(ReplicaError::from)
    }

    /// Applies a change and returns the key's resulting version (empty after a purge).
    pub async fn apply(&self, key: Vec<u8>, change: Change) -> Result<Object, ReplicaError> {
        let (reply, rx) = oneshot::channel();
        self.jobs
            .send(Job::Mutate { key, change, reply })
            .await
            .map_err(|_| ReplicaError::Closed)?;
        rx.await.map_err(|_| ReplicaError::Closed)?
    }

    /// Deletes a partition this node no longer replicates; returns the keys removed.
    pub async fn drop_partition(&self, partition: u32) -> Result<u64, ReplicaError> {
        let (reply, rx) = oneshot::channel();
        self.jobs
            .send(Job::Drop { partition, reply })
            .await
            .map_err(|_| ReplicaError::Closed)?;
        rx.await.map_err(|_| ReplicaError::Closed)?
    }

    /// `(bucket, key, digest)` of every key of tree `id` in the given segments.
    pub async fn segment_keys(
        &self,
        id: TreeId,
        segments: Vec<u16>,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>, Hash)>, ReplicaError> {
        let storage = self.storage.clone();
        let n_of = self.n_of.clone();
        tokio::task::spawn_blocking(move || {
            let mut out = Vec::new();
            for seg in segments {
                let (mut start, end) = segment_range(id.0, seg);
                loop {
                    let page = storage.scan(Table::Data, &start, &end, 1024)?;
                    let Some((last, _)) = page.last() else { break };
                    let mut next = last.clone();
                    next.push(0);
                    for (k, v) in &page {
                        let Some(dk) = split_data_key(k) else {
                            continue;
                        };
                        if tree_id(id.0, n_of(dk.bucket)) != id {
                            continue;
                        }
                        let obj =
                            Object::decode(v).map_err(|e| ReplicaError::Corrupt(e.to_string()))?;
                        out.push((dk.bucket.to_vec(), dk.key.to_vec(), obj.digest()));
                    }
                    start = next;
                }
            }
            Ok(out)
        })
        .await
        .map_err(|_| ReplicaError::Closed)?
    }

    /// Data keys that have held only tombstones since before `before_ms`, at most `limit`.
    pub async fn old_tombstones(
        &self,
        before_ms: u64,
        limit: usize,
    ) -> Result<Vec<Vec<u8>>, ReplicaError> {
        let storage = self.storage.clone();
        tokio::task::spawn_blocking(move || {
            let mut out = Vec::new();
            let mut start = Vec::new();
            while out.len() < limit {
                let page = storage.scan(Table::Tombstones, &start, &[0xff; 16], 1024)?;
                let Some((last, _)) = page.last() else { break };
                let mut next = last.clone();
                next.push(0);
                for (k, v) in page {
                    let since = v
                        .get(..8)
                        .and_then(|b| b.try_into().ok())
                        .map(u64::from_be_bytes);
                    if since.is_some_and(|s| s < before_ms) && out.len() < limit {
                        out.push(k);
                    }
                }
                start = next;
            }
            Ok(out)
        })
        .await
        .map_err(|_| ReplicaError::Closed)?
    }
}

/// Refuses another node's data directory; records this node's id in a new one.
fn check_identity(storage: &dyn Storage, node_id: &str) -> Result<(), ReplicaError> {
    if let Some(bytes) = storage.get(Table::Meta, META_IDENTITY)? {
        let id: Identity = rmp_serde::from_slice(&bytes)
            .map_err(|e| ReplicaError::Corrupt(format!("identity: {e}")))?;
        if id.node != node_id {
            return Err(ReplicaError::WrongNode {
                found: id.node,
                expected: node_id.to_string(),
            });
        }
        return Ok(());
    }
    // The epoch field is kept for the format's sake; it is not read back.
    let id = Identity {
        node: node_id.to_string(),
        epoch: 0,
    };
    let bytes = rmp_serde::to_vec_named(&id)
        .map_err(|e| ReplicaError::Corrupt(format!("identity: {e}")))?;
    storage.write(vec![Op::Put(Table::Meta, META_IDENTITY.to_vec(), bytes)])?;
    Ok(())
}

fn load_trees(storage: &dyn Storage, trees: &Trees) -> Result<(), ReplicaError> {
    let mut leaves: HashMap<TreeId, Vec<Hash>> = HashMap::new();
    let mut start = Vec::new();
    loop {
        let page = storage.scan(Table::Aae, &start, &[0xff; 8], 4096)?;
        let Some((last, _)) = page.last() else { break };
        let mut next = last.clone();
        next.push(0);
        for (k, v) in page {
            if k.len() != 7 || v.len() != 32 {
                return Err(ReplicaError::Corrupt("anti-entropy leaf".into()));
            }
            let partition = u32::from_be_bytes([k[0], k[1], k[2], k[3]]);
            let segment = u16::from_be_bytes([k[5], k[6]]) as usize;
            let entry = leaves
                .entry((partition, k[4]))
                .or_insert_with(|| vec![[0u8; 32]; crate::merkle::LEAVES]);
            if let (Some(slot), Ok(h)) =
                (entry.get_mut(segment), <[u8; 32]>::try_from(v.as_slice()))
            {
                *slot = h;
            }
        }
        start = next;
    }
    let mut map = trees.lock();
    for (id, l) in leaves {
        let tree = Tree::from_leaves(l).map_err(|e| ReplicaError::Corrupt(e.to_string()))?;
        map.insert(id, tree);
    }
    Ok(())
}

/// Rebuilds every tree and the tombstone index from the data. Runs only when the stored
/// layout is missing or different (first start of a data directory, or a change of N).
fn rebuild_trees(storage: &dyn Storage, trees: &Trees, n_of: &NOf) -> Result<(), ReplicaError> {
    let mut clear = Vec::new();
    for table in [Table::Aae, Table::Tombstones] {
        let mut start = Vec::new();
        loop {
            let page = storage.scan(table, &start, &[0xff; 16], 4096)?;
            let Some((last, _)) = page.last() else { break };
            let mut next = last.clone();
            next.push(0);
            clear.extend(page.into_iter().map(|(k, _)| Op::Delete(table, k)));
            start = next;
        }
    }
    storage.write(clear)?;
    let now = now_ms();
    let mut start = Vec::new();
    let mut keys = 0usize;
    loop {
        let page = storage.scan(Table::Data, &start, &[0xff; 16], 4096)?;
        let Some((last, _)) = page.last() else { break };
        let mut next = last.clone();
        next.push(0);
        let mut ops = Vec::new();
        for (k, v) in &page {
            let (Some(dk), Ok(obj)) = (split_data_key(k), Object::decode(v)) else {
                continue;
            };
            let id = tree_id(dk.partition, n_of(dk.bucket));
            trees.update(id, dk.bucket, dk.key, None, Some(&obj.digest()));
            if obj.is_tombstone_only() {
                ops.push(Op::Put(
                    Table::Tombstones,
                    k.clone(),
                    now.to_be_bytes().to_vec(),
                ));
            }
            keys += 1;
        }
        storage.write(ops)?;
        start = next;
    }
    let ops = trees
        .lock()
        .iter()
        .flat_map(|(id, t)| {
            t.leaves()
                .iter()
                .enumerate()
                .filter(|(_, l)| **l != [0u8; 32])
                .map(|(s, l)| Op::Put(Table::Aae, leaf_key(*id, s as u16), l.to_vec()))
                .collect::<Vec<_>>()
        })
        .collect();
    storage.write(ops)?;
    tracing::info!(keys, "rebuilt anti-entropy trees from storage");
    Ok(())
}

fn read_object(storage: &dyn Storage, key: &[u8]) -> Result<Option<Object>, ReplicaError> {
    match storage.get(Table::Data, key)? {
        Some(bytes) => Object::decode(&bytes)
            .map(Some)
            .map_err(|e| ReplicaError::Corrupt(e.to_string())),
        None => Ok(None),
    }
}

/// A random epoch. Should the system's random source fail, the clock and process id
/// still make a repeat very unlikely.
fn fresh_epoch(node_id: &str) -> u64 {
    let mut random = [0u8; 32];
    if let Err(e) = crate::entropy::random_bytes(&mut random) {
        tracing::warn!(error = %e, "no system randomness for the actor epoch; using the clock");
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let mut h = blake3::Hasher::new();
    h.update(&random);
    h.update(node_id.as_bytes());
    h.update(&now.to_le_bytes());
    h.update(&std::process::id().to_le_bytes());
    let d = h.finalize();
    let mut b = [0u8; 8];
    b.copy_from_slice(&d.as_bytes()[..8]);
    u64::from_le_bytes(b)
}

/// Object bytes one write batch may hold before it is written (see `Writer::commit`).
const BATCH_BYTES: usize = 64 * 1024 * 1024;

/// About how many bytes an object holds: its values.
fn approx_size(o: &Object) -> usize {
    o.siblings()
        .iter()
        .map(|s| s.value.as_ref().map_or(0, Vec::len) + 64)
        .sum()
}

struct Writer {
    storage: Arc<dyn Storage>,
    actor: Actor,
    /// The highest counter `actor` has minted, for any key. Kept across purges, so a key
    /// that is purged and written again never gets a dot it had before.
    counter: u64,
    max_batch: usize,
    max_siblings: usize,
    max_object_bytes: usize,
    trees: Arc<Trees>,
    n_of: NOf,
}

/// What one job did to its key, for the trees and the tombstone index.
struct Effect {
    key: Vec<u8>,
    old: Option<Object>,
    new: Option<Object>,
}

impl Writer {
    fn run(mut self, mut rx: mpsc::Receiver<Job>) {
        let mut carry = None;
        while let Some(first) = carry.take().or_else(|| rx.blocking_recv()) {
            let mut jobs = Vec::new();
            let mut next = Some(first);
            while let Some(job) = next.take() {
                match job {
                    Job::Mutate { key, change, reply } => jobs.push((key, change, reply)),
                    Job::Drop { partition, reply } => {
                        // Mutations queued before the drop land first.
                        self.commit(std::mem::take(&mut jobs));
                        let _ = reply.send(self.drop_partition(partition));
                        break;
                    }
                }
                if jobs.len() >= self.max_batch {
                    break;
                }
                match rx.try_recv() {
                    Ok(j) => next = Some(j),
                    Err(_) => break,
                }
            }
            if let Some(j) = next {
                carry = Some(j);
            }
            if !jobs.is_empty() {
                self.commit(jobs);
            }
        }
    }

    fn drop_partition(&self, partition: u32) -> Result<u64, ReplicaError> {
        let mut removed = 0u64;
        let prefix = partition.to_be_bytes().to_vec();
        let end = match partition.checked_add(1) {
            Some(n) => n.to_be_bytes().to_vec(),
            None => vec![0xff; 5],
        };
        for table in [Table::Data, Table::Aae, Table::Tombstones] {
            loop {
                let page = self.storage.scan(table, &prefix, &end, 4096)?;
                if page.is_empty() {
                    break;
                }
                if table == Table::Data {
                    removed += page.len() as u64;
                }
                self.storage.write(
                    page.into_iter()
                        .map(|(k, _)| Op::Delete(table, k))
                        .collect(),
                )?;
            }
        }
        self.trees.lock().retain(|(p, _), _| *p != partition);
        Ok(removed)
    }

    /// Applies a group of jobs in order and writes them in one batch. A key touched twice in
    /// the group sees its own earlier result, not the stale stored value.
    #[allow(clippy::type_complexity)]
    fn commit(
        &mut self,
        jobs: Vec<(
            Vec<u8>,
            Change,
            oneshot::Sender<Result<Object, ReplicaError>>,
        )>,
    ) {
        let mut pending: HashMap<Vec<u8>, Option<Object>> = HashMap::new();
        let mut results = Vec::with_capacity(jobs.len());
        let mut effects = Vec::new();
        let mut held = 0usize;
        for (key, change, reply) in jobs {
            // Each job holds copies of its key's object until the batch is written: past
            // BATCH_BYTES (many writes to one large hot key), write what we have first.
            if held > BATCH_BYTES {
                self.write_batch(std::mem::take(&mut effects), std::mem::take(&mut results));
                pending.clear();
                held = 0;
            }
            let current = match pending.get(&key) {
                Some(o) => Ok(o.clone()),
                None => read_object(&*self.storage, &key),
            };
            match current.and_then(|cur| self.apply(cur.clone(), change).map(|r| (cur, r))) {
                Ok((old, (new, changed))) => {
                    held += new.as_ref().map_or(0, approx_size) * 4;
                    if changed {
                        pending.insert(key.clone(), new.clone());
                        effects.push(Effect {
                            key,
                            old,
                            new: new.clone(),
                        });
                    }
                    results.push((reply, Ok(new.unwrap_or_default())));
                }
                Err(e) => results.push((reply, Err(e))),
            }
        }
        self.write_batch(effects, results);
    }

    /// Writes a batch's effects in one storage write, then answers its jobs.
    #[allow(clippy::type_complexity)]
    fn write_batch(
        &self,
        effects: Vec<Effect>,
        results: Vec<(
            oneshot::Sender<Result<Object, ReplicaError>>,
            Result<Object, ReplicaError>,
        )>,
    ) {
        let (ops, undo) = self.ops_for(&effects);
        let written = if ops.is_empty() {
            Ok(())
        } else {
            self.storage.write(ops)
        };
        match written {
            Ok(()) => {
                for (reply, r) in results {
                    let _ = reply.send(r);
                }
            }
            Err(e) => {
                // Nothing was written: take the tree changes back.
                for (id, bucket, key, old, new) in undo.into_iter().rev() {
                    self.trees
                        .update(id, &bucket, &key, new.as_ref(), old.as_ref());
                }
                tracing::error!(error = %e, "write batch failed");
                for (reply, _) in results {
                    let _ = reply.send(Err(ReplicaError::Storage(StorageError::Write(
                        e.to_string(),
                    ))));
                }
            }
        }
    }

    /// The storage ops for a group of effects: data, tree leaves, tombstone index. Also
    /// returns the tree updates made, to undo them if the write fails.
    #[allow(clippy::type_complexity)]
    fn ops_for(
        &self,
        effects: &[Effect],
    ) -> (
        Vec<Op>,
        Vec<(TreeId, Vec<u8>, Vec<u8>, Option<Hash>, Option<Hash>)>,
    ) {
        let mut ops = Vec::with_capacity(effects.len() * 3);
        let mut undo = Vec::with_capacity(effects.len());
        let mut leaves: HashMap<(TreeId, u16), Hash> = HashMap::new();
        for e in effects {
            match &e.new {
                Some(obj) => ops.push(Op::Put(Table::Data, e.key.clone(), obj.encode())),
                None => ops.push(Op::Delete(Table::Data, e.key.clone())),
            }
            // Keys come from `data_key`; anything else has no tree to update.
            let Some(dk) = split_data_key(&e.key) else {
                continue;
            };
            let id = tree_id(dk.partition, (self.n_of)(dk.bucket));
            let old_d = e.old.as_ref().map(Object::digest);
            let new_d = e.new.as_ref().map(Object::digest);
            let (segment, leaf) =
                self.trees
                    .update(id, dk.bucket, dk.key, old_d.as_ref(), new_d.as_ref());
            leaves.insert((id, segment), leaf);
            undo.push((id, dk.bucket.to_vec(), dk.key.to_vec(), old_d, new_d));
            let was_tomb = e.old.as_ref().is_some_and(Object::is_tombstone_only);
            let is_tomb = e.new.as_ref().is_some_and(Object::is_tombstone_only);
            if is_tomb && !was_tomb {
                ops.push(Op::Put(
                    Table::Tombstones,
                    e.key.clone(),
                    now_ms().to_be_bytes().to_vec(),
                ));
            } else if was_tomb && !is_tomb {
                ops.push(Op::Delete(Table::Tombstones, e.key.clone()));
            }
        }
        for ((id, segment), leaf) in leaves {
            let k = leaf_key(id, segment);
            if leaf == [0u8; 32] {
                ops.push(Op::Delete(Table::Aae, k));
            } else {
                ops.push(Op::Put(Table::Aae, k, leaf.to_vec()));
            }
        }
        (ops, undo)
    }

    /// The key's new state and whether it changed.
    fn apply(
        &mut self,
        current: Option<Object>,
        change: Change,
    ) -> Result<(Option<Object>, bool), ReplicaError> {
        match change {
            Change::Update { ctx, value } => {
                let mut obj = current.unwrap_or_default();
                let (siblings_before, bytes_before) = (obj.sibling_count(), value_bytes(&obj));
                let dot = obj.update(&ctx, &self.actor, self.counter, value);
                self.counter = self.counter.max(dot.counter);
                // A write that shrinks a key already over a limit is always taken: it is how
                // a key grown past them by concurrent writes (merges aren't refused) is
                // resolved, possibly in steps when a read could show only part of it.
                let shrinks =
                    obj.sibling_count() <= siblings_before && value_bytes(&obj) <= bytes_before;
                let count = obj.sibling_count();
                if count > self.max_siblings && !shrinks {
                    return Err(ReplicaError::TooManySiblings {
                        count,
                        limit: self.max_siblings,
                    });
                }
                if !shrinks {
                    check_size(&obj, self.max_object_bytes)?;
                }
                Ok((Some(obj), true))
            }
            Change::Merge(other) => {
                let Some(mut obj) = current else {
                    return Ok((Some(other), true));
                };
                if !obj.merge_changes(&other) {
                    return Ok((Some(obj), false));
                }
                obj.merge(&other);
                Ok((Some(obj), true))
            }
            Change::Purge(digest) => match current {
                Some(obj) if obj.is_tombstone_only() && obj.digest() == digest => Ok((None, true)),
                other => Ok((other, false)),
            },
        }
    }
}

/// Bytes of live values.
fn value_bytes(obj: &Object) -> usize {
    obj.siblings()
        .iter()
        .map(|s| s.value.as_ref().map_or(0, Vec::len))
        .sum()
}

/// Refuses a version larger than `limit` once encoded. Values are summed first, so the
/// encoding is only done for versions near the limit.
fn check_size(obj: &Object, limit: usize) -> Result<(), ReplicaError> {
    // Generous per-sibling and per-actor overheads (ids, epochs, counters, field names).
    const PER_ENTRY: usize = 256;
    let values = value_bytes(obj);
    let entries = obj.siblings().len() + obj.clock().len();
    if values.saturating_add(entries.saturating_mul(PER_ENTRY)) <= limit {
        return Ok(());
    }
    let size = obj.encode().len();
    if size > limit {
        return Err(ReplicaError::TooLarge { size, limit });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::Context;
    use crate::storage::{data_key, MemStorage};

    fn opts(max_siblings: usize) -> ReplicaOptions {
        ReplicaOptions {
            max_batch: 16,
            max_siblings,
            max_object_bytes: 1 << 20,
            n_of: Arc::new(|_| 3),
            layout: "test".into(),
        }
    }

    fn put(v: &[u8]) -> Change {
        Change::Update {
            ctx: Context::default(),
            value: Some(v.to_vec()),
        }
    }

    #[tokio::test]
    async fn update_merge_and_epoch() {
        let mem = MemStorage::default();
        let r = Replica::open(Arc::new(mem.clone()), "n1", opts(4)).expect("open");
        let epoch = r.actor().epoch;
        let k = data_key(0, b"b", b"k");
        let a = r.apply(k.clone(), put(b"v1")).await.expect("update");
        assert_eq!(a.values(), vec![&b"v1"[..]]);
        let b = r.apply(k.clone(), put(b"v2")).await.expect("update");
        assert_eq!(b.sibling_count(), 2);
        let stored = r.get(k.clone()).await.expect("get").expect("present");
        assert_eq!(stored, b);
        // Too many siblings is refused, and the stored state is unchanged.
        for _ in 0..2 {
            r.apply(k.clone(), put(b"x")).await.expect("within limit");
        }
        let err = r.apply(k.clone(), put(b"x")).await;
        assert!(matches!(err, Err(ReplicaError::TooManySiblings { .. })));
        let stored = r.get(k.clone()).await.expect("get").expect("present");
        assert_eq!(stored.sibling_count(), 4);
        // Same storage, same node: a new epoch all the same (the storage may be an older
        // copy). Another node id is refused.
        let again = Replica::open(Arc::new(mem.clone()), "n1", opts(4)).expect("reopen");
        assert_ne!(again.actor().epoch, epoch);
        assert_eq!(again.actor().node, "n1");
        assert!(matches!(
            Replica::open(Arc::new(mem), "n2", opts(4)),
            Err(ReplicaError::WrongNode { .. })
        ));
        // Empty storage: a new epoch.
        let fresh = Replica::open(Arc::new(MemStorage::default()), "n1", opts(4)).expect("fresh");
        assert_ne!(fresh.actor().epoch, epoch);
    }

    #[tokio::test]
    async fn a_key_over_the_limits_takes_only_writes_that_shrink_it() {
        let r = Replica::open(Arc::new(MemStorage::default()), "n1", opts(4)).expect("open");
        let k = data_key(0, b"b", b"k");
        // Concurrent writes elsewhere: merging is never refused, so the key grows past 4.
        let mut grown = crate::version::Object::new();
        for i in 0..6u64 {
            let who = crate::version::Actor::new(format!("w{i}"), 1);
            grown.update(&Context::default(), &who, 0, Some(vec![b'a' + i as u8; 10]));
        }
        r.apply(k.clone(), Change::Merge(grown.clone()))
            .await
            .expect("merge");
        let err = r.apply(k.clone(), put(b"blind")).await;
        assert!(matches!(err, Err(ReplicaError::TooManySiblings { .. })));
        // A read that showed two of the six (a cut reply): replacing them shrinks the key,
        // though it stays over the limit; the four unseen values are kept.
        let shown = grown.context_showing(|v| v[0] < b'c');
        let cut = grown.context_showing(|_| false);
        assert!(cut.vv.is_empty() && cut.dots.is_empty());
        let out = r
            .apply(
                k.clone(),
                Change::Update {
                    ctx: shown,
                    value: Some(b"resolved".to_vec()),
                },
            )
            .await
            .expect("a shrinking write is taken");
        assert_eq!(out.sibling_count(), 5);
        assert!(out.values().contains(&&b"resolved"[..]));
        assert!(!out.values().iter().any(|v| v[0] < b'c' && v.len() == 10));
    }

    #[tokio::test]
    async fn trees_follow_writes_survive_restarts_and_match_a_rebuild() {
        let mem = MemStorage::default();
        let r = Replica::open(Arc::new(mem.clone()), "n1", opts(8)).expect("open");
        let mut objs = Vec::new();
        for i in 0..50u32 {
            let p = i % 4;
            let key = format!("k{i}");
            let o = r
                .apply(data_key(p, b"b", key.as_bytes()), put(b"v"))
                .await
                .expect("put");
            objs.push((p, key, o));
        }
        // Delete a few: tombstones are indexed.
        for (p, key, o) in objs.iter().take(5) {
            r.apply(
                data_key(*p, b"b", key.as_bytes()),
                Change::Update {
                    ctx: o.context(),
                    value: None,
                },
            )
            .await
            .expect("delete");
        }
        assert_eq!(
            r.old_tombstones(u64::MAX, 100)
                .await
                .expect("tombstones")
                .len(),
            5
        );
        let id = r.tree_of(1, b"b");
        let before = r.trees().snapshot(id);
        assert!(!before.is_empty());
        // Keys listed per segment match the tree.
        let segs: Vec<u16> = (0..crate::merkle::LEAVES as u16).collect();
        let listed = r.segment_keys(id, segs).await.expect("keys");
        let mut rebuilt = Tree::new();
        for (b, k, d) in &listed {
            rebuilt.update(b, k, None, Some(d));
        }
        assert_eq!(rebuilt, before);

        // Reopen: loaded from the leaves, equal.
        drop(r);
        let again = Replica::open(Arc::new(mem.clone()), "n1", opts(8)).expect("reopen");
        assert_eq!(again.trees().snapshot(id), before);
        // A different layout forces a rebuild from data, still equal.
        let mut o = opts(8);
        o.layout = "other".into();
        let rebuilt = Replica::open(Arc::new(mem), "n1", o).expect("rebuild");
        assert_eq!(rebuilt.trees().snapshot(id), before);
        assert_eq!(
            rebuilt
                .old_tombstones(u64::MAX, 100)
                .await
                .expect("tombstones")
                .len(),
            5
        );
    }

    #[tokio::test]
    async fn purge_removes_only_the_expected_tombstone() {
        let r = Replica::open(Arc::new(MemStorage::default()), "n1", opts(8)).expect("open");
        let k = data_key(0, b"b", b"k");
        let o = r.apply(k.clone(), put(b"v")).await.expect("put");
        // A live value is never purged.
        r.apply(k.clone(), Change::Purge(o.digest()))
            .await
            .expect("purge");
        assert!(r.get(k.clone()).await.expect("get").is_some());
        let t = r
            .apply(
                k.clone(),
                Change::Update {
                    ctx: o.context(),
                    value: None,
                },
            )
            .await
            .expect("delete");
        let id = r.tree_of(0, b"b");
        assert!(!r.trees().snapshot(id).is_empty());
        // A stale digest doesn't purge; the right one does, and the tree empties.
        r.apply(k.clone(), Change::Purge([7; 32]))
            .await
            .expect("purge");
        assert!(r.get(k.clone()).await.expect("get").is_some());
        r.apply(k.clone(), Change::Purge(t.digest()))
            .await
            .expect("purge");
        assert!(r.get(k.clone()).await.expect("get").is_none());
        assert!(r.trees().snapshot(id).is_empty());
        assert!(r
            .old_tombstones(u64::MAX, 10)
            .await
            .expect("index")
            .is_empty());
    }

    #[tokio::test]
    async fn purge_and_recreate_never_reuse_a_dot() {
        let r = Replica::open(Arc::new(MemStorage::default()), "n1", opts(8)).expect("open");
        let k = data_key(0, b"b", b"k");
        let other = data_key(0, b"b", b"other");
        let v0 = r.apply(k.clone(), put(b"v0")).await.expect("put");
        let before_delete = v0.context();
        let t = r
            .apply(
                k.clone(),
                Change::Update {
                    ctx: before_delete.clone(),
                    value: None,
                },
            )
            .await
            .expect("delete");
        r.apply(k.clone(), Change::Purge(t.digest()))
            .await
            .expect("purge");
        assert!(r.get(k.clone()).await.expect("get").is_none());
        // Writes to another key share the node-wide counter.
        r.apply(other, put(b"x")).await.expect("put");
        let old_max = t.clock().get(r.actor());
        let new = r.apply(k.clone(), put(b"new")).await.expect("put");
        let new_dot = new.siblings()[0].dot.clone();
        assert!(new_dot.counter > old_max + 1, "{new_dot} after {old_max}");
        // A context read before the delete doesn't cover the re-created value.
        let late = r
            .apply(
                k.clone(),
                Change::Update {
                    ctx: before_delete,
                    value: Some(b"late".to_vec()),
                },
            )
            .await
            .expect("late put");
        assert_eq!(late.values(), vec![&b"new"[..], &b"late"[..]]);
    }

    #[tokio::test]
    async fn reopening_older_storage_never_reuses_a_dot() {
        let mem = MemStorage::default();
        let k = data_key(0, b"b", b"k");
        let r = Replica::open(Arc::new(mem.clone()), "n1", opts(8)).expect("open");
        let first = r.apply(k.clone(), put(b"aaa")).await.expect("put");
        drop(r);
        // The same (or an older) directory opened again: same node, new dots.
        let again = Replica::open(Arc::new(MemStorage::default()), "n1", opts(8)).expect("open");
        let second = again.apply(k.clone(), put(b"zzz")).await.expect("put");
        assert_ne!(first.siblings()[0].dot, second.siblings()[0].dot);
        let mut merged = first.clone();
        merged.merge(&second);
        let mut values = merged.values();
        values.sort();
        assert_eq!(values, vec![&b"aaa"[..], &b"zzz"[..]]);
    }

    #[tokio::test]
    async fn writes_past_the_size_cap_are_refused_but_merges_are_not() {
        let mut o = opts(64);
        o.max_object_bytes = 10_000;
        let r = Replica::open(Arc::new(MemStorage::default()), "n1", o).expect("open");
        let k = data_key(0, b"b", b"k");
        for _ in 0..3 {
            r.apply(k.clone(), put(&[1; 3000]))
                .await
                .expect("under the cap");
        }
        let err = r.apply(k.clone(), put(&[1; 3000])).await;
        match err {
            Err(e @ ReplicaError::TooLarge { .. }) => {
                assert!(e.to_string().contains("limits.max_object_bytes"), "{e}")
            }
            other => panic!("expected TooLarge, got {other:?}"),
        }
        let stored = r.get(k.clone()).await.expect("get").expect("present");
        assert_eq!(
            stored.sibling_count(),
            3,
            "a refused write leaves nothing behind"
        );
        // A version from a peer over the cap is still merged: refusing it would lose data.
        let mut theirs = Object::new();
        let peer = Actor::new("n2", 1);
        for floor in 0..4 {
            theirs.update(&Context::default(), &peer, floor, Some(vec![2; 3000]));
        }
        let merged = r
            .apply(k.clone(), Change::Merge(theirs))
            .await
            .expect("merge");
        assert_eq!(merged.sibling_count(), 7);
        // A write with the context of everything shrinks it back under the cap.
        let resolved = r
            .apply(
                k.clone(),
                Change::Update {
                    ctx: merged.context(),
                    value: Some(vec![3; 10]),
                },
            )
            .await
            .expect("resolving write");
        assert_eq!(resolved.values(), vec![&[3u8; 10][..]]);
    }
}
