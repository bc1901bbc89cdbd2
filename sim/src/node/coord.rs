//! Request coordination: a get asks replicas through core's `read_targets` and `GetFsm`
//! (recovering replicas don't count), escalates to the reserve when one fails or is slow,
//! and read-repairs stale replicas after the reply; a put applies locally (the new dot is
//! this process's), fans out, counts acknowledgements with core's `Quorums`, and leaves a
//! durable hint for every replica that is down or doesn't acknowledge in time.

use std::collections::BTreeSet;

use chorus_core::context::Context;
use chorus_core::coordinator::{read_targets, GetFsm, Outcome, Quorum, Quorums};
use chorus_core::version::Object;
use rand::Rng;

use super::{background, replica, Env, Node, Timer};
use crate::engine::MS;
use crate::msg::{Msg, Push, ReadAnswer};
use crate::net::Addr;

/// Every this-many-th read (on average) asks all replicas, for read repair.
const FULL_READ_CHANCE: f64 = 0.1;
/// The reserve is asked when the first replicas haven't decided a read by then.
const SPECULATE_AFTER: u64 = 50 * MS;
/// How long a decided read still waits for late answers before repairing.
const REPAIR_WINDOW: u64 = 200 * MS;

pub(crate) struct GetReq {
    client: Addr,
    op: u64,
    key: String,
    fsm: GetFsm,
    reserve: Vec<usize>,
    decided: bool,
}

pub(crate) struct PutReq {
    client: Addr,
    op: u64,
    key: String,
    object: Object,
    quorum: Quorums,
    waiting: BTreeSet<usize>,
    context: Context,
    replied: bool,
}

fn names(env: &Env, nodes: &[usize]) -> Vec<String> {
    nodes
        .iter()
        .map(|&n| env.place.name(n).to_string())
        .collect()
}

/// A client read arrived: any node coordinates.
pub fn start_get(node: &mut Node, env: &mut Env, client: Addr, op: u64, key: String, r: usize) {
    let pref = env.place.pref_of(&key).to_vec();
    let pref_names = names(env, &pref);
    let r = r.clamp(1, pref.len().max(1));
    let mut fsm = GetFsm::new(pref_names.clone(), r);
    let full = env.rng.random_bool(FULL_READ_CHANCE);
    let me = env.place.name(node.index).to_string();
    let now = env.now;
    let up = |n: &str| env.place.index(n).is_some_and(|i| node.sees_up(i, now));
    let (first, reserve) = read_targets(&pref_names, &me, r, up, full);
    let first: Vec<usize> = first.iter().filter_map(|n| env.place.index(n)).collect();
    let reserve: Vec<usize> = reserve.iter().filter_map(|n| env.place.index(n)).collect();
    for &n in &pref {
        if n != node.index && !node.sees_up(n, now) {
            fsm.fail(env.place.name(n));
        }
    }
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
            fsm,
            reserve,
            decided: false,
        },
    );
    for target in first {
        ask(node, env, req, target);
    }
    env.timer(SPECULATE_AFTER, Timer::GetSpeculate(req));
    env.timer(env.cfg.request_timeout, Timer::GetDeadline(req));
    advance_get(node, env, req);
}

/// Asks one replica for the key: the local one directly, others with a `Read`.
fn ask(node: &mut Node, env: &mut Env, req: u64, target: usize) {
    let Some(key) = node
        .proc
        .as_ref()
        .and_then(|p| p.gets.get(&req))
        .map(|g| g.key.clone())
    else {
        return;
    };
    if target == node.index {
        let answer = replica::read_answer(node, env.cfg, &key);
        feed(node, env, req, target, answer);
    } else {
        env.send(Addr::Node(target), Msg::Read { req, key });
    }
}

fn feed(node: &mut Node, env: &mut Env, req: u64, from: usize, answer: ReadAnswer) {
    let name = env.place.name(from).to_string();
    let Some(g) = node.proc.as_mut().and_then(|p| p.gets.get_mut(&req)) else {
        return;
    };
    let escalate = match answer {
        ReadAnswer::Found(obj) => {
            g.fsm.reply(&name, obj);
            false
        }
        ReadAnswer::Recovering => {
            g.fsm.recovering(&name);
            true
        }
    };
    if escalate {
        escalate_get(node, env, req);
    }
    advance_get(node, env, req);
}

/// Asks the reserve replicas, unless the read is decided.
fn escalate_get(node: &mut Node, env: &mut Env, req: u64) {
    let Some(g) = node.proc.as_mut().and_then(|p| p.gets.get_mut(&req)) else {
        return;
    };
    if g.decided {
        return;
    }
    for target in std::mem::take(&mut g.reserve) {
        ask(node, env, req, target);
    }
}

pub fn on_read_reply(node: &mut Node, env: &mut Env, from: Addr, req: u64, answer: ReadAnswer) {
    if let Addr::Node(from) = from {
        feed(node, env, req, from, answer);
    }
}

pub fn get_speculate(node: &mut Node, env: &mut Env, req: u64) {
    escalate_get(node, env, req);
}

