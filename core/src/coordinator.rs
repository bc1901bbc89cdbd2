//! Sans-I/O request state machines, in the manner of Riak's get/put FSMs.
//!
//! The server feeds them replica answers, failures and the deadline as events; they say when
//! the request is decided and what to tell the client. Nothing here touches a socket or a
//! clock, so every quorum rule is unit-tested directly.

use crate::version::Object;

/// Where a quorum stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Still waiting for answers.
    Pending,
    /// Enough replicas answered.
    Met,
    /// The quorum can't be met (or the deadline passed); `answered` replicas did answer.
    Failed { needed: usize, answered: usize },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reply {
    Waiting,
    Ok,
    Failed,
}

/// Counts answers from a fixed replica set toward a needed number.
///
/// Once the quorum is out of reach the tracker still waits for the replicas that haven't
/// answered, so the error reports how many really did; the deadline bounds that wait.
#[derive(Clone, Debug)]
pub struct Quorum {
    replicas: Vec<String>,
    replies: Vec<Reply>,
    needed: usize,
    expired: bool,
}

impl Quorum {
    /// `needed` must be between 1 and `replicas.len()`; callers resolve levels first.
    pub fn new(replicas: Vec<String>, needed: usize) -> Quorum {
        debug_assert!(needed >= 1 && needed <= replicas.len());
        let replies = vec![Reply::Waiting; replicas.len()];
        Quorum {
            replicas,
            replies,
            needed,
            expired: false,
        }
    }

    pub fn replicas(&self) -> &[String] {
        &self.replicas
    }

    pub fn needed(&self) -> usize {
        self.needed
    }

    /// A replica answered. Repeated or unknown answers are ignored.
    pub fn ok(&mut self, node: &str) -> Outcome {
        self.record(node, Reply::Ok)
    }

    /// A replica failed, is down, or refused.
    pub fn fail(&mut self, node: &str) -> Outcome {
        self.record(node, Reply::Failed)
    }

    /// The request deadline passed.
    pub fn expire(&mut self) -> Outcome {
        self.expired = true;
        self.outcome()
    }

    fn record(&mut self, node: &str, r: Reply) -> Outcome {
        if let Some(i) = self.replicas.iter().position(|n| n == node) {
            if self.replies[i] == Reply::Waiting {
                self.replies[i] = r;
            }
        }
        self.outcome()
    }

    pub fn answered(&self) -> usize {
        self.replies.iter().filter(|r| **r == Reply::Ok).count()
    }

    pub fn waiting(&self) -> usize {
        self.replies
            .iter()
            .filter(|r| **r == Reply::Waiting)
            .count()
    }

    /// Replicas that haven't answered yet.
    pub fn waiting_on(&self) -> Vec<&str> {
        self.replicas
            .iter()
            .zip(&self.replies)
            .filter(|(_, r)| **r == Reply::Waiting)
            .map(|(n, _)| n.as_str())
            .collect()
    }

    pub fn outcome(&self) -> Outcome {
        let answered = self.answered();
        if answered >= self.needed {
            return Outcome::Met;
        }
        let out_of_reach = answered + self.waiting() < self.needed;
        if self.expired || (out_of_reach && self.waiting() == 0) {
            return Outcome::Failed {
                needed: self.needed,
                answered,
            };
        }
        Outcome::Pending
    }
}

/// A write during a ring transition must reach W in the old replica set and W in the new
/// one (so neither the data's current holders nor its future ones can miss it). This tracks
/// several sets fed the same answers: met when all are met, failed when any fails.
#[derive(Clone, Debug)]
pub struct Quorums {
    sets: Vec<Quorum>,
}

impl Quorums {
    pub fn new(sets: Vec<Quorum>) -> Quorums {
        debug_assert!(!sets.is_empty());
        Quorums { sets }
    }

    pub fn ok(&mut self, node: &str) -> Outcome {
        for q in &mut self.sets {
            q.ok(node);
        }
        self.outcome()
    }

    pub fn fail(&mut self, node: &str) -> Outcome {
        for q in &mut self.sets {
            q.fail(node);
        }
        self.outcome()
    }

    pub fn expire(&mut self) -> Outcome {
        for q in &mut self.sets {
            q.expire();
        }
        self.outcome()
    }

    pub fn outcome(&self) -> Outcome {
        let mut all_met = true;
        for q in &self.sets {
            match q.outcome() {
                Outcome::Met => {}
                failed @ Outcome::Failed { .. } => return failed,
                Outcome::Pending => all_met = false,
            }
        }
        if all_met {
            Outcome::Met
        } else {
            Outcome::Pending
        }
    }

