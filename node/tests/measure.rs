//! Measurements, not pass/fail tests: run with
//! `cargo test --release -p chorus-node --test measure -- --ignored --nocapture`.
//! They print numbers quoted in the docs; they assert only that the work completed.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use chorus_client::{Client, Level};
use common::{poll, TestCluster};

async fn load(client: &Client, prefix: &str, count: usize, w: Level) {
    let client = Arc::new(client.clone());
    let mut tasks = tokio::task::JoinSet::new();
    let workers = 32;
    for t in 0..workers {
        let client = client.clone();
        let prefix = prefix.to_string();
        tasks.spawn(async move {
            for i in (t..count).step_by(workers) {
                let key = format!("{prefix}{i}");
                client
                    .put("m", &key, vec![b'x'; 100], None, w)
                    .await
                    .expect("load");
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.expect("loader");
    }
}

async fn status_of(c: &TestCluster, k: usize) -> chorus_client::proto::StatusInfo {
    let cl = Client::connect(c.client_config_for(&[k]))
        .await
        .expect("connect");
    cl.status().await.expect("status")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn measure_hint_replay_of_10000_keys() {
    let mut c = TestCluster::start(
        3,
        &["read_repair.enabled=false", "anti_entropy.enabled=false"],
    )
    .await;
    let client = c.client().await;
    c.kill(3);
    c.wait_status(1, 3, "down").await;
    c.wait_status(2, 3, "down").await;
    let t = Instant::now();
    load(&client, "h", 10_000, Level::Quorum).await;
    println!("loaded 10000 keys with n3 down in {:?}", t.elapsed());
    let mut held = 0;
    for k in [1, 2] {
        held += status_of(&c, k)
            .await
            .nodes
            .iter()
            .map(|n| n.hints_pending)
            .sum::<u64>();
    }
    println!("hints held for n3: {held}");
    // From the restart itself: n3 comes up, the failure detectors see it, replay runs.
    let t = Instant::now();
    c.restart(3).await;
    println!("n3 serving {:?} after the restart began", t.elapsed());
    poll(Duration::from_secs(120), "hints drained", || async {
        let a = status_of(&c, 1).await;
        let b = status_of(&c, 2).await;
        a.nodes.iter().chain(&b.nodes).all(|n| n.hints_pending == 0)
    })
    .await;
    println!(
        "{held} hints delivered {:?} after the restart began",
        t.elapsed()
    );
    for k in [1, 2] {
        for line in c.log(k).lines().filter(|l| l.contains("hint replay")) {
            println!("n{k}: {line}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn measure_anti_entropy_bytes_for_one_key_in_100000() {
    let mut c = TestCluster::start(
        3,
        &[
            "read_repair.enabled=false",
            "hinted_handoff.enabled=false",
            "anti_entropy.interval=1h",
        ],
    )
    .await;
    let client = c.client().await;
    let t = Instant::now();
    load(&client, "a", 100_000, Level::All).await;
    println!("loaded 100000 keys (W=all) in {:?}", t.elapsed());

    let n1 = Client::connect(c.admin_config_for(&[1])).await.expect("n1");
    let round = |before: u64| {
        let n1 = n1.clone();
        async move {
            n1.repair().await.expect("repair");
            poll(Duration::from_secs(60), "round done", || async {
                n1.status()
                    .await
                    .expect("status")
                    .convergence
                    .anti_entropy_rounds
                    > before
                    && n1
                        .status()
                        .await
                        .expect("status")
                        .convergence
                        .partitions
                        .iter()
                        .all(|p| p.ms_since_clean.is_some_and(|ms| ms < 1000))
            })
            .await;
        }
    };
    let st = n1.status().await.expect("status").convergence;
    round(st.anti_entropy_rounds).await;
    let clean = n1.status().await.expect("status").convergence;
    println!(
        "clean round: {} bytes exchanged",
        clean.anti_entropy_bytes - st.anti_entropy_bytes
    );

    c.kill(3);
    c.wait_status(1, 3, "down").await;
    client
        .put("m", "the-one", b"missed".to_vec(), None, Level::Quorum)
        .await
        .expect("put");
    c.restart(3).await;
    c.wait_status(1, 3, "up").await;
    let before = n1.status().await.expect("status").convergence;
    round(before.anti_entropy_rounds).await;
    let after = n1.status().await.expect("status").convergence;
    let r = client
        .get_replica("m", "the-one", "n3")
        .await
        .expect("replica");
    assert_eq!(r.values, vec![b"missed".to_vec()]);
    println!(
        "repair round for 1 key among 100000: {} bytes exchanged, {} keys repaired",
        after.anti_entropy_bytes - before.anti_entropy_bytes,
        after.anti_entropy_keys_repaired - before.anti_entropy_keys_repaired
    );
}

/// p50 / p99 / max of latencies, in microseconds.
fn percentiles(mut d: Vec<Duration>) -> (u128, u128, u128) {
    d.sort();
    let at = |q: f64| d[((d.len() as f64 - 1.0) * q).round() as usize].as_micros();
    (at(0.5), at(0.99), at(1.0))
}

/// Sequential reads and writes (W=R=quorum) until `stop`; their latencies.
fn prober(
    client: Client,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> tokio::task::JoinHandle<Vec<Duration>> {
    tokio::spawn(async move {
        let mut lat = Vec::new();
        let mut i = 0u64;
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            let key = format!("probe{}", i % 1000);
            let t = Instant::now();
            let ok = if i.is_multiple_of(2) {
                client.get("m", &key, Level::Quorum).await.is_ok()
            } else {
                client
                    .put("m", &key, vec![b'p'; 100], None, Level::Quorum)
                    .await
                    .is_ok()
            };
            if ok {
                lat.push(t.elapsed());
            }
            i += 1;
        }
        lat
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn measure_join_transfer_rate_and_client_latency() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let mut c = TestCluster::start(3, &["anti_entropy.interval=1h"]).await;
    let client = c.client().await;
    let value_size = 1024;
    let keys = 50_000;
    {
        let client = Arc::new(client.clone());
        let mut tasks = tokio::task::JoinSet::new();
        for t in 0..32 {
            let client = client.clone();
            tasks.spawn(async move {
                for i in (t..keys).step_by(32) {
                    client
                        .put(
                            "m",
                            format!("j{i}"),
                            vec![b'v'; value_size],
                            None,
                            Level::All,
                        )
                        .await
                        .expect("load");
                }
            });
        }
        while let Some(r) = tasks.join_next().await {
            r.expect("loader");
        }
    }
    let stop = Arc::new(AtomicBool::new(false));
    let before = prober(client.clone(), stop.clone());
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::Relaxed);
    let before = before.await.expect("prober");

    let stop = Arc::new(AtomicBool::new(false));
    let during = prober(client.clone(), stop.clone());
    let t = Instant::now();
    let k4 = c.add_node();
    poll(Duration::from_secs(300), "join settles", || async {
        let Some(st) = c.status_of(1).await else {
            return false;
        };
        st.transfers_pending == 0 && st.nodes.iter().any(|n| n.id == "n4" && n.status == "up")
    })
    .await;
    let took = t.elapsed();
    stop.store(true, Ordering::Relaxed);
    let during = during.await.expect("prober");
    let moved: u64 = c
        .log(k4)
        .lines()
        .filter(|l| l.contains("partition received"))
        .filter_map(|l| {
            l.split("keys=")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum();
    let mb = moved as f64 * (value_size as f64 + 100.0) / 1e6;
    println!(
        "join: {moved} keys (~{mb:.1} MB) moved to n4 in {took:?}: {:.1} MB/s",
        mb / took.as_secs_f64()
    );
    let (p50, p99, max) = percentiles(before);
    println!("client latency before the join: p50 {p50} us, p99 {p99} us, max {max} us");
    let (p50, p99, max) = percentiles(during);
    println!("client latency during the join: p50 {p50} us, p99 {p99} us, max {max} us");
}
