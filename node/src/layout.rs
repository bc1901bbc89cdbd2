//! On-disk layout of a local cluster, as `chorus dev` and the tests create it:
//!
//! ```text
//! DIR/ca.pem, DIR/ca.key          cluster CA
//! DIR/client.toml, client.pem/key a client identity and the node addresses
//! DIR/nK/node.toml                node K's config (id "nK")
//! DIR/nK/node.pem, node.key       node K's certificate
//! DIR/nK/data                     node K's data
//! ```

use std::path::{Path, PathBuf};

use crate::certs::{Ca, CertError};
use crate::config::{ClusterConfig, MemberConfig, NodeConfig, TlsConfig};

#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    #[error(transparent)]
    Cert(#[from] CertError),
    #[error("{path}: {reason}")]
    Io { path: String, reason: String },
    #[error("{0}")]
    Invalid(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> LayoutError + '_ {
    move |e| LayoutError::Io {
        path: path.display().to_string(),
        reason: e.to_string(),
    }
}

/// The admin (HTTP) port of node `nK`: 1000 above its QUIC port, when that fits.
fn admin_port(base_port: u16, id: &str) -> String {
    let k: usize = id.trim_start_matches('n').parse().unwrap_or(1);
    let port = base_port as usize + 1000 + k - 1;
    if port <= u16::MAX as usize {
        port.to_string()
    } else {
        "0".to_string()
    }
}

/// Creates a cluster of `nodes` nodes listening on `host`, ports `base_port` onwards.
pub fn create(dir: &Path, nodes: usize, host: &str, base_port: u16) -> Result<(), LayoutError> {
    let last = base_port as usize + nodes.saturating_sub(1);
    if nodes == 0 || last > u16::MAX as usize {
        return Err(LayoutError::Invalid(format!(
            "{nodes} nodes from port {base_port} don't fit below port 65536"
        )));
    }
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let ca = Ca::create()?;
    ca.write(dir)?;
    ca.issue_client("dev", dir, "client")?;
    let members: Vec<MemberConfig> = (1..=nodes)
        .map(|k| MemberConfig {
            id: format!("n{k}"),
            address: format!("{host}:{}", base_port as usize + k - 1),
            zone: None,
        })
        .collect();
    for m in &members {
        let node_dir = dir.join(&m.id);
        let data = node_dir.join("data");
        std::fs::create_dir_all(&data).map_err(io(&data))?;
        ca.issue_node(&m.id, &node_dir, "node")?;
        let listen = m
            .address
            .parse()
            .map_err(|e| LayoutError::Invalid(format!("address {}: {e}", m.address)))?;
        let cfg = NodeConfig {
            id: m.id.clone(),
            listen,
            advertise: None,
            zone: None,
            data_dir: PathBuf::from("data"),
            tls: TlsConfig {
                ca: PathBuf::from("../ca.pem"),
                cert: PathBuf::from("node.pem"),
                key: PathBuf::from("node.key"),
            },
            cluster: ClusterConfig {
                partitions: chorus_ring::DEFAULT_PARTITIONS,
                n: nodes.min(3),
                members: members.clone(),
                buckets: Default::default(),
            },
            storage: Default::default(),
            limits: Default::default(),
            timeouts: Default::default(),
            failure_detector: Default::default(),
            read_repair: Default::default(),
            hinted_handoff: Default::default(),
            anti_entropy: Default::default(),
            tombstones: Default::default(),
            admin: crate::config::Admin {
                listen: format!("{host}:{}", admin_port(base_port, &m.id))
                    .parse()
                    .ok(),
            },
        };
        let text = toml::to_string_pretty(&cfg)
            .map_err(|e| LayoutError::Invalid(format!("node.toml: {e}")))?;
        let path = node_dir.join("node.toml");
        std::fs::write(&path, text).map_err(io(&path))?;
    }
    let mut client = toml::Table::new();
    client.insert(
        "addresses".into(),
        toml::Value::Array(
            members
                .iter()
                .map(|m| toml::Value::String(m.address.clone()))
                .collect(),
        ),
    );
    for (k, v) in [
        ("ca", "ca.pem"),
        ("cert", "client.pem"),
        ("key", "client.key"),
    ] {
        client.insert(k.into(), toml::Value::String(v.into()));
    }
    let path = dir.join("client.toml");
    let text = toml::to_string_pretty(&client)
        .map_err(|e| LayoutError::Invalid(format!("client.toml: {e}")))?;
    std::fs::write(&path, text).map_err(io(&path))?;
    Ok(())
}
