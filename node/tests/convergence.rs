//! Convergence on real clusters: each mechanism (hinted handoff, anti-entropy, read repair)
//! proven alone with the other two switched off, plus wiped disks, sloppy quorum and
//! tombstone purging.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use chorus_client::{Client, Error, Level, WriteOptions};
use common::{poll, TestCluster};

const BUCKET: &str = "conv";

/// What a scenario wrote while the node was down.
struct Written {
    live: Vec<String>,
    deleted: Vec<String>,
}

/// Writes 100 keys everywhere, kills n3, then writes 1000 keys with W=quorum and deletes
/// the first 100 with the contexts of quorum reads.
async fn write_while_n3_is_down(c: &mut TestCluster, client: &Client) -> Written {
    let deleted: Vec<String> = (0..100).map(|i| format!("old{i}")).collect();
    for k in &deleted {
        client
            .put(BUCKET, k, b"doomed".to_vec(), None, Level::All)
            .await
            .expect("W=all before the kill");
    }
    c.kill(3);
    c.wait_status(1, 3, "down").await;
    c.wait_status(2, 3, "down").await;
    let live: Vec<String> = (0..1000).map(|i| format!("new{i}")).collect();
    for k in &live {
        client
            .put(BUCKET, k, k.as_bytes().to_vec(), None, Level::Quorum)
            .await
            .expect("W=quorum with n3 down");
    }
    for k in &deleted {
        let r = client.get(BUCKET, k, Level::Quorum).await.expect("read");
        client
            .delete(BUCKET, k, Some(&r.context), Level::Quorum)
            .await
            .expect("delete with n3 down");
    }
    Written { live, deleted }
}

/// Keys of `w` that n3's own copy doesn't agree with yet (missing, or a deleted key found).
async fn n3_missing(client: &Client, w: &Written) -> Vec<String> {
    let mut wrong = Vec::new();
    for k in &w.live {
        match client.get_replica(BUCKET, k, "n3").await {
            Ok(r) if r.values == vec![k.as_bytes().to_vec()] => {}
            _ => wrong.push(k.clone()),
        }
    }
    for k in &w.deleted {
        match client.get_replica(BUCKET, k, "n3").await {
            Ok(r) if !r.found && r.tombstones > 0 => {}
            _ => wrong.push(k.clone()),
        }
    }
    wrong
}

