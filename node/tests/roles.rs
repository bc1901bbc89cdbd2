//! Roles and cluster identity on real clusters, driven through the `chorus` CLI: only admin
//! certificates change the cluster, `--force` guards removals of live nodes and shrinking
//! below N, a node of another cluster (or with another N) is never merged, and configs whose
//! tombstone grace doesn't outlast the hint expiry are refused.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{poll, single_node_config, TestCluster, PORT};

const BIN: &str = env!("CARGO_BIN_EXE_chorus");

/// Runs the CLI with a client config; returns (success, stdout, stderr).
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

/// `status --json` from the node at `addr`, through a copy of `client.toml` that names only it.
fn status_via(c: &TestCluster, k: usize) -> Option<serde_json::Value> {
    let cfg = single_node_config(c, "client.toml", k);
    let (ok, out, _) = chorus(&cfg, &["status", "--json"]);
    ok.then(|| serde_json::from_str(out.trim()).ok()).flatten()
}

fn member_status(st: &serde_json::Value, id: &str) -> Option<String> {
    st["nodes"]
        .as_array()?
        .iter()
        .find(|n| n["id"] == id)
        .and_then(|n| n["status"].as_str())
        .map(str::to_string)
}

/// A `chorus server` started outside the test cluster; killed on drop.
struct Server(Child);