    /// Replicas some set still waits for.
    pub fn waiting_on(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for q in &self.sets {
            for n in q.waiting_on() {
                if !out.contains(&n) {
                    out.push(n);
                }
            }
        }
        out
    }
}

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

/// A read: collects versions from replicas and merges them.
///
/// Only whole replicas count toward R. A replica that is recovering (lost or restored data,
/// see [`crate::recovery`]) answers too, but its answer is neither counted nor merged: by
/// quorum intersection among whole replicas it adds nothing an acknowledged write needs,
/// and a restored copy may hold keys deleted and purged since.
#[derive(Clone, Debug)]
pub struct GetFsm {
    quorum: Quorum,
    merged: Option<Object>,
    answers: Vec<(String, Option<Object>)>,
    recovering: Vec<String>,
}

impl GetFsm {
    pub fn new(replicas: Vec<String>, r: usize) -> GetFsm {
        GetFsm {
            quorum: Quorum::new(replicas, r),
            merged: None,
            answers: Vec::new(),
            recovering: Vec::new(),
        }
    }

    /// A replica answered that it is recovering: it doesn't count toward R.
    pub fn recovering(&mut self, node: &str) -> Outcome {
        if self.quorum.replicas().iter().any(|n| n == node)
            && !self.recovering.iter().any(|n| n == node)
            && !self.answers.iter().any(|(n, _)| n == node)
        {
            self.recovering.push(node.to_string());
        }
        self.quorum.fail(node)
    }

    /// Replicas that answered as recovering.
    pub fn recovering_replicas(&self) -> &[String] {
        &self.recovering
    }

    /// A replica's version of the key (`None`: it has no such key).
    pub fn reply(&mut self, node: &str, object: Option<Object>) -> Outcome {
        if !self.quorum.replicas().iter().any(|n| n == node)
            || self.answers.iter().any(|(n, _)| n == node)
        {
            return self.quorum.outcome();
        }
        if let Some(o) = &object {
            match &mut self.merged {
                Some(m) => m.merge(o),
                None => self.merged = Some(o.clone()),
            }
        }
        self.answers.push((node.to_string(), object));
        self.quorum.ok(node)
    }

    pub fn fail(&mut self, node: &str) -> Outcome {
        self.quorum.fail(node)
    }

    pub fn expire(&mut self) -> Outcome {
        self.quorum.expire()
    }

    pub fn quorum(&self) -> &Quorum {
        &self.quorum
    }

    /// The merge of every version received so far.
    pub fn merged(&self) -> Option<&Object> {
        self.merged.as_ref()
    }

