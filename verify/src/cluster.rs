//! A real multi-process Chorus cluster for verification: every node behind a relay (see
//! [`crate::relay`]), started, killed, paused, wiped and restarted by the nemesis.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use chorus_client::{Client, ClientConfig};
use chorus_node::config::NodeConfig;

use chorus_verify::relay::RelayNet;

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("{0}")]
    Setup(String),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}

/// The `chorus` binary: `CHORUS_BIN`, else next to this executable (or one folder up, for
/// test binaries in `deps/`).
pub fn chorus_binary() -> Result<PathBuf, ClusterError> {
    if let Ok(p) = std::env::var("CHORUS_BIN") {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe()?;
    for dir in exe.ancestors().skip(1).take(2) {
        let candidate = dir.join("chorus");
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    Err(ClusterError::Setup(
        "cannot find the chorus binary; build it (cargo build --release -p chorus-node) or set CHORUS_BIN".into(),
    ))
}

pub struct Node {
    pub id: String,
    pub dir: PathBuf,
    pub child: Option<Child>,
    pub paused: bool,
    /// Clock offset the node runs with, in ms.
    pub clock_offset_ms: i64,
}

pub struct Cluster {
    pub dir: PathBuf,
    pub bin: PathBuf,
    pub nodes: Vec<Node>,
    pub relays: RelayNet,
    /// Config overrides for every node.
    pub sets: Vec<String>,
    /// Nodes started at the beginning; the rest are spares for joins.
    pub initial: usize,
}

fn real_port(base: u16, i: usize) -> u16 {
    base + i as u16
}

fn relay_port(base: u16, i: usize) -> u16 {
    base + 200 + i as u16
}

fn rewrite(path: &Path, f: impl FnOnce(&mut NodeConfig)) -> Result<(), ClusterError> {
    let text = std::fs::read_to_string(path)?;
    let mut cfg = NodeConfig::parse(&text, &[], &path.display().to_string())
        .map_err(|e| ClusterError::Setup(e.to_string()))?;
    f(&mut cfg);
    let text = toml::to_string_pretty(&cfg).map_err(|e| ClusterError::Setup(e.to_string()))?;
    std::fs::write(path, text)?;
    Ok(())
}

impl Cluster {
    /// Lays out `initial + spares` nodes on 127.0.0.1 from `base` (real ports), relays from
    /// `base + 200`, and starts the relays and the first `initial` nodes.
    pub async fn create(
        dir: &Path,
        initial: usize,
        spares: usize,
        base: u16,
        sets: Vec<String>,
    ) -> Result<Cluster, ClusterError> {
        let bin = chorus_binary()?;
        let _ = std::fs::remove_dir_all(dir);
        chorus_node::layout::create(dir, initial, "127.0.0.1", base)
            .map_err(|e| ClusterError::Setup(e.to_string()))?;
        for _ in 0..spares {
            chorus_node::layout::add_node(dir).map_err(|e| ClusterError::Setup(e.to_string()))?;
        }
        let total = initial + spares;
        let relay = |i: usize| format!("127.0.0.1:{}", relay_port(base, i));
        // Peers and clients reach every node through its relay.
        for i in 0..total {
            let path = dir.join(format!("n{}", i + 1)).join("node.toml");
            rewrite(&path, |cfg| {
                cfg.advertise = Some(relay(i));
                for m in cfg.cluster.members.iter_mut() {
                    if let Some(k) = m.id.strip_prefix('n').and_then(|k| k.parse::<usize>().ok()) {
                        m.address = relay(k - 1);
                    }
                }
                if !cfg.cluster.seeds.is_empty() {
                    cfg.cluster.seeds = (0..initial).map(relay).collect();
                }
            })?;
        }
        // The plain client and the admin (cluster changes) reach the nodes the same way.
        for name in ["client.toml", "admin.toml"] {
            let client = dir.join(name);
            let mut table: toml::Table = std::fs::read_to_string(&client)?
                .parse()
                .map_err(|e: toml::de::Error| ClusterError::Setup(e.to_string()))?;
            table.insert(
                "addresses".into(),
                toml::Value::Array(
                    (0..initial)
                        .map(|i| toml::Value::String(relay(i)))
                        .collect(),
                ),
            );
            table.insert("timeout".into(), toml::Value::String("8s".into()));
            std::fs::write(
                &client,
                toml::to_string_pretty(&table).map_err(|e| ClusterError::Setup(e.to_string()))?,
            )?;
        }

        let pairs = (0..total)
            .map(|i| {
                let r = relay(i)
                    .parse()
                    .map_err(|_| ClusterError::Setup("relay address".into()))?;
                let n = format!("127.0.0.1:{}", real_port(base, i))
                    .parse()
                    .map_err(|_| ClusterError::Setup("node address".into()))?;
                Ok((r, n))
            })
            .collect::<Result<Vec<_>, ClusterError>>()?;
        let relays = RelayNet::start(pairs)
            .await
            .map_err(|e| ClusterError::Setup(e.to_string()))?;
        let nodes = (0..total)
            .map(|i| Node {
                id: format!("n{}", i + 1),
                dir: dir.join(format!("n{}", i + 1)),
                child: None,
                paused: false,
                clock_offset_ms: 0,
            })
            .collect();
        let mut c = Cluster {
            dir: dir.to_path_buf(),
            bin,
            nodes,
            relays,
            sets,
            initial,
        };
        for i in 0..initial {
            c.start(i)?;
        }
        Ok(c)
    }

    pub fn client_config(&self) -> Result<ClientConfig, ClusterError> {
        ClientConfig::load(&self.dir.join("client.toml"))
            .map_err(|e| ClusterError::Setup(e.to_string()))
    }

    /// A client that talks to node `i` only (through its relay).
    pub fn client_config_for(&self, i: usize) -> Result<ClientConfig, ClusterError> {
        let mut cfg = self.client_config()?;
        cfg.addresses = vec![self.relays.relay_addr(i).to_string()];
        cfg.connect_timeout = Duration::from_millis(700);
        cfg.timeout = Duration::from_secs(5);
        Ok(cfg)
    }

    /// [`Cluster::client_config_for`] with the admin certificate, for leave and repair.
    pub fn admin_config_for(&self, i: usize) -> Result<ClientConfig, ClusterError> {
        let mut cfg = ClientConfig::load(&self.dir.join("admin.toml"))
            .map_err(|e| ClusterError::Setup(e.to_string()))?;
        cfg.addresses = vec![self.relays.relay_addr(i).to_string()];
        cfg.connect_timeout = Duration::from_millis(700);
        cfg.timeout = Duration::from_secs(5);
        Ok(cfg)
    }

    pub fn running(&self, i: usize) -> bool {
        self.nodes[i].child.is_some()
    }

    pub fn start(&mut self, i: usize) -> Result<(), ClusterError> {
        let node = &mut self.nodes[i];
        if node.child.is_some() {
            return Ok(());
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(node.dir.join("node.log"))?;
        let mut cmd = Command::new(&self.bin);
        cmd.arg("server")
            .arg("--config")
            .arg(node.dir.join("node.toml"))
            .env_remove("CHORUS_CONFIG")
            .env("CHORUS_CLOCK_OFFSET_MS", node.clock_offset_ms.to_string())
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        for s in &self.sets {
            cmd.arg("--set").arg(s);
        }
        node.child = Some(cmd.spawn()?);
        node.paused = false;
        Ok(())
    }

    fn signal(&self, i: usize, sig: i32) {
        if let Some(c) = &self.nodes[i].child {
            if let Ok(pid) = i32::try_from(c.id()) {
                // SAFETY: kill(2) on our own child has no memory effects.
                unsafe {
                    libc::kill(pid, sig);
                }
            }
        }
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self, i: usize) {
        if self.nodes[i].paused {
            self.signal(i, libc::SIGCONT);
        }
        if let Some(mut c) = self.nodes[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.nodes[i].paused = false;
    }

    pub fn pause(&mut self, i: usize) {
        if self.running(i) && !self.nodes[i].paused {
            self.signal(i, libc::SIGSTOP);
            self.nodes[i].paused = true;
        }
    }

    pub fn resume(&mut self, i: usize) {
        if self.nodes[i].paused {
            self.signal(i, libc::SIGCONT);
            self.nodes[i].paused = false;
        }
    }

    /// Kills the node and empties its data directory.
    pub fn wipe(&mut self, i: usize) -> Result<(), ClusterError> {
        self.kill(i);
        let data = self.nodes[i].dir.join("data");
        let _ = std::fs::remove_dir_all(&data);
        std::fs::create_dir_all(&data)?;
        Ok(())
    }

    /// SIGTERM (a clean shutdown), then reap; SIGKILL if it takes longer than 10 s.
    pub fn stop(&mut self, i: usize) {
        self.resume(i);
        self.signal(i, libc::SIGTERM);
        if let Some(mut c) = self.nodes[i].child.take() {
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            loop {
                match c.try_wait() {
                    Ok(Some(_)) | Err(_) => break,
                    Ok(None) if std::time::Instant::now() > deadline => {
                        let _ = c.kill();
                        let _ = c.wait();
                        break;
                    }
                    Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        }
    }

    fn snapshot_dir(&self, i: usize) -> PathBuf {
        self.nodes[i].dir.join("data.snapshot")
    }

    /// Copies the (stopped) node's data directory aside, as a backup.
    pub fn snapshot(&self, i: usize) -> Result<(), ClusterError> {
        let to = self.snapshot_dir(i);
        let _ = std::fs::remove_dir_all(&to);
        copy_dir(&self.nodes[i].dir.join("data"), &to)?;
        Ok(())
    }

    /// Replaces the (stopped) node's data directory with its last snapshot.
    pub fn restore(&self, i: usize) -> Result<(), ClusterError> {
        let data = self.nodes[i].dir.join("data");
        let _ = std::fs::remove_dir_all(&data);
        copy_dir(&self.snapshot_dir(i), &data)?;
        Ok(())
    }

    /// Polls until every running node answers a status request, within `within`.
    pub async fn wait_serving(&self, within: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        for i in 0..self.nodes.len() {
            if !self.running(i) {
                continue;
            }
            loop {
                let ok = match self.client_config_for(i) {
                    Ok(cfg) => match Client::connect(cfg).await {
                        Ok(c) => c.status().await.is_ok(),
                        Err(_) => false,
                    },
                    Err(_) => false,
                };
                if ok {
                    break;
                }
                if tokio::time::Instant::now() > deadline {
                    return false;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        true
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill(i);
        }
        self.relays.shutdown();
    }
}

fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), target)?;
        }
    }
    Ok(())
}
