//! Request coordination, driving core's request machines as `chorus-node` does: a get runs
//! `chorus_core::get::GetCoordinator` (which replicas to ask and when, recovering replicas
//! not counting, the deadline, the read-repair window and targets), a put routes with
//! `chorus_core::plan::route_write`, applies locally (the new dot is this process's) and
//! runs `chorus_core::put::PutCoordinator` (fan-out, hints for replicas that are down or
//! don't acknowledge, the quorum, the deadline). This module only carries the machines'
//! actions out as messages, feeds them answers, the failure detector's verdicts and their
//! timers (virtual time as a `Duration`), and answers the client.
//!
//! The wiped-counts control lives here: the driver hands a recovering replica's answer to
//! the machine as a normal version.

use std::collections::{BTreeSet, VecDeque};
use std::time::Duration;

use chorus_core::context::Context;
use chorus_core::get::{GetAction, GetCoordinator, GetReply, GetTiming, ReadAnswer as Answer};
use chorus_core::plan::{route_write, WriteRoute};
use chorus_core::put::{PutAction, PutCoordinator, PutOptions, PutReply};
use chorus_core::version::Object;
use rand::Rng;

use super::{background, replica, Env, Node, Timer};
use crate::config::Bug;
use crate::engine::{Time, MS};
use crate::msg::{Msg, Push, ReadAnswer};
use crate::net::Addr;

/// Every this-many-th read (on average) asks all replicas, for read repair.
const FULL_READ_CHANCE: f64 = 0.1;
/// The reserve is asked when the first replicas haven't decided a read by then.
const SPECULATE_AFTER: Time = 50 * MS;
/// How long a decided read still waits for late answers before repairing.
const REPAIR_WINDOW: Time = 200 * MS;

pub(crate) struct GetReq {
    client: Addr,
    op: u64,
    key: String,
    machine: GetCoordinator,
    /// The earliest timer scheduled for the machine and not yet fired.
    armed: Option<Time>,
}

pub(crate) struct PutReq {
    client: Addr,
    op: u64,
    key: String,
    object: Object,
    machine: PutCoordinator,
    /// Replicas sent the write and not yet answered: each is answered (a failure) at the
    /// deadline, as the node's peer calls are.
    waiting: BTreeSet<usize>,
    context: Context,
}

fn dur(t: Time) -> Duration {
    Duration::from_micros(t)
}

