//! One simulated storage node: its disk, its process (if running) and the driver that
//! turns messages and timers into core calls and outgoing messages. Each piece of node
//! logic lives in one submodule so it can be swapped for the matching core state machine:
//! [`replica`] (the local apply rule), [`coord`] (get/put coordination, read repair),
//! [`background`] (hints, anti-entropy, recovery, tombstone purge), [`membership`] (gossip,
//! the claimant's ring changes, partition transfers and drops).

pub mod background;
pub mod coord;
pub mod membership;
pub mod replica;

use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;

use chorus_core::membership::ClusterState;
use chorus_core::merkle::Tree;
use chorus_core::version::Actor;
use rand::Rng;

use crate::config::{Bug, SimConfig};
use crate::disk::Disk;
use crate::engine::{SimRng, Time, MS};
use crate::msg::Msg;
use crate::net::Addr;
use crate::placement::Placement;

/// How a process start finds its disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Start {
    /// The cluster's first start, or a restart after a kill: the disk is whole.
    Clean,
    /// After a power loss, a wipe or a restore: the data may be incomplete, so the node
    /// recovers before it counts toward R.
    Recovering,
}

/// Node timers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Timer {
    Sync,
    Ping,
    AntiEntropy,
    HintReplay,
    Purge,
    Recovery,
    /// A read's machine wants `on_timer` (speculation, deadline, repair window).
    Get(u64),
    PutDeadline(u64),
    PurgeDeadline(u64),
    /// A membership gossip round (runs with membership changes only).
    Gossip,
    /// Partition transfers and drops (runs with membership changes only).
    Transfer,
}

/// What a handler needs from the world, and where it leaves its sends and timers.
pub struct Env<'a> {
    pub now: Time,
    pub rng: &'a mut SimRng,
    pub ids: &'a mut u64,
    pub cfg: &'a SimConfig,
    /// This node's view of the placement.
    pub place: &'a Placement,
    /// The run has membership changes: nodes gossip and move partitions.
    pub membership: bool,
    pub sends: Vec<(Addr, Msg)>,
    pub timers: Vec<(Time, Timer)>,
}

impl Env<'_> {
    /// A run-wide unique id (request ids must never match a reply meant for an older
    /// process).
    pub fn id(&mut self) -> u64 {
        *self.ids += 1;
        *self.ids
    }

    pub fn send(&mut self, to: Addr, msg: Msg) {
        self.sends.push((to, msg));
    }

    pub fn timer(&mut self, after: Time, t: Timer) {
        self.timers.push((after, t));
    }

    /// `base` plus up to a fifth more, so periodic work of different nodes drifts apart.
    pub fn jitter(&mut self, base: Time) -> Time {
        base + self.rng.random_range(0..=base / 5)
    }
}

/// The state of a running process; gone at a crash.
pub struct Proc {
    /// Run-wide unique per process start; timers of older processes are dropped.
    pub inc: u64,
    pub actor: Actor,
    /// The highest counter this process has minted (the node-wide counter floor).
    pub floor: u64,
    /// Recovery exchanges completed so far: (partition, peer). The node counts toward R
    /// once it has one with every other replica of each partition it replicates in its
    /// current ring (`background::recovery_obligations`). `None` once whole.
    pub recovery: Option<BTreeSet<(u32, usize)>>,
    /// When each peer was last heard from (the failure detector).
    last_heard: Vec<Time>,
    pub(crate) gets: BTreeMap<u64, coord::GetReq>,
    pub(crate) puts: BTreeMap<u64, coord::PutReq>,
    pub(crate) purges: BTreeMap<u64, background::PurgeReq>,
    /// Open exchanges this process started: xid -> (partition, peer).
    pub(crate) exchanges: BTreeMap<u64, (u32, usize)>,
    /// Hint replays in flight: request id -> hint id.
    pub(crate) hint_sends: BTreeMap<u64, u64>,
    /// Core's Merkle tree of each partition's key digests, kept in memory and rebuilt from
    /// the disk at every start.
    pub(crate) trees: BTreeMap<u32, Tree>,
    /// Partitions this node pulls in the current transition, and those it drops.
    pub(crate) moves: membership::Moves,
}

