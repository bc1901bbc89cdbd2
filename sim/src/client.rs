//! Client processes and their workloads, as `chorus-verify` runs them: set adds
//! (read-modify-write, siblings merged by union), registers (one writer per key, readers),
//! deletes (write, read, delete with the read's context) and delete-and-re-create cycles.
//! Each client runs one operation at a time and records it in the history.

use std::collections::BTreeSet;

use chorus_check::checker::{Event, Kind};
use chorus_core::context::Context;
use chorus_core::version::Object;
use rand::Rng;
use serde_json::{json, Value};

use crate::config::SimConfig;
use crate::engine::{SimRng, Time, MS, SEC};
use crate::msg::Msg;
use crate::net::Addr;
use crate::placement::Placement;

/// Set keys live for this long, so sets (rewritten whole on each add) stay small.
const SET_GENERATION: Time = 10 * SEC;
const SET_KEYS: usize = 4;
/// Register keys, one writer each.
pub const REGISTER_KEYS: usize = 4;
const DELETE_SLOTS: usize = 20;

/// What a client does.
#[derive(Clone, Debug)]
pub enum Role {
    Set,
    RegisterWriter(String),
    RegisterReader,
    Deleter,
    Recreator,
}

impl Role {
    /// The key family the role works on (checkers take one family each).
    pub fn family(&self) -> &'static str {
        match self {
            Role::Set => "set",
            Role::RegisterWriter(_) | Role::RegisterReader => "reg",
            Role::Deleter => "del",
            Role::Recreator => "rc",
        }
    }
}

#[derive(Clone, Debug)]
enum State {
    Idle,
    Read(String),
    AddRead(String, i64),
    AddWrite(String, i64),
    RegContext,
    RegWrite(i64),
    DelWrite(String, usize),
    DelRead(String, usize),
    DelDelete(String, usize),
    RcWrite1(String),
    RcRead(String),
    RcDelete(String, Context),
    RcWait(String, Context),
    RcWrite2(String, Context),
    RcWrite3(String),
}

/// The answer to a client request: a read's merged object, a write's context, or nothing
/// (an error or a timeout).
pub enum Reply {
    Got(Option<Object>),
    Wrote(Context),
    Failed,
    TimedOut,
}

/// What a client step asks of the world.
#[derive(Default)]
pub struct ClientIo {
    pub sends: Vec<(Addr, Msg)>,
    /// Wake the client after this long.
    pub wake: Option<Time>,
    /// Time out operation `op` after the client timeout.
    pub timeout: Option<u64>,
    pub history: Vec<Event>,
}

/// One client process.
pub struct Client {
    pub index: usize,
    pub role: Role,
    state: State,
    pending: Option<u64>,
    /// Adds issued, register seqs written, cycles started.
    n: i64,
    ctx: Option<Context>,
    generations: Vec<u64>,
}

/// Everything a client step can see.
pub struct ClientEnv<'a> {
    pub now: Time,
    pub rng: &'a mut SimRng,
    pub ids: &'a mut u64,
    pub cfg: &'a SimConfig,
    pub place: &'a Placement,
    /// Whether clients still start operations.
    pub running: bool,
}

impl Client {
    pub fn new(index: usize, role: Role) -> Client {
        Client {
            index,
            role,
            state: State::Idle,
            pending: None,
            n: 0,
            ctx: None,
            generations: vec![0; DELETE_SLOTS],
        }
    }

    fn record(&self, env: &ClientEnv, io: &mut ClientIo, kind: Kind, f: &str, key: &str, v: Value) {
        io.history.push(Event {
            time_ms: env.now / MS,
            process: self.index as u64,
            kind,
            f: f.to_string(),
            key: key.to_string(),
            value: v,
        });
    }

    fn get(&mut self, env: &mut ClientEnv, io: &mut ClientIo, key: &str) {
        *env.ids += 1;
        let op = *env.ids;
        let members = env.place.members();
        let node = members
            .get(env.rng.random_range(0..members.len().max(1)))
            .copied()
            .unwrap_or(0);
        let r = env.cfg.r;
        let msg = Msg::Get {
            op,
            key: key.to_string(),
            r,
        };
        io.sends.push((Addr::Node(node), msg));
        io.timeout = Some(op);
        self.pending = Some(op);
    }

    /// Writes go to a replica of the key, as a token-aware client sends them.
    fn put(
        &mut self,
        env: &mut ClientEnv,
        io: &mut ClientIo,
        key: &str,
        ctx: Context,
        value: Option<Vec<u8>>,
    ) {
        *env.ids += 1;
        let op = *env.ids;
        // The replicas that coordinate: while the partition moves, the old set.
        let pref: Vec<usize> = env
            .place
            .plan(key, env.cfg.w, true)
            .map(|p| p.pref.iter().filter_map(|n| env.place.index(n)).collect())
            .unwrap_or_default();
        let node = pref
            .get(env.rng.random_range(0..pref.len().max(1)))
            .copied()
            .unwrap_or(0);
        let msg = Msg::Put {
            op,
            key: key.to_string(),
            ctx,
            value,
            w: env.cfg.w,
        };
        io.sends.push((Addr::Node(node), msg));
        io.timeout = Some(op);
        self.pending = Some(op);
    }

