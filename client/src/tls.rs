//! TLS 1.3 material for QUIC: PEM loading and rustls configurations (ring provider only).
//!
//! Every certificate comes from the cluster CA. Node certificates carry the DNS names
//! [`NODE_NAME`] and `<id>.node.chorus`; client certificates carry [`CLIENT_NAME`]. Clients
//! dial any node as [`NODE_NAME`]; nodes dial each other by their exact per-node name, so a
//! peer can't stand in for another node.

use std::path::Path;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// DNS name every node certificate carries.
pub const NODE_NAME: &str = "node.chorus";
/// DNS name every client certificate carries.
pub const CLIENT_NAME: &str = "client.chorus";

/// The DNS name that names exactly one node.
pub fn node_name(id: &str) -> String {
    format!("{id}.{NODE_NAME}")
}

/// Why TLS material could not be loaded or assembled.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read certificates from {path}: {reason}")]
    Certs { path: String, reason: String },
    #[error("cannot read private key from {path}: {reason}")]
    Key { path: String, reason: String },
    #[error("invalid TLS configuration: {0}")]
    Config(String),
}

/// The crypto provider: ring, and nothing else.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Loads every certificate in a PEM file.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let err = |reason: String| TlsError::Certs {
        path: path.display().to_string(),
        reason,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| err(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(e.to_string()))?;
    if certs.is_empty() {
        return Err(err("no certificate found".into()));
    }
    Ok(certs)
}

/// Loads the first private key in a PEM file.
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| TlsError::Key {
        path: path.display().to_string(),
        reason: e.to_string(),
    })
}

/// A root store holding the cluster CA.
pub fn roots(ca: &Path) -> Result<rustls::RootCertStore, TlsError> {
    let mut store = rustls::RootCertStore::empty();
    for cert in load_certs(ca)? {
        store
            .add(cert)
            .map_err(|e| TlsError::Config(format!("CA certificate {}: {e}", ca.display())))?;
    }
    Ok(store)
}

/// A rustls client configuration that trusts only the cluster CA and presents `cert`/`key`.
pub fn client_crypto(
    roots: rustls::RootCertStore,
    cert: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    alpn: &[u8],
) -> Result<rustls::ClientConfig, TlsError> {
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_root_certificates(roots)
        .with_client_auth_cert(cert, key)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    cfg.alpn_protocols = vec![alpn.to_vec()];
    Ok(cfg)
}

/// Wraps a rustls client configuration for QUIC.
pub fn quinn_client(cfg: rustls::ClientConfig) -> Result<quinn::ClientConfig, TlsError> {
    let quic = quinn::crypto::rustls::QuicClientConfig::try_from(cfg)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    Ok(quinn::ClientConfig::new(Arc::new(quic)))
}
