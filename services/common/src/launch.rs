//! Starting a service binary as a child process and learning the address it bound:
//! used by `empathy up` and by the end-to-end tests, so both run the real binaries
//! the same way.

use std::{path::Path, process::Stdio, time::Duration};

use anyhow::{Context, bail};
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, Command},
};

/// A running service; killed when dropped (a test that fails must not leak servers).
pub struct Service {
    pub name: String,
    pub child: Child,
    /// The gRPC address it bound, e.g. `127.0.0.1:50051`.
    pub addr: String,
    /// The Prometheus endpoint, if it serves one.
    pub metrics_addr: Option<String>,
    /// Whether it serves TLS (its URL is then https).
    pub tls: bool,
    /// Its HTTP door (fusion's JSON API and page), if it serves one.
    pub http_addr: Option<String>,
}

impl Service {
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// Asks for a graceful stop (SIGTERM) and waits up to `grace` before killing.
    pub async fn stop(mut self, grace: Duration) -> anyhow::Result<()> {
        #[cfg(unix)]
        if let Some(pid) = self.child.id() {
            // SAFETY: kill(2) with a pid we spawned and still own (not yet reaped).
            unsafe {
                libc::kill(pid as libc::pid_t, libc::SIGTERM);
            }
        }
        if tokio::time::timeout(grace, self.child.wait())
            .await
            .is_err()
        {
            tracing::warn!(service = %self.name, "did not stop in time; killing");
            self.child.kill().await?;
        }
        Ok(())
    }
}

/// Starts `program` with `args` and waits (up to `ready_within`) for the line
/// `<name> listening grpc=<addr> metrics=<addr|-> tls=<on|off> http=<addr|->` that
/// `server::serve` prints.
/// The child's stderr (its logs) is passed through.
pub async fn spawn(
    program: &Path,
    args: &[String],
    ready_within: Duration,
) -> anyhow::Result<Service> {
    let name = program
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut command = Command::new(program);
    command
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    #[cfg(target_os = "linux")]
    // SAFETY: prctl is async-signal-safe, as pre_exec requires. It makes the kernel
    // kill the service if its supervisor dies without cleaning up (SIGKILL, crash).
    unsafe {
        command.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
            Ok(())
        });
    }
    let mut child = command
        .spawn()
        .with_context(|| format!("cannot start {}", program.display()))?;
    let stdout = child.stdout.take().context("child has no stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let ready = async {
        while let Some(line) = lines.next_line().await? {
            if let Some(rest) = line.split_once(" listening ").map(|(_, r)| r.to_string()) {
                return Ok(Some(rest));
            }
        }
        Ok::<_, std::io::Error>(None)
    };
    let rest = match tokio::time::timeout(ready_within, ready).await {
        Ok(Ok(Some(rest))) => rest,
        Ok(Ok(None)) => {
            let status = child.wait().await?;
            bail!("{name} exited before it was ready ({status}); its log above says why");
        }
        Ok(Err(e)) => bail!("reading {name}'s output failed: {e}"),
        Err(_) => bail!("{name} was not ready within {ready_within:?}"),
    };
    let field = |key: &str| {
        rest.split_whitespace()
            .find_map(|kv| kv.strip_prefix(key))
            .filter(|v| *v != "-")
            .map(str::to_string)
    };
    let addr = field("grpc=").with_context(|| format!("{name} printed no grpc address: {rest}"))?;
    // Keep draining stdout so the child never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok(Service {
        name,
        child,
        addr,
        metrics_addr: field("metrics="),
        tls: field("tls=").as_deref() == Some("on"),
        http_addr: field("http="),
    })
}

/// A sibling binary of the running executable (cargo and our images put them together).
pub fn sibling_binary(name: &str) -> anyhow::Result<std::path::PathBuf> {
    let exe = std::env::current_exe()?;
    let mut dir = exe
        .parent()
        .context("executable has no directory")?
        .to_path_buf();
    // Test executables live one level down, in target/<profile>/deps.
    if dir.ends_with("deps") {
        dir.pop();
    }
    let path = dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    if !path.exists() {
        bail!(
            "{} not found: build the workspace first (cargo build --workspace)",
            path.display()
        );
    }
    Ok(path)
}