    /// The client's pending operation, if `op` is it.
    pub fn waits_for(&self, op: u64) -> bool {
        self.pending == Some(op)
    }

    /// Time to start the next operation.
    pub fn wake(&mut self, env: &mut ClientEnv) -> ClientIo {
        let mut io = ClientIo::default();
        if self.pending.is_some() || !env.running {
            return io;
        }
        match std::mem::replace(&mut self.state, State::Idle) {
            State::RcWait(key, ctx) => {
                self.record(env, &mut io, Kind::Invoke, "write", &key, json!(2));
                self.put(env, &mut io, &key, Context::default(), Some(b"2".to_vec()));
                self.state = State::RcWrite2(key, ctx);
            }
            State::Idle => self.begin(env, &mut io),
            other => self.state = other,
        }
        io
    }

    fn begin(&mut self, env: &mut ClientEnv, io: &mut ClientIo) {
        match self.role.clone() {
            Role::Set => {
                let key = format!(
                    "set{}.{}",
                    env.rng.random_range(0..SET_KEYS),
                    env.now / SET_GENERATION
                );
                if env.rng.random_range(0..10) == 0 {
                    self.record(env, io, Kind::Invoke, "read", &key, Value::Null);
                    self.get(env, io, &key);
                    self.state = State::Read(key);
                } else {
                    self.n += 1;
                    let e = self.index as i64 * 1_000_000 + self.n;
                    self.record(env, io, Kind::Invoke, "add", &key, json!(e));
                    self.get(env, io, &key);
                    self.state = State::AddRead(key, e);
                }
            }
            Role::RegisterWriter(key) => match self.ctx.clone() {
                None => {
                    self.get(env, io, &key);
                    self.state = State::RegContext;
                }
                Some(ctx) => {
                    self.n += 1;
                    let seq = self.n;
                    self.record(env, io, Kind::Invoke, "write", &key, json!(seq));
                    self.put(env, io, &key, ctx, Some(seq.to_string().into_bytes()));
                    self.state = State::RegWrite(seq);
                }
            },
            Role::RegisterReader => {
                let key = format!("reg{}", env.rng.random_range(0..REGISTER_KEYS));
                self.record(env, io, Kind::Invoke, "read", &key, Value::Null);
                self.get(env, io, &key);
                self.state = State::Read(key);
            }
            Role::Deleter => {
                self.n += 1;
                let slot = self.n as usize % DELETE_SLOTS;
                let key = format!("del{}-{slot}.{}", self.index, self.generations[slot]);
                self.record(env, io, Kind::Invoke, "write", &key, json!(1));
                self.put(env, io, &key, Context::default(), Some(b"1".to_vec()));
                self.state = State::DelWrite(key, slot);
            }
            Role::Recreator => {
                self.n += 1;
                let key = format!("rc{}-{}", self.index, self.n);
                self.record(env, io, Kind::Invoke, "write", &key, json!(1));
                self.put(env, io, &key, Context::default(), Some(b"1".to_vec()));
                self.state = State::RcWrite1(key);
            }
        }
    }

