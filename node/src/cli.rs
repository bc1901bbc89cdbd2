//! The `chorus` command line: server, local dev cluster, client and admin commands.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{anyhow, bail, Context as _, Result};
use chorus_client::{CausalContext, Client, ClientConfig, Level, WriteOptions};
use clap::{Parser, Subcommand};
use serde_json::json;

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
    let mut threads = None;
    if let (Command::Server { set }, Some(path)) = (&cli.command, &cli.config) {
        match NodeConfig::load(path, set) {
            Ok(cfg) => threads = Some(cfg.runtime.threads()),
            Err(e) => {
                eprintln!("error: {}", e.to_string().replace('\n', " "));
                return ExitCode::FAILURE;
            }
        }
    }
    let runtime = match threads {
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
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            // One line: the error and its causes.
            let msg = format!("{e:#}").replace('\n', " ");
            eprintln!("error: {msg}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Server { set } => {
            let path = cli
                .config
                .ok_or_else(|| anyhow!("server needs --config FILE (a node.toml)"))?;
            serve(&path, &set).await?;
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
            };
            client.delete_with(&bucket, &key, &opts).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Ring { key, bucket, json } => {
            let client = connect(cli.config.as_deref()).await?;
            let info = client.refresh_ring().await?;
            print_ring(&info, key.as_deref(), &bucket, json);
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
            print_get(&res, json);
            Ok(ExitCode::SUCCESS)
        }
        Command::Status { json } => {
            let client = connect(cli.config.as_deref()).await?;
            let st = client.status().await?;
            if json {
                let nodes: Vec<_> = st
                    .nodes
                    .iter()
                    .map(|n| {
                        json!({
                            "id": n.id,
                            "address": n.address,
                            "zone": n.zone,
                            "status": n.status,
                            "partitions": n.partitions,
                            "hints_pending": n.hints_pending,
                            "recovery": n.recovery.as_ref().map(|r| json!({
                                "reason": r.reason,
                                "partitions_exchanged": r.partitions_exchanged,
                                "partitions_total": r.partitions_total,
                            })),
                        })
                    })
                    .collect();
                let c = &st.convergence;
                let partitions: Vec<_> = c
                    .partitions
                    .iter()
                    .map(|p| {
                        json!({
                            "partition": p.partition,
                            "ms_since_clean": p.ms_since_clean,
                            "keys_repaired": p.keys_repaired,
                        })
                    })
                    .collect();
                let transfers: Vec<_> = st
                    .transfers
                    .iter()
                    .map(|t| json!({"partition": t.partition, "node": t.node}))
                    .collect();
                let workers: Vec<_> = st
                    .workers
                    .iter()
                    .map(|w| {
                        json!({
                            "name": w.name,
                            "state": w.state,
                            "progress": w.progress,
                            "iterations": w.iterations,
                            "errors": w.errors,
                            "last_error": w.last_error,
                            "ms_since_step": w.ms_since_step,
                        })
                    })
                    .collect();
                let out = json!({
                    "node": st.node,
                    "ring_version": st.ring_version,
                    "partitions": st.partitions,
                    "nodes": nodes,
                    "transfers_pending": st.transfers_pending,
                    "transfers": transfers,
                    "refused": st.refused,
                    "workers": workers,
                    "read_repairs": c.read_repairs,
                    "hints_replayed": c.hints_replayed,
                    "hints_expired": c.hints_expired,
                    "tombstones_purged": c.tombstones_purged,
                    "anti_entropy": {
                        "rounds": c.anti_entropy_rounds,
                        "keys_repaired": c.anti_entropy_keys_repaired,
                        "bytes": c.anti_entropy_bytes,
                        "max_ms_since_clean": c.partitions.iter().map(|p| p.ms_since_clean).try_fold(0u64, |a, x| x.map(|x| a.max(x))),
                        "partitions": partitions,
                    },
                });
                println!("{out}");
            } else {
                println!(
                    "as seen by {} (ring version {}, {} partitions)",
                    st.node, st.ring_version, st.partitions
                );
                println!(
                    "{:<12} {:<24} {:<8} {:>10} {:>8}",
                    "ID", "ADDRESS", "STATUS", "PARTITIONS", "HINTS"
                );
                for n in &st.nodes {
                    println!(
                        "{:<12} {:<24} {:<8} {:>10} {:>8}",
                        n.id, n.address, n.status, n.partitions, n.hints_pending
                    );
                }
                if st.transfers_pending > 0 {
                    println!("{} partition transfers pending", st.transfers_pending);
                }
                for r in &st.refused {
                    println!("refused: {r}");
                }
                let c = &st.convergence;
                let never = c
                    .partitions
                    .iter()
                    .filter(|p| p.ms_since_clean.is_none())
                    .count();
                let worst = c.partitions.iter().filter_map(|p| p.ms_since_clean).max();
                println!(
                    "read repairs {}, hints replayed {}, anti-entropy rounds {} ({} keys repaired), tombstones purged {}",
                    c.read_repairs,
                    c.hints_replayed,
                    c.anti_entropy_rounds,
                    c.anti_entropy_keys_repaired,
                    c.tombstones_purged
                );
                match (never, worst) {
                    (0, Some(ms)) => println!(
                        "every partition checked clean within the last {:.1} s",
                        ms as f64 / 1000.0
                    ),
                    (0, None) => {}
                    (n, _) => {
                        println!("{n} partitions not yet checked clean since this node started")
                    }
                }
                print_workers(&st.workers);
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// One line with every worker's state, then a line per worker whose last step failed.
fn print_workers(workers: &[chorus_client::proto::WorkerInfo]) {
    if workers.is_empty() {
        return;
    }
    let states: Vec<String> = workers
        .iter()
        .map(|w| format!("{} {}", w.name, w.state))
        .collect();
    println!("workers: {}", states.join(", "));
    for w in workers.iter().filter(|w| w.state == "error") {
        let why = w.last_error.as_deref().unwrap_or("unknown");
        println!("worker {} failed its last step: {why}", w.name);
    }
}

async fn serve(path: &Path, set: &[String]) -> Result<()> {
    let cfg = NodeConfig::load(path, set)?;
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

fn print_get(res: &chorus_client::GetResult, json: bool) {
    if json {
        let values: Vec<String> = res
            .values
            .iter()
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .collect();
        let out = json!({
            "found": res.found,
            "values": values,
            "siblings": res.values.len(),
            "tombstones": res.tombstones,
            "context": res.context.to_string(),
            "truncated": res.truncated,
        });
        println!("{out}");
        return;
    }
    if !res.found {
        eprintln!("not found");
    }
    for v in &res.values {
        println!("{}", String::from_utf8_lossy(v));
    }
    if res.truncated {
        eprintln!(
            "some values were left out (too large together): a write with this context replaces them all"
        );
    }
    if res.values.len() > 1 {
        eprintln!(
            "{} siblings: write with --context to resolve them",
            res.values.len()
        );
    }
    eprintln!("context: {}", res.context);
}

fn print_ring(info: &chorus_proto::RingInfo, key: Option<&str>, bucket: &str, json: bool) {
    let ring = &info.ring;
    if let Some(key) = key {
        let n = info.n_for(bucket.as_bytes());
        let p = ring.partition_of(bucket.as_bytes(), key.as_bytes());
        let pref = ring.preference_list(p, n);
        let fallbacks = ring.fallbacks(p, n);
        if json {
            let out = json!({
                "bucket": bucket,
                "key": key,
                "partition": p,
                "n": n,
                "preference_list": pref,
                "fallbacks": fallbacks,
                "ring_version": ring.version(),
            });
            println!("{out}");
        } else {
            println!("{bucket}/{key}: partition {p}, N={n}");
            println!("preference list: {}", pref.join(", "));
            println!("fallbacks: {}", fallbacks.join(", "));
        }
        return;
    }
    let n = info.default_n;
    let shares = ring.shares(n);
    if json {
        let partitions: Vec<_> = (0..ring.partition_count())
            .map(|p| json!({"partition": p, "nodes": ring.preference_list(p, n)}))
            .collect();
        let shares: serde_json::Map<String, serde_json::Value> = shares
            .iter()
            .map(|(id, c)| (id.clone(), json!(c)))
            .collect();
        let out = json!({
            "version": ring.version(),
            "partition_count": ring.partition_count(),
            "n": n,
            "shares": shares,
            "partitions": partitions,
        });
        println!("{out}");
    } else {
        println!(
            "ring version {}, {} partitions, N={n}",
            ring.version(),
            ring.partition_count()
        );
        let even =
            ring.partition_count() as f64 * n.min(shares.len()) as f64 / shares.len().max(1) as f64;
        for (id, c) in &shares {
            println!(
                "{id:<12} {c:>6} partitions ({:+.1} from even)",
                *c as f64 - even
            );
        }
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
