//! A client write (put or delete) as a deterministic state machine, from the moment the
//! coordinator has applied it locally (its own replica's acknowledgement) to the last
//! replica's answer.
//!
//! The driver passes events in (replica answers, nodes going down, the current time as a
//! [`Duration`] since an origin of its choosing) and carries the returned [`PutAction`]s
//! out. Nothing here does I/O or reads a clock.
//!
//! The rules:
//! - The write goes to every replica of the key and, while its partition moves, to the new
//!   replica set too; it needs W acknowledgements in each set ([`Quorums`]).
//! - A live replica gets the write (`Replicate`).
//! - A down replica: on a sloppy write the next live fallback holds the write as a hint for
//!   it (`StoreHint`) and its acknowledgement fills the replica's slot; without a live
//!   fallback, or on a strict write, the slot fails and (with hinted handoff on) the
//!   coordinator keeps a hint for the replica itself.
//! - A replica or stand-in that fails to acknowledge fails its slot and, with handoff on,
//!   gets a local hint; so does one that answers after the client has its reply.
//! - A stand-in (or replica) the failure detector marks down fails its slot at once.
//! - Undecided at the deadline: failed. The reply says how many acknowledged.

use std::time::Duration;

use crate::plan::Plan;
use crate::quorum::{Outcome, Quorum, Quorums};

/// How a write treats down replicas, and when it gives up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PutOptions {
    /// Fallbacks stand in for down replicas (needs `handoff`).
    pub sloppy: bool,
    /// Hinted handoff is on: replicas that miss the write get a hint.
    pub handoff: bool,
    pub deadline: Duration,
}

/// What the client is told.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PutReply {
    Met,
    Failed { needed: usize, answered: usize },
}

/// What the driver does next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PutAction {
    /// Send the write to this replica; answer with [`PutCoordinator::on_answer`] for it.
    Replicate(String),
    /// Ask `via` to hold the write as a hint for `target`; answer for `target`.
    StoreHint { via: String, target: String },
    /// Store a hint for this replica locally.
    Hint(String),
    /// Answer the client. Comes exactly once.
    Reply(PutReply),
    /// Nothing more will come; drop the machine.
    Finished,
}

#[derive(Clone, Debug)]
struct Slot {
    replica: String,
    /// The stand-in holding the write for a down replica.
    via: Option<String>,
    answered: bool,
}

impl Slot {
    fn contact(&self) -> &str {
        self.via.as_deref().unwrap_or(&self.replica)
    }
}

/// One write's replication.
///
/// Every [`PutAction::Replicate`] and [`PutAction::StoreHint`] must eventually be answered
/// (the driver's peer calls have a deadline): a failure that arrives after the reply still
/// yields its hint, so the machine finishes only when every message sent was answered.
#[derive(Clone, Debug)]
pub struct PutCoordinator {
    quorums: Quorums,
    targets: Vec<String>,
    fallbacks: Vec<String>,
    me: String,
    options: PutOptions,
    /// Replicas a message went to (directly or through a stand-in).
    slots: Vec<Slot>,
    deadline_at: Duration,
    decided: bool,
    finished: bool,
}

impl PutCoordinator {
    /// A write planned by `plan`, already applied locally by `me` (a replica of the key).
    pub fn new(plan: &Plan, me: &str, options: PutOptions) -> PutCoordinator {
        let mut sets = vec![Quorum::new(plan.pref.clone(), plan.needed)];
        if let Some(also) = &plan.also {
            sets.push(Quorum::new(also.clone(), plan.needed));
        }
        let mut quorums = Quorums::new(sets);
        quorums.ok(me);
        PutCoordinator {
            quorums,
            targets: plan.write_targets(),
            fallbacks: plan.fallbacks.clone(),
            me: me.to_string(),
            options,
            slots: Vec::new(),
            deadline_at: options.deadline,
            decided: false,
            finished: false,
        }
    }

