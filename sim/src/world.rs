//! The simulated world: nodes, clients, network and nemesis driven by one event queue.
//! [`run`] plays one seed: clients and faults for the fault period, then a heal, a wait
//! until the cluster has converged, final reads, and the checkers.

use std::collections::BTreeMap;
use std::rc::Rc;

use chorus_check::checker::Event;
use chorus_core::membership::{ClusterState, MemberState};
use rand::Rng;

use crate::client::{Client, ClientEnv, ClientIo, Reply, Role, REGISTER_KEYS};
use crate::config::SimConfig;
use crate::disk::Store;
use crate::engine::{rng_for, Queue, SimRng, Time, Trace, MS, SEC};
use crate::msg::Msg;
use crate::nemesis::{self, Fault, View};
use crate::net::{Addr, MsgKind, Network};
use crate::node::{background, Env, Node, Start, Timer};
use crate::placement::{self, Placement};
use crate::report::{self, Report};

mod schedule;

/// The address final reads come from.
const FINAL_READER: usize = usize::MAX;

enum Ev {
    Deliver {
        from: Addr,
        to: Addr,
        msg: Msg,
    },
    Timer {
        node: usize,
        inc: u64,
        timer: Timer,
    },
    ClientWake(usize),
    ClientTimeout(usize, u64),
    NemesisTick,
    Fault(Fault),
    MembershipTick,
    /// A `remove` of this (killed) node is handed to a node that sees it down.
    Remove(usize),
    Heal,
    SettleCheck,
}

pub(crate) struct World {
    pub cfg: SimConfig,
    q: Queue<Ev>,
    pub rng: SimRng,
    pub trace: Trace,
    pub ids: u64,
    /// The run has membership changes.
    membership: bool,
    /// Which node slots have ever started (the spares start when they join).
    started: Vec<bool>,
    /// A removed node whose data is still being moved away: a disk fault until then.
    removing: Option<usize>,
    pub net: Network,
    pub nodes: Vec<Node>,
    /// How each down node starts next (a disk fault makes it recover).
    restart_as: Vec<Start>,
    snapshots: Vec<Option<Store>>,
    pub clients: Vec<Client>,
    pub history: Vec<Event>,
    running: bool,
    pub faults: BTreeMap<&'static str, u64>,
    /// Final reads in flight: op -> key, and their answers.
    final_ops: BTreeMap<u64, String>,
    pub final_objects: BTreeMap<String, Option<chorus_core::version::Object>>,
    pub final_failures: u64,
    pub converged_after: Option<Time>,
    heal_at: Time,
    /// A disk fault is scheduled until then.
    disk_fault_until: Time,
    done: bool,
}

impl World {
    fn new(cfg: SimConfig, seed: u64) -> Result<World, chorus_ring::RingError> {
        let membership = cfg.changes_membership(seed);
        let slots = cfg.nodes + if membership { cfg.spares } else { 0 };
        let names: Vec<String> = (0..slots).map(|i| format!("n{i}")).collect();
        let initial = placement::initial_state(&names[..cfg.nodes], cfg.partitions, cfg.n)?;
        let nodes = names
            .iter()
            .enumerate()
            .map(|(i, name)| {
                // A spare knows only itself, joining, until gossip with the seeds.
                let state = if i < cfg.nodes {
                    initial.clone()
                } else {
                    let mut s = ClusterState::default();
                    let me = placement::member(name, MemberState::Joining, 1);
                    s.members.insert(name.clone(), me);
                    s
                };
                let place = Placement::new(&names, cfg.partitions, cfg.n, &state);
                Node::new(i, state, place)
            })
            .collect();
        let mut roles = vec![Role::Set, Role::Set, Role::Set];
        roles.extend((0..REGISTER_KEYS).map(|k| Role::RegisterWriter(format!("reg{k}"))));
        roles.extend(std::iter::repeat_n(Role::RegisterReader, 3));
        roles.extend([
            Role::Deleter,
            Role::Recreator,
            Role::Recreator,
            Role::Recreator,
        ]);
        let clients = roles
            .into_iter()
            .enumerate()
            .map(|(i, r)| Client::new(i, r))
            .collect();
        Ok(World {
            nodes,
            restart_as: vec![Start::Clean; slots],
            snapshots: vec![None; slots],
            membership,
            started: (0..slots).map(|i| i < cfg.nodes).collect(),
            removing: None,
            heal_at: cfg.fault_time,
            cfg,
            q: Queue::default(),
            rng: rng_for(seed),
            trace: Trace::default(),
            ids: 0,
            net: Network::default(),
            clients,
            history: Vec::new(),
            running: true,
            faults: BTreeMap::new(),
            final_ops: BTreeMap::new(),
            final_objects: BTreeMap::new(),
            final_failures: 0,
            converged_after: None,
            disk_fault_until: 0,
            done: false,
        })
    }

