//! Recovery on real clusters: a replica that lost or restored its data doesn't count toward
//! R until it has exchanged with the other replicas, and a removed node that comes back
//! with its old disk doesn't bring deleted keys back.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use chorus_client::proto::NodeStatus;
use chorus_client::{Client, ClientConfig, Error, Level};
use common::{copy_dir, poll, TestCluster};

const BUCKET: &str = "recovery";

/// No background path may deliver the key to the replica that lacks it: only recovery.
const QUIET: &[&str] = &[
    "hinted_handoff.enabled=false",
    "read_repair.enabled=false",
    "anti_entropy.enabled=false",
];

/// [`QUIET`] with a 2 s tombstone grace: a copy over a second old may then predate a purge,
/// so a restored node drops it where it safely can (a younger copy is always kept).
const QUIET_SHORT_GRACE: &[&str] = &[
    "hinted_handoff.enabled=false",
    "read_repair.enabled=false",
    "anti_entropy.enabled=false",
    "tombstones.grace=2s",
    "hinted_handoff.expiry=1s",
];

/// The config that cluster changes (remove) are sent with.
fn admin_config(c: &TestCluster) -> ClientConfig {
    ClientConfig::load(&c.dir.join("admin.toml")).expect("admin config")
}

async fn client_for(c: &TestCluster, nodes: &[usize]) -> Client {
    Client::connect(c.client_config_for(nodes))
        .await
        .expect("connect")
}

/// Node `target` as node `observer` reports it.
async fn node_status(c: &TestCluster, observer: usize, target: usize) -> Option<NodeStatus> {
    let st = c.status_of(observer).await?;
    st.nodes.into_iter().find(|n| n.id == format!("n{target}"))
}

/// Waits until each listed observer sees each listed target as one of `statuses`.
async fn wait_seen(c: &TestCluster, pairs: &[(usize, usize)], statuses: &[&str]) {
    for (o, t) in pairs {
        poll(
            Duration::from_secs(30),
            &format!("n{o} sees n{t} as one of {statuses:?}"),
            || async {
                node_status(c, *o, *t)
                    .await
                    .is_some_and(|n| statuses.contains(&n.status.as_str()))
            },
        )
        .await;
    }
}

fn wipe(dir: &Path) {
    std::fs::remove_dir_all(dir).expect("wipe data dir");
    std::fs::create_dir_all(dir).expect("recreate data dir");
}

/// Node `id` as node `via` reports it in `chorus status --json`.
fn cli_status_of(c: &TestCluster, via: usize, id: &str) -> serde_json::Value {
    let text = std::fs::read_to_string(c.dir.join("client.toml")).expect("client.toml");
    let mut cfg: toml::Table = text.parse().expect("client.toml parses");
    cfg.insert(
        "addresses".into(),
        toml::Value::Array(vec![toml::Value::String(c.address(via))]),
    );
    let cfg = toml::to_string(&cfg).expect("client config");
    let path = c.dir.join(format!("client-n{via}.toml"));
    std::fs::write(&path, cfg).expect("write client config");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_chorus"))
        .arg("--config")
        .arg(&path)
        .args(["status", "--json"])
        .output()
        .expect("chorus status");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("status json: {e}: {}", String::from_utf8_lossy(&out.stderr)));
    v["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .find(|n| n["id"] == id)
        .expect("node in status")
        .clone()
}

/// The read must fail with a quorum error that names the recovering node, never answer
/// "not found".
fn assert_recovering_quorum_error(r: Result<chorus_client::GetResult, Error>, node: &str) {
    match r {
        Err(Error::Quorum { message, .. }) => assert!(
            message.contains("recovering") && message.contains(node),
            "the quorum error should name {node} as recovering: {message}"
        ),
        Ok(v) => panic!(
            "a quorum read answered found={} {:?} while {node} has lost its data and the only other copy is down",
            v.found, v.values
        ),
        Err(e) => panic!("expected a quorum error naming {node}, got: {e}"),
    }
}