/// A peer silent for this long is taken as down.
const DOWN_AFTER: Time = 1_500 * MS;
const PING_EVERY: Time = 300 * MS;

/// A storage node.
pub struct Node {
    pub index: usize,
    pub disk: Disk,
    pub proc: Option<Proc>,
    /// This node's clock minus true time, in microseconds.
    pub skew: i64,
    /// Its gossiped cluster state. Persisted as the node persists it, and (a simplification)
    /// kept through disk faults too.
    pub cluster: ClusterState,
    /// The placement `cluster` describes.
    pub place: Rc<Placement>,
}

impl Node {
    pub fn new(index: usize, cluster: ClusterState, place: Placement) -> Node {
        Node {
            index,
            disk: Disk::default(),
            proc: None,
            skew: 0,
            cluster,
            place: Rc::new(place),
        }
    }

    /// Takes `next` as the node's cluster state (the placement follows).
    pub fn set_cluster(&mut self, mut next: ClusterState, cfg: &SimConfig) {
        let me = self.place.name(self.index).to_string();
        next.acknowledge(&me);
        let place = Placement::new(self.place.names(), cfg.partitions, cfg.n, &next);
        self.cluster = next;
        self.place = Rc::new(place);
    }

    /// The node's own clock.
    pub fn local_now(&self, now: Time) -> Time {
        now.saturating_add_signed(self.skew)
    }

    pub fn is_up(&self) -> bool {
        self.proc.is_some()
    }

    /// Whether the node is running and not recovering.
    pub fn is_whole(&self) -> bool {
        self.proc.as_ref().is_some_and(|p| p.recovery.is_none())
    }

    /// The failure detector's view of `peer` (the node itself is always up).
    pub fn sees_up(&self, peer: usize, now: Time) -> bool {
        peer == self.index
            || self.proc.as_ref().is_some_and(|p| {
                p.last_heard
                    .get(peer)
                    .is_some_and(|&t| now.saturating_sub(t) < DOWN_AFTER)
            })
    }

    /// A process start. `inc` is run-wide unique.
    pub fn start(&mut self, env: &mut Env, inc: u64, how: Start) {
        let name = env.place.name(self.index).to_string();
        // Every start is a new actor, so no dot is issued twice whatever the disk lost. The
        // counter-restart bug keeps one actor for the node's whole life instead.
        let epoch = if env.cfg.has(Bug::CounterRestart) {
            0
        } else {
            env.rng.random()
        };
        let recovery = match how {
            Start::Clean => None,
            Start::Recovering => Some(BTreeSet::new()),
        };
        self.proc = Some(Proc {
            inc,
            actor: Actor::new(name, epoch),
            floor: 0,
            recovery,
            // Peers count as up until silent for a while, as after a first ping round.
            last_heard: vec![env.now; env.place.names().len()],
            gets: BTreeMap::new(),
            puts: BTreeMap::new(),
            purges: BTreeMap::new(),
            exchanges: BTreeMap::new(),
            hint_sends: BTreeMap::new(),
            trees: replica::build_trees(&self.disk, env.place),
            moves: membership::Moves::default(),
        });
        let cfg = env.cfg;
        for (after, t) in [
            (cfg.sync_interval, Timer::Sync),
            (PING_EVERY, Timer::Ping),
            (cfg.anti_entropy_interval, Timer::AntiEntropy),
            (500 * MS, Timer::HintReplay),
            (cfg.gc_interval, Timer::Purge),
            (200 * MS, Timer::Recovery),
        ] {
            let after = env.jitter(after);
            env.timer(after, t);
        }
        if env.membership {
            for (after, t) in [
                (cfg.gossip_interval, Timer::Gossip),
                (membership::TRANSFER_EVERY, Timer::Transfer),
            ] {
                let after = env.jitter(after);
                env.timer(after, t);
            }
        }
    }

    /// A crash: the process and everything in memory are gone.
    pub fn crash(&mut self) {
        self.proc = None;
    }

