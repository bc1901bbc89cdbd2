//! What a node does on its own: hinted handoff (durable hints, replayed to live targets,
//! dropped after their expiry: `chorus_core::hints`), anti-entropy (a key-digest exchange
//! per shared partition, each differing key repaired by `chorus_core::anti_entropy`;
//! recovering nodes only pull), recovery (one completed exchange with every other replica
//! of each partition before the node counts toward R), the restored-copy rule
//! (`chorus_core::recovery::split_restored`), and tombstone purging (who decides and when
//! every replica agrees: `chorus_core::tombstone`).

use std::collections::{BTreeMap, BTreeSet};

use chorus_core::anti_entropy::{may_push, repair};
use chorus_core::hints;
use chorus_core::recovery::{split_restored, OtherReplica};
use chorus_core::tombstone::{cutoff, whose_turn, Agreement, Turn};
use chorus_core::version::Object;
use std::time::Duration;

use super::{replica, Env, Node, Timer};
use crate::disk::Hint;
use crate::msg::{Msg, Push};
use crate::net::Addr;
use crate::placement::Placement;

/// Most tombstones one purge pass starts on.
const PURGES_PER_ROUND: usize = 64;

pub(crate) struct PurgeReq {
    key: String,
    peers: Vec<usize>,
    agreement: Agreement,
}

/// The exchanges a recovering node owes: every other replica of each of its partitions.
pub fn recovery_obligations(me: usize, place: &Placement) -> BTreeSet<(u32, usize)> {
    let mut out = BTreeSet::new();
    for p in 0..place.partitions() {
        let pref = place.pref(p);
        if pref.contains(&me) {
            out.extend(pref.iter().filter(|&&n| n != me).map(|&n| (p, n)));
        }
    }
    out
}

/// A restored copy is emptied, partition by partition, where every other replica is up and
/// whole (so it holds everything acknowledged there); elsewhere it may be the last copy
/// and is kept (served to no one until recovered). `whole[n]`: `None` down, else whether
/// whole.
pub fn drop_restored_partitions(node: &mut Node, place: &Placement, whole: &[Option<bool>]) {
    let me = node.index;
    let others = (0..place.partitions())
        .filter(|&p| place.pref(p).contains(&me))
        .map(|p| {
            let states = place
                .pref(p)
                .iter()
                .filter(|&&n| n != me)
                .map(|&n| match whole.get(n).copied().flatten() {
                    None => OtherReplica::Down,
                    Some(false) => OtherReplica::Recovering,
                    Some(true) => OtherReplica::Whole,
                })
                .collect();
            (p, states)
        });
    // Every peer's state is known here, so there is nothing to wait for.
    let droppable: BTreeSet<u32> = split_restored(others, true)
        .map(|s| s.drop.into_iter().collect())
        .unwrap_or_default();
    node.disk
        .drop_keys(|k| droppable.contains(&place.partition(k)));
}

/// Keeps a write for a replica that missed it, durably.
pub fn store_hint(node: &mut Node, env: &mut Env, target: usize, key: &str, object: &Object) {
    if node.proc.is_none() {
        return;
    }
    let id = env.id();
    let created = node.local_now(env.now);
    node.disk.put_hint(
        id,
        Hint {
            target,
            key: key.to_string(),
            object: object.clone(),
            created,
        },
    );
}

