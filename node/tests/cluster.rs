//! Core data path on real 3-node clusters: quorums with a node killed, siblings and their
//! resolution, data surviving restarts, oversized input.

mod common;

use std::time::{Duration, Instant};

use chorus_client::{Error, Level};
use common::{poll, TestCluster};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quorum_reads_and_writes_survive_a_killed_node_and_all_fails_fast() {
    let mut c = TestCluster::start(3, &[]).await;
    let client = c.client().await;

    client
        .put("b", "k0", b"v0".to_vec(), None, Level::All)
        .await
        .expect("W=all with every node up");
    let r = client.get("b", "k0", Level::All).await.expect("R=all");
    assert_eq!(r.values, vec![b"v0".to_vec()]);

    c.kill(3);
    let killed_at = Instant::now();

    // W=all can't be met: the error must come quickly and say needed/answered.
    let err = client
        .put("b", "k1", b"v1".to_vec(), None, Level::All)
        .await
        .expect_err("W=all must fail with a node down");
    let took = killed_at.elapsed();
    match &err {
        Error::Quorum {
            needed, answered, ..
        } => {
            assert_eq!(*needed, 3);
            assert_eq!(*answered, 2, "{err}");
        }
        other => panic!("expected a quorum error, got {other:?}"),
    }
    assert!(err.to_string().contains("needed 3"), "{err}");
    assert!(took < Duration::from_secs(5), "W=all took {took:?} to fail");

    // Quorum still works, with a client that knows every node (one of them dead).
    for i in 0..20 {
        let key = format!("q{i}");
        client
            .put("b", &key, key.as_bytes().to_vec(), None, Level::Quorum)
            .await
            .expect("W=quorum with one node down");
    }
    for i in 0..20 {
        let key = format!("q{i}");
        let r = client
            .get("b", &key, Level::Quorum)
            .await
            .expect("R=quorum");
        assert_eq!(r.values, vec![key.as_bytes().to_vec()]);
    }
    let err = client
        .get("b", "k0", Level::All)
        .await
        .expect_err("R=all must fail with a node down");
    assert!(
        matches!(
            err,
            Error::Quorum {
                needed: 3,
                answered: 2,
                ..
            }
        ),
        "{err}"
    );

    // A client whose first seed is the dead node fails over.
    let lonely = chorus_client::Client::connect(c.client_config_for(&[3, 1]))
        .await
        .expect("connect through the live seed");
    lonely
        .put("b", "k2", b"v2".to_vec(), None, Level::Quorum)
        .await
        .expect("failover put");

    // Levels out of range are refused, not silently clamped.
    let err = client
        .get("b", "k0", Level::Count(4))
        .await
        .expect_err("R=4 with N=3");
    assert!(matches!(err, Error::BadRequest(_)), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_puts_become_siblings_and_a_context_resolves_them() {
    let c = TestCluster::start(3, &[]).await;
    let client = c.client().await;

    client
        .put("s", "k", b"a".to_vec(), None, Level::Quorum)
        .await
        .expect("put a");
    client
        .put("s", "k", b"b".to_vec(), None, Level::Quorum)
        .await
        .expect("put b");
    let r = client.get("s", "k", Level::Quorum).await.expect("get");
    let mut values = r.values.clone();
    values.sort();
    assert_eq!(
        values,
        vec![b"a".to_vec(), b"b".to_vec()],
        "no write silently dropped"
    );

    client
        .put("s", "k", b"c".to_vec(), Some(&r.context), Level::Quorum)
        .await
        .expect("resolving put");
    let r = client.get("s", "k", Level::All).await.expect("get");
    assert_eq!(r.values, vec![b"c".to_vec()]);

    // A stale context only replaces what it saw: a write it didn't see stays.
    let stale = r.context.clone();
    client
        .put("s", "k", b"d".to_vec(), Some(&stale), Level::Quorum)
        .await
        .expect("put d");
    client
        .put("s", "k", b"e".to_vec(), Some(&stale), Level::Quorum)
        .await
        .expect("put e");
    let r = client.get("s", "k", Level::All).await.expect("get");
    let mut values = r.values.clone();
    values.sort();
    assert_eq!(values, vec![b"d".to_vec(), b"e".to_vec()]);

    client
        .delete("s", "k", Some(&r.context), Level::All)
        .await
        .expect("delete");
    let r = client.get("s", "k", Level::All).await.expect("get");
    assert!(!r.found);
    assert!(r.values.is_empty());

    // Writing again after the delete, with its context, gives exactly one value.
    client
        .put("s", "k", b"f".to_vec(), Some(&r.context), Level::All)
        .await
        .expect("put after delete");
    let r = client.get("s", "k", Level::One).await.expect("get");
    assert_eq!(r.values, vec![b"f".to_vec()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_and_restarted_node_serves_what_it_stored() {
    let mut c = TestCluster::start(3, &[]).await;
    let client = c.client().await;
    for i in 0..100 {
        client
            .put(
                "r",
                format!("k{i}"),
                format!("v{i}").into_bytes(),
                None,
                Level::All,
            )
            .await
            .expect("W=all");
    }
    drop(client);
    for k in 1..=3 {
        c.kill(k);
    }
    // n1 and n2 come back (a node counts toward R only once a peer has confirmed that its
    // data directory is the latest); every answer is read from n1's own disk.
    c.restart(1).await;
    c.restart(2).await;
    let solo = chorus_client::Client::connect(c.client_config_for(&[1]))
        .await
        .expect("connect to n1");
    for i in 0..100 {
        let r = solo
            .get_replica("r", format!("k{i}"), "n1")
            .await
            .expect("n1's own copy");
        assert_eq!(r.values, vec![format!("v{i}").into_bytes()], "key k{i}");
    }
    // A write after the restart (under a new actor epoch) replaces what the read saw. The
    // quorum read waits until n1 and n2 have confirmed each other's data (an exchange that runs
    // in the background after the restart).
    poll(Duration::from_secs(30), "n1 and n2 leave recovery", || {
        let solo = solo.clone();
        async move { solo.get("r", "k0", Level::One).await.is_ok() }
    })
    .await;
    let r = solo.get("r", "k0", Level::One).await.expect("get");
    solo.put("r", "k0", b"again".to_vec(), Some(&r.context), Level::One)
        .await
        .expect("put");
    let r = solo.get("r", "k0", Level::One).await.expect("get");
    assert_eq!(r.values, vec![b"again".to_vec()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_keys_and_values_are_refused_and_the_node_keeps_serving() {
    let c = TestCluster::start(3, &[]).await;
    let client = c.client().await;

    let big_key = "k".repeat(100 * 1024);
    let err = client
        .put("o", &big_key, b"v".to_vec(), None, Level::Quorum)
        .await
        .expect_err("100 KiB key");
    assert!(matches!(err, Error::TooLarge(_)), "{err}");
    assert!(err.to_string().contains("max_key_bytes"), "{err}");

    let big_value = vec![b'x'; 9 * 1024 * 1024];
    let err = client
        .put("o", "k", big_value, None, Level::Quorum)
        .await
        .expect_err("9 MiB value");
    assert!(matches!(err, Error::TooLarge(_)), "{err}");
    assert!(err.to_string().contains("max_value_bytes"), "{err}");

    let err = client
        .get("o", &big_key, Level::One)
        .await
        .expect_err("100 KiB key read");
    assert!(matches!(err, Error::TooLarge(_)), "{err}");

    // Nothing was stored, and normal traffic still flows.
    let r = client.get("o", "k", Level::All).await.expect("get");
    assert!(!r.found);
    client
        .put("o", "k", vec![b'y'; 1024 * 1024], None, Level::All)
        .await
        .expect("1 MiB value is fine");
    let r = client.get("o", "k", Level::All).await.expect("get");
    assert_eq!(r.values[0].len(), 1024 * 1024);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_bucket_n_and_writes_sent_to_a_non_replica_are_forwarded() {
    use chorus_client::proto::{Request, Response, ALPN_CLIENT};
    use chorus_client::{tls, wire};
    use common::{addr, endpoint, exchange, quic_config};

    let c = TestCluster::start(3, &["cluster.buckets.solo.n=1"]).await;
    let client = c.client().await;

    // N=1 for this bucket: `all` is one replica, and two is out of range.
    client
        .put("solo", "k", b"first".to_vec(), None, Level::All)
        .await
        .expect("W=all with N=1");
    let err = client
        .put("solo", "k", b"x".to_vec(), None, Level::Count(2))
        .await
        .expect_err("W=2 with N=1");
    assert!(matches!(err, Error::BadRequest(_)), "{err}");

    // Send the same write to every node directly, bypassing token-aware routing: two of
    // them are not the key's replica and must hand the write to it.
    let ep = endpoint();
    for k in 1..=3 {
        let conn = ep
            .connect_with(
                quic_config(&c, Some(("client.pem", "client.key")), ALPN_CLIENT),
                addr(&c, k),
                tls::NODE_NAME,
            )
            .expect("connect")
            .await
            .expect("handshake");
        let put = Request::Put {
            bucket: b"solo".to_vec(),
            key: b"k".to_vec(),
            value: format!("via n{k}").into_bytes(),
            context: Vec::new(),
            w: Level::All,
            sloppy: false,
            ttl_ms: None,
        };
        let r = exchange(&conn, &wire::encode(&put, 0).expect("encode"))
            .await
            .expect("answer");
        assert!(matches!(r, Response::Written { .. }), "n{k}: {r:?}");
    }
    let r = client.get("solo", "k", Level::All).await.expect("get");
    let mut values: Vec<String> = r
        .values
        .iter()
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect();
    values.sort();
    assert_eq!(values, vec!["first", "via n1", "via n2", "via n3"]);
}

/// Reads ask R replicas first. One that hangs (SIGSTOP: no error, no closed connection)
/// must not stall them: the reserve replica is asked after `speculative_after`. The control
/// with a speculative delay longer than the request deadline shows the reads would wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_go_around_a_hung_replica() {
    for (speculative, must_pass) in [("30ms", true), ("30s", false)] {
        let c = TestCluster::start(
            3,
            &[
                "read_repair.chance=0",
                &format!("read_repair.speculative_after={speculative}"),
                "timeouts.request=1500ms",
                // Slower than the request deadline: only the speculative read helps.
                "failure_detector.down_after=5s",
            ],
        )
        .await;
        // Talk to n1 only, so its failure detector is the one that matters.
        let mut cfg = c.client_config_for(&[1]);
        cfg.token_aware = false;
        let client = chorus_client::Client::connect(cfg).await.expect("connect");
        for i in 0..12 {
            let key = format!("h{i}");
            client
                .put("b", &key, key.as_bytes().to_vec(), None, Level::All)
                .await
                .expect("W=all with every node up");
        }
        c.pause(2, true);
        let mut failed = 0;
        let mut slowest = Duration::ZERO;
        for i in 0..12 {
            let key = format!("h{i}");
            let t = Instant::now();
            match client.get("b", &key, Level::Quorum).await {
                Ok(r) => assert_eq!(r.values, vec![key.as_bytes().to_vec()]),
                Err(_) => failed += 1,
            }
            slowest = slowest.max(t.elapsed());
        }
        c.pause(2, false);
        if must_pass {
            assert_eq!(failed, 0, "reads failed with one replica hung");
            assert!(
                slowest < Duration::from_millis(300),
                "slowest read {slowest:?}"
            );
        } else {
            // Without the speculative read, reads wait for the hung replica until its
            // probes fail (about a second) or the deadline.
            assert!(
                failed > 0 || slowest >= Duration::from_millis(500),
                "control: no read waited on the hung replica (slowest {slowest:?})"
            );
        }
    }
}