    /// The answer (or the timeout) of the pending operation.
    pub fn on_reply(&mut self, env: &mut ClientEnv, reply: Reply) -> ClientIo {
        let mut io = ClientIo::default();
        self.pending = None;
        // A write that failed or timed out may still have been applied.
        let write_failed = Kind::Info;
        let pause = env.rng.random_range(MS..20 * MS);
        io.wake = Some(pause);
        match (std::mem::replace(&mut self.state, State::Idle), reply) {
            (State::Read(key), Reply::Got(obj)) => {
                let seen = match self.role {
                    Role::Set => json!(set_union(obj.as_ref())),
                    _ => json!(ints(obj.as_ref())),
                };
                self.record(env, &mut io, Kind::Ok, "read", &key, seen);
            }
            (State::Read(key), _) => {
                self.record(env, &mut io, Kind::Fail, "read", &key, Value::Null)
            }
            (State::AddRead(key, e), Reply::Got(obj)) => {
                let mut set = set_union(obj.as_ref());
                set.insert(e);
                let body = serde_json::to_vec(&set).unwrap_or_default();
                let ctx = obj.map(|o| o.context()).unwrap_or_default();
                self.put(env, &mut io, &key, ctx, Some(body));
                self.state = State::AddWrite(key, e);
                io.wake = None;
            }
            (State::AddRead(key, e), _) => {
                self.record(env, &mut io, Kind::Fail, "add", &key, json!(e))
            }
            (State::AddWrite(key, e), Reply::Wrote(_)) => {
                self.record(env, &mut io, Kind::Ok, "add", &key, json!(e))
            }
            (State::AddWrite(key, e), _) => {
                self.record(env, &mut io, write_failed, "add", &key, json!(e))
            }
            (State::RegContext, Reply::Got(obj)) => {
                self.ctx = Some(obj.map(|o| o.context()).unwrap_or_default());
            }
            (State::RegContext, _) => io.wake = Some(50 * MS),
            (State::RegWrite(seq), reply) => {
                let key = match &self.role {
                    Role::RegisterWriter(k) => k.clone(),
                    _ => String::new(),
                };
                if let Reply::Wrote(c) = reply {
                    self.record(env, &mut io, Kind::Ok, "write", &key, json!(seq));
                    self.ctx = Some(c);
                } else {
                    self.record(env, &mut io, write_failed, "write", &key, json!(seq));
                    self.ctx = None;
                }
                io.wake = Some(10 * MS);
            }
            (State::DelWrite(key, slot), Reply::Wrote(_)) => {
                self.record(env, &mut io, Kind::Ok, "write", &key, json!(1));
                self.get(env, &mut io, &key);
                self.state = State::DelRead(key, slot);
                io.wake = None;
            }
            (State::DelWrite(key, slot), _) => {
                self.record(env, &mut io, write_failed, "write", &key, json!(1));
                self.generations[slot] += 1;
            }
            (State::DelRead(key, slot), Reply::Got(obj)) => {
                let ctx = obj.map(|o| o.context()).unwrap_or_default();
                self.record(env, &mut io, Kind::Invoke, "delete", &key, Value::Null);
                self.put(env, &mut io, &key, ctx, None);
                self.state = State::DelDelete(key, slot);
                io.wake = None;
            }
            (State::DelRead(..), _) => {}
            (State::DelDelete(key, slot), reply) => {
                if matches!(reply, Reply::Wrote(_)) {
                    self.record(env, &mut io, Kind::Ok, "delete", &key, Value::Null);
                } else {
                    self.record(env, &mut io, write_failed, "delete", &key, Value::Null);
                    self.generations[slot] += 1;
                }
            }
            (State::RcWrite1(key), Reply::Wrote(_)) => {
                self.record(env, &mut io, Kind::Ok, "write", &key, json!(1));
                self.get(env, &mut io, &key);
                self.state = State::RcRead(key);
                io.wake = None;
            }
            (State::RcWrite1(key), _) => {
                self.record(env, &mut io, write_failed, "write", &key, json!(1))
            }
            (State::RcRead(key), Reply::Got(obj)) => {
                let ctx = obj.map(|o| o.context()).unwrap_or_default();
                self.record(env, &mut io, Kind::Invoke, "delete", &key, Value::Null);
                self.put(env, &mut io, &key, ctx.clone(), None);
                self.state = State::RcDelete(key, ctx);
                io.wake = None;
            }
            (State::RcRead(_), _) => {}
            (State::RcDelete(key, ctx), Reply::Wrote(_)) => {
                self.record(env, &mut io, Kind::Ok, "delete", &key, Value::Null);
                // Past the grace and a few purge passes, the tombstone is gone.
                io.wake = Some(env.cfg.tombstone_grace + 3 * SEC);
                self.state = State::RcWait(key, ctx);
            }
            (State::RcDelete(key, _), _) => {
                self.record(env, &mut io, write_failed, "delete", &key, Value::Null)
            }
            (State::RcWrite2(key, ctx), Reply::Wrote(_)) => {
                self.record(env, &mut io, Kind::Ok, "write", &key, json!(2));
                self.record(env, &mut io, Kind::Invoke, "write", &key, json!(3));
                self.put(env, &mut io, &key, ctx, Some(b"3".to_vec()));
                self.state = State::RcWrite3(key);
                io.wake = None;
            }
            (State::RcWrite2(key, _), _) => {
                self.record(env, &mut io, write_failed, "write", &key, json!(2))
            }
            (State::RcWrite3(key), reply) => {
                let kind = if matches!(reply, Reply::Wrote(_)) {
                    Kind::Ok
                } else {
                    write_failed
                };
                self.record(env, &mut io, kind, "write", &key, json!(3));
            }
            (state, _) => self.state = state,
        }
        io
    }
}

/// Set elements: the union of every sibling's JSON array.
pub fn set_union(obj: Option<&Object>) -> BTreeSet<i64> {
    obj.map(|o| {
        o.values()
            .into_iter()
            .filter_map(|v| serde_json::from_slice::<Vec<i64>>(v).ok())
            .flatten()
            .collect()
    })
    .unwrap_or_default()
}

/// Integer values of every live sibling.
pub fn ints(obj: Option<&Object>) -> Vec<i64> {
    obj.map(|o| {
        o.values()
            .into_iter()
            .filter_map(|v| std::str::from_utf8(v).ok()?.parse().ok())
            .collect()
    })
    .unwrap_or_default()
}
