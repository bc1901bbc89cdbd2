//! On-disk layout of a local cluster, as `chorus dev` and the tests create it:
//!
//! ```text
//! DIR/ca.pem, DIR/ca.key          cluster CA
//! DIR/client.toml, client.pem/key a client identity and the node addresses
//! DIR/admin.toml, admin.pem/key   the same with an admin identity (cluster changes)
//! DIR/nK/node.toml                node K's config (id "nK")
//! DIR/nK/node.pem, node.key       node K's certificate
//! DIR/nK/data                     node K's data
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use crate::certs::{Ca, CertError};
use crate::config::{ClusterConfig, ConfigError, MemberConfig, NodeConfig, TlsConfig};

#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    #[error(transparent)]
    Cert(#[from] CertError),
    #[error(transparent)]
    Config(#[from] ConfigError),
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

/// A node's admin (HTTP) port: 1000 above its QUIC port, or any free port when that
/// doesn't fit.
fn admin_port(quic_port: u16) -> u16 {
    quic_port.checked_add(1000).unwrap_or(0)
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
    let secret = crate::entropy::cluster_secret().map_err(LayoutError::Invalid)?;
    ca.issue_client("dev", dir, "client")?;
    ca.issue_admin("dev", dir, "admin")?;
    let cluster_id = crate::config::new_cluster_id();
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
        let listen: SocketAddr = m
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
                id: cluster_id.clone(),
                partitions: chorus_ring::DEFAULT_PARTITIONS,
                n: nodes.min(3),
                members: members.clone(),
                seeds: Vec::new(),
                buckets: Default::default(),
                secret: Some(secret.clone()),
            },
            storage: Default::default(),
            limits: Default::default(),
            timeouts: Default::default(),
            failure_detector: Default::default(),
            read_repair: Default::default(),
            hinted_handoff: Default::default(),
            anti_entropy: Default::default(),
            tombstones: Default::default(),
            transfers: Default::default(),
            gossip: Default::default(),
            runtime: crate::config::Runtime {
                // The nodes share this machine's cores.
                threads: (std::thread::available_parallelism().map_or(1, |n| n.get()) / nodes)
                    .max(1),
                links: true,
            },
            admin: crate::config::Admin {
                listen: Some(SocketAddr::new(listen.ip(), admin_port(listen.port()))),
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
    write_admin_toml(dir, &client)
}

/// Writes `admin.toml`: `client.toml`'s settings with the admin certificate.
fn write_admin_toml(dir: &Path, client: &toml::Table) -> Result<(), LayoutError> {
    let mut admin = client.clone();
    admin.insert("cert".into(), toml::Value::String("admin.pem".into()));
    admin.insert("key".into(), toml::Value::String("admin.key".into()));
    let path = dir.join("admin.toml");
    let text = toml::to_string_pretty(&admin)
        .map_err(|e| LayoutError::Invalid(format!("admin.toml: {e}")))?;
    std::fs::write(&path, text).map_err(io(&path))
}

/// Gives a cluster folder made before admin certificates existed its `admin.toml`.
pub fn ensure_admin(dir: &Path) -> Result<(), LayoutError> {
    if dir.join("admin.toml").is_file() {
        return Ok(());
    }
    let client_path = dir.join("client.toml");
    let client: toml::Table = std::fs::read_to_string(&client_path)
        .map_err(io(&client_path))?
        .parse()
        .map_err(|e| LayoutError::Invalid(format!("{}: {e}", client_path.display())))?;
    Ca::load(dir)?.issue_admin("dev", dir, "admin")?;
    write_admin_toml(dir, &client)
}

/// Prepares the next node of the cluster in `dir` (`nK+1` after `n1`..`nK`) to join it
/// through the existing nodes: its folder, certificate and `node.toml`, and its address in
/// `client.toml`. Cluster settings come from n1's config. Returns the new `node.toml`.
pub fn add_node(dir: &Path) -> Result<PathBuf, LayoutError> {
    if !dir.join("ca.key").is_file() {
        return Err(LayoutError::Invalid(format!(
            "{} holds no cluster (no ca.key); create one with `chorus dev`",
            dir.display()
        )));
    }
    // Every existing node's config, read as written (relative paths kept) so n1's serves as
    // the template.
    let mut existing: Vec<NodeConfig> = Vec::new();
    loop {
        let path = dir
            .join(format!("n{}", existing.len() + 1))
            .join("node.toml");
        if !path.is_file() {
            break;
        }
        let text = std::fs::read_to_string(&path).map_err(io(&path))?;
        existing.push(NodeConfig::parse(&text, &[], &path.display().to_string())?);
    }
    let Some(first) = existing.first() else {
        return Err(LayoutError::Invalid(format!(
            "{} holds no cluster (no n1/node.toml); create one with `chorus dev`",
            dir.display()
        )));
    };
    let k = existing.len() + 1;
    let id = format!("n{k}");
    let node_dir = dir.join(&id);
    // A leftover folder may hold another node's data; don't adopt it.
    if node_dir.exists() {
        return Err(LayoutError::Invalid(format!(
            "{} exists without a node.toml; remove it to add node {id}",
            node_dir.display()
        )));
    }

    let port = u16::try_from(first.listen.port() as usize + existing.len())
        .ok()
        .filter(|p| existing.iter().all(|c| c.listen.port() != *p))
        .ok_or_else(|| {
            LayoutError::Invalid(format!(
                "no port for node {id}: {} + {} is taken or above 65535",
                first.listen.port(),
                existing.len()
            ))
        })?;
    let listen = SocketAddr::new(first.listen.ip(), port);
    let admin = SocketAddr::new(listen.ip(), admin_port(port));
    if admin.port() != 0 && existing.iter().any(|c| c.admin.listen == Some(admin)) {
        return Err(LayoutError::Invalid(format!(
            "admin address {admin} for node {id} is already used by another node"
        )));
    }

    let mut cfg = first.clone();
    cfg.id = id.clone();
    cfg.listen = listen;
    cfg.advertise = None;
    cfg.data_dir = PathBuf::from("data");
    cfg.tls = TlsConfig {
        ca: PathBuf::from("../ca.pem"),
        cert: PathBuf::from("node.pem"),
        key: PathBuf::from("node.key"),
    };
    cfg.admin.listen = Some(admin);
    cfg.cluster.members = Vec::new();
    // The addresses peers are reached at: `advertise` when set, else `listen`.
    cfg.cluster.seeds = existing.iter().map(NodeConfig::advertised).collect();
    let text = toml::to_string_pretty(&cfg)
        .map_err(|e| LayoutError::Invalid(format!("node.toml: {e}")))?;
    let path = node_dir.join("node.toml");
    // Check what will be written before writing anything.
    NodeConfig::parse(&text, &[], &path.display().to_string())?;

    let client_path = dir.join("client.toml");
    let client_text = std::fs::read_to_string(&client_path).map_err(io(&client_path))?;
    let mut client: toml::Table = client_text
        .parse()
        .map_err(|e| LayoutError::Invalid(format!("{}: {e}", client_path.display())))?;
    let address = toml::Value::String(listen.to_string());
    match client
        .entry("addresses")
        .or_insert_with(|| toml::Value::Array(Vec::new()))
    {
        toml::Value::Array(a) => {
            if !a.contains(&address) {
                a.push(address);
            }
        }
        _ => {
            return Err(LayoutError::Invalid(format!(
                "{}: addresses is not a list",
                client_path.display()
            )))
        }
    }
    let client_text = toml::to_string_pretty(&client)
        .map_err(|e| LayoutError::Invalid(format!("client.toml: {e}")))?;

    let ca = Ca::load(dir)?;
    let data = node_dir.join("data");
    std::fs::create_dir_all(&data).map_err(io(&data))?;
    ca.issue_node(&id, &node_dir, "node")?;
    std::fs::write(&path, text).map_err(io(&path))?;
    std::fs::write(&client_path, client_text).map_err(io(&client_path))?;
    if !dir.join("admin.pem").is_file() {
        ca.issue_admin("dev", dir, "admin")?;
    }
    write_admin_toml(dir, &client)?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_node_joins_through_the_existing_nodes() {
        let dir = std::env::temp_dir().join(format!("chorus-layout-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let e = add_node(&dir).unwrap_err().to_string();
        assert!(e.contains("no cluster"), "{e}");
        create(&dir, 3, "127.0.0.1", 7300).expect("create");

        for (k, port) in [(4, 7303), (5, 7304)] {
            let path = add_node(&dir).expect("add_node");
            assert_eq!(path, dir.join(format!("n{k}/node.toml")));
            let cfg = NodeConfig::load(&path, &[]).expect("the new config validates");
            assert_eq!(cfg.id, format!("n{k}"));
            assert_eq!(cfg.listen, format!("127.0.0.1:{port}").parse().unwrap());
            assert_eq!(
                cfg.admin.listen,
                Some(format!("127.0.0.1:{}", port + 1000).parse().unwrap())
            );
            assert!(cfg.cluster.members.is_empty());
            let seeds: Vec<String> = (7300..port).map(|p| format!("127.0.0.1:{p}")).collect();
            assert_eq!(cfg.cluster.seeds, seeds);
            assert_eq!(cfg.cluster.n, 3);
            let n1 = NodeConfig::load(&dir.join("n1/node.toml"), &[]).expect("n1");
            assert!(n1.cluster.secret.is_some());
            assert_eq!(cfg.cluster.secret, n1.cluster.secret, "same cluster secret");
            assert_eq!(cfg.data_dir, dir.join(format!("n{k}/data")));
            assert!(cfg.data_dir.is_dir());
            assert!(cfg.tls.cert.is_file() && cfg.tls.key.is_file());
            assert_eq!(cfg.tls.ca, dir.join(format!("n{k}/../ca.pem")));

            let client: toml::Table = std::fs::read_to_string(dir.join("client.toml"))
                .unwrap()
                .parse()
                .unwrap();
            let addresses = client["addresses"].as_array().expect("addresses");
            assert_eq!(addresses.len(), k);
            assert_eq!(
                addresses[k - 1].as_str(),
                Some(&*format!("127.0.0.1:{port}"))
            );
            assert_eq!(client["cert"].as_str(), Some("client.pem"));
            let admin: toml::Table = std::fs::read_to_string(dir.join("admin.toml"))
                .unwrap()
                .parse()
                .unwrap();
            assert_eq!(admin["addresses"].as_array(), Some(addresses));
            assert_eq!(admin["cert"].as_str(), Some("admin.pem"));
            let first = NodeConfig::load(&dir.join("n1/node.toml"), &[]).unwrap();
            assert_eq!(cfg.cluster.id, first.cluster.id, "the cluster id is copied");
        }

        // A leftover folder for the next id is not adopted.
        std::fs::create_dir_all(dir.join("n6")).unwrap();
        let e = add_node(&dir).unwrap_err().to_string();
        assert!(e.contains("n6"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