    /// Runs a node handler and carries its sends and timers out.
    fn with_node(&mut self, i: usize, f: impl FnOnce(&mut Node, &mut Env)) {
        let Some(node) = self.nodes.get_mut(i) else {
            return;
        };
        // The node's own view; a handler that changes it swaps in a new one for later events.
        let place = node.place.clone();
        let mut env = Env {
            now: self.q.now(),
            rng: &mut self.rng,
            ids: &mut self.ids,
            cfg: &self.cfg,
            place: &place,
            membership: self.membership,
            sends: Vec::new(),
            timers: Vec::new(),
        };
        let watched = |n: &Node, k: &Option<String>| {
            k.as_ref()
                .and_then(|k| n.disk.view().data.get(k))
                .map(|s| format!("since {:?} {:?}", s.tombstone_since, s.object))
        };
        let before = watched(node, &env.cfg.watch);
        let watching = env.cfg.watch.is_some();
        let ring = |n: &Node| watching.then(|| (n.place.version(), n.cluster.pending().len()));
        let ring_before = ring(node);
        f(node, &mut env);
        let after = watched(node, &env.cfg.watch);
        if before != after {
            println!(
                "{:>9} n{i} stores {}",
                env.now,
                after.as_deref().unwrap_or("nothing")
            );
        }
        if let Some((v, pending)) = ring(node).filter(|r| Some(*r) != ring_before) {
            let pref = env
                .cfg
                .watch
                .as_deref()
                .map(|k| node.place.pref_of(k).to_vec());
            let moving = env
                .cfg
                .watch
                .as_deref()
                .map(|k| node.place.moving(node.place.partition(k)));
            println!(
                "{:>9} n{i} ring v{v}, {pending} transfers pending; key's replicas {pref:?}, moving {moving:?}",
                env.now
            );
        }
        let (sends, timers) = (env.sends, env.timers);
        let inc = node.proc.as_ref().map(|p| p.inc);
        for (to, msg) in sends {
            self.send(Addr::Node(i), to, msg);
        }
        if let Some(inc) = inc {
            for (after, timer) in timers {
                self.q.after(
                    after,
                    Ev::Timer {
                        node: i,
                        inc,
                        timer,
                    },
                );
            }
        }
    }

    fn send(&mut self, from: Addr, to: Addr, msg: Msg) {
        let delays = self.net.route(&mut self.rng, from, to, msg.kind());
        for d in delays {
            let msg = msg.clone();
            self.q.after(d, Ev::Deliver { from, to, msg });
        }
    }

    /// The newest placement any started node has (the lowest index among equals): what a
    /// token-aware client learns, and what convergence and final reads go by.
    fn latest(&self) -> usize {
        let mut best = 0;
        for (i, n) in self.nodes.iter().enumerate() {
            let v = n.place.version();
            if self.started[i] && v > self.nodes[best].place.version() {
                best = i;
            }
        }
        best
    }

    pub(crate) fn latest_place(&self) -> Rc<Placement> {
        self.nodes[self.latest()].place.clone()
    }