fn micros(d: Duration) -> Time {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// A client read arrived: any node coordinates.
pub fn start_get(node: &mut Node, env: &mut Env, client: Addr, op: u64, key: String, r: usize) {
    // While the key's partition moves, reads go to the old set, which holds all its data.
    let Some(plan) = env.place.plan(&key, r, true) else {
        let result = Err("this node knows no ring yet".to_string());
        env.send(client, Msg::GetReply { op, result });
        return;
    };
    let (pref, r) = (plan.pref, plan.needed);
    let full = env.rng.random_bool(FULL_READ_CHANCE);
    let me = env.place.name(node.index).to_string();
    let timing = GetTiming {
        speculative_after: dur(SPECULATE_AFTER),
        deadline: dur(env.cfg.request_timeout),
        repair_window: Some(dur(REPAIR_WINDOW)),
    };
    let mut machine = GetCoordinator::new(pref, r, &me, full, timing);
    let now = env.now;
    let first = machine.start(dur(now), |n| {
        env.place.index(n).is_some_and(|i| node.sees_up(i, now))
    });
    let req = env.id();
    let Some(proc) = node.proc.as_mut() else {
        return;
    };
    proc.gets.insert(
        req,
        GetReq {
            client,
            op,
            key,
            machine,
            armed: None,
        },
    );
    run_get(node, env, req, first);
}

/// Carries out a read's actions (answers of the local replica feed straight back in), then
/// schedules the machine's next timer.
fn run_get(node: &mut Node, env: &mut Env, req: u64, actions: Vec<GetAction>) {
    let mut todo: VecDeque<GetAction> = actions.into();
    while let Some(action) = todo.pop_front() {
        let Some(g) = node.proc.as_mut().and_then(|p| p.gets.get_mut(&req)) else {
            return;
        };
        match action {
            GetAction::Ask(name) => {
                let Some(target) = env.place.index(&name) else {
                    continue;
                };
                if target == node.index {
                    let key = g.key.clone();
                    let answer = machine_answer(env, replica::read_answer(node, &key));
                    if let Some(g) = node.proc.as_mut().and_then(|p| p.gets.get_mut(&req)) {
                        todo.extend(g.machine.on_answer(&name, answer, dur(env.now)));
                    }
                } else {
                    let key = g.key.clone();
                    env.send(Addr::Node(target), Msg::Read { req, key });
                }
            }
            GetAction::Reply(reply) => {
                let result = match reply {
                    GetReply::Met(obj) => Ok(obj),
                    GetReply::Failed {
                        needed,
                        answered,
                        recovering,
                    } => Err(format!(
                        "read quorum not met: needed {needed}, {answered} answered, recovering {recovering:?}"
                    )),
                };
                env.send(g.client, Msg::GetReply { op: g.op, result });
            }
            GetAction::Repair { targets, merged } => {
                let key = g.key.clone();
                repair(node, env, &key, &targets, &merged);
            }
            GetAction::Finished => {
                if let Some(p) = node.proc.as_mut() {
                    p.gets.remove(&req);
                }
                return;
            }
        }
    }
    let Some(g) = node.proc.as_mut().and_then(|p| p.gets.get_mut(&req)) else {
        return;
    };
    if let Some(next) = g.machine.next_timer().map(micros) {
        if g.armed.is_none_or(|a| next < a) {
            g.armed = Some(next);
            env.timer(next.saturating_sub(env.now), Timer::Get(req));
        }
    }
}

/// A replica's read answer as the machine takes it. The wiped-counts control passes a
/// recovering replica's copy as a normal version, so it counts toward R.
fn machine_answer(env: &Env, answer: ReadAnswer) -> Answer {
    match answer {
        ReadAnswer::Found(obj) => Answer::Version(obj),
        ReadAnswer::Recovering(obj) if env.cfg.has(Bug::WipedCounts) => Answer::Version(obj),
        ReadAnswer::Recovering(_) => Answer::Recovering,
    }
}

/// Read repair: the merged version goes to each replica the machine named.
fn repair(node: &mut Node, env: &mut Env, key: &str, targets: &[String], merged: &Object) {
    for name in targets {
        let Some(n) = env.place.index(name) else {
            continue;
        };
        if n == node.index {
            replica::merge(node, env, key, merged);
        } else {
            env.send(
                Addr::Node(n),
                Msg::Replicate {
                    req: 0,
                    key: key.to_string(),
                    object: merged.clone(),
                    why: Push::Repair,
                },
            );
        }
    }
}

pub fn on_read_reply(node: &mut Node, env: &mut Env, from: Addr, req: u64, answer: ReadAnswer) {
    let Addr::Node(from) = from else {
        return;
    };
    let answer = machine_answer(env, answer);
    let name = env.place.name(from).to_string();
    let Some(g) = node.proc.as_mut().and_then(|p| p.gets.get_mut(&req)) else {
        return;
    };
    let actions = g.machine.on_answer(&name, answer, dur(env.now));
    run_get(node, env, req, actions);
}

/// A read's timer fired: speculation, the deadline or the end of the repair window.
pub fn get_timer(node: &mut Node, env: &mut Env, req: u64) {
    let Some(g) = node.proc.as_mut().and_then(|p| p.gets.get_mut(&req)) else {
        return;
    };
    if g.armed.is_some_and(|a| a <= env.now) {
        g.armed = None;
    }
    let actions = g.machine.on_timer(dur(env.now));
    run_get(node, env, req, actions);
}

/// The failure detector's verdicts reach the open requests, as the node's membership
/// changes do: a replica (or stand-in) they wait on that is seen down fails its slot.
pub fn check_down(node: &mut Node, env: &mut Env) {
    let Some(proc) = node.proc.as_ref() else {
        return;
    };
    let now = env.now;
    let down = |n: &&str| env.place.index(n).is_some_and(|i| !node.sees_up(i, now));
    let gets: Vec<(u64, Vec<String>)> = proc
        .gets
        .iter()
        .map(|(&r, g)| (r, owned(g.machine.waiting_on().into_iter().filter(down))))
        .filter(|(_, d)| !d.is_empty())
        .collect();
    let puts: Vec<(u64, Vec<String>)> = proc
        .puts
        .iter()
        .map(|(&r, p)| (r, owned(p.machine.waiting_on().into_iter().filter(down))))
        .filter(|(_, d)| !d.is_empty())
        .collect();
    for (req, down) in gets {
        let mut actions = Vec::new();
        if let Some(g) = node.proc.as_mut().and_then(|p| p.gets.get_mut(&req)) {
            for n in &down {
                actions.extend(g.machine.on_down(n, dur(now)));
            }
        }
        run_get(node, env, req, actions);
    }
    for (req, down) in puts {
        let mut actions = Vec::new();
        if let Some(p) = node.proc.as_mut().and_then(|p| p.puts.get_mut(&req)) {
            for n in &down {
                actions.extend(p.machine.on_down(n, dur(now)));
            }
        }
        run_put(node, env, req, actions);
    }
}

fn owned<'a>(names: impl Iterator<Item = &'a str>) -> Vec<String> {
    names.map(str::to_string).collect()
}

