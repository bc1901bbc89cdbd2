//! The node's anti-entropy trees: one per (partition, N), kept in memory, persisted leaf by
//! leaf in the data's write batches, loaded at start or rebuilt from the data.

use std::collections::HashMap;
use std::sync::Mutex;

use super::{NOf, ReplicaError};
use crate::hints::now_ms;
use crate::merkle::{Hash, Tree};
use crate::storage::{split_data_key, Op, Storage, Table};
use crate::version::Object;

pub use crate::merkle::TreeId;

/// The node's anti-entropy trees, kept in memory and persisted leaf by leaf.
#[derive(Default)]
pub struct Trees {
    trees: Mutex<HashMap<TreeId, Tree>>,
}

impl Trees {
    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<TreeId, Tree>> {
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
    pub(super) fn update(
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

pub(super) fn tree_id(partition: u32, n: usize) -> TreeId {
    (partition, n.min(u8::MAX as usize) as u8)
}

pub(super) fn leaf_key(id: TreeId, segment: u16) -> Vec<u8> {
    let mut k = id.0.to_be_bytes().to_vec();
    k.push(id.1);
    k.extend_from_slice(&segment.to_be_bytes());
    k
}

pub(super) fn load_trees(storage: &dyn Storage, trees: &Trees) -> Result<(), ReplicaError> {
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
pub(super) fn rebuild_trees(
    storage: &dyn Storage,
    trees: &Trees,
    n_of: &NOf,
) -> Result<(), ReplicaError> {
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
            if let Some(expiry) = obj.dead_from() {
                ops.push(Op::Put(
                    Table::Tombstones,
                    k.clone(),
                    now.max(expiry).to_be_bytes().to_vec(),
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
