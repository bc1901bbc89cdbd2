//! The local replica: every change to a key (a coordinated write with this process's actor
//! and counter floor, a replicated version, a purge) goes through core's apply rule
//! (`chorus_core::replica::apply`), as `chorus-node`'s replica writer does; this module
//! stores the result, keeps the Merkle trees and the tombstone index (when a key's
//! tombstone last changed) in step, and answers reads (recovering replicas say so). The
//! counter-restart, drop-siblings and tombstone-age-kept controls hook in here.

use std::collections::BTreeMap;

use chorus_core::context::Context;
use chorus_core::merkle::Tree;
use chorus_core::replica::{apply as core_apply, Applied, Change, Limits, Refused};
use chorus_core::version::{Dot, Object};

use super::{Env, Node};
use crate::config::Bug;
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

/// The limits a coordinated write must respect, as `chorus-node` configures them by
/// default (the object size cap is off there too).
const LIMITS: Limits = Limits {
    max_siblings: 128,
    max_object_bytes: usize::MAX,
};

/// Runs core's apply rule on the local copy and stores the result if it changed.
fn apply(node: &mut Node, env: &Env, key: &str, change: Change) -> Result<Applied, Refused> {
    let current = local(node, key);
    let Some(proc) = node.proc.as_mut() else {
        return Ok(Applied {
            object: current,
            changed: false,
            minted: None,
        });
    };
    // The counter-restart control: no node-wide floor, so the key's own clock is all that
    // orders its dots.
    let floor = if env.cfg.has(Bug::CounterRestart) {
        0
    } else {
        proc.floor
    };
    let mut applied = core_apply(current, change, &LIMITS, &proc.actor, floor)?;
    if let Some(minted) = applied.minted {
        proc.floor = proc.floor.max(minted);
    }
    if env.cfg.has(Bug::DropSiblings) && applied.changed && applied.minted.is_none() {
        applied.object = applied.object.map(keep_one_sibling);
    }
    if applied.changed {
        match &applied.object {
            Some(obj) => store(node, env, key, obj.clone()),
            None => remove(node, env.place, key),
        }
    }
    Ok(applied)
}

/// A write coordinated here: returns the new state and the write's dot.
pub fn update(
    node: &mut Node,
    env: &Env,
    key: &str,
    ctx: &Context,
    value: Option<Vec<u8>>,
) -> Result<Option<(Object, Dot)>, Refused> {
    let change = Change::Update {
        ctx: ctx.clone(),
        value,
        expires_ms: None,
    };
    let applied = apply(node, env, key, change)?;
    let (Some(proc), Some(obj), Some(counter)) = (&node.proc, applied.object, applied.minted)
    else {
        return Ok(None);
    };
    Ok(Some((obj, Dot::new(proc.actor.clone(), counter))))
}

/// Merges a replicated object into the local copy (merges are never refused).
pub fn merge(node: &mut Node, env: &Env, key: &str, incoming: &Object) {
    let _ = apply(node, env, key, Change::Merge(incoming.clone()));
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

/// The answer to a replica read: a recovering replica says so (its copy comes along, as
/// `chorus-node`'s does; the coordinator neither counts nor merges it).
pub fn read_answer(node: &Node, key: &str) -> ReadAnswer {
    if node.is_whole() {
        ReadAnswer::Found(local(node, key))
    } else {
        ReadAnswer::Recovering(local(node, key))
    }
}

/// Purges `key` if it still holds exactly the tombstone every replica agreed on.
pub fn purge(node: &mut Node, env: &Env, key: &str, digest: [u8; 32]) {
    let _ = apply(node, env, key, Change::Purge(digest));
}

fn remove(node: &mut Node, place: &Placement, key: &str) {
    let old = node.disk.view().data.get(key).map(|s| s.digest);
    node.disk.delete(key);
    tree_update(node, place, key, old, None);
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
