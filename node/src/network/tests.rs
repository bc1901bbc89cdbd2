use std::sync::Mutex;

use super::*;
use crate::call::{Held, Read, Replicate, TreeRoots};
use crate::rpc::{Item, PeerError};

/// A network whose peers answer from a script: each call takes the next answer, and the
/// requests are recorded with their priority.
#[derive(Default)]
struct Scripted {
    answers: Mutex<Vec<Result<PeerResponse, TransportError>>>,
    seen: Mutex<Vec<(String, PeerRequest, Priority)>>,
    evicted: Mutex<Vec<String>>,
}

impl Scripted {
    fn answering(answers: Vec<Result<PeerResponse, TransportError>>) -> Scripted {
        let mut answers = answers;
        answers.reverse();
        Scripted {
            answers: Mutex::new(answers),
            ..Scripted::default()
        }
    }

    fn next(&self) -> Result<(PeerResponse, u64), TransportError> {
        let answer = self
            .answers
            .lock()
            .expect("lock")
            .pop()
            .expect("a scripted answer");
        answer.map(|r| (r, 10))
    }
}

impl Network for Scripted {
    fn call<'a>(
        &'a self,
        peer: &'a str,
        req: &'a PeerRequest,
        _deadline: Duration,
        priority: Priority,
    ) -> Answer<'a> {
        self.seen
            .lock()
            .expect("lock")
            .push((peer.to_string(), req.clone(), priority));
        Box::pin(async move { self.next() })
    }

    fn call_seed<'a>(
        &'a self,
        addr: &'a str,
        req: &'a PeerRequest,
        deadline: Duration,
    ) -> Answer<'a> {
        self.call(addr, req, deadline, Priority::Client)
    }

    fn evict(&self, peer: &str) {
        self.evicted.lock().expect("lock").push(peer.to_string());
    }
}

const SECOND: Duration = Duration::from_secs(1);

fn read() -> Read {
    Read {
        bucket: b"b".to_vec(),
        key: b"k".to_vec(),
    }
}

#[tokio::test]
async fn a_recovering_peer_is_a_peer_error_not_a_transport_failure() {
    let net = Scripted::answering(vec![Ok(PeerResponse::Error(PeerError::Recovering))]);
    let got = call(
        &net,
        "n2",
        TreeRoots(vec![(0, 3)]),
        SECOND,
        Priority::Background,
    )
    .await;
    assert!(
        matches!(got, Err(CallError::Peer(PeerError::Recovering))),
        "{got:?}"
    );
    let seen = net.seen.lock().expect("lock");
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].0, "n2");
    assert_eq!(seen[0].1, PeerRequest::TreeRoots(vec![(0, 3)]));
    assert_eq!(seen[0].2, Priority::Background);
}

#[tokio::test]
async fn reads_map_recovering_replicas_and_refusals() {
    let obj = crate::version::Object::default();
    let net = Scripted::answering(vec![
        Ok(PeerResponse::Recovering(Some(obj.encode()))),
        Ok(PeerResponse::Error(PeerError::Removed)),
        Ok(PeerResponse::Ack),
    ]);
    // A recovering replica's version is returned, marked so it doesn't count toward R.
    let (held, bytes) = call(&net, "n2", read(), SECOND, Priority::Client)
        .await
        .expect("held");
    assert_eq!(
        held,
        Held {
            object: Some(obj.encode()),
            recovering: true
        }
    );
    assert_eq!(bytes, 10);
    // The coordinator's reading of it: the version, or why there is none.
    let first = Read::reply(PeerResponse::Recovering(Some(obj.encode())));
    assert_eq!(
        crate::coordinate_get::object_answer(first).expect("object"),
        Some(obj)
    );
    let refused = call(&net, "n2", read(), SECOND, Priority::Client)
        .await
        .map(|(h, _)| h);
    let why = crate::coordinate_get::object_answer(refused).expect_err("removed");
    assert!(why.contains("left or was removed"), "{why}");
    let wrong = call(&net, "n2", read(), SECOND, Priority::Client).await;
    assert!(
        matches!(wrong, Err(CallError::Unexpected { got: "ack" })),
        "{wrong:?}"
    );
}

#[tokio::test]
async fn unreachable_peers_are_transport_errors_not_sent() {
    let net = Scripted::answering(vec![
        Err(TransportError::Connect {
            peer: "n3".into(),
            reason: "refused".into(),
        }),
        Err(TransportError::Timeout {
            peer: "n3".into(),
            after: SECOND,
        }),
    ]);
    let item = Item {
        bucket: b"b".to_vec(),
        key: b"k".to_vec(),
        object: Vec::new(),
    };
    let got = call(
        &net,
        "n3",
        Replicate(item.clone()),
        SECOND,
        Priority::Client,
    )
    .await;
    let e = got.expect_err("connect");
    assert!(e.not_sent(), "{e}");
    // A timeout may have been applied: not safe to send elsewhere as if never sent.
    let got = call(&net, "n3", Replicate(item), SECOND, Priority::Client).await;
    let e = got.expect_err("timeout");
    assert!(!e.not_sent(), "{e}");
    assert!(matches!(
        e,
        CallError::Transport(TransportError::Timeout { .. })
    ));
}
