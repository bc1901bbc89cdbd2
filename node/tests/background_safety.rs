//! Background paths under conditions the fault suite didn't cover: anti-entropy when the
//! ring has fewer members than N, hint replay of large values, and the cap on one key's
//! stored size (a write past it is refused; a key over it by concurrent writes stays
//! readable and resolvable, and still replicates).

mod common;

use std::time::{Duration, Instant};

use chorus_client::{Client, ClientConfig, Error, Level};
use common::{poll, TestCluster};

const BUCKET: &str = "bg";

/// Leave/remove/repair need an admin certificate where the cluster has one.
fn admin_config(c: &TestCluster) -> ClientConfig {
    let admin = c.dir.join("admin.toml");
    let path = if admin.exists() {
        admin
    } else {
        c.dir.join("client.toml")
    };
    ClientConfig::load(&path).expect("admin client config")
}

async fn client_for(c: &TestCluster, nodes: &[usize]) -> Client {
    Client::connect(c.client_config_for(nodes))
        .await
        .expect("connect")
}

/// A value of `len` bytes that names its key, so a mix-up shows.
fn value(key: &str, len: usize) -> Vec<u8> {
    let mut v = key.as_bytes().to_vec();
    v.resize(len, b'.');
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anti_entropy_repairs_when_the_ring_has_fewer_members_than_n() {
    let mut c = TestCluster::start(
        3,
        &[
            "read_repair.enabled=false",
            "hinted_handoff.enabled=false",
            "anti_entropy.interval=2s",
        ],
    )
    .await;
    let admin = Client::connect(admin_config(&c)).await.expect("admin");
    // Two members stay for N = 3: below N, so the leave needs --force.
    admin.leave_with("n3", true).await.expect("leave accepted");
    poll(Duration::from_secs(60), "n3 has left", || async {
        for k in [1, 2] {
            let Some(st) = c.status_of(k).await else {
                return false;
            };
            if st.transfers_pending > 0
                || !st.nodes.iter().any(|n| n.id == "n3" && n.status == "left")
            {
                return false;
            }
        }
        true
    })
    .await;
    c.kill(3);
    c.kill(2);
    c.wait_status(1, 2, "down").await;
    // Two members, N = 3: the key's replicas are n1 and n2, and only n1 is up.
    let n1 = client_for(&c, &[1]).await;
    n1.put(BUCKET, "k", b"v".to_vec(), None, Level::One)
        .await
        .expect("put with W=one");
    c.restart(2).await;
    let started = Instant::now();
    let n2 = client_for(&c, &[2]).await;
    poll(
        Duration::from_secs(30),
        "anti-entropy copies k to n2",
        || async {
            matches!(
                n2.get_replica(BUCKET, "k", "n2").await,
                Ok(r) if r.values == vec![b"v".to_vec()]
            )
        },
    )
    .await;
    eprintln!(
        "members < N: k reached n2 {} ms after its restart",
        started.elapsed().as_millis()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_hints_are_delivered_in_batches_that_fit_a_frame() {
    // A small frame makes "more than one frame of hints" cheap: 60 hints of 300 KB are
    // 18 MB, more than four frames of 4 MiB.
    let mut c = TestCluster::start(
        3,
        &[
            "read_repair.enabled=false",
            "anti_entropy.enabled=false",
            "limits.max_frame_bytes=4194304",
            "limits.max_value_bytes=1048576",
        ],
    )
    .await;
    c.kill(3);
    c.wait_status(1, 3, "down").await;
    c.wait_status(2, 3, "down").await;
    let client = client_for(&c, &[1, 2]).await;
    let keys: Vec<String> = (0..60).map(|i| format!("large{i}")).collect();
    for key in &keys {
        client
            .put(BUCKET, key, value(key, 300_000), None, Level::Quorum)
            .await
            .expect("put with n3 down");
    }
    c.restart(3).await;
    let started = Instant::now();
    let n3 = client_for(&c, &[3]).await;
    // Poll only for the keys not seen yet: each check reads 300 KB.
    let mut missing = keys.clone();
    let deadline = Instant::now() + Duration::from_secs(90);
    while !missing.is_empty() {
        let mut left = Vec::new();
        for key in missing {
            match n3.get_replica(BUCKET, &key, "n3").await {
                Ok(r) if r.values == vec![value(&key, 300_000)] => {}
                _ => left.push(key),
            }
        }
        missing = left;
        assert!(
            Instant::now() < deadline,
            "{} of 60 hints still not on n3 after 90 s",
            missing.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!(
        "60 hints of 300 KB delivered {} ms after n3 restarted",
        started.elapsed().as_millis()
    );
    let logs = format!("{}{}", c.log(1), c.log(2));
    assert!(
        !logs.contains("hint replay refused"),
        "no batch should be refused"
    );
}

/// A 2 MiB cap on a key's stored size and a 3 MiB frame; no background repair, so what
/// each replica holds is what the test wrote there.
const CAPPED: &[&str] = &[
    "read_repair.enabled=false",
    "anti_entropy.enabled=false",
    "hinted_handoff.enabled=false",
    "limits.max_frame_bytes=3145728",
    "limits.max_value_bytes=700000",
    "limits.max_object_bytes=2097152",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_past_the_object_cap_are_refused_with_the_limit_named() {
    let c = TestCluster::start(3, CAPPED).await;
    let client = c.client().await;
    // Blind puts pile up siblings: three fit under 2 MiB, the fourth is refused.
    for i in 0..3 {
        client
            .put(
                BUCKET,
                "big",
                value(&format!("b{i}"), 600_000),
                None,
                Level::All,
            )
            .await
            .expect("under the cap");
    }
    match client
        .put(BUCKET, "big", value("b3", 600_000), None, Level::All)
        .await
    {
        Err(Error::TooLarge(m)) => assert!(m.contains("limits.max_object_bytes"), "{m}"),
        other => panic!("a put past the cap must be refused, got {other:?}"),
    }
    let r = client.get(BUCKET, "big", Level::All).await.expect("get");
    assert_eq!(r.values.len(), 3);
    assert!(!r.truncated);
}

/// Writes `per_side` values to each key at W=one on both sides of a split that never see
/// each other's writes: on n1 while n2 and n3 are stopped (SIGSTOP), then on n2 while n1
/// and n3 are. Pausing rather than killing keeps each process's run confirmed (a node
/// restarted while all its peers are down can't tell its data is the latest, and takes no
/// writes), so each side coordinates its writes.
async fn write_on_both_sides(c: &TestCluster, keys: &[&str], per_side: usize) {
    c.pause(2, true);
    c.pause(3, true);
    c.wait_status(1, 2, "down").await;
    c.wait_status(1, 3, "down").await;
    let n1 = client_for(c, &[1]).await;
    for &key in keys {
        for i in 0..per_side {
            n1.put(
                BUCKET,
                key,
                value(&format!("{key}a{i}"), 600_000),
                None,
                Level::One,
            )
            .await
            .expect("n1 side");
        }
    }
    c.pause(1, true);
    c.pause(2, false);
    c.wait_status(2, 1, "down").await;
    c.wait_status(2, 3, "down").await;
    let n2 = client_for(c, &[2]).await;
    for &key in keys {
        for i in 0..per_side {
            n2.put(
                BUCKET,
                key,
                value(&format!("{key}z{i}"), 600_000),
                None,
                Level::One,
            )
            .await
            .expect("n2 side");
        }
    }
    c.pause(1, false);
    c.pause(3, false);
    c.wait_all_up(Duration::from_secs(30)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_over_the_cap_by_concurrent_writes_can_be_read_and_resolved() {
    let c = TestCluster::start(3, CAPPED).await;
    let client = c.client().await;
    // Concurrent writes on two sides of a split each stay under the cap, and their merge
    // is over it (and over a frame): n1 takes three values, n2 three others.
    write_on_both_sides(&c, &["split"], 3).await;
    let r = client
        .get(BUCKET, "split", Level::All)
        .await
        .expect("a key over the cap can still be read");
    assert!(r.found);
    assert!(r.truncated, "six values of 600 KB don't fit a 3 MiB reply");
    assert!(
        !r.values.is_empty() && r.values.len() < 6,
        "{}",
        r.values.len()
    );
    // The reply's context covers only the values shown: a write with it replaces those
    // and keeps the ones the reader never saw, which the next read shows.
    let shown = r.values.clone();
    client
        .put(
            BUCKET,
            "split",
            b"resolved".to_vec(),
            Some(&r.context),
            Level::All,
        )
        .await
        .expect("a write that shrinks a key over the cap is taken");
    let r = client.get(BUCKET, "split", Level::All).await.expect("get");
    assert!(!r.truncated);
    assert_eq!(
        r.values.len(),
        6 - shown.len() + 1,
        "the unseen values stay"
    );
    assert!(r.values.contains(&b"resolved".to_vec()));
    assert!(
        shown.iter().all(|v| !r.values.contains(v)),
        "shown values were replaced"
    );
    // Now every value was shown: a write with this context replaces them all.
    client
        .put(
            BUCKET,
            "split",
            b"resolved".to_vec(),
            Some(&r.context),
            Level::All,
        )
        .await
        .expect("resolving put");
    let r = client.get(BUCKET, "split", Level::All).await.expect("get");
    assert_eq!(r.values, vec![b"resolved".to_vec()]);
    assert!(!r.truncated);
    for node in ["n1", "n2", "n3"] {
        let r = client
            .get_replica(BUCKET, "split", node)
            .await
            .expect("replica");
        assert_eq!(r.values, vec![b"resolved".to_vec()], "{node}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anti_entropy_replicates_keys_over_the_cap_one_per_message() {
    let c = TestCluster::start(
        3,
        &[
            "read_repair.enabled=false",
            "hinted_handoff.enabled=false",
            "anti_entropy.interval=1s",
            "limits.max_frame_bytes=3145728",
            "limits.max_value_bytes=700000",
            "limits.max_object_bytes=2097152",
        ],
    )
    .await;
    // Each side writes two values of 600 KB to each key: under the cap on each side,
    // 2.4 MB (over the cap, within a frame) once merged. Four keys of one partition are
    // repaired together, and don't fit in one message together.
    let info = c.client().await.refresh_ring().await.expect("ring");
    let partition = |k: &str| info.ring.partition_of(BUCKET.as_bytes(), k.as_bytes());
    let names: Vec<String> = (0..100_000)
        .map(|i| format!("over{i}"))
        .filter(|k| partition(k) == partition("over0"))
        .take(4)
        .collect();
    let keys: Vec<&str> = names.iter().map(String::as_str).collect();
    write_on_both_sides(&c, &keys, 2).await;
    let started = Instant::now();
    let client = c.client().await;
    poll(
        Duration::from_secs(60),
        "every replica holds all four values of every key",
        || async {
            for &key in &keys {
                for node in ["n1", "n2", "n3"] {
                    match client.get_replica(BUCKET, key, node).await {
                        Ok(r) if r.values.len() == 4 => {}
                        _ => return false,
                    }
                }
            }
            true
        },
    )
    .await;
    eprintln!(
        "4 keys of 2.4 MB converged on 3 replicas {} ms after the restarts",
        started.elapsed().as_millis()
    );
}