async fn wait_n3_converged(client: &Client, w: &Written, within: Duration, what: &str) {
    poll(within, what, || async {
        n3_missing(client, w).await.is_empty()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hinted_handoff_alone_refills_a_restarted_node_without_reads() {
    let mut c = TestCluster::start(
        3,
        &["read_repair.enabled=false", "anti_entropy.enabled=false"],
    )
    .await;
    let client = c.client().await;
    let w = write_while_n3_is_down(&mut c, &client).await;

    // The coordinators hold hints for n3, and say so.
    let st = client.status().await.expect("status");
    let held: u64 = st
        .nodes
        .iter()
        .filter(|n| n.id == "n3")
        .map(|n| n.hints_pending)
        .sum();
    assert!(held > 0, "no hints reported for n3: {st:?}");

    c.restart(3).await;
    wait_n3_converged(&client, &w, Duration::from_secs(30), "hints replayed to n3").await;
    // Every hint was delivered and deleted.
    for k in [1, 2] {
        let cfg = c.client_config_for(&[k]);
        poll(Duration::from_secs(10), "hint backlog drains", || {
            let cfg = cfg.clone();
            async move {
                let Ok(cl) = Client::connect(cfg).await else {
                    return false;
                };
                let Ok(st) = cl.status().await else {
                    return false;
                };
                st.nodes.iter().all(|n| n.hints_pending == 0)
            }
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anti_entropy_alone_refills_a_restarted_node() {
    let mut c = TestCluster::start(
        3,
        &[
            "read_repair.enabled=false",
            "hinted_handoff.enabled=false",
            "anti_entropy.interval=2s",
        ],
    )
    .await;
    let client = c.client().await;
    let w = write_while_n3_is_down(&mut c, &client).await;
    c.restart(3).await;
    wait_n3_converged(
        &client,
        &w,
        Duration::from_secs(40),
        "anti-entropy repairs n3",
    )
    .await;
    // The repairs are accounted: every key n3 missed was repaired by some exchange.
    let mut repaired = 0;
    for k in 1..=3 {
        let cl = Client::connect(c.client_config_for(&[k]))
            .await
            .expect("connect");
        let st = cl.status().await.expect("status");
        assert_eq!(st.node, format!("n{k}"));
        repaired += st.convergence.anti_entropy_keys_repaired;
    }
    assert!(
        repaired >= 1100,
        "only {repaired} keys accounted as repaired"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_repair_alone_fixes_what_reads_touch() {
    let mut c = TestCluster::start(
        3,
        &["hinted_handoff.enabled=false", "anti_entropy.enabled=false"],
    )
    .await;
    let client = c.client().await;
    let w = write_while_n3_is_down(&mut c, &client).await;
    c.restart(3).await;
    c.wait_status(1, 3, "up").await;
    c.wait_status(2, 3, "up").await;

    // Negative control: with nothing read yet, n3 still misses everything.
    let missing = n3_missing(&client, &w).await;
    assert_eq!(
        missing.len(),
        w.live.len() + w.deleted.len(),
        "something else repaired n3"
    );

    for k in w.live.iter().chain(&w.deleted) {
        client.get(BUCKET, k, Level::All).await.expect("R=all read");
    }
    wait_n3_converged(&client, &w, Duration::from_secs(20), "read repair fixes n3").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_every_mechanism_off_nothing_converges() {
    // Negative control for the three tests above: their checker does see divergence.
    let mut c = TestCluster::start(
        3,
        &[
            "read_repair.enabled=false",
            "hinted_handoff.enabled=false",
            "anti_entropy.enabled=false",
        ],
    )
    .await;
    let client = c.client().await;
    let w = write_while_n3_is_down(&mut c, &client).await;
    c.restart(3).await;
    // Both coordinators must see n3 back, or an R=all read through the one that doesn't
    // yet fails without asking it.
    c.wait_status(1, 3, "up").await;
    c.wait_status(2, 3, "up").await;
    for k in w.live.iter().take(50) {
        client.get(BUCKET, k, Level::All).await.expect("read");
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let missing = n3_missing(&client, &w).await;
    assert_eq!(missing.len(), w.live.len() + w.deleted.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wiped_node_is_refilled_without_resurrecting_deletes_or_losing_siblings() {
    let mut c = TestCluster::start(
        3,
        &[
            "read_repair.enabled=false",
            "hinted_handoff.enabled=false",
            "anti_entropy.interval=2s",
        ],
    )
    .await;
    let client = c.client().await;
    let mut w = Written {
        live: (0..300).map(|i| format!("k{i}")).collect(),
        deleted: Vec::new(),
    };
    for k in &w.live {
        client
            .put(BUCKET, k, k.as_bytes().to_vec(), None, Level::All)
            .await
            .expect("put");
    }
    for k in w.live.drain(..50).collect::<Vec<_>>() {
        let r = client.get(BUCKET, &k, Level::All).await.expect("get");
        client
            .delete(BUCKET, &k, Some(&r.context), Level::All)
            .await
            .expect("delete");
        w.deleted.push(k);
    }
    // Two concurrent siblings.
    for v in ["left", "right"] {
        client
            .put(BUCKET, "twins", v.as_bytes().to_vec(), None, Level::All)
            .await
            .expect("sibling");
    }

    c.kill(3);
    let data = c.node_dir(3).join("data");
    std::fs::remove_dir_all(&data).expect("wipe n3");
    std::fs::create_dir_all(&data).expect("recreate data dir");
    c.restart(3).await;
    assert!(
        c.log(3).contains("fresh actor epoch"),
        "the wiped node must start a new epoch"
    );

    wait_n3_converged(
        &client,
        &w,
        Duration::from_secs(60),
        "anti-entropy refills n3",
    )
    .await;
    let twins = client
        .get_replica(BUCKET, "twins", "n3")
        .await
        .expect("twins");
    let got: BTreeSet<Vec<u8>> = twins.values.into_iter().collect();
    assert_eq!(got, BTreeSet::from([b"left".to_vec(), b"right".to_vec()]));
    for k in &w.deleted {
        let r = client.get(BUCKET, k, Level::All).await.expect("read");
        assert!(!r.found, "{k} came back");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sloppy_quorum_takes_writes_strict_refuses_and_primaries_get_them_back() {
    let mut c = TestCluster::start(
        5,
        &["anti_entropy.enabled=false", "read_repair.enabled=false"],
    )
    .await;
    let client = c.client().await;
    let info = client.ring().expect("ring");
    // A key whose preference list starts with n1, so n1 can coordinate.
    let (key, pref) = (0..)
        .map(|i| format!("sloppy{i}"))
        .map(|k| {
            let p = info.ring.partition_of(BUCKET.as_bytes(), k.as_bytes());
            let pref: Vec<String> = info
                .ring
                .preference_list(p, 3)
                .into_iter()
                .map(str::to_string)
                .collect();
            (k, pref)
        })
        .find(|(_, pref)| pref[0] == "n1")
        .expect("some key");
    let down: Vec<usize> = pref[1..]
        .iter()
        .map(|id| id[1..].parse().expect("node number"))
        .collect();
    for k in &down {
        c.kill(*k);
        c.wait_status(1, *k, "down").await;
    }

    let err = client
        .put(BUCKET, &key, b"strict".to_vec(), None, Level::Count(2))
        .await
        .expect_err("strict W=2 with two primaries down");
    assert!(
        matches!(
            err,
            Error::Quorum {
                needed: 2,
                answered: 1,
                ..
            }
        ),
        "{err}"
    );

    let opts = WriteOptions {
        context: None,
        w: Level::Count(2),
        sloppy: true,
        ttl: None,
    };
    client
        .put_with(BUCKET, &key, b"sloppy".to_vec(), &opts)
        .await
        .expect("sloppy W=2 succeeds through fallbacks");

    for k in &down {
        c.restart(*k).await;
    }
    for id in &pref[1..] {
        poll(
            Duration::from_secs(30),
            &format!("{id} gets the sloppy write"),
            || async {
                match client.get_replica(BUCKET, &key, id).await {
                    Ok(r) => r.values.contains(&b"sloppy".to_vec()),
                    Err(_) => false,
                }
            },
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tombstones_are_purged_only_once_every_replica_holds_them() {
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
        .put(BUCKET, "gone", b"v".to_vec(), None, Level::All)
        .await
        .expect("put");

    // n3 is down for the delete and keeps the old live value.
    c.kill(3);
    c.wait_status(1, 3, "down").await;
    let r = client
        .get(BUCKET, "gone", Level::Quorum)
        .await
        .expect("get");
    client
        .delete(BUCKET, "gone", Some(&r.context), Level::Quorum)
        .await
        .expect("delete");
    // Well past the grace period, the tombstone is still held: a replica is missing it.
    tokio::time::sleep(Duration::from_secs(3)).await;
    for id in ["n1", "n2"] {
        let r = client
            .get_replica(BUCKET, "gone", id)
            .await
            .expect("replica");
        assert!(!r.found);
        assert_eq!(r.tombstones, 1, "{id} purged while n3 still held the value");
    }

    // n3 returns with the old value; anti-entropy hands it the tombstone, then the purge
    // happens everywhere, and the value never comes back.
    c.restart(3).await;
    poll(
        Duration::from_secs(30),
        "tombstone purged on every replica",
        || async {
            // n3 holds the old value until anti-entropy reaches it; the others never may.
            let mut purged = true;
            for id in ["n1", "n2", "n3"] {
                match client.get_replica(BUCKET, "gone", id).await {
                    Ok(r) => {
                        assert!(id == "n3" || !r.found, "deleted value came back on {id}");
                        purged &= !r.found && r.tombstones == 0;
                    }
                    Err(_) => purged = false,
                }
            }
            let read = client.get(BUCKET, "gone", Level::Quorum).await;
            assert!(
                !read.map(|r| r.found).unwrap_or(false),
                "a quorum read found the deleted value"
            );
            purged
        },
    )
    .await;
    let r = client.get(BUCKET, "gone", Level::All).await.expect("get");
    assert!(!r.found);
}
