//! The cluster CA and the certificates it issues to nodes and clients.
//!
//! Files in a CA folder: `ca.pem` (certificate, handed to every node and client) and
//! `ca.key` (keep it private). Node certificates name `<id>.node.chorus` and `node.chorus`
//! and may act as TLS server and client; client certificates name `client.chorus` and may
//! only act as TLS client. Admin certificates are client certificates that also name
//! `admin.chorus` (and `<name>.admin.chorus`): nodes accept cluster changes only from them.

use std::path::{Path, PathBuf};

use chorus_client::tls;
use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
};

#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("{path}: {reason}")]
    Io { path: String, reason: String },
}

pub struct Ca {
    key: KeyPair,
    cert: Certificate,
}

const CA_NAME: &str = "Chorus cluster CA";

/// The name every admin certificate carries; nodes look for it (see `roles`).
pub const ADMIN_NAME: &str = "admin.chorus";

fn ca_params() -> Result<CertificateParams, rcgen::Error> {
    let mut p = CertificateParams::new(Vec::<String>::new())?;
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, CA_NAME);
    p.distinguished_name = dn;
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    p.not_before = rcgen::date_time_ymd(2024, 1, 1);
    p.not_after = rcgen::date_time_ymd(2124, 1, 1);
    Ok(p)
}

impl Ca {
    /// A new CA with a fresh key.
    pub fn create() -> Result<Ca, CertError> {
        let key = KeyPair::generate()?;
        let cert = ca_params()?.self_signed(&key)?;
        Ok(Ca { key, cert })
    }

    /// Loads the CA key from `dir/ca.key`. Certificates it issues chain to `dir/ca.pem`,
    /// which names the same subject and key.
    pub fn load(dir: &Path) -> Result<Ca, CertError> {
        let path = dir.join("ca.key");
        let pem = read(&path)?;
        let key = KeyPair::from_pem(&pem)?;
        let cert = ca_params()?.self_signed(&key)?;
        Ok(Ca { key, cert })
    }

    /// Writes `ca.pem` and `ca.key` into `dir`.
    pub fn write(&self, dir: &Path) -> Result<(), CertError> {
        write(&dir.join("ca.pem"), &self.cert.pem())?;
        write_private(&dir.join("ca.key"), &self.key.serialize_pem())
    }

    /// Issues a node certificate; writes `<prefix>.pem` and `<prefix>.key`.
    pub fn issue_node(
        &self,
        id: &str,
        out: &Path,
        prefix: &str,
    ) -> Result<(PathBuf, PathBuf), CertError> {
        let mut p = CertificateParams::new(vec![tls::node_name(id), tls::NODE_NAME.to_string()])?;
        p.distinguished_name
            .push(DnType::CommonName, format!("chorus node {id}"));
        p.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        self.issue(p, out, prefix)
    }

    /// Issues a client certificate; writes `<prefix>.pem` and `<prefix>.key`.
    pub fn issue_client(
        &self,
        name: &str,
        out: &Path,
        prefix: &str,
    ) -> Result<(PathBuf, PathBuf), CertError> {
        let mut p = CertificateParams::new(vec![tls::CLIENT_NAME.to_string()])?;
        p.distinguished_name
            .push(DnType::CommonName, format!("chorus client {name}"));
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.issue(p, out, prefix)
    }

    /// Issues an admin certificate; writes `<prefix>.pem` and `<prefix>.key`. `name` must
    /// be a DNS label (as node ids are).
    pub fn issue_admin(
        &self,
        name: &str,
        out: &Path,
        prefix: &str,
    ) -> Result<(PathBuf, PathBuf), CertError> {
        let mut p = CertificateParams::new(vec![
            tls::CLIENT_NAME.to_string(),
            ADMIN_NAME.to_string(),
            format!("{name}.{ADMIN_NAME}"),
        ])?;
        p.distinguished_name
            .push(DnType::CommonName, format!("chorus admin {name}"));
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.issue(p, out, prefix)
    }

    fn issue(
        &self,
        mut p: CertificateParams,
        out: &Path,
        prefix: &str,
    ) -> Result<(PathBuf, PathBuf), CertError> {
        p.not_before = rcgen::date_time_ymd(2024, 1, 1);
        p.not_after = rcgen::date_time_ymd(2124, 1, 1);
        p.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate()?;
        let cert = p.signed_by(&key, &self.cert, &self.key)?;
        let cert_path = out.join(format!("{prefix}.pem"));
        let key_path = out.join(format!("{prefix}.key"));
        write(&cert_path, &cert.pem())?;
        write_private(&key_path, &key.serialize_pem())?;
        Ok((cert_path, key_path))
    }
}

fn read(path: &Path) -> Result<String, CertError> {
    std::fs::read_to_string(path).map_err(|e| CertError::Io {
        path: path.display().to_string(),
        reason: e.to_string(),
    })
}

fn write(path: &Path, text: &str) -> Result<(), CertError> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| CertError::Io {
            path: parent.display().to_string(),
            reason: e.to_string(),
        })?;
    }
    std::fs::write(path, text).map_err(|e| CertError::Io {
        path: path.display().to_string(),
        reason: e.to_string(),
    })
}

fn write_private(path: &Path, text: &str) -> Result<(), CertError> {
    write(path, text)?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(|e| {
        CertError::Io {
            path: path.display().to_string(),
            reason: e.to_string(),
        }
    })
}