    /// Sends the write to the other replicas, or to stand-ins for the down ones.
    pub fn start(&mut self, now: Duration, is_up: impl Fn(&str) -> bool) -> Vec<PutAction> {
        self.deadline_at = now + self.options.deadline;
        let mut out = Vec::new();
        // Fallbacks (the next distinct nodes on the ring) stand in for down replicas.
        let mut fallbacks = self
            .fallbacks
            .iter()
            .filter(|f| is_up(f) && !self.targets.contains(f))
            .cloned()
            .collect::<Vec<_>>()
            .into_iter();
        for node in self.targets.clone() {
            if node == self.me {
                continue;
            }
            if is_up(&node) {
                out.push(PutAction::Replicate(node.clone()));
                self.slots.push(Slot {
                    replica: node,
                    via: None,
                    answered: false,
                });
                continue;
            }
            if self.options.sloppy {
                if let Some(via) = fallbacks.next() {
                    out.push(PutAction::StoreHint {
                        via: via.clone(),
                        target: node.clone(),
                    });
                    self.slots.push(Slot {
                        replica: node,
                        via: Some(via),
                        answered: false,
                    });
                    continue;
                }
            }
            self.quorums.fail(&node);
            if self.options.handoff {
                out.push(PutAction::Hint(node));
            }
        }
        self.decide(&mut out);
        out
    }

    /// `replica`'s slot was answered: acknowledged (`ok`) or not.
    pub fn on_answer(&mut self, replica: &str, ok: bool, _now: Duration) -> Vec<PutAction> {
        let mut out = Vec::new();
        let Some(slot) = self
            .slots
            .iter_mut()
            .find(|s| s.replica == replica && !s.answered)
        else {
            return out;
        };
        slot.answered = true;
        if !ok && self.options.handoff {
            out.push(PutAction::Hint(replica.to_string()));
        }
        if !self.decided {
            if ok {
                self.quorums.ok(replica);
            } else {
                self.quorums.fail(replica);
            }
            self.decide(&mut out);
        }
        self.check_finished(&mut out);
        out
    }

    /// The failure detector marks `node` down: a slot it serves (as the replica or its
    /// stand-in) fails while the write is undecided. Its message still ends in an answer.
    pub fn on_down(&mut self, node: &str, _now: Duration) -> Vec<PutAction> {
        let mut out = Vec::new();
        if self.decided {
            return out;
        }
        let waiting = self.quorums.waiting_on();
        let failed: Vec<String> = self
            .slots
            .iter()
            .filter(|s| s.contact() == node && waiting.contains(&s.replica.as_str()))
            .map(|s| s.replica.clone())
            .collect();
        for replica in failed {
            self.quorums.fail(&replica);
        }
        self.decide(&mut out);
        out
    }

    /// Time passed: the deadline.
    pub fn on_timer(&mut self, now: Duration) -> Vec<PutAction> {
        let mut out = Vec::new();
        if !self.decided && self.deadline_at <= now {
            self.quorums.expire();
            self.decide(&mut out);
        }
        out
    }

    /// When [`PutCoordinator::on_timer`] wants to be called next.
    pub fn next_timer(&self) -> Option<Duration> {
        (!self.decided).then_some(self.deadline_at)
    }

    /// Nodes whose going down would change the decision: the replica, or the stand-in
    /// serving it, of each slot still counted as waiting. Empty once decided.
    pub fn waiting_on(&self) -> Vec<&str> {
        if self.decided {
            return Vec::new();
        }
        let waiting = self.quorums.waiting_on();
        self.slots
            .iter()
            .filter(|s| waiting.contains(&s.replica.as_str()))
            .map(Slot::contact)
            .collect()
    }

    pub fn is_finished(&self) -> bool {
        self.finished
    }

    fn decide(&mut self, out: &mut Vec<PutAction>) {
        if self.decided {
            return;
        }
        let reply = match self.quorums.outcome() {
            Outcome::Pending => return,
            Outcome::Met => PutReply::Met,
            Outcome::Failed { needed, answered } => PutReply::Failed { needed, answered },
        };
        self.decided = true;
        out.push(PutAction::Reply(reply));
        self.check_finished(out);
    }

    fn check_finished(&mut self, out: &mut Vec<PutAction>) {
        if self.decided && !self.finished && self.slots.iter().all(|s| s.answered) {
            self.finished = true;
            out.push(PutAction::Finished);
        }
    }
}

#[cfg(test)]
mod tests;
