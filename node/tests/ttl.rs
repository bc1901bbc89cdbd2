//! Values with a time to live, bucket default TTLs and `lww` buckets on real 3-node
//! clusters: expiry reads as a delete, expired keys are purged without resurrection, and
//! concurrent blind writes to an `lww` key leave one value on every replica.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use chorus_client::proto::{ErrorKind, Request, Response, ALPN_CLIENT};
use chorus_client::{tls, wire, Error, Level, WriteOptions};
use common::{addr, endpoint, exchange, path_str, poll, quic_config, TestCluster};

fn ttl(d: Duration) -> WriteOptions {
    WriteOptions {
        ttl: Some(d),
        ..WriteOptions::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_expire_read_as_deleted_and_leave_others_alone() {
    let c = TestCluster::start(3, &["cluster.buckets.cache.ttl=2s"]).await;
    let client = c.client().await;
    let cfg = path_str(&c.dir.join("client.toml"));

    // The command line: put --ttl 2s.
    let out = Command::new(env!("CARGO_BIN_EXE_chorus"))
        .args(["--config", &cfg, "put", "short", "v", "--ttl", "2s"])
        .output()
        .expect("put --ttl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let written = Instant::now();
    client
        .put("default", "kept", b"k".to_vec(), None, Level::All)
        .await
        .expect("put without ttl");
    client
        .put("cache", "dflt", b"d".to_vec(), None, Level::All)
        .await
        .expect("put into the bucket with a default ttl");
    let r = client
        .get("default", "short", Level::All)
        .await
        .expect("get");
    assert_eq!(r.values, vec![b"v".to_vec()], "read before expiry");

    poll(Duration::from_secs(15), "the ttl value expired", || async {
        let r = client.get("default", "short", Level::Quorum).await;
        r.is_ok_and(|r| !r.found && r.values.is_empty())
    })
    .await;
    assert!(
        written.elapsed() >= Duration::from_millis(1500),
        "expired after {:?}, well before its 2 s",
        written.elapsed()
    );
    let r = client
        .get("default", "short", Level::All)
        .await
        .expect("get");
    assert!(!r.found);
    assert_eq!(
        r.tombstones, 1,
        "an expired value is reported like a tombstone"
    );
    // The write without a TTL is unaffected.
    let k = client
        .get("default", "kept", Level::All)
        .await
        .expect("get");
    assert_eq!(k.values, vec![b"k".to_vec()]);
    // The bucket default applied to the put that brought no TTL.
    poll(
        Duration::from_secs(15),
        "the bucket default ttl",
        || async {
            let r = client.get("cache", "dflt", Level::Quorum).await;
            r.is_ok_and(|r| !r.found)
        },
    )
    .await;
    // A later write without a TTL, with the expired read's context, stays.
    client
        .put(
            "default",
            "short",
            b"again".to_vec(),
            Some(&r.context),
            Level::All,
        )
        .await
        .expect("put again");
    let again = client
        .get("default", "short", Level::All)
        .await
        .expect("get");
    assert_eq!(again.values, vec![b"again".to_vec()]);
    assert_eq!(
        again.tombstones, 0,
        "the context superseded the expired value"
    );

    // Bad TTLs: the client refuses before sending; the server refuses a raw request too.
    for bad in [Duration::ZERO, Duration::from_secs(20 * 365 * 24 * 3600)] {
        let e = client
            .put_with("default", "bad", b"x".to_vec(), &ttl(bad))
            .await
            .expect_err("bad ttl");
        assert!(matches!(e, Error::BadRequest(_)), "{e:?}");
    }
    let conn = endpoint()
        .connect_with(
            quic_config(&c, Some(("client.pem", "client.key")), ALPN_CLIENT),
            addr(&c, 1),
            tls::NODE_NAME,
        )
        .expect("connect")
        .await
        .expect("handshake");
    let put = Request::Put {
        bucket: b"default".to_vec(),
        key: b"bad".to_vec(),
        value: b"x".to_vec(),
        context: Vec::new(),
        w: Level::All,
        sloppy: false,
        ttl_ms: Some(0),
    };
    let r = exchange(&conn, &wire::encode(&put, 0).expect("encode"))
        .await
        .expect("answer");
    match r {
        Response::Error(e) => {
            assert_eq!(e.kind, ErrorKind::BadRequest);
            assert!(e.message.contains("TTL"), "{}", e.message);
        }
        other => panic!("a zero TTL was taken: {other:?}"),
    }
    let none = client.get("default", "bad", Level::All).await.expect("get");
    assert!(!none.found);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_keys_are_purged_only_once_every_replica_holds_them() {
    let mut c = TestCluster::start(
        3,
        &[
            "tombstones.grace=1s",
            "hinted_handoff.expiry=500ms",
            "tombstones.gc_interval=500ms",
            "anti_entropy.interval=1s",
            "hinted_handoff.enabled=false",
            "read_repair.enabled=false",
        ],
    )
    .await;
    let client = c.client().await;
    client
        .put("default", "k", b"old".to_vec(), None, Level::All)
        .await
        .expect("put");
    // n3 is down for the TTL write and keeps the old value, which has no TTL.
    c.kill(3);
    c.wait_status(1, 3, "down").await;
    let r = client
        .get("default", "k", Level::Quorum)
        .await
        .expect("get");
    client
        .put_with(
            "default",
            "k",
            b"new".to_vec(),
            &WriteOptions {
                context: Some(r.context),
                w: Level::Quorum,
                ttl: Some(Duration::from_secs(1)),
                ..WriteOptions::default()
            },
        )
        .await
        .expect("put with ttl");
    poll(Duration::from_secs(10), "the ttl value expired", || async {
        let r = client.get("default", "k", Level::Quorum).await;
        r.is_ok_and(|r| !r.found)
    })
    .await;
    // Past expiry plus the grace period, the expired value is still held: n3 is missing it.
    tokio::time::sleep(Duration::from_secs(3)).await;
    for id in ["n1", "n2"] {
        let r = client
            .get_replica("default", "k", id)
            .await
            .expect("replica");
        assert!(!r.found, "the old value came back on {id}");
        assert_eq!(
            r.tombstones, 1,
            "{id} purged while n3 still held the old value"
        );
    }
    // n3 returns with the old value; anti-entropy hands it the newer (expired) one, then
    // the purge happens everywhere and "old" never comes back.
    c.restart(3).await;
    poll(
        Duration::from_secs(30),
        "expired key purged on every replica",
        || async {
            let mut purged = true;
            for id in ["n1", "n2", "n3"] {
                match client.get_replica("default", "k", id).await {
                    Ok(r) => {
                        assert!(id == "n3" || !r.found, "the old value came back on {id}");
                        purged &= !r.found && r.tombstones == 0;
                    }
                    Err(_) => purged = false,
                }
            }
            let read = client.get("default", "k", Level::Quorum).await;
            assert!(
                !read.map(|r| r.found).unwrap_or(false),
                "a quorum read found the old value"
            );
            purged
        },
    )
    .await;
    let r = client.get("default", "k", Level::All).await.expect("get");
    assert!(!r.found);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lww_keys_keep_one_value_under_concurrent_blind_writes() {
    let c = TestCluster::start(
        3,
        &[
            "cluster.buckets.hot.conflicts=lww",
            "anti_entropy.interval=1s",
        ],
    )
    .await;
    let client = c.client().await;
    let mut tasks = tokio::task::JoinSet::new();
    for t in 0..16 {
        let client = client.clone();
        tasks.spawn(async move {
            for i in 0..5 {
                let v = format!("t{t}-{i}").into_bytes();
                // Blind writes (no context) to one key, in an lww and a siblings bucket.
                for bucket in ["hot", "default"] {
                    client
                        .put(bucket, "k", v.clone(), None, Level::One)
                        .await
                        .expect("blind put");
                }
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("writer task");
    }
    let r = client.get("hot", "k", Level::All).await.expect("get");
    assert_eq!(r.values.len(), 1, "an lww read showed siblings: {r:?}");
    poll(
        Duration::from_secs(30),
        "one and the same value on every replica",
        || async {
            let mut seen = Vec::new();
            for id in ["n1", "n2", "n3"] {
                match client.get_replica("hot", "k", id).await {
                    Ok(r) => {
                        assert!(r.values.len() <= 1, "{id} holds siblings: {r:?}");
                        seen.push(r.values);
                    }
                    Err(_) => return false,
                }
            }
            seen.iter().all(|v| v.len() == 1 && *v == seen[0])
        },
    )
    .await;
    // The negative control: the siblings bucket kept the concurrent writes.
    let s = client.get("default", "k", Level::All).await.expect("get");
    assert!(s.values.len() > 1, "siblings were lost: {s:?}");
}
