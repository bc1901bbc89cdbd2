use super::*;
use crate::membership::MemberState;

fn entry(incarnation: u64, generation: u64) -> MemberInfo {
    MemberInfo {
        id: "a".into(),
        address: "a:1".into(),
        zone: None,
        state: MemberState::Up,
        incarnation,
        generation,
    }
}

fn prev(incarnation: u64, generation: u64) -> Option<Previous> {
    Some(Previous {
        incarnation,
        generation,
    })
}

fn obligations(list: &[(&str, &[u32])]) -> BTreeMap<String, Vec<TreeId>> {
    list.iter()
        .map(|(p, parts)| (p.to_string(), parts.iter().map(|x| (*x, 3u8)).collect()))
        .collect()
}

#[test]
fn a_plain_restart_is_confirmed_by_a_peer_that_saw_the_last_run() {
    let mut r = Recovery::new(prev(4, 11), 99, None, false);
    assert_eq!(r.phase(), Phase::Unconfirmed);
    assert!(!r.counts_for_reads() && !r.accepts_writes() && !r.serves_data());
    assert_eq!(r.announce(&entry(4, 11)), None, "not before a peer's view");
    // A stale peer, and one that knows nothing about us, say nothing.
    assert_eq!(
        r.observe(Some(&entry(3, 7)), Some(&entry(4, 11))),
        Action::None
    );
    assert_eq!(r.observe(None, Some(&entry(4, 11))), Action::None);
    assert_eq!(r.phase(), Phase::Unconfirmed);
    assert_eq!(
        r.observe(Some(&entry(4, 11)), Some(&entry(4, 11))),
        Action::None
    );
    assert_eq!(r.phase(), Phase::Whole);
    assert!(r.counts_for_reads() && r.may_push() && r.serves_data());
    assert_eq!(r.announce(&entry(4, 11)), Some(5));
    assert_eq!(r.announce(&entry(5, 99)), None, "announced");
    // Our own announcement coming back is no news.
    r.observe(Some(&entry(5, 99)), Some(&entry(5, 99)));
    assert_eq!(r.phase(), Phase::Whole);
}

#[test]
fn a_restored_copy_is_dropped_only_where_every_other_replica_is_whole() {
    use OtherReplica::*;
    let parts = || {
        vec![
            (0, vec![Whole, Whole]),
            (1, vec![Whole, Recovering]),
            (2, vec![Down, Whole]),
            (3, vec![]),
        ]
    };
    let split = split_restored(parts(), false).expect("decided");
    assert_eq!(split.drop, vec![0, 3]);
    assert_eq!(split.keep, vec![1, 2]);
    // A replica that hasn't answered makes it wait, then counts as not whole.
    let waiting = vec![(0, vec![Whole, Whole]), (1, vec![Unanswered, Whole])];
    assert_eq!(split_restored(waiting.clone(), false), None);
    let split = split_restored(waiting, true).expect("patience over");
    assert_eq!((split.drop, split.keep), (vec![0], vec![1]));
}

#[test]
fn a_restored_copy_is_recognised_and_dropped_while_unconfirmed() {
    // The directory is from run (4, 11); the cluster saw run (5, 12) since.
    let mut r = Recovery::new(prev(4, 11), 99, None, false);
    assert_eq!(
        r.observe(Some(&entry(5, 12)), Some(&entry(4, 11))),
        Action::DropData
    );
    assert_eq!(r.phase(), Phase::Recovering(Reason::Restored));
    assert!(!r.accepts_writes() && !r.serves_data(), "until dropped");
    r.exchanged((1, 3), "b", 0);
    r.dropped(false);
    assert!(
        r.accepts_writes() && r.serves_data(),
        "emptied: like a wipe"
    );
    assert!(!r.counts_for_reads() && !r.may_push());
    assert_eq!(r.persisted_reason(), Some(Reason::Restored));
    let ob = obligations(&[("b", &[1])]);
    assert_eq!(
        r.pending(&ob),
        ob,
        "an exchange begun before the drop doesn't count"
    );
    r.exchanged((1, 3), "b", r.era());
    assert!(r.settle(&ob, true));
    assert!(r.counts_for_reads());
    assert_eq!(r.persisted_reason(), None);
    // Re-announce above the view that beat ours.
    assert_eq!(r.announce(&entry(5, 12)), Some(6));
}

#[test]
fn only_a_copy_younger_than_half_the_grace_is_known_to_hold_nothing_purged() {
    let grace = 12_000;
    assert!(copy_predates_no_purge(Some(2_500), grace));
    assert!(!copy_predates_no_purge(Some(6_000), grace));
    assert!(
        !copy_predates_no_purge(None, grace),
        "unknown age: assume old"
    );
}

#[test]
fn a_copy_from_within_the_last_run_is_restored_but_not_certain() {
    // Same generation, higher incarnation: a refutation within the run the copy is from.
    let mut r = Recovery::new(prev(4, 11), 99, None, false);
    assert_eq!(
        r.observe(Some(&entry(5, 11)), Some(&entry(4, 11))),
        Action::None
    );
    assert_eq!(r.phase(), Phase::Recovering(Reason::Restored));
    assert!(!r.serves_data(), "its data may predate a purge");
}