    fn with_client(&mut self, c: usize, f: impl FnOnce(&mut Client, &mut ClientEnv) -> ClientIo) {
        let place = self.latest_place();
        let mut env = ClientEnv {
            now: self.q.now(),
            rng: &mut self.rng,
            ids: &mut self.ids,
            cfg: &self.cfg,
            place: &place,
            running: self.running,
        };
        let Some(client) = self.clients.get_mut(c) else {
            return;
        };
        let io = f(client, &mut env);
        for e in &io.history {
            self.trace.note(&[
                &e.time_ms.to_le_bytes(),
                &e.process.to_le_bytes(),
                format!("{:?}", e.kind).as_bytes(),
                e.f.as_bytes(),
                e.key.as_bytes(),
                e.value.to_string().as_bytes(),
            ]);
        }
        if let Some(k) = &self.cfg.watch {
            for e in io.history.iter().filter(|e| &e.key == k) {
                println!(
                    "{:>9} history {:?} {} {}",
                    self.q.now(),
                    e.kind,
                    e.f,
                    e.value
                );
            }
        }
        self.history.extend(io.history);
        for (to, msg) in io.sends {
            self.send(Addr::Client(c), to, msg);
        }
        if let Some(after) = io.wake {
            self.q.after(after, Ev::ClientWake(c));
        }
        if let Some(op) = io.timeout {
            self.q
                .after(self.cfg.client_timeout, Ev::ClientTimeout(c, op));
        }
    }

    fn start_node(&mut self, i: usize, how: Start) {
        self.ids += 1;
        let inc = self.ids;
        self.with_node(i, |node, env| node.start(env, inc, how));
    }

    fn view(&self) -> View {
        View {
            nodes: self.nodes.len(),
            up: self.nodes.iter().map(Node::is_up).collect(),
            disk_fault: self.disk_fault(),
            has_snapshot: self.snapshots.iter().map(Option::is_some).collect(),
            kinds: if self.membership {
                &MsgKind::PEER_WITH_GOSSIP
            } else {
                &MsgKind::PEER
            },
        }
    }

    /// Some node lost its disk and hasn't recovered yet.
    fn disk_fault(&self) -> bool {
        self.q.now() < self.disk_fault_until
            || self.removing.is_some_and(|r| {
                // Its copies are gone until the gainers have pulled them from the others.
                let state = &self.nodes[self.latest()].cluster;
                let name = format!("n{r}");
                state.prev.is_some()
                    || state
                        .members
                        .get(&name)
                        .is_none_or(|m| m.state != MemberState::Left)
            })
            || self.nodes.iter().enumerate().any(|(i, n)| match &n.proc {
                Some(p) => p.recovery.is_some(),
                None => self.restart_as[i] == Start::Recovering,
            })
    }

    fn apply(&mut self, f: Fault) {
        let name = match &f {
            Fault::Kill(_) => "kill",
            Fault::PowerLoss(_) => "power-loss",
            Fault::Wipe(_) => "wipe",
            Fault::Restore(_) => "restore",
            Fault::Restart(_) => "restart",
            Fault::Snapshot(_) => "snapshot",
            Fault::Isolate(_) => "isolate",
            Fault::Split(..) => "split",
            Fault::HealPartitions => "heal-partitions",
            Fault::Loss(_) => "loss",
            Fault::KindLoss(..) => "kind-loss",
            Fault::Delay(_) => "delay",
            Fault::Duplicate(_) => "duplicate",
            Fault::Skew(..) => "clock-skew",
        };
        *self.faults.entry(name).or_insert(0) += 1;
        self.trace.note(&[b"fault", format!("{f:?}").as_bytes()]);
        if self.cfg.watch.is_some() {
            println!("{:>9} fault {f:?}", self.q.now());
        }
        match f {
            Fault::Kill(n) => {
                self.nodes[n].crash();
            }
            Fault::PowerLoss(n) => {
                self.nodes[n].crash();
                self.nodes[n].disk.lose_unsynced();
                self.restart_as[n] = Start::Recovering;
            }
            Fault::Wipe(n) => {
                self.nodes[n].crash();
                self.nodes[n].disk.wipe();
                self.restart_as[n] = Start::Recovering;
            }
            Fault::Restore(n) => {
                if let Some(copy) = self.snapshots[n].clone() {
                    self.nodes[n].crash();
                    self.nodes[n].disk.restore(copy);
                    self.restart_as[n] = Start::Recovering;
                    // Recognised at start (peers know of a later run): the copy is emptied
                    // where the other replicas are whole.
                    let whole: Vec<Option<bool>> = self
                        .nodes
                        .iter()
                        .map(|n| n.is_up().then(|| n.is_whole()))
                        .collect();
                    let node = &mut self.nodes[n];
                    let place = node.place.clone();
                    background::drop_restored_partitions(node, &place, &whole);
                }
            }
            Fault::Restart(n) => {
                if self.started[n] && !self.nodes[n].is_up() {
                    let how = std::mem::replace(&mut self.restart_as[n], Start::Clean);
                    self.start_node(n, how);
                }
            }
            Fault::Snapshot(n) => self.snapshots[n] = Some(self.nodes[n].disk.snapshot()),
            Fault::Isolate(n) => {
                let others: Vec<usize> = (0..self.nodes.len()).filter(|&x| x != n).collect();
                self.net.cut(&[n], &others);
            }
            Fault::Split(a, b) => self.net.cut(&a, &b),
            Fault::HealPartitions => self.net.heal_partitions(),
            Fault::Loss(p) => self.net.loss = p,
            Fault::KindLoss(k, p) => {
                self.net.kind_loss.insert(k, p);
            }
            Fault::Delay(d) => self.net.extra_delay = d,
            Fault::Duplicate(p) => self.net.duplicate = p,
            Fault::Skew(n, s) => self.nodes[n].skew = s,
        }
    }

