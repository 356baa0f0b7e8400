//! TLS to PostgreSQL, with libpq's URL parameters: `sslmode=disable|prefer|require|
//! verify-ca|verify-full` and `sslrootcert=PATH` (PEM). Any TLS connection is verified,
//! chain and host name, whatever the mode: against `sslrootcert` when given, else the
//! system's roots. So `prefer` (the default) uses TLS when the server offers it and
//! refuses a server whose certificate does not verify, where libpq would not check;
//! `verify-ca` checks the host name too.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use percent_encoding::percent_decode_str;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use tokio_postgres_rustls::MakeRustlsConnect;

/// The URL tokio-postgres can parse (it knows neither `sslrootcert` nor the `verify-*`
/// modes, which become `require`), and the root certificate file if one was given.
pub(super) fn split_tls_params(url: &str) -> anyhow::Result<(String, Option<PathBuf>)> {
    let Some((head, query)) = url.split_once('?') else {
        return Ok((url.to_string(), None));
    };
    let mut root = None;
    let mut kept = Vec::new();
    for param in query.split('&') {
        match param.split_once('=') {
            Some(("sslrootcert", value)) => {
                let path = percent_decode_str(value)
                    .decode_utf8()
                    .context("sslrootcert is not UTF-8")?;
                if path == "system" {
                    root = None; // libpq's name for the system's roots, our default
                } else {
                    root = Some(PathBuf::from(path.as_ref()));
                }
            }
            Some(("sslmode", "verify-ca" | "verify-full")) => kept.push("sslmode=require"),
            _ => kept.push(param),
        }
    }
    let url = if kept.is_empty() {
        head.to_string()
    } else {
        format!("{head}?{}", kept.join("&"))
    };
    Ok((url, root))
}

/// A connector that trusts `root` (PEM, one or more certificates), or the system's
/// roots without one.
pub(super) fn connector(root: Option<&Path>) -> anyhow::Result<MakeRustlsConnect> {
    let mut roots = rustls::RootCertStore::empty();
    match root {
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(path)
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                .with_context(|| format!("sslrootcert {}: not a PEM file", path.display()))?;
            if certs.is_empty() {
                bail!("sslrootcert {}: no certificate in it", path.display());
            }
            for cert in certs {
                roots
                    .add(cert)
                    .with_context(|| format!("sslrootcert {}", path.display()))?;
            }
        }
        None => {
            // An unreadable system store only matters if the server offers TLS; then
            // the handshake fails, saying the issuer is unknown.
            let found = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(found.certs);
        }
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .context("TLS setup")?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(MakeRustlsConnect::new(config))
}

/// A hint for a connection error that a certificate caused.
pub(super) fn hint(message: &str) -> &'static str {
    if message.contains("certificate") || message.contains("UnknownIssuer") {
        "; the server's TLS certificate did not verify: name its CA with \
         sslrootcert=/path/to/ca.pem in the URL (or connect with sslmode=disable on a \
         trusted network)"
    } else {
        ""
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libpq_tls_parameters_become_what_the_client_parses() -> anyhow::Result<()> {
        let (url, root) = split_tls_params(
            "postgres://u@db/x?sslmode=verify-full&sslrootcert=%2Fetc%2Fca%20a.pem&application_name=t",
        )?;
        assert_eq!(url, "postgres://u@db/x?sslmode=require&application_name=t");
        assert_eq!(root, Some(PathBuf::from("/etc/ca a.pem")));
        let (url, root) = split_tls_params("postgres://u@db/x?sslrootcert=system")?;
        assert_eq!(url, "postgres://u@db/x");
        assert_eq!(root, None);
        let (url, root) = split_tls_params("postgres://u@db/x")?;
        assert_eq!((url.as_str(), root), ("postgres://u@db/x", None));
        Ok(())
    }

    #[test]
    fn a_root_file_that_is_not_pem_is_a_clear_error() {
        let dir = std::env::temp_dir().join(format!("empathy-tls-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("ca.pem");
        let _ = std::fs::write(&path, "not a certificate");
        let err = connector(Some(&path)).err().map(|e| format!("{e:#}"));
        let _ = std::fs::remove_dir_all(&dir);
        let err = err.unwrap_or_default();
        assert!(err.contains("no certificate"), "{err}");
        let missing = connector(Some(Path::new("/nonexistent/ca.pem")))
            .err()
            .map(|e| format!("{e:#}"))
            .unwrap_or_default();
        assert!(missing.contains("/nonexistent/ca.pem"), "{missing}");
    }
}
