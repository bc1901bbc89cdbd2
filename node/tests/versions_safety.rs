//! Version counters and causal contexts on real clusters: a dot is never issued twice
//! (after a purge, after restoring an older copy of a data directory), a write's returned
//! context covers only what its writer saw, and contexts are authenticated per key.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use chorus_client::{CausalContext, Client, Error, Level};
use common::{copy_dir, poll, TestCluster};

/// A client whose requests all go to node `k`, which then coordinates every write (N = 3
/// on 3 nodes, so every node is a replica of every key).
async fn pinned(c: &TestCluster, k: usize) -> Client {
    let mut cfg = c.client_config_for(&[k]);
    cfg.token_aware = false;
    Client::connect(cfg).await.expect("connect")
}

fn sorted(mut values: Vec<Vec<u8>>) -> Vec<String> {
    values.sort();
    values
        .into_iter()
        .map(|v| String::from_utf8_lossy(&v).into_owned())
        .collect()
}

fn assert_refused(r: Result<CausalContext, Error>, what: &str) {
    match r {
        Err(Error::BadRequest(m)) => assert!(
            m.contains("causal context is not valid for this key"),
            "{what}: {m}"
        ),
        other => panic!("{what}: expected a bad-request refusal, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recreated_key_keeps_its_value_against_a_context_from_before_the_purge() {
    let c = TestCluster::start(
        3,
        &[
            "tombstones.grace=3s",
            "tombstones.gc_interval=1s",
            "hinted_handoff.expiry=1s",
        ],
    )
    .await;
    let client = pinned(&c, 1).await;
    client
        .put("b", "k", b"v0".to_vec(), None, Level::All)
        .await
        .expect("put v0");
    let ctx = client.get("b", "k", Level::All).await.expect("get").context;
    client
        .delete("b", "k", Some(&ctx), Level::All)
        .await
        .expect("delete");
    // Wait until every replica has purged the tombstone.
    poll(
        Duration::from_secs(30),
        "tombstone purged on every replica",
        || {
            let client = client.clone();
            async move {
                for n in ["n1", "n2", "n3"] {
                    match client.get_replica("b", "k", n).await {
                        Ok(r) if !r.found && r.tombstones == 0 => {}
                        _ => return false,
                    }
                }
                true
            }
        },
    )
    .await;
    client
        .put("b", "k", b"new".to_vec(), None, Level::All)
        .await
        .expect("put new");
    // A write whose context was read before `new` existed must not replace it.
    client
        .put("b", "k", b"late".to_vec(), Some(&ctx), Level::All)
        .await
        .expect("put late");
    let r = client.get("b", "k", Level::All).await.expect("get");
    assert_eq!(
        sorted(r.values),
        ["late", "new"],
        "the acknowledged `new` was lost"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restoring_an_older_data_dir_never_reuses_a_dot() {
    let mut c = TestCluster::start(3, &[]).await;
    let data = c.node_dir(1).join("data");
    let backup = c.node_dir(1).join("data-backup");
    c.kill(1);
    copy_dir(&data, &backup);
    c.restart(1).await;
    c.wait_all_up(Duration::from_secs(30)).await;
    pinned(&c, 1)
        .await
        .put("b", "k", b"aaa".to_vec(), None, Level::All)
        .await
        .expect("put aaa");

    // Put the older copy back.
    c.kill(1);
    std::fs::remove_dir_all(&data).expect("remove data");
    std::fs::rename(&backup, &data).expect("restore data");
    c.restart(1).await;
    c.wait_all_up(Duration::from_secs(30)).await;
    let client = pinned(&c, 1).await;
    client
        .put("b", "k", b"zzz".to_vec(), None, Level::All)
        .await
        .expect("put zzz");
    let r = client.get("b", "k", Level::All).await.expect("get");
    assert_eq!(
        sorted(r.values),
        ["aaa", "zzz"],
        "the acknowledged `aaa` was lost"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_of_writes_with_put_contexts_keeps_a_sibling_it_never_saw() {
    let c = TestCluster::start(3, &[]).await;
    let client = pinned(&c, 1).await;
    client
        .put("b", "k", b"v0".to_vec(), None, Level::All)
        .await
        .expect("put v0");
    let read = client.get("b", "k", Level::All).await.expect("get").context;
    // Someone else writes, concurrently with the writer below, who never reads it.
    client
        .put("b", "k", b"unseen".to_vec(), None, Level::All)
        .await
        .expect("blind put");
    let mut ctx = read;
    for v in ["a1", "a2", "a3"] {
        ctx = client
            .put("b", "k", v.as_bytes().to_vec(), Some(&ctx), Level::All)
            .await
            .expect("put with the previous put's context");
    }
    let r = client.get("b", "k", Level::All).await.expect("get");
    assert_eq!(
        sorted(r.values),
        ["a3", "unseen"],
        "a sibling the writer never saw was dropped"
    );
    // The chain's context stays small.
    assert!(ctx.as_bytes().len() < 200, "{} bytes", ctx.as_bytes().len());
}

/// A context in the unauthenticated form nodes used to accept (format 1, MessagePack of
/// `[(actor, counter)]`), covering the actors of `genuine` (when it is in that form) up to
/// counters near 2^64.
fn forge_near_max(genuine: &[u8]) -> Vec<u8> {
    #[derive(serde::Serialize, serde::Deserialize)]
    struct Actor {
        node: String,
        epoch: u64,
    }
    let mut entries: Vec<(Actor, u64)> = genuine
        .split_first()
        .filter(|(f, _)| **f == 1)
        .and_then(|(_, body)| rmp_serde::from_slice(body).ok())
        .unwrap_or_default();
    if entries.is_empty() {
        entries.push((
            Actor {
                node: "n1".into(),
                epoch: 1,
            },
            0,
        ));
    }
    for e in &mut entries {
        e.1 = u64::MAX - 1;
    }
    let mut out = vec![1u8];
    out.extend(rmp_serde::to_vec_named(&entries).expect("encode"));
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_and_tampered_contexts_are_refused_and_the_key_stays_writable() {
    let c = TestCluster::start(3, &[]).await;
    let client = pinned(&c, 1).await;
    client
        .put("b", "k", b"v0".to_vec(), None, Level::All)
        .await
        .expect("put");
    let genuine = client.get("b", "k", Level::All).await.expect("get").context;
    let forged = CausalContext::from_bytes(forge_near_max(genuine.as_bytes()));
    assert_refused(
        client
            .put("b", "k", b"forged".to_vec(), Some(&forged), Level::All)
            .await,
        "forged context with counters near 2^64",
    );
    let mut tampered = genuine.as_bytes().to_vec();
    let mid = tampered.len() / 2;
    tampered[mid] ^= 1;
    assert_refused(
        client
            .put(
                "b",
                "k",
                b"tampered".to_vec(),
                Some(&CausalContext::from_bytes(tampered)),
                Level::All,
            )
            .await,
        "tampered context",
    );
    // The key still takes ordinary read-modify-writes.
    for v in ["v1", "v2"] {
        let ctx = client.get("b", "k", Level::All).await.expect("get").context;
        client
            .put("b", "k", v.as_bytes().to_vec(), Some(&ctx), Level::All)
            .await
            .expect("put with a read context");
        let r = client.get("b", "k", Level::All).await.expect("get");
        assert_eq!(sorted(r.values), [v]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_context_from_another_key_is_refused() {
    let c = TestCluster::start(3, &[]).await;
    let client = pinned(&c, 1).await;
    for v in ["a", "b"] {
        client
            .put("b", "k1", v.as_bytes().to_vec(), None, Level::All)
            .await
            .expect("put k1");
    }
    client
        .put("b", "k2", b"keep".to_vec(), None, Level::All)
        .await
        .expect("put k2");
    let k1 = client
        .get("b", "k1", Level::All)
        .await
        .expect("get")
        .context;
    assert_refused(
        client
            .put("b", "k2", b"x".to_vec(), Some(&k1), Level::All)
            .await,
        "k1's context used on k2",
    );
    assert_refused(
        client
            .put("other", "k1", b"x".to_vec(), Some(&k1), Level::All)
            .await,
        "k1's context used in another bucket",
    );
    let r = client.get("b", "k2", Level::All).await.expect("get");
    assert_eq!(sorted(r.values), ["keep"]);
}

#[test]
fn a_node_without_a_cluster_secret_refuses_to_start() {
    let dir = std::env::temp_dir().join(format!("chorus-nosecret-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    chorus_node::layout::create(&dir, 1, "127.0.0.1", 7990).expect("layout");
    let path = dir.join("n1").join("node.toml");
    let text = std::fs::read_to_string(&path).expect("read");
    let stripped: String = text
        .lines()
        .filter(|l| !l.trim_start().starts_with("secret"))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_ne!(stripped, text, "the layout wrote a cluster.secret");
    std::fs::write(&path, stripped).expect("write");
    let log = dir.join("server.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_chorus"))
        .arg("server")
        .arg("--config")
        .arg(&path)
        .env_remove("CHORUS_CONFIG")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("run chorus server");
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stderr = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        status.is_some_and(|s| !s.success()),
        "started without a secret: {stderr}"
    );
    assert!(
        stderr.contains("cluster.secret") && stderr.contains("openssl rand -hex 32"),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
