//! A client read as a deterministic state machine: which replicas it asks and when, when it
//! is decided and what the client is told, and the read repair that follows.
//!
//! The driver passes events in (replica answers, replicas going down, the current time as a
//! [`Duration`] since an origin of its choosing) and carries the returned [`GetAction`]s
//! out. Nothing here does I/O or reads a clock, so a simulator can run it in virtual time.
//!
//! The rules:
//! - Ask R replicas first (the coordinator's own copy first, then in preference order), or
//!   every live replica on a full read; keep the others in reserve ([`read_targets`]).
//! - Ask the reserve when a contacted replica fails, is down, or answers as recovering, or
//!   when R isn't reached `speculative_after` the start (speculative retry).
//! - Only whole replicas count toward R. A recovering replica's answer is neither counted
//!   nor merged: by quorum intersection among whole replicas it adds nothing an
//!   acknowledged write needs, and a restored copy may hold keys deleted and purged since.
//! - Reply when R whole replicas answered (with the merge of every answer) or when R is out
//!   of reach or the deadline passes (failed, naming the recovering replicas).
//! - After a successful reply, keep listening for the replicas asked for the repair window
//!   (or until all answered), then send the merge to each replica whose answer lacked part
//!   of it or that had no copy.

use std::time::Duration;

use crate::quorum::{Outcome, Quorum};
use crate::version::{Conflicts, Object};

/// Which replicas a read asks first, and which it keeps in reserve.
///
/// A full read (`full`) asks every replica that is up. Otherwise it asks `needed` of them,
/// the coordinator's own copy first (`me`, no message), then in preference order; the rest
/// are asked only if one of those fails or is slow. Replicas that are down are in neither
/// list: the caller counts them as failed.
pub fn read_targets<'a>(
    pref: &'a [String],
    me: &str,
    needed: usize,
    is_up: impl Fn(&str) -> bool,
    full: bool,
) -> (Vec<&'a String>, Vec<&'a String>) {
    let mut up: Vec<&String> = pref
        .iter()
        .filter(|n| n.as_str() == me || is_up(n))
        .collect();
    // Stable: the local replica moves to the front, the others keep their order.
    up.sort_by_key(|n| n.as_str() != me);
    if full {
        return (up, Vec::new());
    }
    let reserve = up.split_off(needed.min(up.len()));
    (up, reserve)
}

/// The timers of a read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GetTiming {
    /// When the reserve is asked if R hasn't been reached.
    pub speculative_after: Duration,
    /// When the read fails if undecided.
    pub deadline: Duration,
    /// How long a successful read keeps listening before it repairs; `None`: no repair.
    pub repair_window: Option<Duration>,
}

/// A replica's answer to a read.
#[derive(Clone, Debug, PartialEq)]
pub enum ReadAnswer {
    /// Its version of the key (`None`: it has no copy).
    Version(Option<Object>),
    /// It is recovering: it doesn't count toward R and its version isn't merged.
    Recovering,
    /// The read failed (refused, unreachable, timed out, undecodable).
    Failed,
}

/// What the client is told.
#[derive(Clone, Debug, PartialEq)]
pub enum GetReply {
    /// R whole replicas answered; the merge of every version received (`None`: no copy).
    Met(Option<Object>),
    /// Fewer than R whole replicas answered; `recovering` answered as recovering.
    Failed {
        needed: usize,
        answered: usize,
        recovering: Vec<String>,
    },
}

/// What the driver does next.
#[derive(Clone, Debug, PartialEq)]
pub enum GetAction {
    /// Read this replica's version (the local replica when it is the coordinator).
    Ask(String),
    /// Answer the client. Comes exactly once.
    Reply(GetReply),
    /// Send `merged` to each of `targets` (read repair).
    Repair {
        targets: Vec<String>,
        merged: Object,
    },
    /// Nothing more will come; drop the machine.
    Finished,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Deciding,
    Repairing { until: Duration },
    Done,
}

