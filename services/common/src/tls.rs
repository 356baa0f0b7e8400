//! TLS for every service (rustls through tonic): a server identity, client
//! certificates checked against one CA (mTLS between our services), and the client
//! side that our services use to call each other.

use std::{net::SocketAddr, path::PathBuf, sync::OnceLock, time::Duration};

use anyhow::{Context, bail};
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity, ServerTlsConfig};

/// TLS flags every service takes (flattened into `ServeOptions`).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct TlsOptions {
    /// This service's certificate chain (PEM): serve TLS. Also its client identity
    /// when it calls other services.
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// The CA (PEM) that signs our services' certificates: client certificates are
    /// checked against it, and so are the servers this service calls over https.
    #[arg(long)]
    pub tls_ca: Option<PathBuf>,
    /// Accept only peers with a client certificate signed by --tls-ca (internal
    /// services: encoder, situation). Without it a certificate is optional and, when
    /// given, marks the caller as one of our services.
    #[arg(long, requires = "tls_ca")]
    pub require_client_cert: bool,
    /// Allow plaintext on an address other than loopback (only behind a network that
    /// is trusted, e.g. a service mesh that does TLS for us).
    #[arg(long)]
    pub insecure: bool,
}

impl TlsOptions {
    /// The server side, or None for plaintext. Plaintext is refused on any address
    /// but loopback unless `--insecure` says it is meant.
    pub fn server(&self, listen: SocketAddr) -> anyhow::Result<Option<ServerTlsConfig>> {
        let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) else {
            if self.require_client_cert {
                bail!("--require-client-cert needs TLS: give --tls-cert and --tls-key");
            }
            if !listen.ip().is_loopback() && !self.insecure {
                bail!(
                    "refusing to serve plaintext on {listen}: anyone on the network could \
                     read and send requests. Give --tls-cert and --tls-key (`empathy up \
                     --secure` makes them), or --insecure if a trusted network encrypts \
                     for us"
                );
            }
            return Ok(None);
        };
        let mut config = ServerTlsConfig::new()
            .identity(Identity::from_pem(read(cert)?, read(key)?))
            .timeout(Duration::from_secs(10));
        if let Some(ca) = &self.tls_ca {
            config = config
                .client_ca_root(Certificate::from_pem(read(ca)?))
                .client_auth_optional(!self.require_client_cert);
        }
        Ok(Some(config))
    }

    /// Installs the client side for [`endpoint`]: https URLs are verified against
    /// --tls-ca and present --tls-cert as this service's identity.
    pub fn install_client(&self) -> anyhow::Result<()> {
        let Some(ca) = &self.tls_ca else {
            return Ok(());
        };
        let mut config = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read(ca)?));
        if let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) {
            config = config.identity(Identity::from_pem(read(cert)?, read(key)?));
        }
        CLIENT
            .set(config)
            .map_err(|_| anyhow::anyhow!("the TLS client was already installed"))
    }
}

/// The process's client TLS: one per process, set once at startup, like the log
/// subscriber (passing it through every client constructor would buy nothing).
static CLIENT: OnceLock<ClientTlsConfig> = OnceLock::new();

/// An endpoint for `url`; an https URL uses the installed client TLS, verifying the
/// server as `domain` (the host a URL named before it was resolved to an address).
pub fn endpoint(url: &str, domain: Option<&str>) -> anyhow::Result<Endpoint> {
    let endpoint =
        Endpoint::from_shared(url.to_string()).with_context(|| format!("{url:?} is not a URL"))?;
    if !url.starts_with("https://") {
        return Ok(endpoint);
    }
    let mut config = CLIENT.get().cloned().with_context(|| {
        format!("{url} needs TLS, but this service was given no --tls-ca to verify it")
    })?;
    if let Some(domain) = domain {
        config = config.domain_name(domain);
    }
    endpoint
        .tls_config(config)
        .with_context(|| format!("cannot set up TLS for {url}"))
}

fn read(path: &std::path::Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
}

/// Whether the request came over mTLS with a client certificate that --tls-ca signed
/// (rustls refused the handshake otherwise): one of our own services.
pub fn is_internal_peer<B>(request: &http::Request<B>) -> bool {
    use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
    request
        .extensions()
        .get::<TlsConnectInfo<TcpConnectInfo>>()
        .and_then(|info| info.peer_certs())
        .is_some_and(|certs| !certs.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plaintext_is_refused_off_loopback_unless_insecure() {
        let plain = TlsOptions::default();
        let public: SocketAddr = "0.0.0.0:50051".parse().expect("address");
        let local: SocketAddr = "127.0.0.1:50051".parse().expect("address");
        let err = plain.server(public).err().map(|e| e.to_string());
        assert!(
            err.as_deref().is_some_and(|e| e.contains("--insecure")),
            "{err:?}"
        );
        assert!(plain.server(local).is_ok_and(|c| c.is_none()));
        let insecure = TlsOptions {
            insecure: true,
            ..TlsOptions::default()
        };
        assert!(insecure.server(public).is_ok_and(|c| c.is_none()));
    }
}
