//! The single writer thread: drains queued mutations, applies each in order (a key touched
//! twice in a batch sees its own earlier result) and commits the group, with its tree leaves
//! and tombstone index, as one write batch.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use super::trees::{leaf_key, tree_id};
use super::{read_object, Change, ConflictsOf, Job, Limits, NOf, ReplicaError, TreeId, Trees};
use crate::hints::now_ms;
use crate::merkle::Hash;
use crate::storage::{split_data_key, Op, Storage, StorageError, Table};
use crate::version::{Actor, Conflicts, Object};

/// Object bytes one write batch may hold before it is written (see `Writer::commit`).
const BATCH_BYTES: usize = 64 * 1024 * 1024;

/// About how many bytes an object holds: its values.
fn approx_size(o: &Object) -> usize {
    o.siblings()
        .iter()
        .map(|s| s.value.as_ref().map_or(0, Vec::len) + 64)
        .sum()
}

pub(super) struct Writer {
    pub(super) storage: Arc<dyn Storage>,
    pub(super) actor: Actor,
    /// The highest counter `actor` has minted, for any key. Kept across purges, so a key
    /// that is purged and written again never gets a dot it had before.
    pub(super) counter: u64,
    pub(super) max_batch: usize,
    pub(super) limits: Limits,
    pub(super) trees: Arc<Trees>,
    pub(super) n_of: NOf,
    pub(super) conflicts_of: ConflictsOf,
    /// Stamps updates in `lww` buckets; follows the timestamps of every version merged in.
    /// Living in the writer, it has seen every timestamp this replica holds.
    pub(super) hlc: chorus_core::hlc::Hlc,
}

/// What one job did to its key, for the trees and the tombstone index.
struct Effect {
    key: Vec<u8>,
    old: Option<Object>,
    new: Option<Object>,
}

impl Writer {
    pub(super) fn run(mut self, mut rx: mpsc::Receiver<Job>) {
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
            match current.and_then(|cur| self.apply(&key, cur.clone(), change).map(|r| (cur, r))) {
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
            let was_tomb = e.old.as_ref().and_then(Object::dead_from).is_some();
            let dead_from = e.new.as_ref().and_then(Object::dead_from);
            let is_tomb = dead_from.is_some();
            // A tombstone's age counts from its last change: a newer delete over an older
            // one starts the grace again, or it could be purged before a hint it covers.
            // Values with a TTL age from the later of that and their expiry.
            if let Some(expiry) = dead_from.filter(|_| !was_tomb || e.old != e.new) {
                ops.push(Op::Put(
                    Table::Tombstones,
                    e.key.clone(),
                    now_ms().max(expiry).to_be_bytes().to_vec(),
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

    /// The key's new state and whether it changed; the rules are `chorus_core::replica`,
    /// under the key's bucket's conflict policy.
    fn apply(
        &mut self,
        key: &[u8],
        current: Option<Object>,
        change: Change,
    ) -> Result<(Option<Object>, bool), ReplicaError> {
        let conflicts = split_data_key(key)
            .map(|dk| (self.conflicts_of)(dk.bucket))
            .unwrap_or_default();
        let now = now_ms();
        if let Change::Merge(other) = &change {
            for ts in other.siblings().iter().filter_map(|s| s.ts) {
                if let Err(e) = self.hlc.observe(ts, now) {
                    tracing::warn!(error = %e, "a replicated write's timestamp is too far ahead of this node's clock");
                }
            }
        }
        let ts = match (&change, conflicts) {
            (Change::Update { .. }, Conflicts::Lww) => self.hlc.now(now),
            _ => 0,
        };
        let local = chorus_core::replica::Local {
            actor: &self.actor,
            floor: self.counter,
            conflicts,
            now_ms: now,
            ts,
        };
        let applied = chorus_core::replica::apply_at(current, change, &self.limits, &local)?;
        if let Some(minted) = applied.minted {
            self.counter = self.counter.max(minted);
        }
        Ok((applied.object, applied.changed))
    }
}
