use super::*;
use serde_json::json;

use Kind::{Info, Invoke, Ok as Okk};

fn ev(t: u64, process: u64, kind: Kind, f: &str, value: Value) -> Event {
    Event {
        time_ms: t,
        process,
        kind,
        f: f.into(),
        key: "ttl1".into(),
        value,
    }
}

fn read(t: u64, seen: &[i64]) -> Vec<Event> {
    vec![
        ev(t, 9, Invoke, "read", Value::Null),
        ev(t + 5, 9, Okk, "read", json!(seen)),
    ]
}

/// A value written with a 2 s TTL, acknowledged at 100 ms.
fn once(outcome: Kind) -> Vec<Event> {
    vec![
        ev(90, 1, Invoke, "write", json!({"value": 7, "ttl_ms": 2000})),
        ev(
            100,
            1,
            outcome,
            "write",
            json!({"value": 7, "ttl_ms": 2000}),
        ),
    ]
}

/// Value 1 without TTL, then value 2 with a 2 s TTL, acknowledged at 300 ms.
fn overwrite() -> Vec<Event> {
    vec![
        ev(0, 1, Invoke, "write", json!(1)),
        ev(10, 1, Okk, "write", json!(1)),
        ev(20, 1, Invoke, "read", Value::Null),
        ev(30, 1, Okk, "read", json!([1])),
        ev(290, 1, Invoke, "write", json!({"value": 2, "ttl_ms": 2000})),
        ev(300, 1, Okk, "write", json!({"value": 2, "ttl_ms": 2000})),
    ]
}

fn margin() -> ClockBounds {
    ClockBounds {
        skews: Vec::new(),
        margin_ms: 500,
    }
}

fn with(mut h: Vec<Event>, more: &[Vec<Event>]) -> Vec<Event> {
    for m in more {
        h.extend(m.iter().cloned());
    }
    h
}

#[test]
fn a_value_read_before_its_bound_and_gone_after_passes() {
    // Bound: ack 100 + ttl 2000 + margin 500 = 2600.
    let h = with(
        once(Okk),
        &[read(500, &[7]), read(2599, &[7]), read(2600, &[])],
    );
    let v = check_ttl(&h, &margin());
    assert!(v.valid, "{v:?}");
    assert_eq!(v.get("checked"), 1);
    assert_eq!(v.get("reads"), 3);
    assert_eq!(v.get("checked_reads"), 1);
}

#[test]
fn a_value_read_past_its_bound_is_flagged() {
    let h = with(once(Okk), &[read(2600, &[7])]);
    let v = check_ttl(&h, &margin());
    assert!(!v.valid);
    assert_eq!(v.get("expired_read"), 1);
    assert!(v.examples[0].contains("returned 7"), "{:?}", v.examples);
}

#[test]
fn skew_during_the_write_or_the_read_widens_the_bound() {
    let h = with(once(Okk), &[read(5000, &[7])]);
    // A clock 90 s ahead while the write ran: its coordinator may have set the expiry late.
    let ahead = ClockBounds {
        skews: vec![SkewWindow {
            from_ms: 0,
            to_ms: 95,
            offset_ms: 90_000,
        }],
        margin_ms: 500,
    };
    let v = check_ttl(&h, &ahead);
    assert!(v.valid, "{v:?}");
    assert_eq!(v.get("checked_reads"), 0);
    assert_eq!(v.get("skew_windows"), 1);
    // A clock 90 s behind while the read ran: its node may not see the expiry yet.
    let behind = ClockBounds {
        skews: vec![SkewWindow {
            from_ms: 5004,
            to_ms: 9000,
            offset_ms: -90_000,
        }],
        margin_ms: 500,
    };
    assert!(check_ttl(&h, &behind).valid);
    // A skew the wrong way, or one over before the write, does not excuse the read.
    for w in [
        SkewWindow {
            from_ms: 0,
            to_ms: 95,
            offset_ms: -90_000,
        },
        SkewWindow {
            from_ms: 0,
            to_ms: 80,
            offset_ms: 90_000,
        },
    ] {
        let clocks = ClockBounds {
            skews: vec![w],
            margin_ms: 500,
        };
        let v = check_ttl(&h, &clocks);
        assert_eq!(v.get("expired_read"), 1, "{w:?}: {v:?}");
    }
}

#[test]
fn a_write_of_unknown_outcome_is_not_checked() {
    // A timed-out write may be applied later with a later expiry.
    let h = with(once(Info), &[read(9000, &[7])]);
    let v = check_ttl(&h, &margin());
    assert!(v.valid, "{v:?}");
    assert_eq!(v.get("uncertain"), 1);
    assert_eq!(v.get("checked"), 0);
}

#[test]
fn an_overwrite_that_expires_reads_as_not_found() {
    let h = with(
        overwrite(),
        &[read(200, &[1]), read(400, &[2]), read(3000, &[])],
    );
    let v = check_ttl(&h, &margin());
    assert!(v.valid, "{v:?}");
    assert_eq!(v.get("overwrites"), 1);
    assert_eq!(v.get("resurrection_checks"), 1);
}

#[test]
fn the_overwritten_value_coming_back_after_expiry_is_flagged() {
    let h = with(overwrite(), &[read(3000, &[1])]);
    let v = check_ttl(&h, &margin());
    assert!(!v.valid);
    assert_eq!(v.get("resurrected"), 1);
    assert_eq!(v.get("expired_read"), 0);
    // Before the bound it is a stale read; before the overwrite's ack it is legal.
    let h = with(overwrite(), &[read(301, &[1, 2])]);
    let v = check_ttl(&h, &margin());
    assert_eq!((v.get("stale"), v.get("resurrected")), (1, 0), "{v:?}");
    let h = with(overwrite(), &[read(295, &[1])]);
    assert!(check_ttl(&h, &margin()).valid);
}

#[test]
fn an_overwrite_of_a_write_still_in_flight_is_not_checked() {
    // Value 1 was not acknowledged before value 2 was written: it may land afterwards.
    let mut h = overwrite();
    h[1].kind = Info;
    let v = check_ttl(&with(h, &[read(3000, &[1])]), &margin());
    assert!(v.valid, "{v:?}");
    assert_eq!(v.get("uncertain"), 1);
}

#[test]
fn values_never_written_and_malformed_events_are_flagged() {
    let v = check_ttl(&with(once(Okk), &[read(500, &[8])]), &margin());
    assert!(!v.valid);
    assert_eq!(v.get("unexpected"), 1);
    let mut h = once(Okk);
    h[0].value = json!({"value": 7});
    h.extend(read(500, &[]));
    h.push(ev(600, 3, Invoke, "read", Value::Null));
    h.push(ev(601, 3, Okk, "read", json!("7")));
    let v = check_ttl(&h, &margin());
    assert!(!v.valid);
    assert_eq!(v.get("malformed"), 2);
}
