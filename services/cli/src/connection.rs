//! How the CLI reaches a server: plaintext or TLS (the URL's scheme says which), the
//! CA that signs the server's certificate, and the API key sent with every call.

use std::{path::PathBuf, sync::OnceLock};

use anyhow::Context;
use tonic::{
    metadata::{Ascii, MetadataValue},
    service::{Interceptor, interceptor::InterceptedService},
    transport::{Certificate, Channel, ClientTlsConfig, Endpoint},
};

/// Flags every command takes.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct Credentials {
    /// The API key to call with (`empathy keys create` makes one). Default, for an
    /// https server checked against the local CA only: the admin key `empathy up
    /// --secure` wrote under <assets>/secure, if this user can read it.
    #[arg(long, env = "EMPATHY_API_KEY", hide_env_values = true, global = true)]
    pub api_key: Option<String>,
    /// The CA certificate (PEM) that signs the server's. Default: the local CA that
    /// `empathy up --secure` made, <assets>/secure/ca.pem.
    #[arg(long, env = "EMPATHY_CA", global = true)]
    pub ca: Option<PathBuf>,
}

static CREDENTIALS: OnceLock<Credentials> = OnceLock::new();

/// Sets the credentials for this process's calls (once, from `main`).
pub fn configure(credentials: Credentials) {
    let _ = CREDENTIALS.set(credentials);
}

/// Where `empathy up --secure` keeps the local CA and the first admin key.
fn secure_dir() -> PathBuf {
    std::env::var_os("EMPATHY_ASSETS")
        .map_or_else(|| PathBuf::from("assets"), PathBuf::from)
        .join("secure")
}

/// A channel whose calls carry the API key (and, to fusion, the tenant).
pub type Conn = InterceptedService<Channel, CallMetadata>;

/// Adds `authorization: Bearer <key>` and the tenant header to each call.
#[derive(Clone)]
pub struct CallMetadata {
    key: Option<MetadataValue<Ascii>>,
    tenant: Option<MetadataValue<Ascii>>,
}

impl Interceptor for CallMetadata {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.key {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        if let Some(value) = &self.tenant {
            request
                .metadata_mut()
                .insert(empathy_proto::TENANT_HEADER, value.clone());
        }
        Ok(request)
    }
}

/// The key given, else the local admin key, but only for a server whose certificate
/// the local CA signed: it never leaves for another host, nor in plaintext.
fn key(local_ca: bool) -> anyhow::Result<Option<MetadataValue<Ascii>>> {
    let given = CREDENTIALS.get().and_then(|c| c.api_key.clone());
    let key = given.or_else(|| {
        local_ca
            .then(|| std::fs::read_to_string(secure_dir().join("admin.key")).ok())
            .flatten()
            .map(|k| k.trim().to_string())
    });
    key.filter(|k| !k.is_empty())
        .map(|k| {
            MetadataValue::try_from(format!("Bearer {k}"))
                .context("the API key holds characters a header cannot carry")
        })
        .transpose()
}

/// Which tenant a command acts for.
#[derive(clap::Args, Clone, Debug, Default, PartialEq, Eq)]
pub struct Tenant {
    /// The tenant to act for: its own model line, feedback and suggestions. Without
    /// API keys any caller may name one; with a key, the key's tenant decides at
    /// fusion, and naming another tenant at the trainer takes an admin key. Default:
    /// the key's tenant, else "default".
    #[arg(long = "tenant", env = "EMPATHY_TENANT", value_parser = tenant_name)]
    name: Option<String>,
}

impl Tenant {
    /// The tenant named, if any.
    pub fn given(&self) -> Option<&str> {
        self.name.as_deref().filter(|t| !t.is_empty())
    }

    /// The name for a request's `tenant` field ("" = the caller's own).
    pub fn field(&self) -> String {
        self.given().unwrap_or_default().to_string()
    }
}

/// A valid tenant name, else a message that says what one looks like; "" (an empty
/// EMPATHY_TENANT) names none.
fn tenant_name(name: &str) -> Result<String, String> {
    if name.is_empty() || empathy_proto::is_tenant_name(name) {
        Ok(name.to_string())
    } else {
        Err(format!(
            "{name:?} is not a tenant name: 1-64 characters of a-z, 0-9, '-' and '_'"
        ))
    }
}

/// Connects to `url` (`what` names the service in errors).
pub async fn connect(url: &str, what: &str) -> anyhow::Result<Conn> {
    connect_as(url, what, &Tenant::default()).await
}

/// Connects to `url`, each call naming `tenant` in the tenant header (fusion reads it
/// when it checks no API keys).
pub async fn connect_as(url: &str, what: &str, tenant: &Tenant) -> anyhow::Result<Conn> {
    let mut endpoint = Endpoint::from_shared(url.to_string())
        .with_context(|| format!("{url:?} is not a URL"))?
        .connect_timeout(std::time::Duration::from_secs(5));
    let given_ca = CREDENTIALS.get().and_then(|c| c.ca.clone());
    let https = url.starts_with("https://");
    if https {
        let ca = given_ca
            .clone()
            .unwrap_or_else(|| secure_dir().join("ca.pem"));
        let pem = std::fs::read(&ca).with_context(|| {
            format!(
                "cannot read the CA certificate {} to check {what} at {url}: give --ca or \
                 EMPATHY_CA",
                ca.display()
            )
        })?;
        endpoint = endpoint
            .tls_config(ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem)))?;
    }
    let channel = endpoint.connect().await.with_context(|| {
        let hint = if url.starts_with("http://") {
            " (a system started with `empathy up --secure` serves https:// URLs)"
        } else {
            ""
        };
        format!("cannot reach {what} at {url}; is `empathy up` running?{hint}")
    })?;
    let metadata = CallMetadata {
        key: key(https && given_ca.is_none())?,
        // A valid tenant name is always a valid header value.
        tenant: tenant.given().and_then(|t| MetadataValue::try_from(t).ok()),
    };
    Ok(InterceptedService::new(channel, metadata))
}
