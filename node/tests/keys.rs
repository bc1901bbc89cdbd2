//! Key listing (`chorus keys`) and bucket truncation (`chorus truncate`) on real clusters:
//! paging returns every key of the bucket exactly once and in order, prefixes and deletes
//! filter, a ring change doesn't lose keys, a listing with a partition out of reach fails;
//! truncate needs an admin, empties every replica, spares other buckets, and refuses to
//! run with an owner down, with no resurrection after the retry.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use chorus_client::{Client, Level, WriteEntry};
use common::{poll, TestCluster};

const BIN: &str = env!("CARGO_BIN_EXE_chorus");

/// Runs the CLI with a config; returns (success, stdout, stderr).
fn chorus(cfg: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(BIN)
        .arg("--config")
        .arg(cfg)
        .args(args)
        .env_remove("CHORUS_CONFIG")
        .output()
        .expect("run chorus");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Pages through `chorus keys --json` with `--limit limit`; returns the keys in the order
/// printed, and the number of pages.
fn list_all(cfg: &Path, bucket: &str, prefix: &str, limit: usize) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut after: Option<String> = None;
    for _ in 0..1000 {
        let limit_s = limit.to_string();
        let mut args = vec!["keys", "--bucket", bucket, "--limit", &limit_s, "--json"];
        if !prefix.is_empty() {
            args.extend(["--prefix", prefix]);
        }
        if let Some(a) = &after {
            args.extend(["--after", a.as_str()]);
        }
        let (ok, stdout, stderr) = chorus(cfg, &args);
        if !ok {
            return Err(stderr);
        }
        let v: serde_json::Value = serde_json::from_str(stdout.trim()).expect("json");
        let keys = v["keys"].as_array().expect("keys");
        assert!(keys.len() <= limit, "page over the limit");
        out.extend(keys.iter().map(|k| k.as_str().expect("key").to_string()));
        match v["next"].as_str() {
            Some(t) => after = Some(t.to_string()),
            None => {
                assert!(v["next"].is_null());
                return Ok(out);
            }
        }
    }
    panic!("listing never ended");
}

/// Keys with shared prefixes: `user/…`, `us/…` (a prefix of `user/`) and `item/…`.
fn key_names(count: usize) -> Vec<String> {
    (0..count)
        .map(|i| format!("{}/{i:04}", ["user", "us", "item"][i % 3]))
        .collect()
}

/// Writes every key; a key that fails (a node of a cluster just started may still refuse
/// writes for a moment) is written again until it succeeds, for up to 30 s.
/// Writes reach every replica: a listing asks one replica per partition, so a key written
/// to a quorum alone may not be listed yet (docs/guarantees.md, Listing and truncation).
async fn write(client: &Client, bucket: &str, keys: &[String]) {
    write_at(client, bucket, keys, Level::All).await
}

