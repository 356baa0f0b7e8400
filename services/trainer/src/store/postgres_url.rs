//! The PostgreSQL URL: parsed and checked at startup, TLS required off this machine,
//! and shown without its password.

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use ::postgres::Config;
use ::postgres::config::{Host, SslMode};
use anyhow::{anyhow, bail};

use super::postgres_tls;

/// Unless the URL says otherwise (`?connect_timeout=`).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// `url` with the password (in the user info or a `password=` parameter) replaced by
/// `***`. Mirrors how the client splits a URL: the user info ends at the first `@`.
pub fn redact(url: &str) -> String {
    let (scheme, rest) = match url.find("://") {
        Some(i) => url.split_at(i + 3),
        None => ("", url),
    };
    let rest = match rest.find('@') {
        Some(at) => match rest[..at].find(':') {
            Some(colon) => format!("{}:***{}", &rest[..colon], &rest[at..]),
            None => rest.to_string(),
        },
        None => rest.to_string(),
    };
    // `?password=...&...`
    let rest = match rest.split_once('?') {
        Some((head, query)) => {
            let params: Vec<String> = query
                .split('&')
                .map(|kv| match kv.split_once('=') {
                    Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                    _ => kv.to_string(),
                })
                .collect();
            format!("{head}?{}", params.join("&"))
        }
        None => rest,
    };
    format!("{scheme}{rest}")
}

/// `message` with every occurrence of the password replaced by `***` (a server or a
/// library could quote it back).
pub(super) fn scrub(message: String, config: &Config) -> String {
    match config.get_password().map(String::from_utf8_lossy) {
        Some(password) if !password.is_empty() => message.replace(password.as_ref(), "***"),
        _ => message,
    }
}

/// Whether every host is a Unix socket or loopback: traffic that never leaves here.
fn on_this_machine(config: &Config) -> bool {
    config.get_hosts().iter().all(|host| match host {
        Host::Tcp(name) => {
            name == "localhost"
                || name
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        }
        Host::Unix(_) => true,
    })
}

/// Parses the URL as the client will, so a bad one fails at startup; also returns the
/// `sslrootcert` file, if any.
pub(super) fn parse(url: &str) -> anyhow::Result<(Config, Option<PathBuf>)> {
    let shown = redact(url);
    let (client_url, root) =
        postgres_tls::split_tls_params(url).map_err(|e| anyhow!("--database {shown}: {e:#}"))?;
    let mut config = Config::from_str(&client_url)
        .map_err(|e| anyhow!("--database {shown}: {:#}", anyhow::Error::new(e)))?;
    if config.get_user().is_none_or(str::is_empty) {
        bail!("--database {shown}: give a user, postgres://USER@HOST:PORT/DB");
    }
    if config.get_hosts().is_empty() {
        bail!(
            "--database {shown}: give a host, postgres://USER@HOST:PORT/DB (a Unix socket \
             directory as ?host=/run/postgresql)"
        );
    }
    if !client_url.contains("sslmode=") && !on_this_machine(&config) {
        // Feedback holds what people said: never in plaintext across a network unless
        // the URL says sslmode=prefer or disable.
        config.ssl_mode(SslMode::Require);
    }
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    if config.get_options().is_none() {
        // A statement stuck on a lock or a sick server fails instead of holding the
        // writer (and every acknowledgement behind it) forever.
        config.options("-c statement_timeout=60000");
    }
    if config.get_application_name().is_none() {
        config.application_name("empathy-trainer");
    }
    Ok((config, root))
}

pub fn check_url(url: &str) -> anyhow::Result<()> {
    parse(url).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact("postgres://u:s3cret@db.example:5432/feedback"),
            "postgres://u:***@db.example:5432/feedback"
        );
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact("postgres://h/db"), "postgres://h/db");
        assert_eq!(
            redact("postgresql://u@h/db?sslmode=disable&password=s3cret&x=1"),
            "postgresql://u@h/db?sslmode=disable&password=***&x=1"
        );
        // A password with '/' and ':' in it (not URL-escaped) is hidden whole.
        assert_eq!(redact("postgres://u:a/b:c@h/db"), "postgres://u:***@h/db");
        assert_eq!(redact("postgres://u:@h/db"), "postgres://u:***@h/db");
    }

    #[test]
    fn tls_is_required_off_this_machine_unless_the_url_says_otherwise() -> anyhow::Result<()> {
        let mode = |url: &str| parse(url).map(|(c, _)| c.get_ssl_mode());
        assert_eq!(mode("postgres://u@db.example/x")?, SslMode::Require);
        assert_eq!(mode("postgres://u@10.0.0.7:5432/x")?, SslMode::Require);
        assert_eq!(mode("postgres://u@db/x?sslmode=disable")?, SslMode::Disable);
        assert_eq!(mode("postgres://u@127.0.0.1/x")?, SslMode::Prefer);
        assert_eq!(
            mode("postgres://u@localhost/x?host=/run/postgresql")?,
            SslMode::Prefer
        );
        Ok(())
    }

    #[test]
    fn urls_are_checked_before_connecting() {
        let config = parse("postgres://u:s3cret@localhost:5433/feedback")
            .ok()
            .map(|(c, _)| c);
        assert_eq!(
            config.as_ref().and_then(|c| c.get_password()),
            Some(&b"s3cret"[..])
        );
        assert_eq!(config.as_ref().map(|c| c.get_ports()), Some(&[5433u16][..]));
        assert_eq!(
            config.as_ref().and_then(|c| c.get_connect_timeout()),
            Some(&CONNECT_TIMEOUT)
        );
        assert_eq!(
            config.as_ref().and_then(|c| c.get_options()),
            Some("-c statement_timeout=60000")
        );
        // A Unix socket directory as a parameter.
        let config = parse("postgres://u@localhost/db?host=/run/postgresql")
            .ok()
            .map(|(c, _)| c);
        assert!(config.is_some_and(|c| {
            c.get_hosts()
                .iter()
                .any(|h| matches!(h, ::postgres::config::Host::Unix(_)))
        }));
        for bad in [
            "postgres://u:s3cret@h:port/db",
            "postgres://:s3cret@h/db",
            "postgres://u:s3cret@/db",
            "postgres://u:s3cret@h/db?nonsense=1",
        ] {
            let err = parse(bad).err().map(|e| format!("{e:#}"));
            assert!(
                err.as_ref()
                    .is_some_and(|e| e.contains("***") && !e.contains("s3cret")),
                "{bad}: {err:?}"
            );
        }
    }
}