    /// A message arrived (the node is running).
    pub fn on_message(&mut self, env: &mut Env, from: Addr, msg: Msg) {
        if let (Addr::Node(peer), Some(p)) = (from, self.proc.as_mut()) {
            if let Some(t) = p.last_heard.get_mut(peer) {
                *t = env.now;
            }
        }
        match msg {
            Msg::Get { op, key, r } => coord::start_get(self, env, from, op, key, r),
            Msg::Put {
                op,
                key,
                ctx,
                value,
                w,
            } => coord::start_put(self, env, from, op, key, ctx, value, w),
            Msg::Read { req, key } => {
                let answer = replica::read_answer(self, &key);
                env.send(from, Msg::ReadReply { req, answer });
            }
            Msg::ReadReply { req, answer } => coord::on_read_reply(self, env, from, req, answer),
            Msg::Replicate {
                req, key, object, ..
            } => {
                replica::merge(self, env, &key, &object);
                env.send(from, Msg::Ack { req, ok: true });
            }
            Msg::Ack { req, ok } => {
                coord::on_ack(self, env, from, req, ok);
                background::on_hint_ack(self, req, ok);
            }
            Msg::AeOffer {
                xid,
                partition,
                root,
                digests,
                pull_only,
            } => background::on_offer(self, env, from, xid, (partition, root), digests, pull_only),
            Msg::AeAnswer {
                xid,
                partition,
                objects,
                want,
                refused,
            } => background::on_answer(self, env, from, xid, partition, objects, want, refused),
            Msg::AePush { objects } => {
                for (key, object) in &objects {
                    replica::merge(self, env, key, object);
                }
            }
            Msg::PurgeQuery { req, key } => {
                // A recovering replica's copy doesn't count, as the node answers
                // `Recovering` to the purge's read.
                let held = replica::local(self, &key)
                    .filter(|_| self.is_whole())
                    .map(|o| o.encode());
                env.send(from, Msg::PurgeAnswer { req, held });
            }
            Msg::PurgeAnswer { req, held } => {
                background::on_purge_answer(self, env, from, req, held)
            }
            Msg::Purge { key, digest } => replica::purge(self, env, &key, digest),
            Msg::Ping => env.send(from, Msg::Pong),
            Msg::Pong => {}
            Msg::Gossip(theirs) => membership::on_gossip(self, env, from, &theirs),
            Msg::GossipReply(theirs) => membership::merge(self, env, &theirs),
            Msg::GetReply { .. } | Msg::PutReply { .. } => {}
        }
    }

    /// A timer of the running process fired.
    pub fn on_timer(&mut self, env: &mut Env, t: Timer) {
        match t {
            Timer::Sync => {
                self.disk.sync();
                env.timer(env.cfg.sync_interval, Timer::Sync);
            }
            Timer::Ping => {
                for &peer in env.place.members() {
                    if peer != self.index {
                        env.send(Addr::Node(peer), Msg::Ping);
                    }
                }
                env.timer(PING_EVERY, Timer::Ping);
                coord::check_down(self, env);
            }
            Timer::AntiEntropy => {
                background::anti_entropy_round(self, env);
                let after = env.jitter(env.cfg.anti_entropy_interval);
                env.timer(after, Timer::AntiEntropy);
            }
            Timer::HintReplay => {
                background::replay_hints(self, env);
                env.timer(500 * MS, Timer::HintReplay);
            }
            Timer::Purge => {
                background::purge_round(self, env);
                let after = env.jitter(env.cfg.gc_interval);
                env.timer(after, Timer::Purge);
            }
            Timer::Recovery => {
                if background::recovery_round(self, env) {
                    env.timer(500 * MS, Timer::Recovery);
                }
            }
            Timer::Get(req) => coord::get_timer(self, env, req),
            Timer::PutDeadline(req) => coord::put_deadline(self, env, req),
            Timer::PurgeDeadline(req) => {
                if let Some(p) = self.proc.as_mut() {
                    p.purges.remove(&req);
                }
            }
            Timer::Gossip => {
                membership::gossip_round(self, env);
                let after = env.jitter(env.cfg.gossip_interval);
                env.timer(after, Timer::Gossip);
            }
            Timer::Transfer => {
                membership::transfer_round(self, env);
                env.timer(membership::TRANSFER_EVERY, Timer::Transfer);
            }
        }
    }
}
