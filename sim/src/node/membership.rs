//! Membership as `chorus-node` runs it: the node's `ClusterState` spreads by gossip (each
//! round swaps states with up to three peers, live ones first, and with the seeds while the
//! node knows no ring or no peer), the claimant turns member changes into ring changes with
//! `ClusterState::plan`, a node pulls the partitions it gains (`chorus_core::transfer`:
//! which, from which old replica, which others to compare with) and confirms each in its
//! state, and a node drops a partition it gave away only once `transfer::to_drop` allows it
//! (the transition is over) and an exchange with every current replica has completed.
//!
//! Simplified: a transfer is one anti-entropy exchange of the partition with the source and
//! one with each other live old replica (the node pages a scan from the source, then
//! compares trees with the others: the same data moves); the exchange list and cursor aren't
//! persisted, so a restart starts the pull over. Leave and remove requests are accepted by
//! one node with the checks of `chorus-node`'s `change_member`, as the admin command is.

use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;

use chorus_core::membership::{ClusterState, MemberState};
use chorus_core::transfer;
use rand::Rng;

use super::{background, Env, Node};
use crate::config::{Bug, SimConfig};
use crate::engine::{Time, MS};
use crate::msg::Msg;
use crate::net::Addr;
use crate::placement::Placement;

/// Time between transfer passes of a node.
pub const TRANSFER_EVERY: Time = 500 * MS;
/// Gossip partners a round.
const PARTNERS: usize = 3;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Purpose {
    Pull,
    Drop,
}

/// A node's partition moves in progress: per partition, the ring version they are for and
/// the peers an exchange has completed with.
#[derive(Default)]
pub(crate) struct Moves {
    pulls: BTreeMap<u32, (u64, BTreeSet<usize>)>,
    drops: BTreeMap<u32, (u64, BTreeSet<usize>)>,
    /// Exchanges of this pass: xid -> (purpose, partition, ring version).
    open: BTreeMap<u64, (Purpose, u32, u64)>,
}

/// Merges a peer's state into the node's (the placement follows a change).
pub fn merge(node: &mut Node, env: &Env, theirs: &ClusterState) {
    if node.cluster.merge(theirs) {
        refresh(node, env.cfg);
    }
}

fn refresh(node: &mut Node, cfg: &SimConfig) {
    let me = node.place.name(node.index).to_string();
    node.cluster.acknowledge(&me);
    let place = Placement::new(node.place.names(), cfg.partitions, cfg.n, &node.cluster);
    node.place = Rc::new(place);
}

/// A peer's gossip: merge it and answer with the merged state.
pub fn on_gossip(node: &mut Node, env: &mut Env, from: Addr, theirs: &ClusterState) {
    merge(node, env, theirs);
    env.send(from, Msg::GossipReply(Rc::new(node.cluster.clone())));
}

/// One gossip round, then the claimant's planning step.
pub fn gossip_round(node: &mut Node, env: &mut Env) {
    let now = env.now;
    let me = node.index;
    let mut peers: Vec<(bool, u64, usize)> = Vec::new();
    for m in node.cluster.members.values() {
        let Some(i) = env.place.index(&m.id) else {
            continue;
        };
        let up = node.sees_up(i, now);
        // A member that left and is gone needs no more news.
        if i != me && (up || m.state != MemberState::Left) {
            peers.push((!up, env.rng.random(), i));
        }
    }
    peers.sort_unstable();
    let state = Rc::new(node.cluster.clone());
    let partners: Vec<usize> = peers.into_iter().take(PARTNERS).map(|p| p.2).collect();
    for &p in &partners {
        env.send(Addr::Node(p), Msg::Gossip(state.clone()));
    }
    if node.cluster.ring.is_none() || partners.is_empty() {
        // The seeds: the cluster's initial members.
        for s in (0..env.cfg.nodes).filter(|&s| s != me) {
            env.send(Addr::Node(s), Msg::Gossip(state.clone()));
        }
    }
    plan_if_claimant(node, env);
}

/// The claimant applies the planner's next step, if one is due.
fn plan_if_claimant(node: &mut Node, env: &Env) {
    let now = env.now;
    let me = env.place.name(node.index);
    let is_up = |id: &str| env.place.index(id).is_some_and(|i| node.sees_up(i, now));
    if node.cluster.claimant(is_up).as_deref() != Some(me) {
        return;
    }
    if let Ok(Some(next)) = node.cluster.plan() {
        node.cluster = next;
        refresh(node, env.cfg);
    }
}

/// An exchange this node started completed: it counts for the transfer or drop it served.
pub fn exchanged(node: &mut Node, env: &Env, xid: u64, partition: u32, peer: usize) {
    let Some(proc) = node.proc.as_mut() else {
        return;
    };
    let Some((purpose, p, version)) = proc.moves.open.remove(&xid) else {
        return;
    };
    let map = match purpose {
        Purpose::Pull => &mut proc.moves.pulls,
        Purpose::Drop => &mut proc.moves.drops,
    };
    if let Some((v, done)) = map.get_mut(&p) {
        if p == partition && *v == version && version == env.place.version() {
            done.insert(peer);
        }
    }
}