/// One read, from the first ask to the read repair.
#[derive(Clone, Debug)]
pub struct GetCoordinator {
    quorum: Quorum,
    me: String,
    full: bool,
    timing: GetTiming,
    phase: Phase,
    /// Replicas not asked yet, asked on escalation.
    reserve: Vec<String>,
    speculate_at: Option<Duration>,
    deadline_at: Duration,
    asked: Vec<String>,
    /// Asked replicas whose answer (of any kind) came.
    heard: Vec<String>,
    merged: Option<Object>,
    /// The bucket's conflict policy, which the answers are merged under.
    conflicts: Conflicts,
    answers: Vec<(String, Option<Object>)>,
    recovering: Vec<String>,
}

impl GetCoordinator {
    /// Merges the answers under the bucket's conflict policy (`siblings` unless set).
    pub fn with_conflicts(mut self, conflicts: Conflicts) -> GetCoordinator {
        self.conflicts = conflicts;
        self
    }

    /// A read of a key replicated on `pref` that needs `needed` whole answers, coordinated
    /// by `me`. `full` asks every live replica at once (so that they get compared).
    pub fn new(
        pref: Vec<String>,
        needed: usize,
        me: &str,
        full: bool,
        timing: GetTiming,
    ) -> GetCoordinator {
        GetCoordinator {
            quorum: Quorum::new(pref, needed),
            me: me.to_string(),
            full,
            timing,
            phase: Phase::Deciding,
            reserve: Vec::new(),
            speculate_at: None,
            deadline_at: timing.deadline,
            asked: Vec::new(),
            heard: Vec::new(),
            merged: None,
            conflicts: Conflicts::Siblings,
            answers: Vec::new(),
            recovering: Vec::new(),
        }
    }

    /// Starts the read: down replicas count as failed, the first replicas are asked.
    pub fn start(&mut self, now: Duration, is_up: impl Fn(&str) -> bool) -> Vec<GetAction> {
        let pref = self.quorum.replicas().to_vec();
        let (first, reserve) =
            read_targets(&pref, &self.me, self.quorum.needed(), &is_up, self.full);
        let first: Vec<String> = first.into_iter().cloned().collect();
        self.reserve = reserve.into_iter().cloned().collect();
        for node in pref.iter().filter(|n| **n != self.me && !is_up(n)) {
            self.quorum.fail(node);
        }
        if !self.reserve.is_empty() {
            self.speculate_at = Some(now + self.timing.speculative_after);
        }
        self.deadline_at = now + self.timing.deadline;
        let mut out = Vec::new();
        for node in first {
            self.ask(node, &mut out);
        }
        self.decide(now, &mut out);
        out
    }

    /// A replica answered.
    pub fn on_answer(&mut self, node: &str, answer: ReadAnswer, now: Duration) -> Vec<GetAction> {
        let mut out = Vec::new();
        if self.phase == Phase::Done
            || !self.asked.iter().any(|n| n == node)
            || self.heard.iter().any(|n| n == node)
        {
            return out;
        }
        self.heard.push(node.to_string());
        match answer {
            ReadAnswer::Version(object) => {
                if let Some(o) = &object {
                    match &mut self.merged {
                        Some(m) => m.merge_as(o, self.conflicts),
                        None => self.merged = Some(o.clone()),
                    }
                }
                self.answers.push((node.to_string(), object));
                self.quorum.ok(node);
            }
            ReadAnswer::Recovering => {
                self.recovering.push(node.to_string());
                self.quorum.fail(node);
                self.escalate(&mut out);
            }
            ReadAnswer::Failed => {
                self.quorum.fail(node);
                self.escalate(&mut out);
            }
        }
        self.decide(now, &mut out);
        self.check_repair(&mut out);
        out
    }

    /// The failure detector marks `node` down. Only counts while the read is undecided:
    /// its outstanding read, if any, still ends in an answer.
    pub fn on_down(&mut self, node: &str, now: Duration) -> Vec<GetAction> {
        let mut out = Vec::new();
        if self.phase != Phase::Deciding || !self.quorum.waiting_on().contains(&node) {
            return out;
        }
        self.quorum.fail(node);
        self.escalate(&mut out);
        self.decide(now, &mut out);
        out
    }