/// Case: write k with W=quorum while n3 is down (n1 and n2 acknowledge), stop n1 and n2,
/// `prepare` n2's data directory, start n2 and n3 with n1 down. A quorum read must fail
/// clearly while n2 recovers, and find the value once n1 is back and n2 has exchanged.
async fn lost_replica_case(prepare: impl FnOnce(&TestCluster), reason: &str, c: &mut TestCluster) {
    c.pause(3, true);
    c.wait_status(1, 3, "down").await;
    let client = client_for(c, &[1, 2]).await;
    client
        .put(BUCKET, "k", b"acknowledged".to_vec(), None, Level::Quorum)
        .await
        .expect("quorum write with n3 down");
    c.kill(1);
    c.kill(2);
    c.pause(3, false);
    prepare(c);
    c.restart(2).await;
    wait_seen(c, &[(3, 2)], &["up", "recovering"]).await;
    wait_seen(c, &[(2, 3)], &["up"]).await;

    for via in [2, 3] {
        let r = client_for(c, &[via])
            .await
            .get(BUCKET, "k", Level::Quorum)
            .await;
        assert_recovering_quorum_error(r, "n2");
    }
    // Status says so, with progress (the CLI's JSON). Until a peer's record of n2 reaches
    // it, the reason is still "unconfirmed".
    let deadline = Instant::now() + Duration::from_secs(20);
    let n2 = loop {
        let n2 = cli_status_of(c, 3, "n2");
        if n2["recovery"]["reason"] == reason || Instant::now() > deadline {
            break n2;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(n2["status"], "recovering", "{n2}");
    assert_eq!(n2["recovery"]["reason"], reason, "{n2}");
    let total = n2["recovery"]["partitions_total"].as_u64().unwrap_or(0);
    let done = n2["recovery"]["partitions_exchanged"]
        .as_u64()
        .unwrap_or(u64::MAX);
    assert!(
        total > 0 && done < total,
        "n1 is down, so not every partition: {n2}"
    );

    c.restart(1).await;
    c.wait_status(3, 2, "up").await;
    let got = client_for(c, &[2, 3])
        .await
        .get(BUCKET, "k", Level::Quorum)
        .await
        .expect("quorum read once n2 recovered");
    assert!(got.found, "acknowledged write lost");
    assert_eq!(got.values, vec![b"acknowledged".to_vec()]);
    // n2 pulled it during recovery: its own copy has it.
    let mine = client_for(c, &[2])
        .await
        .get_replica(BUCKET, "k", "n2")
        .await
        .expect("n2's copy");
    assert!(mine.found, "n2 recovered without the acknowledged write");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_wiped_replica_does_not_count_toward_r_until_it_has_exchanged() {
    let mut c = TestCluster::start(3, QUIET).await;
    let data = c.node_dir(2).join("data");
    lost_replica_case(move |_| wipe(&data), "wiped", &mut c).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replica_restored_from_an_older_copy_recovers_before_counting() {
    let mut c = TestCluster::start(3, QUIET_SHORT_GRACE).await;
    // An older copy of n2's data directory, taken while it was stopped.
    let data = c.node_dir(2).join("data");
    let backup = c.dir.join("n2-backup");
    c.kill(2);
    copy_dir(&data, &backup);
    let seen_before = c.log(3).matches("peer started a new run").count();
    c.restart(2).await;
    c.wait_all_up(Duration::from_secs(30)).await;
    // n3 must have learned of n2's new run: that is what tells the copy apart later. (Waited
    // for with a deadline but not required, so that a build without run announcements
    // fails on the read below rather than here.)
    let until = Instant::now() + Duration::from_secs(20);
    while c.log(3).matches("peer started a new run").count() <= seen_before
        && Instant::now() < until
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    lost_replica_case(
        move |_| {
            wipe(&data);
            copy_dir(&backup, &data);
        },
        "restored",
        &mut c,
    )
    .await;
    assert!(
        c.log(2).contains("restored data dropped"),
        "n2 should say it dropped the restored copy"
    );
}

/// Case: a node comes back from an older copy of its data directory while the other
/// replicas of its partitions have lost their disks. The copy is then the only one left of
/// what it holds: it must be kept (and served once recovered), not dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "open: three disk faults at once, beyond the one-lost-disk promise; two wiped nodes \
            can confirm each other as new and count as whole (docs/guarantees.md, What Chorus \
            does not promise). Fails intermittently; run with --ignored"]
async fn a_restored_copy_is_kept_where_the_other_replicas_are_recovering() {
    let mut c = TestCluster::start(4, QUIET_SHORT_GRACE).await;
    let client = client_for(&c, &[1, 2, 3, 4]).await;
    let info = client.refresh_ring().await.expect("ring");
    // A key n4 doesn't replicate: n1, n2 and n3 hold it.
    let key = (0..10_000)
        .map(|i| format!("k{i}"))
        .find(|k| {
            let p = chorus_ring::partition_for(
                info.ring.partition_count(),
                BUCKET.as_bytes(),
                k.as_bytes(),
            );
            !info.ring.preference_list(p, 3).contains(&"n4")
        })
        .expect("a key off n4");
    client
        .put(BUCKET, &key, b"only-in-the-copy".to_vec(), None, Level::All)
        .await
        .expect("put");
    // A copy of n1's data directory, taken while it was stopped; n4 then learns of a newer
    // run of n1, which is what tells the copy apart later.
    let data = |c: &TestCluster, k: usize| c.node_dir(k).join("data");
    let backup = c.dir.join("n1-backup");
    c.kill(1);
    copy_dir(&data(&c, 1), &backup);
    let seen_before = c.log(4).matches("peer started a new run").count();
    c.restart(1).await;
    poll(
        Duration::from_secs(30),
        "n4 learns of n1's new run",
        || async { c.log(4).matches("peer started a new run").count() > seen_before },
    )
    .await;
    // Past half the grace, the copy may predate a purge: only the other replicas' state
    // can then keep it (a deliberate wait, not a poll: it ages the copy).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // n2 and n3 lose their disks; n1 is put back to the copy.
    for k in [1, 2, 3] {
        c.kill(k);
    }
    wipe(&data(&c, 2));
    wipe(&data(&c, 3));
    wipe(&data(&c, 1));
    copy_dir(&backup, &data(&c, 1));
    c.restart(2).await;
    c.restart(3).await;
    c.restart(1).await;
    poll(
        Duration::from_secs(90),
        "the value held only by the restored copy is read back",
        || async {
            client
                .get(BUCKET, &key, Level::All)
                .await
                .is_ok_and(|r| r.values == vec![b"only-in-the-copy".to_vec()])
        },
    )
    .await;
    assert!(
        c.log(1).contains("where one is down or recovering"),
        "n1 should say it kept the restored copy for the other replicas' sake"
    );
}

/// Case: a node is removed while down, a key it held is deleted and the tombstone purged on
/// the new replicas; the node comes back with its old disk. The key must stay deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_removed_node_back_with_its_old_disk_does_not_resurrect_deleted_keys() {
    let sets = [
        "tombstones.grace=3s",
        "tombstones.gc_interval=1s",
        "hinted_handoff.expiry=1s",
        "anti_entropy.interval=1s",
    ];
    let mut c = TestCluster::start(4, &sets).await;
    let client = client_for(&c, &[1, 2, 3, 4]).await;
    client
        .put(BUCKET, "doomed", b"old".to_vec(), None, Level::All)
        .await
        .expect("put");
    let info = client.refresh_ring().await.expect("ring");
    let p = chorus_ring::partition_for(info.ring.partition_count(), BUCKET.as_bytes(), b"doomed");
    let pref: Vec<String> = info
        .ring
        .preference_list(p, 3)
        .into_iter()
        .map(str::to_string)
        .collect();
    let victim_id = pref
        .iter()
        .find(|n| n.as_str() != "n1")
        .expect("a replica other than n1")
        .clone();
    let victim: usize = victim_id[1..].parse().expect("node number");
    let others: Vec<usize> = (1..=4).filter(|k| *k != victim).collect();

    c.kill(victim);
    for k in &others {
        c.wait_status(*k, victim, "down").await;
    }
    let admin = Client::connect(admin_config(&c)).await.expect("admin");
    admin.remove(&victim_id).await.expect("remove accepted");
    poll(Duration::from_secs(60), "the removal completes", || async {
        for k in &others {
            let Some(st) = c.status_of(*k).await else {
                return false;
            };
            let left = st
                .nodes
                .iter()
                .any(|n| n.id == victim_id && n.status == "left");
            if !left || st.transfers_pending > 0 {
                return false;
            }
        }
        true
    })
    .await;

    let live = client_for(&c, &others).await;
    // Until the ring change ends, a partition whose new replicas not every member holds
    // yet still reads from the old set, which names the removed node: R=all waits too.
    poll(
        Duration::from_secs(60),
        "an R=all read once the change ends",
        || async { live.get(BUCKET, "doomed", Level::All).await.is_ok() },
    )
    .await;
    let read = live
        .get(BUCKET, "doomed", Level::All)
        .await
        .expect("read before delete");
    assert!(read.found);
    // Until the ring change ends (every member has acknowledged it), writes must also
    // reach the old replica set, which still names the removed node: W=all fails there
    // until then (docs/guarantees.md, Membership changes).
    poll(
        Duration::from_secs(60),
        "a W=all delete once the change ends",
        || async {
            live.delete(BUCKET, "doomed", Some(&read.context), Level::All)
                .await
                .is_ok()
        },
    )
    .await;
    // Wait until the tombstone is purged on every current replica.
    poll(
        Duration::from_secs(60),
        "the tombstone is purged on the new replicas",
        || async {
            let Ok(info) = live.refresh_ring().await else {
                return false;
            };
            for n in info.ring.preference_list(p, 3) {
                match live.get_replica(BUCKET, "doomed", n).await {
                    Ok(r) if !r.found && r.tombstones == 0 => {}
                    _ => return false,
                }
            }
            true
        },
    )
    .await;

    c.restart(victim).await;
    // Long enough for many anti-entropy rounds (1 s) and the drop of unowned partitions.
    let until = Instant::now() + Duration::from_secs(15);
    while Instant::now() < until {
        for k in &others {
            let r = client_for(&c, &[*k])
                .await
                .get(BUCKET, "doomed", Level::One)
                .await
                .expect("read");
            assert!(
                !r.found,
                "deleted key came back via n{k} after the removed {victim_id} returned: {:?}",
                r.values
            );
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let until = Instant::now() + Duration::from_secs(10);
    while !c
        .log(victim)
        .contains("left or was removed from the cluster")
    {
        assert!(
            Instant::now() < until,
            "the removed node should say so in its log:\n{}",
            c.log(victim)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