/// A client write arrived, planned by core's `Plan::new` (during a transition: the old set
/// coordinates, and the write needs W acknowledgements from the new set too). Clients route
/// to a replica; a write reaching another node is refused (the sim has no forwarding).
#[allow(clippy::too_many_arguments)]
pub fn start_put(
    node: &mut Node,
    env: &mut Env,
    client: Addr,
    op: u64,
    key: String,
    ctx: Context,
    value: Option<Vec<u8>>,
    w: usize,
) {
    // The transition-new-only control plans without the old ring: no dual quorum.
    let old_too = !env.cfg.has(Bug::TransitionNewOnly);
    let Some(plan) = env.place.plan(&key, w, old_too) else {
        let result = Err("this node knows no ring yet".to_string());
        env.send(client, Msg::PutReply { op, result });
        return;
    };
    let me = env.place.name(node.index).to_string();
    let now = env.now;
    let is_up = |n: &str| env.place.index(n).is_some_and(|i| node.sees_up(i, now));
    // Every process here takes writes: the unconfirmed phase of a start isn't simulated.
    if route_write(&plan, &me, true, false, is_up) != WriteRoute::Coordinate {
        let result = Err("not a replica of the key".to_string());
        env.send(client, Msg::PutReply { op, result });
        return;
    }
    let (object, dot) = match replica::update(node, env, &key, &ctx, value) {
        Ok(Some(applied)) => applied,
        Ok(None) => return,
        Err(refused) => {
            let result = Err(refused.to_string());
            env.send(client, Msg::PutReply { op, result });
            return;
        }
    };
    let context = object.written_context(&ctx, &dot);
    let options = PutOptions {
        sloppy: false,
        handoff: true,
        deadline: dur(env.cfg.request_timeout),
    };
    let mut machine = PutCoordinator::new(&plan, &me, options);
    let first = machine.start(dur(now), |n| {
        env.place.index(n).is_some_and(|i| node.sees_up(i, now))
    });
    let req = env.id();
    let Some(proc) = node.proc.as_mut() else {
        return;
    };
    proc.puts.insert(
        req,
        PutReq {
            client,
            op,
            key,
            object,
            machine,
            waiting: BTreeSet::new(),
            context,
        },
    );
    // The machine's deadline and the peer calls' deadline are the same request timeout.
    env.timer(env.cfg.request_timeout, Timer::PutDeadline(req));
    run_put(node, env, req, first);
}

/// Carries out a write's actions.
fn run_put(node: &mut Node, env: &mut Env, req: u64, actions: Vec<PutAction>) {
    for action in actions {
        let Some(p) = node.proc.as_mut().and_then(|p| p.puts.get_mut(&req)) else {
            return;
        };
        match action {
            PutAction::Replicate(name) => {
                let Some(n) = env.place.index(&name) else {
                    continue;
                };
                p.waiting.insert(n);
                let msg = Msg::Replicate {
                    req,
                    key: p.key.clone(),
                    object: p.object.clone(),
                    why: Push::Write,
                };
                env.send(Addr::Node(n), msg);
            }
            // Sloppy writes aren't simulated (the clients don't ask for them).
            PutAction::StoreHint { .. } => {}
            PutAction::Hint(name) => {
                let (key, object) = (p.key.clone(), p.object.clone());
                if let Some(n) = env.place.index(&name) {
                    background::store_hint(node, env, n, &key, &object);
                }
            }
            PutAction::Reply(reply) => {
                let result = match reply {
                    PutReply::Met => Ok(p.context.clone()),
                    PutReply::Failed { needed, answered } => Err(format!(
                        "write quorum not met: needed {needed}, {answered} answered"
                    )),
                };
                env.send(p.client, Msg::PutReply { op: p.op, result });
            }
            PutAction::Finished => {
                if let Some(proc) = node.proc.as_mut() {
                    proc.puts.remove(&req);
                }
                return;
            }
        }
    }
}

pub fn on_ack(node: &mut Node, env: &mut Env, from: Addr, req: u64, ok: bool) {
    let Addr::Node(from) = from else {
        return;
    };
    let name = env.place.name(from).to_string();
    let Some(p) = node.proc.as_mut().and_then(|p| p.puts.get_mut(&req)) else {
        return;
    };
    if !p.waiting.remove(&from) {
        return; // a duplicate, or answered at the deadline
    }
    let actions = p.machine.on_answer(&name, ok, dur(env.now));
    run_put(node, env, req, actions);
}

/// The deadline: the machine decides if it hasn't, and every replica still silent is
/// answered as failed (so it gets a hint), as the node's peer calls time out.
pub fn put_deadline(node: &mut Node, env: &mut Env, req: u64) {
    let Some(p) = node.proc.as_mut().and_then(|p| p.puts.get_mut(&req)) else {
        return;
    };
    let now = dur(env.now);
    let mut actions = p.machine.on_timer(now);
    for n in std::mem::take(&mut p.waiting) {
        actions.extend(p.machine.on_answer(env.place.name(n), false, now));
    }
    run_put(node, env, req, actions);
}