impl Server {
    fn start(config: &Path, sets: &[&str]) -> Server {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(config.with_file_name("node.log"))
            .expect("open log");
        let mut cmd = Command::new(BIN);
        cmd.arg("server")
            .arg("--config")
            .arg(config)
            .env_remove("CHORUS_CONFIG")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log);
        for s in sets {
            cmd.arg("--set").arg(s);
        }
        Server(cmd.spawn().expect("spawn chorus server"))
    }

    /// The exit status if the server exits within `within`.
    fn exits_within(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(Some(s)) = self.0.try_wait() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Prepares a node outside the test cluster: a node certificate from the cluster's CA and
/// a `node.toml` derived from n1's, changed by `edit`. Returns the config path.
fn outsider(c: &TestCluster, id: &str, port: u16, edit: impl FnOnce(&mut toml::Table)) -> PathBuf {
    let dir = c.dir.join(format!("outside-{id}"));
    std::fs::create_dir_all(dir.join("data")).expect("mkdir");
    let out = Command::new(BIN)
        .args(["certs", "node", "--dir"])
        .arg(&c.dir)
        .args(["--id", id])
        .output()
        .expect("certs node");
    assert!(out.status.success(), "{out:?}");
    for ext in ["pem", "key"] {
        std::fs::rename(
            c.dir.join(format!("{id}.{ext}")),
            dir.join(format!("node.{ext}")),
        )
        .expect("move certificate");
    }
    let mut t: toml::Table = std::fs::read_to_string(c.node_dir(1).join("node.toml"))
        .expect("n1 config")
        .parse()
        .expect("toml");
    let address = format!("{}:{port}", c.host);
    t.insert("id".into(), id.into());
    t.insert("listen".into(), address.clone().into());
    t.insert("data_dir".into(), "data".into());
    t.remove("admin");
    let tls = t["tls"].as_table_mut().expect("tls");
    tls.insert(
        "ca".into(),
        c.dir.join("ca.pem").display().to_string().into(),
    );
    tls.insert("cert".into(), "node.pem".into());
    tls.insert("key".into(), "node.key".into());
    edit(&mut t);
    let path = dir.join("node.toml");
    std::fs::write(&path, toml::to_string(&t).expect("toml")).expect("write node.toml");
    path
}

fn cluster_table(t: &mut toml::Table) -> &mut toml::Table {
    t.get_mut("cluster")
        .and_then(|c| c.as_table_mut())
        .expect("[cluster]")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_admin_certificates_may_leave_remove_or_repair() {
    let c = TestCluster::start(3, &["anti_entropy.interval=1h"]).await;
    let client = c.dir.join("client.toml");
    for args in [&["leave", "n3"][..], &["remove", "n2"][..], &["repair"][..]] {
        let (ok, _, err) = chorus(&client, args);
        assert!(!ok, "a plain client certificate ran {args:?}");
        assert!(err.contains("permission denied"), "{args:?}: {err}");
    }
    let st = status_via(&c, 1).expect("status");
    for id in ["n1", "n2", "n3"] {
        assert_eq!(
            member_status(&st, id).as_deref(),
            Some("up"),
            "{}",
            st["nodes"]
        );
    }

    let admin = c.dir.join("admin.toml");
    let (ok, _, err) = chorus(&admin, &["repair"]);
    assert!(ok, "admin repair: {err}");
    let (ok, _, err) = chorus(&admin, &["leave", "n3", "--force"]);
    assert!(ok, "admin leave: {err}");
    poll(Duration::from_secs(20), "n3 leaving or left", || async {
        status_via(&c, 1)
            .and_then(|st| member_status(&st, "n3"))
            .is_some_and(|s| s == "leaving" || s == "left")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_a_live_node_or_going_below_n_needs_force() {
    let mut c = TestCluster::start(3, &["anti_entropy.interval=1h"]).await;
    let admin = c.dir.join("admin.toml");

    // n2 is alive: remove is refused; leave is the way to retire it.
    let (ok, _, err) = chorus(&admin, &["remove", "n2"]);
    assert!(!ok, "remove of a live node was accepted");
    assert!(err.contains("--force") && err.contains("leave"), "{err}");

    // Three members and N=3: leaving would keep two copies of everything.
    let (ok, _, err) = chorus(&admin, &["leave", "n3"]);
    assert!(!ok, "leave below N was accepted");
    assert!(err.contains("--force") && err.contains("N=3"), "{err}");

    let st = status_via(&c, 1).expect("status");
    for id in ["n1", "n2", "n3"] {
        assert_eq!(
            member_status(&st, id).as_deref(),
            Some("up"),
            "{}",
            st["nodes"]
        );
    }

    // A dead node below N: still needs --force, and then it goes.
    c.kill(2);
    c.wait_status(1, 2, "down").await;
    let (ok, _, err) = chorus(&admin, &["remove", "n2"]);
    assert!(!ok && err.contains("--force"), "remove below N: {err}");
    let (ok, _, err) = chorus(&admin, &["remove", "n2", "--force"]);
    assert!(ok, "remove --force: {err}");
    poll(Duration::from_secs(20), "n2 left", || async {
        status_via(&c, 1)
            .and_then(|st| member_status(&st, "n2"))
            .is_some_and(|s| s == "left")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_of_another_cluster_is_never_merged() {
    let c = TestCluster::start(3, &[]).await;
    let ours = std::fs::read_to_string(c.node_dir(1).join("node.toml")).expect("config");
    // A one-node cluster founded on its own: same CA, its own id, seeds pointing at ours.
    let foreign_id = "founded-elsewhere";
    let path = outsider(&c, "x1", PORT + 10, |t| {
        let address = t["listen"].as_str().expect("listen").to_string();
        let cluster = cluster_table(t);
        if cluster.contains_key("id") {
            cluster.insert("id".into(), foreign_id.into());
        }
        let member: toml::Table = [("id", "x1"), ("address", address.as_str())]
            .into_iter()
            .map(|(k, v)| (k.to_string(), toml::Value::from(v)))
            .collect();
        cluster.insert("members".into(), toml::Value::Array(vec![member.into()]));
        cluster.insert(
            "seeds".into(),
            toml::Value::Array((1..=3).map(|k| c.address(k).into()).collect()),
        );
    });
    let _x1 = Server::start(&path, &[]);
    let x1_log = || std::fs::read_to_string(path.with_file_name("node.log")).unwrap_or_default();

    poll(
        Duration::from_secs(30),
        "both sides log the refusal",
        || async {
            for k in 1..=3 {
                if let Some(st) = status_via(&c, k) {
                    assert_eq!(
                        member_status(&st, "x1"),
                        None,
                        "n{k} lists the foreign node: {}",
                        st["nodes"]
                    );
                }
            }
            let refused_by_us = (1..=3).any(|k| {
                let log = c.log(k);
                log.contains("cluster id mismatch") && log.contains(foreign_id)
            });
            let x1 = x1_log();
            refused_by_us && x1.contains("cluster id mismatch") && x1.contains(foreign_id)
        },
    )
    .await;
    // The log line names both ids.
    let our_id = ours
        .lines()
        .skip_while(|l| l.trim() != "[cluster]")
        .find_map(|l| l.strip_prefix("id = "))
        .expect("our cluster id")
        .trim_matches('"')
        .to_string();
    assert!(x1_log().contains(&our_id), "{}", x1_log());
    // Some more gossip rounds: still never merged.
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        for k in 1..=3 {
            if let Some(st) = status_via(&c, k) {
                assert_eq!(
                    member_status(&st, "x1"),
                    None,
                    "n{k} lists x1: {}",
                    st["nodes"]
                );
            }
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let st = status_via(&c, 1).expect("status");
    assert!(
        st["refused"].to_string().contains(foreign_id),
        "status shows the refusal: {}",
        st["refused"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_n_differs_from_the_cluster_stays_out() {
    let mut c = TestCluster::start(3, &[]).await;
    // A new node of this cluster (as `chorus dev add-node` makes it) but with N=2.
    let path = outsider(&c, "n4", PORT + 3, |t| {
        let cluster = cluster_table(t);
        cluster.insert("n".into(), 2.into());
        cluster.insert("members".into(), toml::Value::Array(Vec::new()));
        cluster.insert(
            "seeds".into(),
            toml::Value::Array((1..=3).map(|k| c.address(k).into()).collect()),
        );
    });
    let _n4 = Server::start(&path, &[]);
    let n4_log = || std::fs::read_to_string(path.with_file_name("node.log")).unwrap_or_default();
    poll(
        Duration::from_secs(30),
        "n4 is refused and says why",
        || async {
            for k in 1..=3 {
                if let Some(st) = status_via(&c, k) {
                    assert_eq!(
                        member_status(&st, "n4"),
                        None,
                        "n{k} lists n4: {}",
                        st["nodes"]
                    );
                }
            }
            let log = n4_log();
            log.contains("cluster settings differ") && log.contains("cluster.n=3")
        },
    )
    .await;
    // It serves no data, and says why.
    let mut t: toml::Table = std::fs::read_to_string(c.dir.join("client.toml"))
        .expect("client.toml")
        .parse()
        .expect("toml");
    t.insert(
        "addresses".into(),
        toml::Value::Array(vec![format!("{}:{}", c.host, PORT + 3).into()]),
    );
    let n4_client = c.dir.join("n4-client.toml");
    std::fs::write(&n4_client, toml::to_string(&t).expect("toml")).expect("write");
    let (ok, _, err) = chorus(&n4_client, &["put", "k", "v", "--w", "one"]);
    assert!(!ok, "n4 took a write");
    assert!(err.contains("cluster settings differ"), "{err}");

    // A member restarted with another N refuses to start.
    c.kill(3);
    let mut n3 = Server::start(&c.node_dir(3).join("node.toml"), &["cluster.n=2"]);
    let status = n3.exits_within(Duration::from_secs(20));
    assert!(
        status.is_some_and(|s| !s.success()),
        "n3 started with cluster.n=2"
    );
    let log = c.log(3);
    assert!(
        log.contains("cluster.n=3") && log.contains("cluster.n=2"),
        "{log}"
    );
}

#[test]
fn grace_not_longer_than_hint_expiry_and_missing_cluster_id_are_refused() {
    let dir = std::env::temp_dir().join(format!("chorus-roles-cfg-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    chorus_node::layout::create(&dir, 1, "127.0.0.1", 7900).expect("layout");
    let config = dir.join("n1/node.toml");

    let mut s = Server::start(
        &config,
        &["tombstones.grace=3s", "hinted_handoff.expiry=3s"],
    );
    let status = s.exits_within(Duration::from_secs(20));
    assert!(
        status.is_some_and(|s| !s.success()),
        "a node started with tombstones.grace = hinted_handoff.expiry"
    );
    let log = std::fs::read_to_string(dir.join("n1/node.log")).unwrap_or_default();
    assert!(
        log.contains("tombstones.grace") && log.contains("hinted_handoff.expiry"),
        "{log}"
    );

    // A config without a cluster id: refused, saying how to fix it.
    let text = std::fs::read_to_string(&config).expect("config");
    let text: String = text
        .lines()
        .filter(|l| !l.starts_with("id = \"chorus-"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&config, text).expect("write");
    std::fs::write(dir.join("n1/node.log"), "").expect("truncate log");
    let mut s = Server::start(&config, &[]);
    let status = s.exits_within(Duration::from_secs(20));
    assert!(
        status.is_some_and(|s| !s.success()),
        "a node started without cluster.id"
    );
    let log = std::fs::read_to_string(dir.join("n1/node.log")).unwrap_or_default();
    assert!(
        log.contains("cluster.id") && log.contains("another node"),
        "{log}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