#[test]
fn evidence_that_arrives_late_makes_a_whole_node_recover_without_dropping() {
    let mut r = Recovery::new(prev(4, 11), 99, None, false);
    r.observe(Some(&entry(4, 11)), Some(&entry(4, 11)));
    assert_eq!(r.phase(), Phase::Whole);
    // A peer that was down at start knew a later run.
    assert_eq!(
        r.observe(Some(&entry(6, 13)), Some(&entry(5, 99))),
        Action::None
    );
    assert_eq!(r.phase(), Phase::Recovering(Reason::Restored));
    assert!(!r.serves_data() && !r.counts_for_reads() && r.accepts_writes());
}

#[test]
fn a_fresh_directory_is_new_unless_the_cluster_knew_an_earlier_run() {
    let mut founding = Recovery::new(None, 99, None, false);
    founding.observe(Some(&entry(0, 0)), None);
    assert_eq!(founding.phase(), Phase::Whole);
    let mut joiner = Recovery::new(None, 99, None, false);
    joiner.observe(None, None);
    assert_eq!(joiner.phase(), Phase::Whole);
    let mut wiped = Recovery::new(None, 99, None, false);
    assert_eq!(wiped.observe(Some(&entry(2, 5)), None), Action::None);
    assert_eq!(wiped.phase(), Phase::Recovering(Reason::Wiped));
    assert!(wiped.serves_data() && wiped.accepts_writes() && !wiped.counts_for_reads());
}

#[test]
fn recovery_ends_after_an_exchange_with_every_other_replica() {
    let mut r = Recovery::new(None, 99, None, false);
    r.observe(Some(&entry(2, 5)), None);
    let ob = obligations(&[("b", &[1, 2]), ("c", &[1])]);
    assert_eq!(
        r.progress(&ob),
        Progress {
            partitions_exchanged: 0,
            partitions_total: 2
        }
    );
    r.exchanged((1, 3), "b", 0);
    r.exchanged((2, 3), "b", 0);
    assert!(!r.settle(&ob, true), "c (down) blocks partition 1");
    assert_eq!(r.progress(&ob).partitions_exchanged, 1);
    assert_eq!(r.pending(&ob), obligations(&[("c", &[1])]));
    r.exchanged((1, 3), "c", 0);
    assert!(r.settle(&ob, true));
    assert_eq!(r.phase(), Phase::Whole);
    assert!(!r.settle(&ob, true), "once");
}

#[test]
fn obligations_count_only_once_the_cluster_has_been_heard() {
    let mut r = Recovery::new(prev(1, 1), 99, Some(Reason::Wiped), false);
    let ob = obligations(&[("b", &[1])]);
    r.exchanged((1, 3), "b", 0);
    assert!(!r.settle(&ob, true), "the ring may be stale");
    let mut r = Recovery::new(prev(1, 1), 99, Some(Reason::Wiped), false);
    r.observe(None, None);
    r.exchanged((1, 3), "b", 0);
    assert!(r.settle(&ob, true));
}

#[test]
fn a_node_without_peers_confirms_itself() {
    let mut r = Recovery::new(prev(1, 1), 9, None, false);
    assert!(r.settle(&BTreeMap::new(), false));
    assert!(r.counts_for_reads());
}

#[test]
fn a_power_cut_start_recovers_and_a_killed_process_does_not() {
    let unsynced = |boot: &str| RunMarker {
        boot: Some(boot.into()),
        sync: false,
    };
    assert!(!power_loss(None, Some("x")), "clean shutdown");
    assert!(
        !power_loss(Some(&unsynced("x")), Some("x")),
        "process killed"
    );
    assert!(
        power_loss(Some(&unsynced("x")), Some("y")),
        "machine restarted"
    );
    assert!(
        power_loss(Some(&unsynced("x")), None),
        "unknown: assume the worst"
    );
    let synced = RunMarker {
        boot: Some("x".into()),
        sync: true,
    };
    assert!(!power_loss(Some(&synced), Some("y")));
    let mut r = Recovery::new(prev(1, 1), 9, None, true);
    assert_eq!(
        r.phase(),
        Phase::Unconfirmed,
        "a restored copy may still be told apart"
    );
    assert_eq!(
        r.persisted_reason(),
        Some(Reason::PowerLoss),
        "survives a restart"
    );
    let resumed = Recovery::new(prev(1, 1), 10, Some(Reason::PowerLoss), false);
    assert_eq!(resumed.phase(), Phase::Unconfirmed);
    assert_eq!(resumed.persisted_reason(), Some(Reason::PowerLoss));
    r.observe(Some(&entry(1, 1)), None);
    assert_eq!(r.phase(), Phase::Recovering(Reason::PowerLoss));
    assert!(r.serves_data() && r.accepts_writes() && !r.counts_for_reads());
}

#[test]
fn a_removed_node_serves_and_pushes_nothing() {
    let mut r = Recovery::new(prev(1, 1), 9, None, false);
    r.observe(Some(&entry(1, 1)), None);
    assert!(r.set_removed(true));
    assert!(!r.serves_data() && !r.may_push() && !r.accepts_writes());
    assert!(!r.set_removed(true));
}

#[test]
fn a_resumed_recovery_stays_until_its_exchanges_are_done() {
    let mut r = Recovery::new(prev(3, 8), 9, Some(Reason::Restored), false);
    assert_eq!(r.phase(), Phase::Recovering(Reason::Restored));
    // A peer confirming the directory doesn't end a recovery: its exchanges do.
    r.observe(Some(&entry(3, 8)), None);
    assert_eq!(r.phase(), Phase::Recovering(Reason::Restored));
}
