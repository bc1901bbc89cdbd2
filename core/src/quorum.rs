//! Quorum counting: how many of a fixed replica set answered, and whether the request is
//! decided. [`Quorum`] tracks one set; [`Quorums`] tracks the two sets a write must reach
//! during a ring transition. The request coordinators in [`crate::get`] and [`crate::put`]
//! are built on these.

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

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes() -> Vec<String> {
        vec!["a".into(), "b".into(), "c".into()]
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
}
