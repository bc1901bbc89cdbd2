//! The `chorus` command line: server, local dev cluster, client and admin commands.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{anyhow, bail, Context as _, Result};
use chorus_client::{CausalContext, Client, ClientConfig, Level, WriteOptions};
use clap::{Parser, Subcommand};

use chorus_node::certs::Ca;
use chorus_node::config::NodeConfig;
use chorus_node::server::Node;

#[derive(Parser)]
#[command(
    name = "chorus",
    version,
    about = "Chorus: a leaderless replicated key-value store"
)]
struct Cli {
    /// Config file: node.toml for `server`, client.toml for client commands.
    #[arg(long, global = true, env = "CHORUS_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run one node.
    Server {
        /// Override a config key, e.g. `--set storage.sync=true`. Repeatable.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
    },
    /// Create (or reuse) a local cluster under DIR and run it in the foreground.
    Dev(crate::dev::DevArgs),
    /// Write a value.
    Put {
        key: String,
        /// The value; `-` reads it from standard input.
        value: String,
        #[arg(long, default_value = "default")]
        bucket: String,
        /// Write consistency: one, quorum, all or a number.
        #[arg(long, default_value = "quorum")]
        w: Level,
        /// Causal context from a get; the write then replaces what that get returned.
        #[arg(long)]
        context: Option<String>,
        /// Sloppy quorum: fallback nodes hold the write for down replicas and count toward W.
        #[arg(long)]
        sloppy: bool,
        /// Expire the value after this long, e.g. `90s` or `1h`; it then reads as deleted.
        #[arg(long, value_name = "DURATION", value_parser = crate::cli_batch::parse_ttl)]
        ttl: Option<std::time::Duration>,
    },
    /// Read a key.
    Get {
        key: String,
        #[arg(long, default_value = "default")]
        bucket: String,
        /// Read consistency: one, quorum, all or a number.
        #[arg(long, default_value = "quorum")]
        r: Level,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
        /// Read only this node's local copy: no coordination, no repair (for debugging).
        #[arg(long, value_name = "NODE_ID")]
        replica: Option<String>,
    },
    /// Read several keys in one request; one result per key, in the order given.
    GetMany(crate::cli_batch::GetManyArgs),
    /// Write several keys in one request from JSON lines on standard input
    /// (`{"key":..., "value":..., "context":...}`; a null value deletes).
    PutMany(crate::cli_batch::PutManyArgs),
    /// Delete a key (the versions the context saw).
    Delete {
        key: String,
        #[arg(long, default_value = "default")]
        bucket: String,
        #[arg(long, default_value = "quorum")]
        w: Level,
        #[arg(long)]
        context: Option<String>,
        /// Sloppy quorum: fallback nodes hold the delete for down replicas and count toward W.
        #[arg(long)]
        sloppy: bool,
    },
    /// Start an anti-entropy round on the contacted node now (admin).
    Repair,
    /// List a bucket's keys, a page at a time, in byte order.
    Keys(crate::cli_keys::KeysArgs),
    /// Delete every key of a bucket (admin).
    Truncate(crate::cli_keys::TruncateArgs),
    /// Show the ring: partition → nodes and each node's share, or one key's preference list.
    Ring {
        /// Show this key's preference list.
        #[arg(long)]
        key: Option<String>,
        #[arg(long, default_value = "default")]
        bucket: String,
        #[arg(long)]
        json: bool,
    },
    /// Move a node's partitions to the others; the node then reports itself `left` (admin).
    Leave {
        #[arg(value_name = "NODE_ID")]
        node: String,
        /// Leave even if fewer members than some bucket's N remain.
        #[arg(long)]
        force: bool,
    },
    /// Take a dead node out of the ring; its replicas are recreated from surviving copies
    /// (admin). To retire a live node, use `leave`.
    Remove {
        #[arg(value_name = "NODE_ID")]
        node: String,
        /// Remove even a node that is up, or one whose removal leaves fewer members than
        /// some bucket's N.
        #[arg(long)]
        force: bool,
    },
    /// The cluster's nodes as the contacted node sees them.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Run a YCSB workload against the cluster (or, for comparison, Redis or etcd) and
    /// report throughput and latency.
    Bench(chorus_tools::bench::BenchArgs),
    /// Create a cluster CA and issue node, client and admin certificates.
    Certs {
        #[command(subcommand)]
        what: CertsCommand,
    },
}

#[derive(Subcommand)]
enum CertsCommand {
    /// Create a new CA (ca.pem, ca.key) in DIR.
    Ca {
        #[arg(long)]
        dir: PathBuf,
    },
    /// Issue a node certificate (ID.pem, ID.key) from the CA in DIR.
    Node {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        id: String,
    },
    /// Issue a client certificate (NAME.pem, NAME.key) from the CA in DIR.
    Client {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        name: String,
    },
    /// Issue an admin certificate (NAME.pem, NAME.key) from the CA in DIR: a client that
    /// may also change the cluster (leave, remove, repair).
    Admin {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        name: String,
    },
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // A server sizes its runtime from its config (runtime.threads); other commands are
    // short-lived clients.
    let mut server_cfg = None;
    if let (Command::Server { set }, Some(path)) = (&cli.command, &cli.config) {
        match NodeConfig::load(path, set) {
            Ok(cfg) => server_cfg = Some(cfg),
            Err(e) => {
                eprintln!("error: {}", e.to_string().replace('\n', " "));
                return ExitCode::FAILURE;
            }
        }
    }
    let runtime = match server_cfg.as_ref().map(|c| c.runtime.threads()) {
        Some(1) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
        Some(n) => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(n)
            .enable_all()
            .build(),
        None => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build(),
    };
    let runtime = match runtime {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli, server_cfg)) {
        Ok(code) => code,
        Err(e) => {
            // One line: the error and its causes.
            let msg = format!("{e:#}").replace('\n', " ");
            eprintln!("error: {msg}");
            ExitCode::FAILURE
        }
    }
}