    fn step(&mut self, ev: Ev) {
        match ev {
            Ev::Deliver { from, to, msg } => {
                let (tag, key) = msg.tag();
                if self.cfg.watch.as_deref() == Some(key) {
                    let up = matches!(to, Addr::Node(i) if self.nodes[i].is_up());
                    println!("{:>9} {from:?} -> {to:?} {tag} (to up: {up})", self.q.now());
                }
                self.trace.note(&[
                    format!("{from:?}>{to:?}").as_bytes(),
                    tag.as_bytes(),
                    key.as_bytes(),
                ]);
                match to {
                    Addr::Node(i) => {
                        if self.nodes.get(i).is_some_and(Node::is_up) {
                            self.with_node(i, |node, env| node.on_message(env, from, msg));
                        }
                    }
                    Addr::Client(FINAL_READER) => self.final_reply(msg),
                    Addr::Client(c) => {
                        let (op, reply) = match msg {
                            Msg::GetReply { op, result } => match result {
                                Ok(o) => (op, Reply::Got(o)),
                                Err(_) => (op, Reply::Failed),
                            },
                            Msg::PutReply { op, result } => match result {
                                Ok(ctx) => (op, Reply::Wrote(ctx)),
                                Err(_) => (op, Reply::Failed),
                            },
                            _ => return,
                        };
                        if self.clients.get(c).is_some_and(|cl| cl.waits_for(op)) {
                            self.with_client(c, |cl, env| cl.on_reply(env, reply));
                        }
                    }
                }
            }
            Ev::Timer { node, inc, timer } => {
                let live = self.nodes[node].proc.as_ref().is_some_and(|p| p.inc == inc);
                if live {
                    self.with_node(node, |n, env| n.on_timer(env, timer));
                }
            }
            Ev::ClientWake(c) => self.with_client(c, |cl, env| cl.wake(env)),
            Ev::ClientTimeout(c, op) => {
                if self.clients.get(c).is_some_and(|cl| cl.waits_for(op)) {
                    self.with_client(c, |cl, env| cl.on_reply(env, Reply::TimedOut));
                }
            }
            Ev::NemesisTick => {
                if self.running {
                    let view = self.view();
                    let (fault, undo) = nemesis::next(&mut self.rng, &view);
                    self.apply(fault);
                    for (after, f) in &undo {
                        if matches!(f, Fault::Wipe(_) | Fault::Restart(_)) {
                            // A disk fault still to come counts as one under way.
                            let until = self.q.now() + after + SEC;
                            self.disk_fault_until = self.disk_fault_until.max(until);
                        }
                    }
                    for (after, f) in undo {
                        self.q.after(after, Ev::Fault(f));
                    }
                    let next = self.rng.random_range(SEC..4 * SEC);
                    self.q.after(next, Ev::NemesisTick);
                }
            }
            Ev::Fault(f) => {
                // After the heal only restarts still matter (the heal restarted everyone).
                if self.running || matches!(f, Fault::Restart(_)) {
                    self.apply(f);
                }
            }
            Ev::MembershipTick => self.membership_tick(),
            Ev::Remove(n) => self.remove(n),
            Ev::Heal => self.heal(),
            Ev::SettleCheck => self.settle_check(),
        }
    }

