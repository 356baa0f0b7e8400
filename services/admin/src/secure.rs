//! What `empathy up --secure` needs on this machine: a local CA, a certificate per
//! service (server and client use, for mTLS between them) and a first admin key, under
//! `<assets>/secure`, made once and reused. Keys and the admin key are 0600.

use std::{
    fs,
    io::Write,
    net::IpAddr,
    os::unix::fs::{OpenOptionsExt, PermissionsExt},
    path::{Path, PathBuf},
};

use anyhow::Context;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    SanType,
};

/// The services that get a certificate.
pub const SERVICES: [&str; 4] = ["fusion", "encoder", "trainer", "situation"];

pub struct Secure {
    pub dir: PathBuf,
}

impl Secure {
    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    pub fn admin_key(&self) -> PathBuf {
        self.dir.join("admin.key")
    }

    /// `--tls-cert`, `--tls-key` and `--tls-ca` for `service`.
    pub fn tls_args(&self, service: &str) -> Vec<String> {
        let path = |f: String| self.dir.join(f).to_string_lossy().into_owned();
        vec![
            "--tls-cert".into(),
            path(format!("{service}.pem")),
            "--tls-key".into(),
            path(format!("{service}.key")),
            "--tls-ca".into(),
            path("ca.pem".into()),
        ]
    }
}

/// Makes (or finds) the CA, the service certificates and the admin key.
pub fn prepare(assets: &Path) -> anyhow::Result<Secure> {
    let dir = assets.join("secure");
    fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))?;
    let secure = Secure { dir };
    let ca_key_path = secure.dir.join("ca.key");
    if !ca_key_path.exists() || !secure.ca().exists() {
        let key = KeyPair::generate()?;
        let cert = ca_params()?.self_signed(&key)?;
        write_private(&ca_key_path, &key.serialize_pem())?;
        fs::write(secure.ca(), cert.pem())?;
        // A new CA: certificates of the old one would not verify.
        for service in SERVICES {
            let _ = fs::remove_file(secure.dir.join(format!("{service}.pem")));
        }
    }
    let ca_key = KeyPair::from_pem(&fs::read_to_string(&ca_key_path)?)
        .with_context(|| format!("{} is not a PEM private key", ca_key_path.display()))?;
    let ca = ca_params()?;
    let issuer = Issuer::from_params(&ca, &ca_key);
    for service in SERVICES {
        let cert_path = secure.dir.join(format!("{service}.pem"));
        if cert_path.exists() {
            continue;
        }
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(vec!["localhost".to_string(), service.into()])?;
        params
            .distinguished_name
            .push(DnType::CommonName, format!("empathy {service}"));
        for ip in ["127.0.0.1", "::1"] {
            params
                .subject_alt_names
                .push(SanType::IpAddress(ip.parse::<IpAddr>()?));
        }
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let cert = params.signed_by(&key, &issuer)?;
        write_private(
            &secure.dir.join(format!("{service}.key")),
            &key.serialize_pem(),
        )?;
        fs::write(&cert_path, cert.pem())?;
    }
    if !secure.admin_key().exists() {
        let (key, _) = empathy_common::auth::new_key();
        write_private(&secure.admin_key(), &format!("{key}\n"))?;
    }
    Ok(secure)
}

/// The CA's parameters: the same each time, so its key can sign again after a restart.
fn ca_params() -> anyhow::Result<CertificateParams> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params
        .distinguished_name
        .push(DnType::CommonName, "empathy local CA");
    Ok(params)
}

/// A file only its owner can read, created so from the start (no window at 0644).
fn write_private(path: &Path, contents: &str) -> anyhow::Result<()> {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    file.write_all(contents.as_bytes())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn makes_private_files_once() -> anyhow::Result<()> {
        let assets = std::env::temp_dir().join(format!("empathy-secure-{}", std::process::id()));
        let first = prepare(&assets)?;
        let key = fs::read_to_string(first.admin_key())?;
        assert!(empathy_common::auth::key_id(key.trim()).is_some(), "{key}");
        for private in ["ca.key", "fusion.key", "admin.key"] {
            let mode = fs::metadata(first.dir.join(private))?.permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{private}");
        }
        let ca = fs::read(first.ca())?;
        let again = prepare(&assets)?;
        assert_eq!(fs::read(again.ca())?, ca, "reused, not remade");
        assert_eq!(fs::read_to_string(again.admin_key())?, key);
        fs::remove_dir_all(&assets)?;
        Ok(())
    }
}