/// `server_cfg`: the server's config, loaded before the runtime was sized from it.
async fn run(cli: Cli, server_cfg: Option<NodeConfig>) -> Result<ExitCode> {
    match cli.command {
        Command::Server { .. } => {
            let cfg =
                server_cfg.ok_or_else(|| anyhow!("server needs --config FILE (a node.toml)"))?;
            serve(cfg).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Dev(args) => crate::dev::run(args).await,
        Command::Certs { what } => {
            certs(what)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Put {
            key,
            value,
            bucket,
            w,
            context,
            sloppy,
            ttl,
        } => {
            let client = connect(cli.config.as_deref()).await?;
            let value = if value == "-" {
                let mut buf = Vec::new();
                std::io::stdin()
                    .read_to_end(&mut buf)
                    .context("reading the value from standard input")?;
                buf
            } else {
                value.into_bytes()
            };
            let opts = WriteOptions {
                context: parse_context(context.as_deref())?,
                w,
                sloppy,
                ttl,
            };
            client.put_with(&bucket, &key, value, &opts).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Delete {
            key,
            bucket,
            w,
            context,
            sloppy,
        } => {
            let client = connect(cli.config.as_deref()).await?;
            let opts = WriteOptions {
                context: parse_context(context.as_deref())?,
                w,
                sloppy,
                ttl: None,
            };
            client.delete_with(&bucket, &key, &opts).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Ring { key, bucket, json } => {
            let client = connect(cli.config.as_deref()).await?;
            let info = client.refresh_ring().await?;
            crate::cli_show::print_ring(&info, key.as_deref(), &bucket, json);
            Ok(ExitCode::SUCCESS)
        }
        Command::Leave { node, force } => {
            let client = connect(cli.config.as_deref()).await?;
            client.leave_with(&node, force).await?;
            println!(
                "{node} is leaving; its partitions move in the background (see chorus status)"
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Remove { node, force } => {
            let client = connect(cli.config.as_deref()).await?;
            client.remove_with(&node, force).await?;
            println!("{node} removed; its replicas are being recreated (see chorus status)");
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench(args) => {
            chorus_tools::bench::main(args, connect(cli.config.as_deref())).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::GetMany(args) => {
            let client = connect(cli.config.as_deref()).await?;
            crate::cli_batch::get_many(args, client).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::PutMany(args) => {
            crate::cli_batch::put_many(args, connect(cli.config.as_deref())).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Keys(args) => {
            crate::cli_keys::keys(args, connect(cli.config.as_deref()).await?).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Truncate(args) => {
            crate::cli_keys::truncate(args, connect(cli.config.as_deref()).await?).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Repair => {
            let client = connect(cli.config.as_deref()).await?;
            client.repair().await?;
            println!("anti-entropy round started");
            Ok(ExitCode::SUCCESS)
        }
        Command::Get {
            key,
            bucket,
            r,
            json,
            replica,
        } => {
            let client = connect(cli.config.as_deref()).await?;
            let res = match replica {
                Some(node) => client.get_replica(&bucket, &key, &node).await?,
                None => client.get(&bucket, &key, r).await?,
            };
            crate::cli_show::print_get(&res, json);
            Ok(ExitCode::SUCCESS)
        }
        Command::Status { json } => {
            let client = connect(cli.config.as_deref()).await?;
            let st = client.status().await?;
            crate::cli_show::print_status(&st, json);
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn serve(cfg: NodeConfig) -> Result<()> {
    init_logging();
    let node = Node::start(cfg).await?;
    shutdown_signal().await;
    tracing::info!("shutting down");
    node.shutdown().await;
    Ok(())
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("CHORUS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    use std::io::IsTerminal;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}

pub(crate) async fn connect(config: Option<&Path>) -> Result<Client> {
    let path = config
        .ok_or_else(|| anyhow!("no client config: pass --config FILE or set CHORUS_CONFIG"))?;
    let cfg = ClientConfig::load(path)?;
    Ok(Client::connect(cfg).await?)
}

fn parse_context(s: Option<&str>) -> Result<Option<CausalContext>> {
    match s {
        None => Ok(None),
        Some(s) => Ok(Some(s.parse::<CausalContext>()?)),
    }
}

fn certs(what: CertsCommand) -> Result<()> {
    match what {
        CertsCommand::Ca { dir } => {
            if dir.join("ca.key").exists() {
                bail!("{} already holds a CA", dir.display());
            }
            Ca::create()?.write(&dir)?;
            println!("{}", dir.join("ca.pem").display());
        }
        CertsCommand::Node { dir, id } => {
            chorus_node::config::check_id(&id).map_err(|e| anyhow!("--id: {e}"))?;
            let (cert, key) = Ca::load(&dir)?.issue_node(&id, &dir, &id)?;
            println!("{}\n{}", cert.display(), key.display());
        }
        CertsCommand::Client { dir, name } => {
            let (cert, key) = Ca::load(&dir)?.issue_client(&name, &dir, &name)?;
            println!("{}\n{}", cert.display(), key.display());
        }
        CertsCommand::Admin { dir, name } => {
            // The name becomes a DNS label in the certificate, as node ids do.
            chorus_node::config::check_id(&name).map_err(|e| anyhow!("--name: {e}"))?;
            let (cert, key) = Ca::load(&dir)?.issue_admin(&name, &dir, &name)?;
            println!("{}\n{}", cert.display(), key.display());
        }
    }
    Ok(())
}
