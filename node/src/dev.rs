//! `chorus dev`: a local cluster of child processes on loopback, for trying Chorus out and
//! for tests.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use chorus_client::{Client, ClientConfig};
use chorus_node::config::NodeConfig;
use tokio::process::Command;

#[derive(clap::Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct DevArgs {
    #[command(subcommand)]
    cmd: Option<DevCommand>,
    /// Number of nodes.
    #[arg(long, default_value_t = 3)]
    nodes: usize,
    /// Folder that holds the cluster: CA, node folders, client.toml, admin.toml.
    #[arg(long, required = true)]
    dir: Option<PathBuf>,
    /// UDP port of the first node; node K listens on BASE+K-1.
    #[arg(long, default_value_t = 7100)]
    base_port: u16,
    /// Config override passed to every node, e.g. `--set storage.sync=true`. Repeatable.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
}

#[derive(clap::Subcommand)]
enum DevCommand {
    /// Prepare the next node of the cluster in DIR and print its config path.
    ///
    /// After n1..nK comes nK+1, which joins through the existing nodes (its `cluster.seeds`)
    /// and is added to DIR/client.toml. It is not started: run
    /// `chorus server --config PATH`.
    AddNode {
        /// Folder that holds the cluster.
        #[arg(long)]
        dir: PathBuf,
    },
}

/// How long nodes get to become ready, and to stop after SIGTERM.
const READY_WITHIN: Duration = Duration::from_secs(120);
const STOP_WITHIN: Duration = Duration::from_secs(10);

pub async fn run(args: DevArgs) -> Result<ExitCode> {
    if let Some(DevCommand::AddNode { dir }) = &args.cmd {
        return add_node(dir);
    }
    // clap requires --dir unless a subcommand is given.
    let Some(arg_dir) = &args.dir else {
        bail!("--dir is required");
    };
    if args.nodes == 0 || args.nodes > 64 {
        bail!("--nodes: {} is not from 1 to 64", args.nodes);
    }
    std::fs::create_dir_all(arg_dir).with_context(|| format!("creating {}", arg_dir.display()))?;
    let dir = arg_dir
        .canonicalize()
        .with_context(|| format!("resolving {}", arg_dir.display()))?;
    if dir.join("ca.key").exists() {
        check_existing(&dir, args.nodes)?;
        chorus_node::layout::ensure_admin(&dir)?;
        println!("reusing the cluster in {}", dir.display());
    } else {
        chorus_node::layout::create(&dir, args.nodes, "127.0.0.1", args.base_port)?;
        println!("created a {}-node cluster in {}", args.nodes, dir.display());
    }
    let addresses = started_addresses(&dir, args.nodes, &args.set)?;
    let exe = std::env::current_exe().context("locating the chorus binary")?;
    // Each child is awaited by its own task, which reports its exit here.
    let (exited_tx, mut exited) = tokio::sync::mpsc::unbounded_channel();
    let mut live: Vec<(String, u32)> = Vec::new();
    for k in 1..=args.nodes {
        let id = format!("n{k}");
        let node_dir = dir.join(&id);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(node_dir.join("node.log"))
            .with_context(|| format!("opening {}/node.log", node_dir.display()))?;
        let mut cmd = Command::new(&exe);
        cmd.arg("server")
            .arg("--config")
            .arg(node_dir.join("node.toml"))
            .env_remove("CHORUS_CONFIG")
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        for s in &args.set {
            cmd.arg("--set").arg(s);
        }
        let mut child = cmd.spawn().with_context(|| format!("starting node {id}"))?;
        let pid = child.id().unwrap_or_default();
        std::fs::write(node_dir.join("pid"), format!("{pid}\n"))?;
        println!(
            "started {id} (pid {pid}), log in {}",
            node_dir.join("node.log").display()
        );
        live.push((id.clone(), pid));
        let tx = exited_tx.clone();
        tokio::spawn(async move {
            let status = child.wait().await;
            let _ = tx.send((id, status));
        });
    }
    drop(exited_tx);

    let client_toml = dir.join("client.toml");
    tokio::select! {
        r = wait_ready(&client_toml, &addresses) => {
            if let Err(e) = r {
                stop_all(&dir, &mut live, &mut exited).await;
                return Err(e);
            }
        }
        _ = crate::cli::shutdown_signal() => {
            stop_all(&dir, &mut live, &mut exited).await;
            return Ok(ExitCode::FAILURE);
        }
    }
    println!(
        "ready: {} nodes serving; client config {}",
        args.nodes,
        client_toml.display()
    );
    println!(
        "try: chorus --config {} put hello world",
        client_toml.display()
    );
    println!(
        "cluster changes (leave, remove, repair) need the admin config {}",
        dir.join("admin.toml").display()
    );

    loop {
        tokio::select! {
            ev = exited.recv() => match ev {
                Some((id, status)) => {
                    match status {
                        Ok(s) => println!("node {id} exited ({s}); not restarting it"),
                        Err(e) => println!("node {id}: cannot wait for it: {e}"),
                    }
                    live.retain(|(n, _)| *n != id);
                }
                None => {
                    println!("every node has exited");
                    return Ok(ExitCode::FAILURE);
                }
            },
            _ = crate::cli::shutdown_signal() => {
                stop_all(&dir, &mut live, &mut exited).await;
                return Ok(ExitCode::SUCCESS);
            }
        }
    }
}