/// One pass: pull every partition this node gains (confirming those pulled from every live
/// old replica), then drop the partitions it no longer replicates where that is allowed.
pub fn transfer_round(node: &mut Node, env: &mut Env) {
    let version = env.place.version();
    let Some(proc) = node.proc.as_mut() else {
        return;
    };
    // Answers of the last pass that never came are forgotten; their exchanges go again.
    proc.moves.open.clear();
    proc.moves.pulls.retain(|_, (v, _)| *v == version);
    proc.moves.drops.retain(|_, (v, _)| *v == version);
    if env.cfg.has(Bug::EarlyDrop) {
        drop_given_away(node, env);
    }
    pull(node, env, version);
    let to_drop = transfer::to_drop(&node.cluster, env.place.name(node.index));
    if !to_drop.is_empty() {
        drop_unowned(node, env, version, &to_drop);
    }
}

fn pull(node: &mut Node, env: &mut Env, version: u64) {
    let me = env.place.name(node.index).to_string();
    let Some(prev) = node.cluster.prev.clone() else {
        return;
    };
    let now = env.now;
    let mut offers: Vec<(u32, usize)> = Vec::new();
    let mut confirmed = Vec::new();
    for p in transfer::to_pull(&node.cluster, &me) {
        let is_up = |id: &str| env.place.index(id).is_some_and(|i| node.sees_up(i, now));
        let Some(source) = transfer::source(&prev, p, &me, is_up) else {
            continue;
        };
        let mut needed = vec![source.clone()];
        needed.extend(transfer::compare_with(
            &prev, p, env.cfg.n, &me, &source, is_up,
        ));
        let needed: Vec<usize> = needed.iter().filter_map(|n| env.place.index(n)).collect();
        let Some(proc) = node.proc.as_mut() else {
            return;
        };
        let (_, done) = proc
            .moves
            .pulls
            .entry(p)
            .or_insert_with(|| (version, BTreeSet::new()));
        let missing: Vec<usize> = needed.into_iter().filter(|n| !done.contains(n)).collect();
        if missing.is_empty() {
            confirmed.push(p);
        }
        offers.extend(missing.into_iter().map(|n| (p, n)));
    }
    if !confirmed.is_empty() {
        for p in confirmed {
            node.cluster.done.insert((p, me.clone()));
        }
        refresh(node, env.cfg);
    }
    start_exchanges(node, env, Purpose::Pull, version, offers);
}

fn start_exchanges(
    node: &mut Node,
    env: &mut Env,
    purpose: Purpose,
    version: u64,
    offers: Vec<(u32, usize)>,
) {
    if offers.is_empty() {
        return;
    }
    let keys = background::by_partition(node, env.place);
    for (p, peer) in offers {
        let digests = keys.get(&p).cloned().unwrap_or_default();
        if let Some(xid) = background::offer(node, env, peer, p, digests) {
            if let Some(proc) = node.proc.as_mut() {
                proc.moves.open.insert(xid, (purpose, p, version));
            }
        }
    }
}

/// The partitions the node holds keys of.
fn held(node: &Node, place: &Placement) -> BTreeSet<u32> {
    node.disk
        .view()
        .data
        .keys()
        .map(|k| place.partition(k))
        .collect()
}

fn drop_unowned(node: &mut Node, env: &mut Env, version: u64, to_drop: &[u32]) {
    let held = held(node, env.place);
    let now = env.now;
    let mut offers = Vec::new();
    let mut drop = Vec::new();
    for &p in to_drop.iter().filter(|p| held.contains(p)) {
        let replicas = env.place.pref(p).to_vec();
        if replicas.iter().any(|&r| !node.sees_up(r, now)) {
            continue;
        }
        let Some(proc) = node.proc.as_mut() else {
            return;
        };
        let (_, done) = proc
            .moves
            .drops
            .entry(p)
            .or_insert_with(|| (version, BTreeSet::new()));
        let missing: Vec<usize> = replicas.into_iter().filter(|r| !done.contains(r)).collect();
        if missing.is_empty() {
            drop.push(p);
        }
        offers.extend(missing.into_iter().map(|r| (p, r)));
    }
    for p in drop {
        drop_partition(node, env, p);
    }
    start_exchanges(node, env, Purpose::Drop, version, offers);
}

/// The early-drop control: every partition the current ring doesn't give this node goes at
/// once, mid-transition and without an exchange.
fn drop_given_away(node: &mut Node, env: &Env) {
    let gone: Vec<u32> = held(node, env.place)
        .into_iter()
        .filter(|&p| !env.place.pref(p).contains(&node.index))
        .collect();
    for p in gone {
        drop_partition(node, env, p);
    }
}

fn drop_partition(node: &mut Node, env: &Env, p: u32) {
    let place = env.place;
    node.disk.drop_keys(|k| place.partition(k) == p);
    if let Some(proc) = node.proc.as_mut() {
        proc.trees.remove(&p);
        proc.moves.drops.remove(&p);
    }
}

/// A `leave` (to [`MemberState::Leaving`]) or `remove` (to [`MemberState::Left`]) request
/// given to `node`, with `chorus-node`'s checks: a remove is for a node this one sees down,
/// and neither may leave fewer than N active members. Returns whether it was accepted.
pub fn change_member(node: &mut Node, env: &Env, target: usize, to: MemberState) -> bool {
    let name = env.place.name(target).to_string();
    let state = &node.cluster;
    let Some(m) = state.members.get(&name) else {
        return false;
    };
    if m.state >= to {
        return false;
    }
    let active = state.active();
    if to == MemberState::Leaving && active.len() <= 1 {
        return false;
    }
    if to == MemberState::Left && node.sees_up(target, env.now) {
        return false;
    }
    if active.iter().filter(|a| a.id != name).count() < env.cfg.n {
        return false;
    }
    if let Some(m) = node.cluster.members.get_mut(&name) {
        m.state = to;
    }
    refresh(node, env.cfg);
    true
}
