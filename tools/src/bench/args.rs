//! The `chorus bench` command line: the flags, their checks, and what they imply (how many
//! operations, how long, how many connections).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Result};
use chorus_client::Level;

/// Operations in the run phase when neither `--ops` nor `--duration` is given.
const DEFAULT_OPS: u64 = 100_000;

#[derive(clap::Args, Clone)]
pub struct BenchArgs {
    /// YCSB workload: a (50/50 read/update), b (95/5), c (read only), d (95/5 read/insert,
    /// latest), f (read-modify-write).
    #[arg(long, default_value = "a")]
    pub(super) workload: String,
    /// Records loaded before the run.
    #[arg(long, default_value_t = 10_000)]
    pub(super) records: u64,
    /// Operations in the run phase [default: 100000, unless --duration is given].
    #[arg(long, conflicts_with = "duration")]
    pub(super) ops: Option<u64>,
    /// Run for this long instead of a number of operations (e.g. 30s, 2m): closed loop, the
    /// workers start no operation after it; open loop, none is scheduled after it.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub(super) duration: Option<Duration>,
    /// Closed loop: this many requests in flight.
    #[arg(long, default_value_t = 16, conflicts_with = "rate")]
    pub(super) concurrency: usize,
    /// Open loop: this many operations per second, whatever the latency.
    #[arg(long)]
    pub(super) rate: Option<u64>,
    #[arg(long, default_value = "quorum")]
    pub(super) r: Level,
    #[arg(long, default_value = "quorum")]
    pub(super) w: Level,
    /// Bytes per value.
    #[arg(long, default_value_t = 1000)]
    pub(super) value_size: usize,
    /// Skip the load phase (the records are already there).
    #[arg(long)]
    pub(super) skip_load: bool,
    /// Chorus bucket for the records (redis and etcd use the bare key names).
    #[arg(long, default_value = "usertable")]
    pub(super) bucket: String,
    /// Print one JSON summary (with the histograms that --merge needs).
    #[arg(long)]
    pub(super) json: bool,
    /// The store to benchmark: chorus (the cluster in --config), or redis or etcd at
    /// --endpoints, for comparison.
    #[arg(long, value_enum, default_value_t = DriverKind::Chorus)]
    pub(super) driver: DriverKind,
    /// redis: the primary's HOST:PORT (reads and writes go to it); etcd: the members' client
    /// addresses, comma-separated (requests are spread over them).
    #[arg(long, value_delimiter = ',', value_name = "HOST:PORT[,HOST:PORT...]")]
    pub(super) endpoints: Vec<String>,
    /// redis, etcd: connections to open [default: --concurrency, or 64 with --rate].
    #[arg(long)]
    pub(super) connections: Option<usize>,
    /// Run nothing: merge the --json outputs of generator processes that ran at the same
    /// time into one report (throughput summed, histograms added).
    #[arg(long, num_args = 1.., value_name = "FILE")]
    pub(super) merge: Vec<PathBuf>,
}

/// Which store `chorus bench` drives.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum DriverKind {
    Chorus,
    Redis,
    Etcd,
}

impl DriverKind {
    pub(super) fn name(self) -> &'static str {
        match self {
            DriverKind::Chorus => "chorus",
            DriverKind::Redis => "redis",
            DriverKind::Etcd => "etcd",
        }
    }
}

/// When the run phase ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Stop {
    /// After this many operations.
    Ops(u64),
    /// When this much time has passed since the run started.
    After(Duration),
}

impl BenchArgs {
    /// Checks the arguments before anything connects.
    pub(super) fn validate(&self) -> Result<()> {
        if !matches!(self.workload.as_str(), "a" | "b" | "c" | "d" | "f") {
            bail!(
                "--workload: {:?} is not one of a, b, c, d, f",
                self.workload
            );
        }
        if self.records == 0 {
            bail!("--records must be at least 1");
        }
        if self.rate == Some(0) {
            bail!("--rate must be at least 1");
        }
        if self.duration == Some(Duration::ZERO) {
            bail!("--duration must be more than zero");
        }
        if self.connections == Some(0) {
            bail!("--connections must be at least 1");
        }
        match self.driver {
            DriverKind::Chorus => {
                if !self.endpoints.is_empty() {
                    bail!(
                        "--endpoints is for --driver redis or etcd; Chorus finds its nodes \
                         in the client config (--config or CHORUS_CONFIG)"
                    );
                }
                if self.connections.is_some() {
                    bail!("--connections is for --driver redis or etcd");
                }
            }
            DriverKind::Redis => {
                if self.endpoints.is_empty() {
                    bail!("--driver redis needs --endpoints HOST:PORT (the primary's address)");
                }
                if self.endpoints.len() > 1 {
                    bail!(
                        "--driver redis takes one endpoint, the primary (reads and writes go \
                         to it; replicas are found through it): got {}",
                        self.endpoints.join(",")
                    );
                }
            }
            DriverKind::Etcd => {
                if self.endpoints.is_empty() {
                    bail!(
                        "--driver etcd needs --endpoints HOST:PORT[,HOST:PORT...] (the \
                         members' client addresses)"
                    );
                }
            }
        }
        for e in &self.endpoints {
            check_endpoint(e)?;
        }
        Ok(())
    }

    /// Connections for the redis and etcd drivers.
    pub(super) fn connection_count(&self) -> usize {
        self.connections.unwrap_or(match self.rate {
            None => self.concurrency.max(1),
            Some(_) => 64,
        })
    }

    /// When the run phase ends: `--duration`, else `--ops` (or its default).
    pub(super) fn stop(&self) -> Stop {
        match (self.duration, self.ops) {
            (Some(d), _) => Stop::After(d),
            (None, ops) => Stop::Ops(ops.unwrap_or(DEFAULT_OPS)),
        }
    }
}

/// An endpoint is `host:port`, without a scheme.
fn check_endpoint(e: &str) -> Result<()> {
    if e.contains("://") {
        bail!("--endpoints: {e:?}: give HOST:PORT without a scheme");
    }
    match e.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0) => {
            Ok(())
        }
        _ => bail!("--endpoints: {e:?} is not HOST:PORT"),
    }
}
