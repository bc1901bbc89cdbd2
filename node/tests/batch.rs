//! Batch reads and writes (`get_many`, `put_many`, and the `get-many` / `put-many`
//! commands) on real 3-node clusters: order, missing keys, contexts, the key limit,
//! per-key failures and a node down.

mod common;

use std::io::Write as _;
use std::process::{Command, Stdio};

use std::time::Duration;

use chorus_client::{Client, Error, Level, WriteEntry};
use common::{path_str, poll, TestCluster};

fn put(key: &str, value: &str) -> WriteEntry {
    WriteEntry {
        key: key.as_bytes().to_vec(),
        value: Some(value.as_bytes().to_vec()),
        context: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_keep_order_report_missing_and_failed_keys_and_resolve_siblings() {
    let c = TestCluster::start(
        3,
        &["limits.max_batch_keys=60", "limits.max_value_bytes=4096"],
    )
    .await;
    let client = c.client().await;

    // 50 writes, one of them too large: that key fails, the others succeed.
    let mut items: Vec<WriteEntry> = (0..50)
        .map(|i| put(&format!("k{i}"), &format!("v{i}")))
        .collect();
    items[7].value = Some(vec![b'x'; 5000]);
    let out = client
        .put_many("b", items, Level::Quorum)
        .await
        .expect("put_many");
    assert_eq!(out.len(), 50);
    for (i, r) in out.iter().enumerate() {
        assert_eq!(
            r.key,
            format!("k{i}").into_bytes(),
            "outcomes in the order given"
        );
        if i == 7 {
            assert!(
                matches!(r.result, Err(Error::TooLarge(_))),
                "{:?}",
                r.result
            );
        } else {
            assert!(r.result.is_ok(), "k{i}: {:?}", r.result);
        }
    }

    // Reversed order, with keys never written mixed in.
    let mut keys: Vec<String> = (0..50).rev().map(|i| format!("k{i}")).collect();
    keys.insert(3, "missing-a".into());
    keys.push("missing-b".into());
    let got = client
        .get_many("b", &keys, Level::Quorum)
        .await
        .expect("get_many");
    assert_eq!(got.len(), keys.len());
    for (k, r) in keys.iter().zip(&got) {
        assert_eq!(r.key, k.as_bytes(), "results in the order given");
        let g = r.result.as_ref().expect("each key readable");
        if k.starts_with("missing") || k == "k7" {
            assert!(!g.found && g.values.is_empty(), "{k}: {g:?}");
        } else {
            let want = format!("v{}", &k[1..]);
            assert!(g.found, "{k}");
            assert_eq!(g.values, vec![want.into_bytes()]);
        }
    }

    // Two blind writes make siblings; the context from get_many replaces both.
    client
        .put("b", "s", b"one".to_vec(), None, Level::All)
        .await
        .expect("put");
    client
        .put("b", "s", b"two".to_vec(), None, Level::All)
        .await
        .expect("put");
    let got = client
        .get_many("b", &["s"], Level::All)
        .await
        .expect("get_many");
    let g = got[0].result.as_ref().expect("read s");
    assert_eq!(g.values.len(), 2, "siblings: {g:?}");
    let entry = WriteEntry {
        key: b"s".to_vec(),
        value: Some(b"merged".to_vec()),
        context: Some(g.context.clone()),
    };
    let out = client
        .put_many("b", vec![entry], Level::All)
        .await
        .expect("put_many");
    assert!(out[0].result.is_ok(), "{:?}", out[0].result);
    let after = client.get("b", "s", Level::All).await.expect("get");
    assert_eq!(after.values, vec![b"merged".to_vec()], "siblings resolved");

    // A delete in a batch, with the context of a batch read.
    let got = client
        .get_many("b", &["k1"], Level::Quorum)
        .await
        .expect("get_many");
    let ctx = got[0].result.as_ref().expect("read k1").context.clone();
    let del = WriteEntry {
        key: b"k1".to_vec(),
        value: None,
        context: Some(ctx),
    };
    let out = client
        .put_many("b", vec![del], Level::Quorum)
        .await
        .expect("delete");
    assert!(out[0].result.is_ok(), "{:?}", out[0].result);
    assert!(
        !client
            .get("b", "k1", Level::Quorum)
            .await
            .expect("get")
            .found
    );

    // Over the limit: the whole batch is refused, saying which limit.
    let many: Vec<String> = (0..61).map(|i| format!("k{i}")).collect();
    match client.get_many("b", &many, Level::Quorum).await {
        Err(Error::BadRequest(m)) => assert!(m.contains("max_batch_keys"), "{m}"),
        other => panic!("expected a refused batch, got {other:?}"),
    }
    let items: Vec<WriteEntry> = many.iter().map(|k| put(k, "v")).collect();
    match client.put_many("b", items, Level::Quorum).await {
        Err(Error::BadRequest(m)) => assert!(m.contains("max_batch_keys"), "{m}"),
        other => panic!("expected a refused batch, got {other:?}"),
    }
    // Exactly at the limit is fine.
    let at_limit: Vec<String> = (0..60).map(|i| format!("k{i}")).collect();
    assert_eq!(
        client
            .get_many("b", &at_limit, Level::One)
            .await
            .expect("at limit")
            .len(),
        60
    );

    // The command line: JSON lines in, per-key outcomes out, then get-many's shape.
    let cfg = path_str(&c.dir.join("client.toml"));
    let mut child = Command::new(env!("CARGO_BIN_EXE_chorus"))
        .args(["--config", &cfg, "put-many", "--bucket", "cli", "--json"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn put-many");
    let big = "y".repeat(5000);
    let input = format!(
        "{{\"key\":\"a\",\"value\":\"1\"}}\n{{\"key\":\"big\",\"value\":\"{big}\"}}\n{{\"key\":\"b\",\"value\":\"2\",\"context\":null}}\n"
    );
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write stdin");
    let out = child.wait_with_output().expect("put-many");
    assert!(out.status.success(), "put-many failed");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("put-many JSON");
    let results = v["results"].as_array().expect("results");
    let keys: Vec<&str> = results
        .iter()
        .map(|r| r["key"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(keys, ["a", "big", "b"]);
    assert_eq!(results[0]["ok"], true);
    assert!(results[0]["error"].is_null());
    assert_eq!(results[1]["ok"], false);
    assert!(
        results[1]["error"]
            .as_str()
            .unwrap_or("")
            .contains("exceeds"),
        "{v}"
    );
    assert_eq!(results[2]["ok"], true);

    let out = Command::new(env!("CARGO_BIN_EXE_chorus"))
        .args([
            "--config", &cfg, "get-many", "b", "nope", "a", "--bucket", "cli", "--json",
        ])
        .output()
        .expect("get-many");
    assert!(out.status.success(), "get-many failed");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("get-many JSON");
    let results = v["results"].as_array().expect("results");
    assert_eq!(results.len(), 3);
    assert_eq!(results[0]["key"], "b");
    assert_eq!(results[0]["found"], true);
    assert_eq!(results[0]["values"], serde_json::json!(["2"]));
    assert!(results[0]["context"].is_string());
    assert_eq!(results[1]["key"], "nope");
    assert_eq!(results[1]["found"], false);
    assert_eq!(results[1]["values"], serde_json::json!([]));
    assert_eq!(results[2]["key"], "a");

    // The context printed by get-many is one put-many takes.
    let ctx = results[2]["context"].as_str().expect("context").to_string();
    let mut child = Command::new(env!("CARGO_BIN_EXE_chorus"))
        .args(["--config", &cfg, "put-many", "--bucket", "cli", "--json"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn put-many");
    let line = format!("{{\"key\":\"a\",\"value\":\"3\",\"context\":\"{ctx}\"}}\n");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(line.as_bytes())
        .expect("write stdin");
    let out = child.wait_with_output().expect("put-many");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("put-many JSON");
    assert_eq!(v["results"][0]["ok"], true, "{v}");
    let a = client.get("cli", "a", Level::All).await.expect("get a");
    assert_eq!(
        a.values,
        vec![b"3".to_vec()],
        "the context replaced the old value"
    );

    // --ttl: the batch's puts expire; a bad duration is refused before anything is sent.
    let mut child = Command::new(env!("CARGO_BIN_EXE_chorus"))
        .args([
            "--config", &cfg, "put-many", "--bucket", "cli", "--ttl", "90s", "--json",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn put-many --ttl");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"{\"key\":\"ttl\",\"value\":\"t\"}\n")
        .expect("write stdin");
    let out = child.wait_with_output().expect("put-many --ttl");
    assert!(out.status.success(), "put-many --ttl failed");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("put-many JSON");
    assert_eq!(v["results"][0]["ok"], true, "{v}");
    let t = client.get("cli", "ttl", Level::All).await.expect("get ttl");
    assert_eq!(t.values, vec![b"t".to_vec()], "90 s haven't passed");
    for bad in ["0s", "20years", "soon"] {
        let out = Command::new(env!("CARGO_BIN_EXE_chorus"))
            .args(["--config", &cfg, "put-many", "--ttl", bad, "--json"])
            .stdin(Stdio::null())
            .output()
            .expect("put-many --ttl");
        assert!(!out.status.success(), "--ttl {bad} was taken");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("--ttl"), "{bad}: {err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_meet_quorum_per_key_with_a_node_down() {
    let mut c = TestCluster::start(3, &[]).await;
    let client = c.client().await;
    let items: Vec<WriteEntry> = (0..40)
        .map(|i| put(&format!("d{i}"), &format!("v{i}")))
        .collect();
    let out = client
        .put_many("b", items, Level::All)
        .await
        .expect("put_many");
    assert!(out.iter().all(|r| r.result.is_ok()), "{out:?}");

    c.kill(3);
    let keys: Vec<String> = (0..40).map(|i| format!("d{i}")).collect();
    let got = client
        .get_many("b", &keys, Level::Quorum)
        .await
        .expect("get_many");
    for (i, r) in got.iter().enumerate() {
        let g = r
            .result
            .as_ref()
            .expect("quorum met per key with one node down");
        assert_eq!(g.values, vec![format!("v{i}").into_bytes()]);
    }
    let items: Vec<WriteEntry> = (0..40).map(|i| put(&format!("e{i}"), "w")).collect();
    let out = client
        .put_many("b", items, Level::Quorum)
        .await
        .expect("put_many");
    assert!(out.iter().all(|r| r.result.is_ok()), "{out:?}");

    // R=all can't be met for any key: each says so, and the batch itself is answered.
    let got = client
        .get_many("b", &keys[..5], Level::All)
        .await
        .expect("get_many");
    for r in &got {
        match &r.result {
            Err(Error::Quorum { needed, .. }) => assert_eq!(*needed, 3),
            other => panic!("expected a per-key quorum error, got {other:?}"),
        }
    }
}

/// A replica that lost its data answers batch reads as recovering: with the only other
/// copy down, every key fails with a quorum error naming it, never "not found".
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_wiped_replica_does_not_count_toward_r_in_a_batch() {
    let quiet = [
        "hinted_handoff.enabled=false",
        "read_repair.enabled=false",
        "anti_entropy.enabled=false",
    ];
    let mut c = TestCluster::start(3, &quiet).await;
    c.pause(3, true);
    c.wait_status(1, 3, "down").await;
    let client = Client::connect(c.client_config_for(&[1, 2]))
        .await
        .expect("connect");
    let keys: Vec<String> = (0..10).map(|i| format!("w{i}")).collect();
    let items: Vec<WriteEntry> = keys.iter().map(|k| put(k, "acknowledged")).collect();
    let out = client
        .put_many("b", items, Level::Quorum)
        .await
        .expect("put_many");
    assert!(out.iter().all(|r| r.result.is_ok()), "{out:?}");
    c.kill(1);
    c.kill(2);
    c.pause(3, false);
    let data = c.node_dir(2).join("data");
    std::fs::remove_dir_all(&data).expect("wipe");
    std::fs::create_dir_all(&data).expect("recreate");
    c.restart(2).await;
    poll(
        Duration::from_secs(30),
        "n3 and n2 see each other up",
        || async {
            let seen = |st: Option<chorus_client::proto::StatusInfo>, id: &str| {
                st.is_some_and(|s| {
                    s.nodes
                        .iter()
                        .any(|n| n.id == id && (n.status == "up" || n.status == "recovering"))
                })
            };
            seen(c.status_of(3).await, "n2") && seen(c.status_of(2).await, "n3")
        },
    )
    .await;
    for via in [2, 3] {
        let client = Client::connect(c.client_config_for(&[via]))
            .await
            .expect("connect");
        let got = client
            .get_many("b", &keys, Level::Quorum)
            .await
            .expect("get_many");
        for r in &got {
            match &r.result {
                Err(Error::Quorum { message, .. }) => assert!(
                    message.contains("recovering") && message.contains("n2"),
                    "via n{via}: the error should name n2 as recovering: {message}"
                ),
                other => panic!("via n{via}: expected a quorum error naming n2, got {other:?}"),
            }
        }
    }
}
