//! Elastic membership on real clusters: a node joins under write load, one leaves, a dead
//! one is removed, and a joining node killed mid-transfer resumes.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chorus_client::{Client, Level};
use common::{poll, TestCluster};

const BUCKET: &str = "elastic";

async fn load(client: &Client, prefix: &str, count: usize) {
    let mut tasks = tokio::task::JoinSet::new();
    for t in 0..16 {
        let client = client.clone();
        let prefix = prefix.to_string();
        tasks.spawn(async move {
            for i in (t..count).step_by(16) {
                let key = format!("{prefix}{i}");
                client
                    .put(BUCKET, &key, key.as_bytes().to_vec(), None, Level::All)
                    .await
                    .expect("load");
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.expect("loader");
    }
}

/// Writes keys with W=quorum until stopped; returns the acknowledged ones.
fn writer(client: Client, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<Vec<String>> {
    tokio::spawn(async move {
        let mut acked = Vec::new();
        let mut i = 0u64;
        while !stop.load(Ordering::Relaxed) {
            let key = format!("live{i}");
            i += 1;
            if client
                .put(BUCKET, &key, key.as_bytes().to_vec(), None, Level::Quorum)
                .await
                .is_ok()
            {
                acked.push(key);
            }
        }
        acked
    })
}

/// Waits until every running node reports no pending transfer and every listed node has
/// the given status.
async fn settled(c: &TestCluster, running: &[usize], expect: &[(usize, &str)], within: Duration) {
    poll(within, "cluster settles", || async {
        for k in running {
            let Some(st) = c.status_of(*k).await else {
                return false;
            };
            if st.transfers_pending > 0 {
                return false;
            }
            for (node, status) in expect {
                let id = format!("n{node}");
                if !st.nodes.iter().any(|n| n.id == id && n.status == *status) {
                    return false;
                }
            }
        }
        true
    })
    .await;
}

/// Polls [`fully_replicated`] until it holds: a node that gained partitions may still be
/// planning its transfers when the status first shows none pending.
async fn eventually_fully_replicated(client: &Client, keys: &[String], what: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        match fully_replicated(client, keys).await {
            Ok(()) => return,
            Err(e) if std::time::Instant::now() > deadline => panic!("{what}: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
}

/// Every key has a local copy on each node of its preference list (as the ring says now).
async fn fully_replicated(client: &Client, keys: &[String]) -> Result<(), String> {
    let info = client.refresh_ring().await.map_err(|e| e.to_string())?;
    for key in keys {
        let p = info.ring.partition_of(BUCKET.as_bytes(), key.as_bytes());
        for node in info.ring.preference_list(p, info.n_for(BUCKET.as_bytes())) {
            let r = client
                .get_replica(BUCKET, key, node)
                .await
                .map_err(|e| format!("{node}: {e}"))?;
            if r.values != vec![key.as_bytes().to_vec()] {
                return Err(format!("{key} missing on {node}"));
            }
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_joins_under_write_load_and_takes_its_share() {
    let mut c = TestCluster::start(3, &["anti_entropy.interval=1h"]).await;
    let client = c.client().await;
    load(&client, "k", 10_000).await;

    let stop = Arc::new(AtomicBool::new(false));
    let writing = writer(client.clone(), stop.clone());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let k4 = c.add_node();
    settled(&c, &[1, 2, 3, k4], &[(k4, "up")], Duration::from_secs(90)).await;
    stop.store(true, Ordering::Relaxed);
    let acked = writing.await.expect("writer");
    assert!(!acked.is_empty());

    // Balanced within one partition of even.
    let info = client.refresh_ring().await.expect("ring");
    assert!(info.ring.contains("n4"));
    let shares: BTreeMap<String, usize> = info.ring.shares(3).into_iter().collect();
    let even = 256 * 3 / 4;
    for (id, s) in &shares {
        assert!(
            s.abs_diff(even) <= 1,
            "{id} holds {s}, even is {even}: {shares:?}"
        );
    }

    // The new node holds the keys of the partitions it now owns, locally.
    let all: Vec<String> = (0..10_000).map(|i| format!("k{i}")).collect();
    let mut owned = 0;
    for key in &all {
        let p = info.ring.partition_of(BUCKET.as_bytes(), key.as_bytes());
        if info.ring.preference_list(p, 3).contains(&"n4") {
            owned += 1;
            let r = client
                .get_replica(BUCKET, key, "n4")
                .await
                .expect("n4 copy");
            assert_eq!(r.values, vec![key.as_bytes().to_vec()], "{key} not on n4");
        }
    }
    assert!(
        owned > 5000,
        "n4 should own about 3/4 of the keys, owns {owned}"
    );

    // Every acknowledged write reads back with R=quorum.
    for key in all.iter().chain(&acked) {
        let r = client.get(BUCKET, key, Level::Quorum).await.expect("read");
        assert_eq!(r.values, vec![key.as_bytes().to_vec()], "{key} lost");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leaving_node_hands_everything_to_the_others() {
    let mut c = TestCluster::start(4, &["anti_entropy.interval=1h"]).await;
    let client = c.client().await;
    load(&client, "k", 2000).await;
    c.admin().await.leave("n4").await.expect("leave accepted");
    settled(&c, &[1, 2, 3, 4], &[(4, "left")], Duration::from_secs(60)).await;
    let info = client.refresh_ring().await.expect("ring");
    assert!(!info.ring.contains("n4"));
    assert_eq!(info.ring.members().len(), 3);
    // n4 can stop now: everything is on the three others.
    c.kill(4);
    let keys: Vec<String> = (0..2000).map(|i| format!("k{i}")).collect();
    eventually_fully_replicated(&client, &keys, "three nodes hold everything").await;
    // n4 dropped what it no longer owns.
    for key in keys.iter().take(50) {
        let r = client
            .get(BUCKET, key, Level::All)
            .await
            .expect("R=all without n4");
        assert!(r.found);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_a_dead_node_restores_full_replication() {
    let mut c = TestCluster::start(4, &["anti_entropy.interval=1h"]).await;
    let client = c.client().await;
    load(&client, "k", 2000).await;
    c.kill(3);
    c.wait_status(1, 3, "down").await;
    c.admin().await.remove("n3").await.expect("remove accepted");
    settled(&c, &[1, 2, 4], &[(3, "left")], Duration::from_secs(60)).await;
    let keys: Vec<String> = (0..2000).map(|i| format!("k{i}")).collect();
    eventually_fully_replicated(&client, &keys, "every key back on 3 replicas").await;
    let info = client.refresh_ring().await.expect("ring");
    assert!(!info.ring.contains("n3"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_joining_node_killed_mid_transfer_resumes_after_restart() {
    // Small, slow transfer pages so the kill lands mid-transfer.
    let mut c = TestCluster::start(
        3,
        &[
            "anti_entropy.interval=1h",
            "transfers.batch=16",
            "transfers.pause=20ms",
        ],
    )
    .await;
    let client = c.client().await;
    load(&client, "k", 3000).await;
    let k4 = c.add_node();
    poll(Duration::from_secs(30), "transfers under way", || async {
        let Some(st) = c.status_of(1).await else {
            return false;
        };
        st.transfers_pending > 0 && c.log(k4).contains("partition received")
    })
    .await;
    let pending_before = c.status_of(1).await.expect("status").transfers_pending;
    c.kill(k4);
    let received_before = c.log(k4).matches("partition received").count();
    c.restart(k4).await;
    settled(&c, &[1, 2, 3, k4], &[(k4, "up")], Duration::from_secs(120)).await;
    assert!(pending_before > 0);
    let keys: Vec<String> = (0..3000).map(|i| format!("k{i}")).collect();
    eventually_fully_replicated(&client, &keys, "the join completed").await;
    // The restarted node received the rest, not everything again.
    let received = c.log(k4).matches("partition received").count();
    assert!(
        received > received_before,
        "nothing received after the restart"
    );
    let info = client.refresh_ring().await.expect("ring");
    let owned = info.ring.partitions_of("n4", 3).len();
    assert!(
        received <= owned + 8,
        "{received} partitions received for {owned} owned: the transfer started over"
    );
}

/// A ring change ends (and the next one starts) only once every member has acknowledged the
/// ring with its transfers confirmed, so no node's view is two steps behind another's
/// (core `membership`). A member that is down holds it, and status says which.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ring_change_waits_for_a_down_member_and_status_names_it() {
    let mut c = TestCluster::start(4, &["anti_entropy.interval=1h"]).await;
    let client = c.client().await;
    load(&client, "k", 500).await;
    c.kill(3);
    c.wait_status(1, 3, "down").await;
    let k5 = c.add_node();
    poll(
        Duration::from_secs(120),
        "the joiner's transfers confirmed, the change held for n3",
        || async {
            c.status_of(1).await.is_some_and(|st| {
                st.transfers_pending == 0 && st.ring_waits_for == vec!["n3".to_string()]
            })
        },
    )
    .await;
    let held_at = c.status_of(1).await.expect("status").ring_version;
    // Still held a while later: nothing but n3's return lets it finish.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let st = c.status_of(1).await.expect("status");
    assert_eq!(st.ring_version, held_at, "the change finished without n3");
    assert_eq!(st.ring_waits_for, vec!["n3".to_string()]);
    c.restart(3).await;
    settled(
        &c,
        &[1, 2, 3, 4, k5],
        &[(k5, "up")],
        Duration::from_secs(120),
    )
    .await;
    poll(
        Duration::from_secs(120),
        "the change finishes once n3 is back",
        || async {
            c.status_of(1)
                .await
                .is_some_and(|st| st.ring_version > held_at && st.ring_waits_for.is_empty())
        },
    )
    .await;
}