async fn write_at(client: &Client, bucket: &str, keys: &[String], level: Level) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    for chunk in keys.chunks(500) {
        let mut left: Vec<&String> = chunk.iter().collect();
        while !left.is_empty() {
            let items = left
                .iter()
                .map(|k| WriteEntry {
                    key: k.as_bytes().to_vec(),
                    value: Some(format!("v-{k}").into_bytes()),
                    context: None,
                })
                .collect();
            let out = client
                .put_many(bucket, items, level)
                .await
                .expect("put_many");
            let failed: Vec<String> = out
                .iter()
                .filter_map(|r| r.result.as_ref().err().map(|e| e.to_string()))
                .collect();
            assert!(
                failed.is_empty() || std::time::Instant::now() < deadline,
                "writes still failing: {failed:?}"
            );
            left = left
                .into_iter()
                .zip(&out)
                .filter(|(_, r)| r.result.is_err())
                .map(|(k, _)| k)
                .collect();
            if !left.is_empty() {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

fn sorted(keys: impl IntoIterator<Item = String>) -> Vec<String> {
    keys.into_iter()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paging_lists_every_key_of_the_bucket_once_in_order() {
    let mut c = TestCluster::start(3, &[]).await;
    let client = c.client().await;
    let keys = key_names(1250);
    // A bucket whose name starts like the other's, holding the same keys.
    write(&client, "feat", &keys).await;
    write(&client, "featx", &keys).await;
    let cfg = c.dir.join("client.toml");

    let listed = list_all(&cfg, "feat", "", 100).expect("list");
    assert_eq!(listed, sorted(keys.clone()), "every key once, in order");

    let user = list_all(&cfg, "feat", "user/", 100).expect("list");
    assert_eq!(
        user,
        sorted(keys.iter().filter(|k| k.starts_with("user/")).cloned())
    );
    assert!(!user.is_empty());
    let us = list_all(&cfg, "feat", "us", 37).expect("list");
    assert_eq!(
        us,
        sorted(keys.iter().filter(|k| k.starts_with("us")).cloned())
    );

    // Deleted keys are not listed.
    let gone: Vec<String> = keys.iter().step_by(25).cloned().collect();
    for k in &gone {
        let got = client.get("feat", k, Level::Quorum).await.expect("get");
        client
            .delete("feat", k, Some(&got.context), Level::All)
            .await
            .expect("delete");
    }
    let listed = list_all(&cfg, "feat", "", 100).expect("list");
    assert_eq!(
        listed,
        sorted(keys.iter().filter(|k| !gone.contains(k)).cloned())
    );

    // Plain output: a key a line, then the token.
    let (ok, out, _) = chorus(&cfg, &["keys", "--bucket", "featx", "--limit", "3"]);
    assert!(ok);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 4, "{out}");
    assert_eq!(
        lines[..3],
        sorted(keys.clone())[..3]
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()[..]
    );
    assert!(lines[3].starts_with("next: "));

    // A malformed token and an oversized limit are refused.
    let (ok, _, err) = chorus(&cfg, &["keys", "--bucket", "feat", "--after", "bogus"]);
    assert!(!ok && err.contains("malformed page token"), "{err}");
    let (ok, _, err) = chorus(&cfg, &["keys", "--bucket", "feat", "--limit", "20000"]);
    assert!(!ok && err.contains("maximum"), "{err}");

    // With a node down the others still cover every partition (N = 3).
    c.kill(3);
    let listed = list_all(&cfg, "featx", "", 500).expect("list with a node down");
    assert_eq!(listed, sorted(keys));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_without_a_reachable_replica_fails_the_listing() {
    let mut c = TestCluster::start(4, &["cluster.n=2"]).await;
    let client = c.client().await;
    write(&client, "b", &key_names(200)).await;
    let cfg = c.dir.join("client.toml");
    assert_eq!(list_all(&cfg, "b", "", 1000).expect("list").len(), 200);
    // Two of four nodes down: some partition has neither of its two replicas.
    c.kill(3);
    c.kill(4);
    let err = list_all(&cfg, "b", "", 1000).expect_err("a partial listing");
    assert!(err.contains("no reachable replica for partition"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_during_a_ring_change_returns_every_key() {
    // Slow transfers, so the whole listing runs while partitions move.
    let mut c = TestCluster::start(3, &["transfers.batch=5", "transfers.pause=200ms"]).await;
    let client = c.client().await;
    let keys = key_names(1250);
    write(&client, "feat", &keys).await;
    write(&client, "featx", &keys).await;
    let k4 = c.add_node();
    poll(
        Duration::from_secs(30),
        "transfers to the new node start",
        || {
            let c = &c;
            async move {
                c.status_of(1)
                    .await
                    .is_some_and(|st| st.transfers_pending > 0)
            }
        },
    )
    .await;
    let cfg = c.dir.join("client.toml");
    let listed = list_all(&cfg, "feat", "", 100).expect("list");
    assert_eq!(listed, sorted(keys.clone()));
    // Through the joining node as coordinator as well.
    let cfg4 = common::single_node_config(&c, "client.toml", k4);
    let listed = list_all(&cfg4, "featx", "", 100).expect("list via the new node");
    assert_eq!(listed, sorted(keys));
    let st = c.status_of(1).await.expect("status");
    assert!(
        st.transfers_pending > 0,
        "the ring change ended before the listings did; the test proves nothing"
    );
}

/// Every key of `bucket` reads not-found on every one of `nodes`' own copies.
async fn gone_everywhere(client: &Client, bucket: &str, keys: &[String], nodes: &[&str]) -> bool {
    for k in keys {
        for n in nodes {
            match client.get_replica(bucket, k, n).await {
                Ok(g) if !g.found => {}
                _ => return false,
            }
        }
    }
    true
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncate_needs_an_admin_and_empties_every_replica_of_the_bucket_only() {
    let c = TestCluster::start(3, &[]).await;
    let client = c.client().await;
    let keys = key_names(300);
    write(&client, "t", &keys).await;
    write(&client, "keep", &keys).await;
    let cfg = c.dir.join("client.toml");
    let admin = c.dir.join("admin.toml");

    let (ok, _, err) = chorus(&cfg, &["truncate", "--bucket", "t"]);
    assert!(!ok && err.contains("permission denied"), "{err}");
    assert_eq!(list_all(&cfg, "t", "", 1000).expect("list").len(), 300);

    let (ok, out, err) = chorus(&admin, &["truncate", "--bucket", "t", "--json"]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).expect("json");
    assert_eq!(v["deleted"], 300, "{out}");

    assert!(gone_everywhere(&client, "t", &keys, &["n1", "n2", "n3"]).await);
    assert!(list_all(&cfg, "t", "", 1000).expect("list").is_empty());
    // The other bucket is untouched.
    assert_eq!(
        list_all(&cfg, "keep", "", 1000).expect("list"),
        sorted(keys.clone())
    );
    for k in keys.iter().step_by(10) {
        let g = client.get("keep", k, Level::All).await.expect("get");
        assert_eq!(g.values, vec![format!("v-{k}").into_bytes()]);
    }
    // A second truncate finds nothing left.
    let (ok, out, _) = chorus(&admin, &["truncate", "--bucket", "t"]);
    assert!(ok && out.contains("0 keys deleted"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncate_with_an_owner_down_fails_naming_it_and_nothing_resurrects_after_the_retry() {
    let mut c = TestCluster::start(3, &[]).await;
    let client = c.client().await;
    let keys = key_names(200);
    write(&client, "t", &keys[..150]).await;
    c.kill(3);
    c.wait_status(1, 3, "down").await;
    c.wait_status(2, 3, "down").await;
    // Written while n3 is down: n3 lacks them, and hints for it are held.
    write_at(&client, "t", &keys[150..], Level::Quorum).await;
    let admin = c.dir.join("admin.toml");
    let cfg = c.dir.join("client.toml");

    // It can't succeed with an owner down, by design.
    let (ok, _, err) = chorus(&admin, &["truncate", "--bucket", "t"]);
    assert!(!ok, "truncate succeeded with n3 down");
    assert!(err.contains("n3") && err.contains("retry"), "{err}");
    assert_eq!(list_all(&cfg, "t", "", 1000).expect("list").len(), 200);

    c.restart(3).await;
    c.wait_all_up(Duration::from_secs(30)).await;
    let (ok, _, err) = chorus(&admin, &["truncate", "--bucket", "t"]);
    assert!(ok, "retry failed: {err}");

    // Hints and anti-entropy carry the old values to n3 after its own truncation; the
    // other owners' tombstones cover them, so every copy ends up deleted.
    let repair = |k: usize| {
        let cfg = c.admin_config_for(&[k]);
        async move {
            if let Ok(a) = Client::connect(cfg).await {
                let _ = a.repair().await;
            }
        }
    };
    poll(Duration::from_secs(60), "every copy deleted", || {
        let client = &client;
        let keys = &keys;
        let repair = &repair;
        async move {
            for k in 1..=3 {
                repair(k).await;
            }
            gone_everywhere(client, "t", keys, &["n1", "n2", "n3"]).await
        }
    })
    .await;
    for k in &keys {
        let g = client.get("t", k, Level::All).await.expect("get");
        assert!(!g.found, "{k} came back");
    }
    assert!(list_all(&cfg, "t", "", 1000).expect("list").is_empty());
}