type Exits =
    tokio::sync::mpsc::UnboundedReceiver<(String, std::io::Result<std::process::ExitStatus>)>;

/// SIGTERM to every live node, SIGKILL to those still running after [`STOP_WITHIN`].
async fn stop_all(dir: &Path, live: &mut Vec<(String, u32)>, exited: &mut Exits) {
    println!("stopping nodes");
    for (_, pid) in live.iter() {
        signal(*pid, libc::SIGTERM);
    }
    let deadline = tokio::time::Instant::now() + STOP_WITHIN;
    while !live.is_empty() {
        match tokio::time::timeout_at(deadline, exited.recv()).await {
            Ok(Some((id, _))) => {
                live.retain(|(n, _)| *n != id);
                let _ = std::fs::remove_file(dir.join(&id).join("pid"));
            }
            Ok(None) => break,
            Err(_) => {
                for (id, pid) in live.iter() {
                    println!("node {id} did not stop within {STOP_WITHIN:?}; killing it");
                    signal(*pid, libc::SIGKILL);
                }
                break;
            }
        }
    }
}

fn signal(pid: u32, sig: i32) {
    if let Ok(pid) = i32::try_from(pid) {
        if pid > 0 {
            // SAFETY: kill(2) on our own child's pid has no memory effects.
            unsafe {
                libc::kill(pid, sig);
            }
        }
    }
}

/// Each started node's id and the address it is reached at. Read from the configs rather
/// than client.toml, which also lists nodes added later that this run may not start.
fn started_addresses(dir: &Path, nodes: usize, set: &[String]) -> Result<Vec<(String, String)>> {
    (1..=nodes)
        .map(|k| {
            let cfg = NodeConfig::load(&dir.join(format!("n{k}")).join("node.toml"), set)?;
            Ok((cfg.id.clone(), cfg.advertised()))
        })
        .collect()
}

/// Polls every started node until each one reports every started node up. Nodes added with
/// `add-node` may be listed too, up or down, without holding this back.
async fn wait_ready(client_toml: &Path, nodes: &[(String, String)]) -> Result<()> {
    let base = ClientConfig::load(client_toml)?;
    let deadline = tokio::time::Instant::now() + READY_WITHIN;
    for (_, addr) in nodes {
        let mut cfg = base.clone();
        cfg.addresses = vec![addr.clone()];
        cfg.connect_timeout = Duration::from_millis(500);
        cfg.timeout = Duration::from_secs(2);
        loop {
            let ready = match Client::connect(cfg.clone()).await {
                Ok(c) => match c.status().await {
                    Ok(st) => nodes
                        .iter()
                        .all(|(id, _)| st.nodes.iter().any(|n| n.id == *id && n.status == "up")),
                    Err(_) => false,
                },
                Err(_) => false,
            };
            if ready {
                break;
            }
            if tokio::time::Instant::now() > deadline {
                bail!("node at {addr} was not ready within {READY_WITHIN:?}; see its node.log");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    Ok(())
}

/// `chorus dev add-node`: writes the next node's files; starting it is left to the caller.
fn add_node(dir: &Path) -> Result<ExitCode> {
    let dir = dir
        .canonicalize()
        .with_context(|| format!("resolving {}", dir.display()))?;
    let path = chorus_node::layout::add_node(&dir)?;
    println!("{}", path.display());
    Ok(ExitCode::SUCCESS)
}

fn check_existing(dir: &Path, nodes: usize) -> Result<()> {
    for k in 1..=nodes {
        let cfg = dir.join(format!("n{k}")).join("node.toml");
        if !cfg.exists() {
            bail!(
                "{} holds a cluster without node n{k}; use the node count it was created with",
                dir.display()
            );
        }
        let pid_file = dir.join(format!("n{k}")).join("pid");
        if let Ok(pid) = std::fs::read_to_string(&pid_file) {
            if let Ok(pid) = pid.trim().parse::<i32>() {
                let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                if String::from_utf8_lossy(&cmdline).contains("chorus") {
                    bail!(
                        "node n{k} of {} is still running (pid {pid})",
                        dir.display()
                    );
                }
            }
        }
    }
    if dir
        .join(format!("n{}", nodes + 1))
        .join("node.toml")
        .exists()
    {
        println!(
            "note: {} holds more than {nodes} nodes; starting only the first {nodes}",
            dir.display()
        );
    }
    Ok(())
}
