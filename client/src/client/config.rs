//! Client settings and reading them from a `client.toml`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::Error;

/// Client settings, usually read from a `client.toml`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    /// Seed nodes, as `host:port`.
    pub addresses: Vec<String>,
    /// The cluster CA certificate (PEM).
    pub ca: PathBuf,
    /// This client's certificate (PEM), issued by the cluster CA.
    pub cert: PathBuf,
    /// This client's private key (PEM).
    pub key: PathBuf,
    /// Deadline for one request, e.g. `"10s"`.
    #[serde(default = "default_timeout", with = "humantime_serde_compat")]
    pub timeout: Duration,
    /// Deadline for establishing a connection to one node, e.g. `"1s"`.
    #[serde(default = "default_connect_timeout", with = "humantime_serde_compat")]
    pub connect_timeout: Duration,
    /// A connection silent for this long is dead (the node was killed or cut off).
    #[serde(default = "default_idle_timeout", with = "humantime_serde_compat")]
    pub idle_timeout: Duration,
    /// Send each request to a replica of its key (default). Off: use `addresses` in order,
    /// whatever the key (any node coordinates), e.g. to spread load behind a balancer.
    #[serde(default = "default_true")]
    pub token_aware: bool,
    /// Carry small requests on one long-lived stream per node, many in flight and sent in
    /// batches (default). Off: one QUIC stream per request.
    #[serde(default = "default_true")]
    pub links: bool,
    /// How many times a request a node refused as overloaded is sent again (after doubling,
    /// jittered pauses from 2 ms, within `timeout`); 0 returns the refusal at once.
    #[serde(default = "default_overload_retries")]
    pub overload_retries: u32,
}

fn default_overload_retries() -> u32 {
    5
}

fn default_true() -> bool {
    true
}

fn default_idle_timeout() -> Duration {
    Duration::from_secs(3)
}

fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

fn default_connect_timeout() -> Duration {
    Duration::from_millis(1500)
}

mod humantime_serde_compat {
    use serde::{Deserialize, Deserializer};
    use std::time::Duration;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(&s).map_err(serde::de::Error::custom)
    }
}

impl ClientConfig {
    /// Reads a client config; relative file paths are taken from the config's folder.
    pub fn load(path: &Path) -> Result<ClientConfig, Error> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::Config(format!("cannot read {}: {e}", path.display())))?;
        let mut cfg: ClientConfig =
            toml::from_str(&text).map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
        let base = path.parent().unwrap_or(Path::new("."));
        for p in [&mut cfg.ca, &mut cfg.cert, &mut cfg.key] {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        if cfg.addresses.is_empty() {
            return Err(Error::Config(format!(
                "{}: addresses: at least one node address is needed",
                path.display()
            )));
        }
        Ok(cfg)
    }
}