/// Drops expired hints and sends the others to targets that are up.
pub fn replay_hints(node: &mut Node, env: &mut Env) {
    let local = Duration::from_micros(node.local_now(env.now));
    let expiry = Duration::from_micros(env.cfg.hint_expiry);
    let mut expired = Vec::new();
    let mut pending: BTreeMap<&str, u64> = BTreeMap::new();
    for (&id, h) in &node.disk.view().hints {
        if hints::expired(Duration::from_micros(h.created), local, expiry) {
            expired.push(id);
        } else {
            *pending.entry(env.place.name(h.target)).or_default() += 1;
        }
    }
    let now = env.now;
    let due: BTreeSet<usize> = hints::due(pending, |t| {
        env.place.index(t).is_some_and(|i| node.sees_up(i, now))
    })
    .into_iter()
    .filter_map(|t| env.place.index(t))
    .collect();
    let send: Vec<(u64, usize, String, Object)> = node
        .disk
        .view()
        .hints
        .iter()
        .filter(|(id, h)| due.contains(&h.target) && !expired.contains(id))
        .map(|(&id, h)| (id, h.target, h.key.clone(), h.object.clone()))
        .collect();
    for id in expired {
        node.disk.delete_hint(id);
    }
    let Some(proc) = node.proc.as_mut() else {
        return;
    };
    // Acks of an earlier round that are still out are forgotten: the hint goes again.
    proc.hint_sends.clear();
    for (id, target, key, object) in send {
        let req = env.id();
        proc.hint_sends.insert(req, id);
        env.send(
            Addr::Node(target),
            Msg::Replicate {
                req,
                key,
                object,
                why: Push::Hint,
            },
        );
    }
}

/// A hint's target acknowledged: the hint is delivered.
pub fn on_hint_ack(node: &mut Node, req: u64, ok: bool) {
    let Some(id) = node.proc.as_mut().and_then(|p| p.hint_sends.remove(&req)) else {
        return;
    };
    if ok {
        node.disk.delete_hint(id);
    }
}

/// The node's keys and digests, by partition.
pub(crate) fn by_partition(
    node: &Node,
    place: &Placement,
) -> BTreeMap<u32, Vec<(String, [u8; 32])>> {
    let mut out: BTreeMap<u32, Vec<(String, [u8; 32])>> = BTreeMap::new();
    for (k, s) in &node.disk.view().data {
        out.entry(place.partition(k))
            .or_default()
            .push((k.clone(), s.digest));
    }
    out
}

/// Starts an exchange of `partition` with `peer`; returns its id.
pub(crate) fn offer(
    node: &mut Node,
    env: &mut Env,
    peer: usize,
    partition: u32,
    digests: Vec<(String, [u8; 32])>,
) -> Option<u64> {
    let pull_only = !node.is_whole();
    let root = replica::root(node, partition);
    let xid = env.id();
    let proc = node.proc.as_mut()?;
    proc.exchanges.insert(xid, (partition, peer));
    env.send(
        Addr::Node(peer),
        Msg::AeOffer {
            xid,
            partition,
            root,
            digests,
            pull_only,
        },
    );
    Some(xid)
}

/// One anti-entropy round of a whole node: an exchange with every live peer for every
/// partition they share.
pub fn anti_entropy_round(node: &mut Node, env: &mut Env) {
    if !node.is_whole() {
        return;
    }
    let mut keys = by_partition(node, env.place);
    for p in 0..env.place.partitions() {
        let pref = env.place.pref(p).to_vec();
        if !pref.contains(&node.index) {
            continue;
        }
        let digests = keys.remove(&p).unwrap_or_default();
        let me = node.index;
        for &peer in pref.iter().filter(|&&n| n != me) {
            if node.sees_up(peer, env.now) {
                offer(node, env, peer, p, digests.clone());
            }
        }
    }
}

/// One recovery step: pull from every replica still owed an exchange that is up and has
/// none open. Returns whether to keep going.
pub fn recovery_round(node: &mut Node, env: &mut Env) -> bool {
    let owed = recovery_obligations(node.index, env.place);
    let Some(proc) = node.proc.as_mut() else {
        return false;
    };
    let Some(done) = &proc.recovery else {
        return false;
    };
    let pending: Vec<(u32, usize)> = owed.difference(done).copied().collect();
    if pending.is_empty() {
        proc.recovery = None;
        return false;
    }
    let open: BTreeSet<(u32, usize)> = proc.exchanges.values().copied().collect();
    let todo: Vec<(u32, usize)> = pending.into_iter().filter(|x| !open.contains(x)).collect();
    let mut keys = by_partition(node, env.place);
    for (p, peer) in todo {
        if node.sees_up(peer, env.now) {
            let digests = keys.get(&p).cloned().unwrap_or_default();
            offer(node, env, peer, p, digests);
        }
    }
    keys.clear();
    // Open exchanges whose answer was lost are forgotten at the next step.
    if let Some(proc) = node.proc.as_mut() {
        proc.exchanges.retain(|_, x| !open.contains(x));
    }
    true
}