    /// Time passed: the speculative timer, the deadline, the end of the repair window.
    pub fn on_timer(&mut self, now: Duration) -> Vec<GetAction> {
        let mut out = Vec::new();
        if self.phase == Phase::Deciding {
            if self.speculate_at.is_some_and(|t| t <= now) {
                self.escalate(&mut out);
            }
            if self.deadline_at <= now {
                self.quorum.expire();
                self.decide(now, &mut out);
            }
        }
        if let Phase::Repairing { until } = self.phase {
            if until <= now {
                self.repair(&mut out);
            }
        }
        out
    }

    /// When [`GetCoordinator::on_timer`] wants to be called next; `None` once finished.
    pub fn next_timer(&self) -> Option<Duration> {
        match self.phase {
            Phase::Deciding => Some(match self.speculate_at {
                Some(s) => s.min(self.deadline_at),
                None => self.deadline_at,
            }),
            Phase::Repairing { until } => Some(until),
            Phase::Done => None,
        }
    }

    /// Replicas whose going down would change the decision: empty once decided.
    pub fn waiting_on(&self) -> Vec<&str> {
        match self.phase {
            Phase::Deciding => self.quorum.waiting_on(),
            _ => Vec::new(),
        }
    }

    /// Whether the read has ended (replied, and repaired if it repairs).
    pub fn is_finished(&self) -> bool {
        self.phase == Phase::Done
    }

    /// The merge of every whole version received so far.
    pub fn merged(&self) -> Option<&Object> {
        self.merged.as_ref()
    }

    fn ask(&mut self, node: String, out: &mut Vec<GetAction>) {
        if !self.asked.contains(&node) {
            self.asked.push(node.clone());
            out.push(GetAction::Ask(node));
        }
    }

    /// Asks the reserve, once, while undecided. A reserve replica already known to be
    /// down is skipped.
    fn escalate(&mut self, out: &mut Vec<GetAction>) {
        self.speculate_at = None;
        if self.phase != Phase::Deciding {
            return;
        }
        for node in std::mem::take(&mut self.reserve) {
            if self.quorum.waiting_on().contains(&node.as_str()) {
                self.ask(node, out);
            }
        }
    }

    fn decide(&mut self, now: Duration, out: &mut Vec<GetAction>) {
        if self.phase != Phase::Deciding {
            return;
        }
        let reply = match self.quorum.outcome() {
            Outcome::Pending => return,
            Outcome::Met => GetReply::Met(self.merged.clone()),
            Outcome::Failed { needed, answered } => GetReply::Failed {
                needed,
                answered,
                recovering: self.recovering.clone(),
            },
        };
        let met = matches!(reply, GetReply::Met(_));
        out.push(GetAction::Reply(reply));
        // The reserve isn't needed any more: anti-entropy covers replicas a read skipped.
        self.reserve.clear();
        self.speculate_at = None;
        match self.timing.repair_window {
            Some(window) if met => {
                self.phase = Phase::Repairing {
                    until: now + window,
                };
                self.check_repair(out);
            }
            _ => {
                self.phase = Phase::Done;
                out.push(GetAction::Finished);
            }
        }
    }

    /// Repairs early once every replica asked has answered or is known down.
    fn check_repair(&mut self, out: &mut Vec<GetAction>) {
        if !matches!(self.phase, Phase::Repairing { .. }) {
            return;
        }
        let waiting = self.quorum.waiting_on();
        let outstanding = self
            .asked
            .iter()
            .any(|n| !self.heard.contains(n) && waiting.contains(&n.as_str()));
        if !outstanding {
            self.repair(out);
        }
    }

    fn repair(&mut self, out: &mut Vec<GetAction>) {
        self.phase = Phase::Done;
        if let Some(merged) = &self.merged {
            let targets = self.stale_replicas();
            if !targets.is_empty() {
                out.push(GetAction::Repair {
                    targets,
                    merged: merged.clone(),
                });
            }
        }
        out.push(GetAction::Finished);
    }

    /// Replicas whose answer lacks something the merge holds (or that had no copy).
    fn stale_replicas(&self) -> Vec<String> {
        let Some(merged) = &self.merged else {
            return Vec::new();
        };
        self.answers
            .iter()
            .filter(|(_, o)| o.as_ref() != Some(merged))
            .map(|(n, _)| n.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests;
