use super::*;
use crate::version::Actor;

const MS: Duration = Duration::from_millis(1);

fn nodes() -> Vec<String> {
    vec!["a".into(), "b".into(), "c".into()]
}

fn timing() -> GetTiming {
    GetTiming {
        speculative_after: 50 * MS,
        deadline: 1000 * MS,
        repair_window: Some(500 * MS),
    }
}

fn up(_: &str) -> bool {
    true
}

fn ask(n: &str) -> GetAction {
    GetAction::Ask(n.into())
}

/// Two versions of one key, the second descending from the first.
fn versions() -> (Object, Object) {
    let actor = Actor {
        node: "a".into(),
        epoch: 1,
    };
    let mut old = Object::new();
    old.update(&Default::default(), &actor, 0, Some(b"v1".to_vec()));
    let mut new = old.clone();
    new.update(&old.context(), &actor, 0, Some(b"v2".to_vec()));
    (old, new)
}

fn found(o: &Object) -> ReadAnswer {
    ReadAnswer::Version(Some(o.clone()))
}

#[test]
fn reads_ask_the_local_replica_and_enough_others() {
    let pref = nodes();
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
fn the_reserve_is_asked_exactly_at_speculative_after() {
    let mut g = GetCoordinator::new(nodes(), 2, "b", false, timing());
    assert_eq!(g.start(10 * MS, up), vec![ask("b"), ask("a")]);
    assert_eq!(
        g.next_timer(),
        Some(60 * MS),
        "speculation before the deadline"
    );
    assert_eq!(g.on_timer(59 * MS), vec![], "not a moment early");
    assert_eq!(g.on_timer(60 * MS), vec![ask("c")]);
    assert_eq!(g.next_timer(), Some(1010 * MS), "then only the deadline");
    assert_eq!(g.on_timer(70 * MS), vec![], "asked once");
}

#[test]
fn a_failed_down_or_recovering_replica_escalates_at_once() {
    let (v, _) = versions();
    for how in ["failed", "down", "recovering"] {
        let mut g = GetCoordinator::new(nodes(), 2, "a", false, timing());
        g.start(Duration::ZERO, up);
        assert_eq!(g.on_answer("a", found(&v), MS), vec![]);
        let out = match how {
            "failed" => g.on_answer("b", ReadAnswer::Failed, 2 * MS),
            "recovering" => g.on_answer("b", ReadAnswer::Recovering, 2 * MS),
            _ => g.on_down("b", 2 * MS),
        };
        assert_eq!(
            out,
            vec![ask("c")],
            "{how}: the reserve before speculative_after"
        );
        let out = g.on_answer("c", found(&v), 3 * MS);
        assert_eq!(
            out[0],
            GetAction::Reply(GetReply::Met(Some(v.clone()))),
            "{how}"
        );
    }
}

#[test]
fn no_speculation_once_decided() {
    let (v, _) = versions();
    let mut g = GetCoordinator::new(nodes(), 2, "a", false, timing());
    g.start(Duration::ZERO, up);
    g.on_answer("a", found(&v), MS);
    let out = g.on_answer("b", found(&v), 2 * MS);
    // Every replica asked has answered, so the repair (nothing stale) ends it at once.
    assert_eq!(
        out,
        vec![
            GetAction::Reply(GetReply::Met(Some(v.clone()))),
            GetAction::Finished
        ]
    );
    assert_eq!(g.next_timer(), None);
    assert_eq!(g.on_timer(50 * MS), vec![], "c is never asked");
    assert!(
        g.waiting_on().is_empty(),
        "a down replica no longer matters"
    );
}

#[test]
fn a_full_read_asks_every_live_replica_and_never_speculates() {
    let mut g = GetCoordinator::new(nodes(), 2, "c", true, timing());
    assert_eq!(
        g.start(Duration::ZERO, up),
        vec![ask("c"), ask("a"), ask("b")]
    );
    assert_eq!(g.next_timer(), Some(1000 * MS));
    assert_eq!(g.on_timer(50 * MS), vec![]);
}

#[test]
fn down_replicas_count_as_failed_from_the_start() {
    // Only c is up, and this node isn't a replica: R = 2 can't be met.
    let mut g = GetCoordinator::new(nodes(), 2, "x", false, timing());
    let out = g.start(Duration::ZERO, |n| n == "c");
    assert_eq!(out, vec![ask("c")]);
    let out = g.on_answer("c", ReadAnswer::Version(None), MS);
    assert_eq!(
        out,
        vec![
            GetAction::Reply(GetReply::Failed {
                needed: 2,
                answered: 1,
                recovering: vec![]
            }),
            GetAction::Finished
        ]
    );
    // Nothing up at all: decided without asking anyone.
    let mut g = GetCoordinator::new(nodes(), 1, "x", false, timing());
    let out = g.start(Duration::ZERO, |_| false);
    assert!(matches!(
        out[0],
        GetAction::Reply(GetReply::Failed { answered: 0, .. })
    ));
    assert_eq!(out.last(), Some(&GetAction::Finished));
    assert!(g.is_finished());
}

#[test]
fn the_deadline_fails_an_undecided_read() {
    let (v, _) = versions();
    let mut g = GetCoordinator::new(nodes(), 2, "a", true, timing());
    g.start(Duration::ZERO, up);
    g.on_answer("a", found(&v), MS);
    assert_eq!(g.on_timer(999 * MS), vec![]);
    let out = g.on_timer(1000 * MS);
    assert_eq!(
        out,
        vec![
            GetAction::Reply(GetReply::Failed {
                needed: 2,
                answered: 1,
                recovering: vec![]
            }),
            GetAction::Finished
        ],
        "no repair after a failed read"
    );
    assert_eq!(g.next_timer(), None);
    assert_eq!(g.on_answer("b", found(&v), 1001 * MS), vec![], "too late");
}

#[test]
fn recovering_answers_neither_count_nor_merge() {
    let (v, _) = versions();
    // a wrote k, b lost it and recovers, c never had it; a is down.
    let mut g = GetCoordinator::new(nodes(), 2, "x", true, timing());
    g.start(Duration::ZERO, |n| n != "a");
    assert_eq!(g.on_answer("b", ReadAnswer::Recovering, MS), vec![]);
    let out = g.on_answer("c", ReadAnswer::Version(None), 2 * MS);
    assert_eq!(
        out[0],
        GetAction::Reply(GetReply::Failed {
            needed: 2,
            answered: 1,
            recovering: vec!["b".into()]
        }),
        "never \"not found\""
    );
    // With a back, the whole replicas decide; b's version isn't merged, nor repaired.
    let mut g = GetCoordinator::new(nodes(), 2, "x", true, timing());
    g.start(Duration::ZERO, up);
    g.on_answer("b", ReadAnswer::Recovering, MS);
    g.on_answer("a", found(&v), 2 * MS);
    let out = g.on_answer("c", ReadAnswer::Version(None), 3 * MS);
    assert_eq!(
        out,
        vec![
            GetAction::Reply(GetReply::Met(Some(v.clone()))),
            GetAction::Repair {
                targets: vec!["c".into()],
                merged: v.clone()
            },
            GetAction::Finished
        ],
        "all asked answered: repaired at once"
    );
}

#[test]
fn not_found_counts_as_an_answer() {
    let mut g = GetCoordinator::new(nodes(), 2, "a", false, timing());
    g.start(Duration::ZERO, up);
    g.on_answer("a", ReadAnswer::Version(None), MS);
    let out = g.on_answer("b", ReadAnswer::Version(None), MS);
    // Nothing to repair with: no version anywhere.
    assert_eq!(
        out,
        vec![GetAction::Reply(GetReply::Met(None)), GetAction::Finished]
    );
}

#[test]
fn repair_waits_for_the_window_then_sends_the_merge_to_stale_replicas() {
    let (old, new) = versions();
    let mut g = GetCoordinator::new(nodes(), 2, "a", true, timing());
    g.start(Duration::ZERO, up);
    g.on_answer("a", found(&new), MS);
    let out = g.on_answer("b", found(&new), 2 * MS);
    assert_eq!(
        out,
        vec![GetAction::Reply(GetReply::Met(Some(new.clone())))]
    );
    // c is late but within the window: its stale answer is heard and repaired at once.
    let out = g.on_answer("c", found(&old), 300 * MS);
    assert_eq!(
        out,
        vec![
            GetAction::Repair {
                targets: vec!["c".into()],
                merged: new.clone()
            },
            GetAction::Finished
        ]
    );
    // c never answers: the window closes and only what was heard is repaired.
    let mut g = GetCoordinator::new(nodes(), 2, "a", true, timing());
    g.start(Duration::ZERO, up);
    g.on_answer("a", found(&new), MS);
    g.on_answer("b", found(&old), 2 * MS);
    assert_eq!(g.next_timer(), Some(502 * MS));
    assert_eq!(g.on_timer(501 * MS), vec![]);
    assert_eq!(
        g.on_timer(502 * MS),
        vec![
            GetAction::Repair {
                targets: vec!["b".into()],
                merged: new.clone()
            },
            GetAction::Finished
        ]
    );
    assert_eq!(
        g.on_answer("c", found(&old), 600 * MS),
        vec![],
        "after the window"
    );
}

#[test]
fn repair_merges_concurrent_versions_and_fixes_every_side() {
    let a1 = Actor {
        node: "a".into(),
        epoch: 1,
    };
    let b1 = Actor {
        node: "b".into(),
        epoch: 1,
    };
    let mut x = Object::new();
    x.update(&Default::default(), &a1, 0, Some(b"x".to_vec()));
    let mut y = Object::new();
    y.update(&Default::default(), &b1, 0, Some(b"y".to_vec()));
    let mut both = x.clone();
    both.merge(&y);
    let mut g = GetCoordinator::new(nodes(), 2, "a", true, timing());
    g.start(Duration::ZERO, up);
    g.on_answer("a", found(&x), MS);
    assert_eq!(
        g.on_answer("b", found(&y), MS)[0],
        GetAction::Reply(GetReply::Met(Some(both.clone())))
    );
    let out = g.on_answer("c", found(&both), MS);
    assert_eq!(
        out[0],
        GetAction::Repair {
            targets: vec!["a".into(), "b".into()],
            merged: both
        }
    );
}

#[test]
fn without_read_repair_a_met_read_finishes_with_its_reply() {
    let (old, new) = versions();
    let t = GetTiming {
        repair_window: None,
        ..timing()
    };
    let mut g = GetCoordinator::new(nodes(), 2, "a", true, t);
    g.start(Duration::ZERO, up);
    g.on_answer("a", found(&new), MS);
    let out = g.on_answer("b", found(&old), MS);
    assert_eq!(
        out,
        vec![
            GetAction::Reply(GetReply::Met(Some(new))),
            GetAction::Finished
        ]
    );
}

#[test]
fn a_replica_marked_down_no_longer_holds_the_repair() {
    let (v, _) = versions();
    let mut g = GetCoordinator::new(nodes(), 1, "a", true, timing());
    g.start(Duration::ZERO, up);
    // b is marked down while undecided, c too; a answers and decides.
    g.on_down("b", MS);
    let out = g.on_answer("a", found(&v), 2 * MS);
    assert_eq!(out[0], GetAction::Reply(GetReply::Met(Some(v.clone()))));
    assert_eq!(out.len(), 1, "c is still expected");
    let out = g.on_answer("c", ReadAnswer::Failed, 3 * MS);
    assert_eq!(out, vec![GetAction::Finished], "b's read is not waited for");
}

#[test]
fn stray_and_repeated_answers_are_ignored() {
    let (old, new) = versions();
    let mut g = GetCoordinator::new(nodes(), 2, "a", false, timing());
    g.start(Duration::ZERO, up);
    assert_eq!(g.on_answer("c", found(&new), MS), vec![], "c wasn't asked");
    assert_eq!(g.on_answer("z", found(&new), MS), vec![], "not a replica");
    g.on_answer("a", found(&old), MS);
    assert_eq!(
        g.on_answer("a", found(&new), MS),
        vec![],
        "one answer per replica"
    );
    assert_eq!(g.merged(), Some(&old));
    assert_eq!(g.on_down("z", MS), vec![]);
}
