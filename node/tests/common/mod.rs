//! Test harness: real clusters of `chorus server` processes on loopback, with real QUIC.
//!
//! Each cluster gets its own loopback address (127.x.y.1), so tests running in parallel
//! never collide on ports.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use std::net::SocketAddr;

use chorus_client::proto::Response;
use chorus_client::{tls, wire, Client, ClientConfig};

static NEXT: AtomicU32 = AtomicU32::new(0);

pub const PORT: u16 = 7000;

pub struct TestCluster {
    pub dir: PathBuf,
    pub host: String,
    pub sets: Vec<String>,
    nodes: Vec<Option<Child>>,
}

fn unique_host() -> String {
    let n = NEXT.fetch_add(1, Ordering::SeqCst);
    let pid = std::process::id();
    format!(
        "127.{}.{}.{}",
        1 + pid % 200,
        1 + n % 250,
        1 + (pid / 200) % 250
    )
}

impl TestCluster {
    /// Creates and starts an `n`-node cluster and waits until every node sees every other.
    pub async fn start(n: usize, sets: &[&str]) -> TestCluster {
        let host = unique_host();
        let dir = std::env::temp_dir().join(format!("chorus-test-{host}"));
        let _ = std::fs::remove_dir_all(&dir);
        chorus_node::layout::create(&dir, n, &host, PORT).expect("create layout");
        let mut c = TestCluster {
            dir,
            host,
            sets: sets.iter().map(|s| s.to_string()).collect(),
            nodes: (0..n).map(|_| None).collect(),
        };
        for k in 1..=n {
            c.spawn(k);
        }
        c.wait_all_up(Duration::from_secs(60)).await;
        c
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn node_dir(&self, k: usize) -> PathBuf {
        self.dir.join(format!("n{k}"))
    }

    pub fn address(&self, k: usize) -> String {
        format!("{}:{}", self.host, PORT as usize + k - 1)
    }

    fn spawn(&mut self, k: usize) {
        let node_dir = self.node_dir(k);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(node_dir.join("node.log"))
            .expect("open node log");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_chorus"));
        cmd.arg("server")
            .arg("--config")
            .arg(node_dir.join("node.toml"))
            .env_remove("CHORUS_CONFIG")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log"))
            .stderr(log);
        for s in &self.sets {
            cmd.arg("--set").arg(s);
        }
        self.nodes[k - 1] = Some(cmd.spawn().expect("spawn chorus server"));
    }

    /// Prepares the next node (as `chorus dev add-node` does) and starts it; it joins
    /// through its seeds. Returns its number.
    pub fn add_node(&mut self) -> usize {
        chorus_node::layout::add_node(&self.dir).expect("add node");
        self.nodes.push(None);
        let k = self.nodes.len();
        self.spawn(k);
        k
    }

    /// Status as node `k` reports it.
    pub async fn status_of(&self, k: usize) -> Option<chorus_client::proto::StatusInfo> {
        let c = Client::connect(self.client_config_for(&[k])).await.ok()?;
        c.status().await.ok()
    }

    /// SIGKILL: no chance to flush or say goodbye.
    pub fn kill(&mut self, k: usize) {
        if let Some(mut child) = self.nodes[k - 1].take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGSTOP (`stop = true`) or SIGCONT: a node that hangs without closing anything.
    pub fn pause(&self, k: usize, stop: bool) {
        if let Some(child) = &self.nodes[k - 1] {
            let sig = if stop { libc::SIGSTOP } else { libc::SIGCONT };
            // SAFETY: kill(2) on our own child's pid has no memory-safety preconditions.
            unsafe {
                libc::kill(child.id() as libc::pid_t, sig);
            }
        }
    }

    /// The process id of node `k`, if it runs.
    pub fn pid(&self, k: usize) -> Option<u32> {
        self.nodes[k - 1].as_ref().map(|c| c.id())
    }

    /// Starts a killed node again with the same config and data.
    pub async fn restart(&mut self, k: usize) {
        assert!(self.nodes[k - 1].is_none(), "node {k} is still running");
        self.spawn(k);
        let cfg = self.client_config_for(&[k]);
        poll(Duration::from_secs(30), "restarted node serves", || {
            let cfg = cfg.clone();
            async move { Client::connect(cfg).await.is_ok() }
        })
        .await;
    }

    /// Client config that talks to every node.
    pub fn client_config(&self) -> ClientConfig {
        ClientConfig::load(&self.dir.join("client.toml")).expect("client config")
    }

    /// Client config that knows only some nodes (1-based).
    pub fn client_config_for(&self, nodes: &[usize]) -> ClientConfig {
        let mut cfg = self.client_config();
        cfg.addresses = nodes.iter().map(|k| self.address(*k)).collect();
        cfg.connect_timeout = Duration::from_millis(500);
        cfg
    }

    pub async fn client(&self) -> Client {
        Client::connect(self.client_config())
            .await
            .expect("connect")
    }

    /// Client config with the admin certificate (cluster changes), talking to some nodes
    /// (1-based), or to every node when `nodes` is empty.
    pub fn admin_config_for(&self, nodes: &[usize]) -> ClientConfig {
        let mut cfg = ClientConfig::load(&self.dir.join("admin.toml")).expect("admin config");
        if !nodes.is_empty() {
            cfg.addresses = nodes.iter().map(|k| self.address(*k)).collect();
            cfg.connect_timeout = Duration::from_millis(500);
        }
        cfg
    }

    /// A client with the admin certificate, talking to every node.
    pub async fn admin(&self) -> Client {
        Client::connect(self.admin_config_for(&[]))
            .await
            .expect("connect")
    }

    /// Waits until every running node reports every running node up and the others down.
    pub async fn wait_all_up(&self, within: Duration) {
        let running: Vec<usize> = (1..=self.len())
            .filter(|k| self.nodes[k - 1].is_some())
            .collect();
        for k in running.clone() {
            let cfg = self.client_config_for(&[k]);
            let running = running.clone();
            poll(within, &format!("node n{k} sees the cluster"), || {
                let cfg = cfg.clone();
                let running = running.clone();
                async move {
                    let Ok(c) = Client::connect(cfg).await else {
                        return false;
                    };
                    let Ok(st) = c.status().await else {
                        return false;
                    };
                    st.nodes.iter().all(|n| {
                        let k: usize = n.id[1..].parse().unwrap_or(0);
                        (n.status == "up") == running.contains(&k)
                    })
                }
            })
            .await;
        }
    }

    /// Waits until node `observer` reports `target` with the given status.
    pub async fn wait_status(&self, observer: usize, target: usize, status: &str) {
        let cfg = self.client_config_for(&[observer]);
        let id = format!("n{target}");
        poll(
            Duration::from_secs(20),
            &format!("n{observer} sees {id} {status}"),
            || {
                let cfg = cfg.clone();
                let id = id.clone();
                async move {
                    let Ok(c) = Client::connect(cfg).await else {
                        return false;
                    };
                    let Ok(st) = c.status().await else {
                        return false;
                    };
                    st.nodes.iter().any(|n| n.id == id && n.status == status)
                }
            },
        )
        .await;
    }

    pub fn log(&self, k: usize) -> String {
        std::fs::read_to_string(self.node_dir(k).join("node.log")).unwrap_or_default()
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        for k in 1..=self.nodes.len() {
            self.kill(k);
        }
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        } else {
            eprintln!("cluster files kept in {}", self.dir.display());
        }
    }
}

/// Polls `check` until it holds, failing the test after `within`.
pub async fn poll<F, Fut>(within: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    loop {
        if check().await {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {within:?} waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub fn path_str(p: &Path) -> String {
    p.display().to_string()
}

// Raw QUIC access, for tests that must bypass the client library.

pub fn addr(c: &TestCluster, k: usize) -> SocketAddr {
    c.address(k).parse().expect("socket address")
}

pub fn endpoint() -> quinn::Endpoint {
    quinn::Endpoint::client("0.0.0.0:0".parse().expect("bind")).expect("endpoint")
}

/// A QUIC client config presenting `cert`/`key` (or no certificate) and trusting `ca`.
pub fn quic_config(
    c: &TestCluster,
    identity: Option<(&str, &str)>,
    alpn: &[u8],
) -> quinn::ClientConfig {
    let roots = tls::roots(&c.dir.join("ca.pem")).expect("roots");
    let crypto = match identity {
        Some((cert, key)) => tls::client_crypto(
            roots,
            tls::load_certs(&c.dir.join(cert)).expect("cert"),
            tls::load_key(&c.dir.join(key)).expect("key"),
            alpn,
        )
        .expect("crypto"),
        None => {
            let mut cfg = rustls::ClientConfig::builder_with_provider(tls::provider())
                .with_protocol_versions(&[&rustls::version::TLS13])
                .expect("tls13")
                .with_root_certificates(roots)
                .with_no_client_auth();
            cfg.alpn_protocols = vec![alpn.to_vec()];
            cfg
        }
    };
    tls::quinn_client(crypto).expect("quinn config")
}

pub async fn exchange(conn: &quinn::Connection, bytes: &[u8]) -> Result<Response, String> {
    let (mut send, mut recv) = conn.open_bi().await.map_err(|e| e.to_string())?;
    send.write_all(bytes).await.map_err(|e| e.to_string())?;
    let _ = send.finish();
    let r = tokio::time::timeout(
        Duration::from_secs(5),
        wire::read_frame::<_, Response>(&mut recv, wire::DEFAULT_MAX_FRAME),
    )
    .await
    .map_err(|_| "timeout".to_string())?;
    r.map(|(resp, _)| resp).map_err(|e| e.to_string())
}

/// Copies a directory tree (a node's data directory, for backup-and-restore tests).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

/// A copy of `DIR/<base>` that talks to node `k` only.
pub fn single_node_config(c: &TestCluster, base: &str, k: usize) -> PathBuf {
    let mut t: toml::Table = std::fs::read_to_string(c.dir.join(base))
        .expect("client config")
        .parse()
        .expect("toml");
    t.insert(
        "addresses".into(),
        toml::Value::Array(vec![toml::Value::String(c.address(k))]),
    );
    let path = c.dir.join(format!("n{k}-{base}"));
    std::fs::write(&path, toml::to_string(&t).expect("toml")).expect("write config");
    path
}