pub fn get_deadline(node: &mut Node, env: &mut Env, req: u64) {
    if let Some(g) = node.proc.as_mut().and_then(|p| p.gets.get_mut(&req)) {
        if !g.decided {
            g.fsm.expire();
        }
    }
    advance_get(node, env, req);
    // Whatever is still open now is done waiting.
    repair_window(node, env, req);
}

/// Replies once the read is decided; repairs once every asked replica answered.
fn advance_get(node: &mut Node, env: &mut Env, req: u64) {
    let Some(g) = node.proc.as_mut().and_then(|p| p.gets.get_mut(&req)) else {
        return;
    };
    if !g.decided {
        let outcome = g.fsm.quorum().outcome();
        let result = match outcome {
            Outcome::Pending => return,
            Outcome::Met => Ok(g.fsm.merged().cloned()),
            Outcome::Failed { needed, answered } => Err(format!(
                "read quorum not met: needed {needed}, {answered} answered"
            )),
        };
        g.decided = true;
        let (client, op) = (g.client, g.op);
        env.send(client, Msg::GetReply { op, result });
        if outcome != Outcome::Met {
            if let Some(p) = node.proc.as_mut() {
                p.gets.remove(&req);
            }
            return;
        }
        env.timer(REPAIR_WINDOW, Timer::RepairWindow(req));
    }
    let waiting = node
        .proc
        .as_ref()
        .and_then(|p| p.gets.get(&req))
        .map_or(0, |g| g.fsm.quorum().waiting());
    if waiting == 0 {
        repair_window(node, env, req);
    }
}

/// Read repair: the merged version goes to every replica whose answer lacked part of it.
pub fn repair_window(node: &mut Node, env: &mut Env, req: u64) {
    let Some(g) = node.proc.as_mut().and_then(|p| p.gets.remove(&req)) else {
        return;
    };
    let Some(merged) = g.fsm.merged().cloned() else {
        return;
    };
    for name in g.fsm.stale_replicas() {
        let Some(n) = env.place.index(name) else {
            continue;
        };
        if n == node.index {
            replica::merge(node, env, &g.key, &merged);
        } else {
            env.send(
                Addr::Node(n),
                Msg::Replicate {
                    req: 0,
                    key: g.key.clone(),
                    object: merged.clone(),
                    why: Push::Repair,
                },
            );
        }
    }
}

/// A client write arrived. Only a replica coordinates (clients route to one).
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
    let pref = env.place.pref_of(&key).to_vec();
    if !pref.contains(&node.index) {
        let result = Err("not a replica of the key".to_string());
        env.send(client, Msg::PutReply { op, result });
        return;
    }
    let Some((object, dot)) = replica::update(node, env, &key, &ctx, value) else {
        return;
    };
    let context = object.written_context(&ctx, &dot);
    let w = w.clamp(1, pref.len());
    let mut quorum = Quorums::new(vec![Quorum::new(names(env, &pref), w)]);
    quorum.ok(env.place.name(node.index));
    let req = env.id();
    let mut waiting = BTreeSet::new();
    let me = node.index;
    for &n in pref.iter().filter(|&&n| n != me) {
        if node.sees_up(n, env.now) {
            waiting.insert(n);
            env.send(
                Addr::Node(n),
                Msg::Replicate {
                    req,
                    key: key.clone(),
                    object: object.clone(),
                    why: Push::Write,
                },
            );
        } else {
            quorum.fail(env.place.name(n));
            background::store_hint(node, env, n, &key, &object);
        }
    }
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
            quorum,
            waiting,
            context,
            replied: false,
        },
    );
    env.timer(env.cfg.request_timeout, Timer::PutDeadline(req));
    advance_put(node, env, req);
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
        return; // a duplicate
    }
    if ok {
        p.quorum.ok(&name);
    } else {
        p.quorum.fail(&name);
        let (key, object) = (p.key.clone(), p.object.clone());
        background::store_hint(node, env, from, &key, &object);
    }
    advance_put(node, env, req);
}

/// Replicas that haven't acknowledged by the deadline get a hint.
pub fn put_deadline(node: &mut Node, env: &mut Env, req: u64) {
    let Some(p) = node.proc.as_mut().and_then(|p| p.puts.get_mut(&req)) else {
        return;
    };
    p.quorum.expire();
    let late = std::mem::take(&mut p.waiting);
    let (key, object) = (p.key.clone(), p.object.clone());
    for n in late {
        background::store_hint(node, env, n, &key, &object);
    }
    advance_put(node, env, req);
}

fn advance_put(node: &mut Node, env: &mut Env, req: u64) {
    let Some(proc) = node.proc.as_mut() else {
        return;
    };
    let Some(p) = proc.puts.get_mut(&req) else {
        return;
    };
    if !p.replied {
        let result = match p.quorum.outcome() {
            Outcome::Pending => return,
            Outcome::Met => Ok(p.context.clone()),
            Outcome::Failed { needed, answered } => Err(format!(
                "write quorum not met: needed {needed}, {answered} answered"
            )),
        };
        p.replied = true;
        env.send(p.client, Msg::PutReply { op: p.op, result });
    }
    if p.waiting.is_empty() {
        proc.puts.remove(&req);
    }
}
