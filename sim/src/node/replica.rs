//! The local replica: how a node applies a coordinated write (`Object::update` with its
//! actor and counter floor), merges a replicated object (`Object::merge`), answers reads
//! (recovering replicas say so), purges a tombstone, and indexes when a key became
//! tombstones only. The counter-restart, drop-siblings and wiped-counts controls hook in here.

use std::collections::BTreeMap;

use chorus_core::context::Context;
use chorus_core::merkle::Tree;
use chorus_core::version::{Dot, Object};

use super::{Env, Node};
use crate::config::{Bug, SimConfig};
use crate::disk::{Disk, Stored};
use crate::msg::ReadAnswer;
use crate::placement::Placement;

/// Stores `object` as the key's new state (callers store only changes), keeping the
/// tombstone index up to date: a tombstone's age counts from its last change, so a newer
/// delete that replaces an older tombstone gets its own full grace. (Counting from the first
/// tombstone, as `chorus-node` does today, is the tombstone-age-kept control.)
fn store(node: &mut Node, env: &Env, key: &str, object: Object) {
    let since = if object.is_tombstone_only() {
        let old = node
            .disk
            .view()
            .data
            .get(key)
            .and_then(|s| s.tombstone_since);
        let keep = old.filter(|_| env.cfg.has(Bug::TombstoneAgeKept));
        Some(keep.unwrap_or_else(|| node.local_now(env.now)))
    } else {
        None
    };
    let digest = object.digest();
    let old = node.disk.view().data.get(key).map(|s| s.digest);
    tree_update(node, env.place, key, old, Some(digest));
    node.disk.put(
        key,
        Stored {
            object,
            digest,
            tombstone_since: since,
        },
    );
}

/// The local copy of `key`, if any.
pub fn local(node: &Node, key: &str) -> Option<Object> {
    node.disk.view().data.get(key).map(|s| s.object.clone())
}

/// A write coordinated here: returns the new state and the write's dot.
pub fn update(
    node: &mut Node,
    env: &Env,
    key: &str,
    ctx: &Context,
    value: Option<Vec<u8>>,
) -> Option<(Object, Dot)> {
    let mut obj = local(node, key).unwrap_or_default();
    let proc = node.proc.as_mut()?;
    // The bug: no node-wide floor, so the key's own clock is all that orders its dots.
    let floor = if env.cfg.has(Bug::CounterRestart) {
        0
    } else {
        proc.floor
    };
    let dot = obj.update(ctx, &proc.actor, floor, value);
    proc.floor = proc.floor.max(dot.counter);
    store(node, env, key, obj.clone());
    Some((obj, dot))
}

/// Merges a replicated object into the local copy.
pub fn merge(node: &mut Node, env: &Env, key: &str, incoming: &Object) {
    let mut obj = local(node, key).unwrap_or_default();
    if !obj.merge_changes(incoming) {
        return;
    }
    obj.merge(incoming);
    if env.cfg.has(Bug::DropSiblings) {
        obj = keep_one_sibling(obj);
    }
    store(node, env, key, obj);
}

/// The drop-siblings control: last writer (highest dot) wins.
fn keep_one_sibling(obj: Object) -> Object {
    if obj.sibling_count() <= 1 {
        return obj;
    }
    let last = obj
        .siblings()
        .iter()
        .max_by(|a, b| a.dot.cmp(&b.dot))
        .cloned();
    Object::from_parts(obj.clock().clone(), last.into_iter().collect()).unwrap_or(obj)
}

/// The answer to a replica read: recovering replicas don't hand out data.
pub fn read_answer(node: &Node, cfg: &SimConfig, key: &str) -> ReadAnswer {
    if !node.is_whole() && !cfg.has(Bug::WipedCounts) {
        return ReadAnswer::Recovering;
    }
    ReadAnswer::Found(local(node, key))
}

/// Purges `key` if it still holds exactly the tombstone every replica agreed on.
pub fn purge(node: &mut Node, place: &Placement, key: &str, digest: [u8; 32]) {
    let same = node
        .disk
        .view()
        .data
        .get(key)
        .is_some_and(|s| s.digest == digest && s.object.is_tombstone_only());
    if same {
        node.disk.delete(key);
        tree_update(node, place, key, Some(digest), None);
    }
}

/// Keeps the partition's Merkle tree in step with a change of one key's digest.
fn tree_update(
    node: &mut Node,
    place: &Placement,
    key: &str,
    old: Option<[u8; 32]>,
    new: Option<[u8; 32]>,
) {
    if old == new {
        return;
    }
    if let Some(p) = node.proc.as_mut() {
        let tree = p.trees.entry(place.partition(key)).or_default();
        tree.update(crate::BUCKET, key.as_bytes(), old.as_ref(), new.as_ref());
    }
}

/// The Merkle trees of what a disk holds, by partition.
pub fn build_trees(disk: &Disk, place: &Placement) -> BTreeMap<u32, Tree> {
    let mut trees: BTreeMap<u32, Tree> = BTreeMap::new();
    for (k, s) in &disk.view().data {
        let tree = trees.entry(place.partition(k)).or_default();
        tree.update(crate::BUCKET, k.as_bytes(), None, Some(&s.digest));
    }
    trees
}

/// The root of a partition's tree (an empty partition has the empty tree's root).
pub fn root(node: &Node, partition: u32) -> [u8; 32] {
    node.proc
        .as_ref()
        .and_then(|p| p.trees.get(&partition))
        .map_or_else(|| Tree::new().root(), Tree::root)
}