    /// The end of the fault period: clients stop, every fault heals, every node runs.
    fn heal(&mut self) {
        self.running = false;
        self.net.heal();
        // Spares that never joined stay off (a restart needs a started node).
        for i in 0..self.nodes.len() {
            self.nodes[i].skew = 0;
            self.apply(Fault::Restart(i));
        }
        self.heal_at = self.q.now();
        self.q.after(SEC, Ev::SettleCheck);
    }

    fn settle_check(&mut self) {
        let now = self.q.now();
        let started = |i: usize| self.started[i];
        let latest = self.latest_place();
        // Every node runs one ring with no transition (membership changes have finished).
        let settled = self.nodes.iter().enumerate().all(|(i, n)| {
            !started(i) || (n.place.version() == latest.version() && n.cluster.prev.is_none())
        });
        let quiet = settled
            && self
                .nodes
                .iter()
                .enumerate()
                .all(|(i, n)| !started(i) || n.is_whole())
            && report::diverged_keys(&self.nodes, &latest).is_empty();
        if quiet && self.converged_after.is_none() {
            self.converged_after = Some(now - self.heal_at);
        }
        if quiet || now >= self.heal_at + self.cfg.settle_limit {
            self.final_reads();
        } else {
            self.q.after(SEC, Ev::SettleCheck);
        }
    }

    /// Reads every key the workloads touched with R = N, through the protocol.
    fn final_reads(&mut self) {
        let mut keys: Vec<String> = self.history.iter().map(|e| e.key.clone()).collect();
        keys.sort();
        keys.dedup();
        let place = self.latest_place();
        for key in keys {
            self.ids += 1;
            let op = self.ids;
            let coordinator = place.pref_of(&key).first().copied().unwrap_or(0);
            self.final_ops.insert(op, key.clone());
            let msg = Msg::Get {
                op,
                key,
                r: self.cfg.n,
            };
            self.send(Addr::Client(FINAL_READER), Addr::Node(coordinator), msg);
        }
        if self.final_ops.is_empty() {
            self.done = true;
        }
    }

    fn final_reply(&mut self, msg: Msg) {
        let Msg::GetReply { op, result } = msg else {
            return;
        };
        let Some(key) = self.final_ops.remove(&op) else {
            return;
        };
        match result {
            Ok(o) => {
                self.final_objects.insert(key, o);
            }
            Err(_) => self.final_failures += 1,
        }
        if self.final_ops.is_empty() {
            self.done = true;
        }
    }
}

/// Plays one seed and checks it.
pub fn run(cfg: &SimConfig, seed: u64) -> Report {
    let mut w = match World::new(cfg.clone(), seed) {
        Ok(w) => w,
        Err(e) => return Report::setup_error(seed, cfg, &e.to_string()),
    };
    for i in 0..cfg.nodes {
        w.start_node(i, Start::Clean);
    }
    for c in 0..w.clients.len() {
        let at = w.rng.random_range(0..10 * MS);
        w.q.at(at, Ev::ClientWake(c));
    }
    let first_fault = w.rng.random_range(SEC..3 * SEC);
    w.q.at(first_fault, Ev::NemesisTick);
    if w.membership {
        let first = w.rng.random_range(3 * SEC..8 * SEC);
        w.q.at(first, Ev::MembershipTick);
    }
    w.q.at(cfg.fault_time, Ev::Heal);
    // A hard stop in case final reads never complete.
    let stop = cfg.fault_time + cfg.settle_limit + 10 * SEC;
    while let Some((at, seq, ev)) = w.q.pop() {
        if w.done || at > stop {
            break;
        }
        w.trace.note(&[&at.to_le_bytes(), &seq.to_le_bytes()]);
        w.step(ev);
    }
    report::check(&w, seed)
}