    /// Replicas whose answer lacks something the merge holds: candidates for read repair.
    pub fn stale_replicas(&self) -> Vec<&str> {
        let Some(merged) = &self.merged else {
            return Vec::new();
        };
        self.answers
            .iter()
            .filter(|(_, o)| o.as_ref() != Some(merged))
            .map(|(n, _)| n.as_str())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::version::Actor;

    fn nodes() -> Vec<String> {
        vec!["a".into(), "b".into(), "c".into()]
    }

    #[test]
    fn reads_ask_the_local_replica_and_enough_others() {
        let pref: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        let up = |_: &str| true;
        let names = |v: Vec<&String>| v.into_iter().cloned().collect::<Vec<_>>();
        let (first, reserve) = read_targets(&pref, "c", 2, up, false);
        assert_eq!(
            (names(first), names(reserve)),
            (vec!["c".to_string(), "a".into()], vec!["b".to_string()])
        );
        let (first, reserve) = read_targets(&pref, "x", 2, up, false);
        assert_eq!(
            (names(first), names(reserve)),
            (vec!["a".to_string(), "b".into()], vec!["c".to_string()])
        );
        let (first, reserve) = read_targets(&pref, "b", 2, up, true);
        assert_eq!((names(first).len(), reserve.len()), (3, 0));
        // A down replica is in neither list; the reserve shrinks first.
        let (first, reserve) = read_targets(&pref, "a", 2, |n| n != "b", false);
        assert_eq!(
            (names(first), names(reserve)),
            (vec!["a".to_string(), "c".into()], vec![])
        );
        let (first, reserve) = read_targets(&pref, "a", 3, |n| n == "a", false);
        assert_eq!((names(first), reserve.len()), (vec!["a".to_string()], 0));
    }

    #[test]
    fn quorum_met_on_needed_acks() {
        let mut q = Quorum::new(nodes(), 2);
        assert_eq!(q.ok("a"), Outcome::Pending);
        assert_eq!(q.ok("a"), Outcome::Pending, "duplicates don't count");
        assert_eq!(q.ok("z"), Outcome::Pending, "strangers don't count");
        assert_eq!(q.ok("c"), Outcome::Met);
        assert_eq!(q.fail("b"), Outcome::Met, "a late failure doesn't undo it");
    }

    #[test]
    fn all_fails_once_a_replica_is_down_and_others_answered() {
        let mut q = Quorum::new(nodes(), 3);
        assert_eq!(
            q.fail("c"),
            Outcome::Pending,
            "waits to count the live answers"
        );
        assert_eq!(q.ok("a"), Outcome::Pending);
        assert_eq!(
            q.ok("b"),
            Outcome::Failed {
                needed: 3,
                answered: 2
            }
        );
    }

    #[test]
    fn deadline_fails_unless_met() {
        let mut q = Quorum::new(nodes(), 2);
        q.ok("a");
        assert_eq!(
            q.expire(),
            Outcome::Failed {
                needed: 2,
                answered: 1
            }
        );
        let mut q = Quorum::new(nodes(), 1);
        q.ok("b");
        assert_eq!(q.expire(), Outcome::Met);
        assert_eq!(q.waiting_on(), vec!["a", "c"]);
    }

    #[test]
    fn one_succeeds_with_two_down() {
        let mut q = Quorum::new(nodes(), 1);
        q.fail("a");
        q.fail("b");
        assert_eq!(q.ok("c"), Outcome::Met);
    }

    #[test]
    fn a_transition_write_needs_both_sets() {
        let old = Quorum::new(nodes(), 2);
        let new = Quorum::new(vec!["a".into(), "b".into(), "d".into()], 2);
        let mut q = Quorums::new(vec![old, new]);
        assert_eq!(q.ok("c"), Outcome::Pending, "c only counts for the old set");
        assert_eq!(
            q.ok("a"),
            Outcome::Pending,
            "old set met, new set has 1 of 2"
        );
        assert_eq!(q.waiting_on(), vec!["b", "d"]);
        assert_eq!(q.ok("d"), Outcome::Met);

        let old = Quorum::new(nodes(), 2);
        let new = Quorum::new(vec!["a".into(), "b".into(), "d".into()], 2);
        let mut q = Quorums::new(vec![old, new]);
        q.ok("a");
        q.ok("c");
        q.fail("b");
        assert_eq!(
            q.fail("d"),
            Outcome::Failed {
                needed: 2,
                answered: 1
            },
            "the new set can't reach 2"
        );
    }

    #[test]
    fn get_merges_and_finds_stale() {
        let actor = Actor {
            node: "a".into(),
            epoch: 1,
        };
        let mut old = Object::new();
        old.update(&Default::default(), &actor, 0, Some(b"v1".to_vec()));
        let mut new = old.clone();
        new.update(&old.context(), &actor, 0, Some(b"v2".to_vec()));

        let mut g = GetFsm::new(nodes(), 2);
        assert_eq!(g.reply("a", Some(old.clone())), Outcome::Pending);
        assert_eq!(
            g.reply("a", Some(new.clone())),
            Outcome::Pending,
            "one answer per node"
        );
        assert_eq!(g.reply("b", Some(new.clone())), Outcome::Met);
        assert_eq!(g.merged(), Some(&new));
        assert_eq!(g.stale_replicas(), vec!["a"]);
        g.reply("c", None);
        assert_eq!(g.stale_replicas(), vec!["a", "c"]);
    }

    #[test]
    fn recovering_answers_neither_count_nor_merge() {
        let actor = Actor {
            node: "a".into(),
            epoch: 1,
        };
        let mut v = Object::new();
        v.update(&Default::default(), &actor, 0, Some(b"v".to_vec()));
        // Case: a wrote k, b lost it and recovers, c never had it; a is down.
        let mut g = GetFsm::new(nodes(), 2);
        assert_eq!(g.fail("a"), Outcome::Pending);
        assert_eq!(g.recovering("b"), Outcome::Pending);
        assert_eq!(
            g.reply("c", None),
            Outcome::Failed {
                needed: 2,
                answered: 1
            },
            "never \"not found\""
        );
        assert_eq!(g.recovering_replicas(), ["b".to_string()]);
        // With a back, the whole replicas decide; b's answer isn't merged.
        let mut g = GetFsm::new(nodes(), 2);
        g.recovering("b");
        g.reply("a", Some(v.clone()));
        assert_eq!(g.reply("c", None), Outcome::Met);
        assert_eq!(g.merged(), Some(&v));
        assert_eq!(g.stale_replicas(), vec!["c"]);
    }

    #[test]
    fn get_not_found_counts_as_an_answer() {
        let mut g = GetFsm::new(nodes(), 2);
        g.reply("a", None);
        assert_eq!(g.reply("b", None), Outcome::Met);
        assert!(g.merged().is_none());
    }
}
