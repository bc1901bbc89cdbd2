use super::*;

const MS: Duration = Duration::from_millis(1);

fn names(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn plan(needed: usize) -> Plan {
    Plan {
        partition: 7,
        pref: names(&["a", "b", "c"]),
        also: None,
        needed,
        fallbacks: names(&["d", "e"]),
    }
}

fn strict() -> PutOptions {
    PutOptions {
        sloppy: false,
        handoff: true,
        deadline: 1000 * MS,
    }
}

fn sloppy() -> PutOptions {
    PutOptions {
        sloppy: true,
        ..strict()
    }
}

fn rep(n: &str) -> PutAction {
    PutAction::Replicate(n.into())
}

fn hint(n: &str) -> PutAction {
    PutAction::Hint(n.into())
}

fn via(via: &str, target: &str) -> PutAction {
    PutAction::StoreHint {
        via: via.into(),
        target: target.into(),
    }
}

const MET: PutAction = PutAction::Reply(PutReply::Met);

fn up(_: &str) -> bool {
    true
}

#[test]
fn the_local_apply_counts_and_w_acks_decide() {
    let mut p = PutCoordinator::new(&plan(2), "b", strict());
    assert_eq!(p.start(Duration::ZERO, up), vec![rep("a"), rep("c")]);
    assert_eq!(p.next_timer(), Some(1000 * MS));
    assert_eq!(
        p.on_answer("c", true, MS),
        vec![MET],
        "b's own write plus c"
    );
    assert!(!p.is_finished(), "a's answer is still due");
    assert_eq!(p.waiting_on(), Vec::<&str>::new());
    assert_eq!(p.on_answer("a", true, 2 * MS), vec![PutAction::Finished]);
    // W = 1: the local apply alone decides, and the machine waits for the others.
    let mut p = PutCoordinator::new(&plan(1), "a", strict());
    assert_eq!(p.start(Duration::ZERO, up), vec![rep("b"), rep("c"), MET]);
}

#[test]
fn a_down_replica_fails_its_slot_and_gets_a_local_hint() {
    let mut p = PutCoordinator::new(&plan(2), "a", strict());
    let out = p.start(Duration::ZERO, |n| n != "b");
    assert_eq!(out, vec![hint("b"), rep("c")]);
    assert_eq!(p.on_answer("c", true, MS), vec![MET, PutAction::Finished]);
    // Handoff off: no hint.
    let opts = PutOptions {
        handoff: false,
        ..strict()
    };
    let mut p = PutCoordinator::new(&plan(3), "a", opts);
    let out = p.start(Duration::ZERO, |n| n != "b");
    assert_eq!(out, vec![rep("c")]);
    assert_eq!(
        p.on_answer("c", true, MS),
        vec![
            PutAction::Reply(PutReply::Failed {
                needed: 3,
                answered: 2
            }),
            PutAction::Finished
        ],
        "the failure waits for the live answer so it can count it"
    );
}

#[test]
fn a_sloppy_write_sends_the_down_replicas_share_to_a_live_fallback() {
    let mut p = PutCoordinator::new(&plan(3), "a", sloppy());
    // b and c down, d down too: e stands in for b, nobody for c.
    let out = p.start(Duration::ZERO, |n| n == "e");
    assert_eq!(out, vec![via("e", "b"), hint("c")]);
    assert_eq!(
        p.on_answer("b", true, MS),
        vec![
            PutAction::Reply(PutReply::Failed {
                needed: 3,
                answered: 2
            }),
            PutAction::Finished
        ],
        "e's acknowledgement counts for b"
    );
    let mut p = PutCoordinator::new(&plan(3), "a", sloppy());
    let out = p.start(Duration::ZERO, |n| n != "b" && n != "c");
    assert_eq!(
        out,
        vec![via("d", "b"), via("e", "c")],
        "one fallback per slot"
    );
    p.on_answer("c", true, MS);
    assert_eq!(p.on_answer("b", true, MS), vec![MET, PutAction::Finished]);
}

#[test]
fn a_stand_in_going_down_fails_its_slot() {
    let mut p = PutCoordinator::new(&plan(3), "a", sloppy());
    p.start(Duration::ZERO, |n| n != "b");
    assert_eq!(
        p.waiting_on(),
        vec!["d", "c"],
        "b's slot is watched through d"
    );
    assert_eq!(
        p.on_down("b", MS),
        vec![],
        "b was already down: d serves its slot"
    );
    assert_eq!(p.on_down("d", MS), vec![], "the write waits to count c");
    assert_eq!(
        p.waiting_on(),
        vec!["c"],
        "b's slot failed with its stand-in"
    );
    // d's acknowledgement, arriving anyway, no longer counts: without the down event this
    // write would be met.
    assert_eq!(p.on_answer("b", true, 2 * MS), vec![]);
    assert_eq!(
        p.on_answer("c", true, 3 * MS),
        vec![
            PutAction::Reply(PutReply::Failed {
                needed: 3,
                answered: 2
            }),
            PutAction::Finished
        ]
    );
}

#[test]
fn a_failed_replica_gets_a_hint_even_after_the_reply() {
    let mut p = PutCoordinator::new(&plan(2), "a", strict());
    p.start(Duration::ZERO, up);
    assert_eq!(p.on_answer("b", false, MS), vec![hint("b")]);
    assert_eq!(p.on_answer("c", true, MS), vec![MET, PutAction::Finished]);
    let mut p = PutCoordinator::new(&plan(2), "a", strict());
    p.start(Duration::ZERO, up);
    assert_eq!(p.on_answer("b", true, MS), vec![MET]);
    assert_eq!(
        p.on_answer("c", false, 900 * MS),
        vec![hint("c"), PutAction::Finished],
        "late failure"
    );
    assert_eq!(p.on_answer("c", false, 901 * MS), vec![], "answered once");
}

#[test]
fn the_deadline_fails_an_undecided_write() {
    let mut p = PutCoordinator::new(&plan(3), "a", strict());
    p.start(10 * MS, up);
    p.on_answer("b", true, MS);
    assert_eq!(p.on_timer(1009 * MS), vec![]);
    assert_eq!(
        p.on_timer(1010 * MS),
        vec![PutAction::Reply(PutReply::Failed {
            needed: 3,
            answered: 2
        })]
    );
    assert_eq!(p.next_timer(), None);
    assert_eq!(p.on_answer("c", true, 1100 * MS), vec![PutAction::Finished]);
}

#[test]
fn a_transition_write_needs_w_in_both_sets() {
    let mut moving = plan(2);
    moving.also = Some(names(&["a", "b", "d"]));
    let mut p = PutCoordinator::new(&moving, "c", strict());
    let out = p.start(Duration::ZERO, up);
    assert_eq!(
        out,
        vec![rep("a"), rep("b"), rep("d")],
        "d is not a fallback here"
    );
    assert_eq!(
        p.on_answer("b", true, MS),
        vec![],
        "old set met, new set has 1 of 2"
    );
    assert_eq!(p.on_answer("d", true, MS), vec![MET]);
    // The new set failing fails the write even though the old set is met.
    let mut p = PutCoordinator::new(&moving, "c", strict());
    p.start(Duration::ZERO, up);
    p.on_answer("a", true, MS);
    p.on_answer("b", false, MS);
    assert_eq!(
        p.on_answer("d", false, MS),
        vec![
            hint("d"),
            PutAction::Reply(PutReply::Failed {
                needed: 2,
                answered: 1
            }),
            PutAction::Finished
        ]
    );
}

#[test]
fn unknown_answers_and_downs_change_nothing() {
    let mut p = PutCoordinator::new(&plan(2), "a", strict());
    p.start(Duration::ZERO, up);
    assert_eq!(p.on_answer("z", true, MS), vec![]);
    assert_eq!(
        p.on_answer("a", true, MS),
        vec![],
        "the coordinator sends itself nothing"
    );
    assert_eq!(p.on_down("z", MS), vec![]);
    assert_eq!(p.waiting_on(), vec!["b", "c"]);
}
