use super::*;

fn every_error() -> Vec<PeerError> {
    vec![
        PeerError::Recovering,
        PeerError::NotTakingWrites,
        PeerError::Removed,
        PeerError::Overloaded {
            what: "peer requests (4096 of 4096 in use)".into(),
        },
        PeerError::TooLarge {
            what: "request frame".into(),
            size: 70,
            limit: 64,
        },
        PeerError::WrongCluster {
            by: "n1".into(),
            why: "cluster id differs".into(),
        },
        PeerError::BadRequest("key is empty".into()),
        PeerError::Storage("disk full".into()),
        PeerError::Internal("task panicked".into()),
    ]
}

#[test]
fn peer_errors_round_trip_through_a_frame() {
    for e in every_error() {
        let frame =
            chorus_client::wire::encode(&PeerResponse::Error(e.clone()), 3).expect("encode");
        let (back, trace): (PeerResponse, u64) =
            chorus_client::wire::decode(&frame[4..]).expect("decode");
        assert_eq!(back, PeerResponse::Error(e));
        assert_eq!(trace, 3);
    }
}

#[test]
fn an_old_string_error_does_not_decode_as_a_peer_error() {
    // What a node from before `PeerError` sent: it fails as a malformed frame rather than
    // being misread as some variant.
    #[derive(serde::Serialize)]
    enum Old {
        Error(String),
    }
    let frame = chorus_client::wire::encode(&Old::Error("recovering".into()), 0).expect("encode");
    let r = chorus_client::wire::decode::<PeerResponse>(&frame[4..]);
    assert!(r.is_err(), "{r:?}");
}

#[test]
fn a_peer_error_becomes_call_error_peer() {
    for e in every_error() {
        let got = Replicate::reply(PeerResponse::Error(e.clone()));
        assert!(
            matches!(got, Err(CallError::Peer(ref x)) if *x == e),
            "{got:?}"
        );
        let got = Read::reply(PeerResponse::Error(e.clone()));
        assert!(
            matches!(got, Err(CallError::Peer(ref x)) if *x == e),
            "{got:?}"
        );
    }
}

#[test]
fn a_wrong_reply_kind_is_unexpected() {
    let got = Replicate::reply(PeerResponse::Object(None));
    assert!(
        matches!(got, Err(CallError::Unexpected { got: "object" })),
        "{got:?}"
    );
    let got = Read::reply(PeerResponse::Ack);
    assert!(
        matches!(got, Err(CallError::Unexpected { got: "ack" })),
        "{got:?}"
    );
    let got = TreeRoots::reply(PeerResponse::Keys(Vec::new()));
    assert!(
        matches!(got, Err(CallError::Unexpected { got: "keys" })),
        "{got:?}"
    );
    // The expected kinds pass.
    assert!(Replicate::reply(PeerResponse::Ack).is_ok());
    assert!(Purge::reply(PeerResponse::Ack).is_ok());
}

#[test]
fn reads_tell_a_recovering_replica_apart() {
    let whole = Read::reply(PeerResponse::Object(Some(vec![1]))).expect("whole");
    assert_eq!(
        whole,
        Held {
            object: Some(vec![1]),
            recovering: false
        }
    );
    let rec = Read::reply(PeerResponse::Recovering(None)).expect("recovering");
    assert_eq!(
        rec,
        Held {
            object: None,
            recovering: true
        }
    );
}

#[test]
fn malformed_hashes_are_refused() {
    let got = TreeBranches::reply(PeerResponse::Hashes(vec![0; 33]));
    assert!(matches!(got, Err(CallError::Malformed(_))), "{got:?}");
    let got = TreeRoots::reply(PeerResponse::Roots {
        hashes: vec![7; 64],
        unknown: vec![1],
    })
    .expect("roots");
    assert_eq!(got.roots, vec![[7; 32], [7; 32]]);
    assert_eq!(got.unknown, vec![1]);
}

#[test]
fn requests_are_the_wire_messages() {
    let r = Purge {
        bucket: b"b".to_vec(),
        key: b"k".to_vec(),
        digest: [9; 32],
    }
    .into_request();
    assert_eq!(
        r,
        PeerRequest::Purge {
            bucket: b"b".to_vec(),
            key: b"k".to_vec(),
            digest: vec![9; 32]
        }
    );
    let r = ReadMany(vec![(b"b".to_vec(), b"k".to_vec())]).into_request();
    assert!(matches!(r, PeerRequest::ReadMany(ref k) if k.len() == 1));
}