/// A peer offers an exchange. A recovering node serves no data.
pub fn on_offer(
    node: &mut Node,
    env: &mut Env,
    from: Addr,
    xid: u64,
    (partition, root): (u32, [u8; 32]),
    digests: Vec<(String, [u8; 32])>,
    pull_only: bool,
) {
    if node.is_whole() && replica::root(node, partition) == root {
        // Identical trees: nothing to exchange (and the exchange counts as completed).
        let in_sync = Msg::AeAnswer {
            xid,
            partition,
            objects: Vec::new(),
            want: Vec::new(),
            refused: false,
        };
        env.send(from, in_sync);
        return;
    }
    if !node.is_whole() {
        let refused = Msg::AeAnswer {
            xid,
            partition,
            objects: Vec::new(),
            want: Vec::new(),
            refused: true,
        };
        env.send(from, refused);
        return;
    }
    let theirs: BTreeMap<&str, [u8; 32]> = digests.iter().map(|(k, d)| (k.as_str(), *d)).collect();
    let mut objects = Vec::new();
    let mut mine = BTreeSet::new();
    for (k, s) in &node.disk.view().data {
        if env.place.partition(k) != partition {
            continue;
        }
        mine.insert(k.as_str());
        if theirs.get(k.as_str()) != Some(&s.digest) {
            objects.push((k.clone(), s.object.clone()));
        }
    }
    let want = if pull_only {
        Vec::new()
    } else {
        let data = &node.disk.view().data;
        theirs
            .iter()
            .filter(|(k, d)| data.get(**k).is_none_or(|s| s.digest != **d))
            .map(|(k, _)| k.to_string())
            .collect()
    };
    env.send(
        from,
        Msg::AeAnswer {
            xid,
            partition,
            objects,
            want,
            refused: false,
        },
    );
}

/// The answer to an exchange this node started.
#[allow(clippy::too_many_arguments)]
pub fn on_answer(
    node: &mut Node,
    env: &mut Env,
    from: Addr,
    xid: u64,
    partition: u32,
    objects: Vec<(String, Object)>,
    want: Vec<String>,
    refused: bool,
) {
    let Some(proc) = node.proc.as_mut() else {
        return;
    };
    let Some((p, peer)) = proc.exchanges.remove(&xid) else {
        return;
    };
    if refused || p != partition || Addr::Node(peer) != from {
        return;
    }
    // Each key the peer holds differently, or lacks, is repaired by core's rule: this node
    // takes the peer's version, and pushes the merge where it may (whole, and a replica).
    let me = env.place.name(node.index).to_string();
    let whole = node.is_whole();
    let mut push = Vec::new();
    let mut decide = |node: &mut Node, key: &str, theirs: Option<Object>| {
        let replicas: Vec<&str> = env
            .place
            .pref_of(key)
            .iter()
            .map(|&n| env.place.name(n))
            .collect();
        let mine = replica::local(node, key);
        let r = repair(mine.as_ref(), theirs, may_push(whole, &replicas, &me));
        if let Some(t) = &r.take {
            replica::merge(node, env, key, t);
        }
        if let Some(m) = r.push {
            push.push((key.to_string(), m));
        }
    };
    let sent: BTreeSet<&str> = objects.iter().map(|(k, _)| k.as_str()).collect();
    for (key, object) in &objects {
        decide(node, key, Some(object.clone()));
    }
    // Keys the peer wants that it sent no version of: it has none.
    for key in want.iter().filter(|k| !sent.contains(k.as_str())) {
        decide(node, key, None);
    }
    if !push.is_empty() {
        env.send(from, Msg::AePush { objects: push });
    }
    super::membership::exchanged(node, env, xid, partition, peer);
    if !whole {
        let owed = recovery_obligations(node.index, env.place);
        if let Some(proc) = node.proc.as_mut() {
            if let Some(done) = proc.recovery.as_mut() {
                done.insert((partition, peer));
                if owed.is_subset(done) {
                    proc.recovery = None;
                }
            }
        }
    }
}

/// One purge pass: tombstones past the grace (on this node's clock) whose purge this node
/// decides, with every replica up, start an agreement.
pub fn purge_round(node: &mut Node, env: &mut Env) {
    if !node.is_whole() {
        return;
    }
    let local = Duration::from_micros(node.local_now(env.now));
    let before = cutoff(local, Duration::from_micros(env.cfg.tombstone_grace));
    let before = u64::try_from(before.as_micros()).unwrap_or(u64::MAX);
    let candidates: Vec<String> = node
        .disk
        .view()
        .data
        .iter()
        .filter(|(_, s)| s.tombstone_since.is_some_and(|t| t <= before))
        .filter(|(k, _)| env.place.pref_of(k).first() == Some(&node.index))
        .take(PURGES_PER_ROUND)
        .map(|(k, _)| k.clone())
        .collect();
    let me = env.place.name(node.index).to_string();
    let now = env.now;
    for key in candidates {
        let pref: Vec<String> = env
            .place
            .pref_of(&key)
            .iter()
            .map(|&n| env.place.name(n).to_string())
            .collect();
        let is_up = |p: &str| env.place.index(p).is_some_and(|i| node.sees_up(i, now));
        let moving = env.place.moving(env.place.partition(&key));
        let Ok(Turn::Mine { peers }) = whose_turn(&me, &pref, moving, is_up) else {
            continue;
        };
        let Some(mine) = replica::local(node, &key) else {
            continue;
        };
        let Ok(agreement) = Agreement::new(&mine, &peers) else {
            continue;
        };
        let req = env.id();
        let peers: Vec<usize> = peers.iter().filter_map(|p| env.place.index(p)).collect();
        for &peer in &peers {
            env.send(
                Addr::Node(peer),
                Msg::PurgeQuery {
                    req,
                    key: key.clone(),
                },
            );
        }
        if let Some(proc) = node.proc.as_mut() {
            proc.purges.insert(
                req,
                PurgeReq {
                    key,
                    peers,
                    agreement,
                },
            );
        }
        env.timer(env.cfg.request_timeout, Timer::PurgeDeadline(req));
    }
}

/// A replica's version of a purge candidate: once every one holds the identical
/// tombstone, every replica purges it.
pub fn on_purge_answer(
    node: &mut Node,
    env: &mut Env,
    from: Addr,
    req: u64,
    held: Option<Vec<u8>>,
) {
    let Addr::Node(from) = from else {
        return;
    };
    let Some(proc) = node.proc.as_mut() else {
        return;
    };
    let Some(p) = proc.purges.get_mut(&req) else {
        return;
    };
    if p.agreement
        .answer(env.place.name(from), held.as_deref())
        .is_err()
    {
        proc.purges.remove(&req);
        return;
    }
    let Some(digest) = p.agreement.digest() else {
        return;
    };
    let Some(p) = proc.purges.remove(&req) else {
        return;
    };
    // This replica first, then the peers that agreed, as the plan was made.
    replica::purge(node, env, &p.key, digest);
    for &n in &p.peers {
        env.send(
            Addr::Node(n),
            Msg::Purge {
                key: p.key.clone(),
                digest,
            },
        );
    }
}
