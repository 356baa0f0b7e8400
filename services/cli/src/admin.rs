//! The operator's commands (`empathy up`, `empathy train`, ...) belong to
//! `empathy-admin`, which links training, asset fetching and the process supervisor.
//! `empathy` runs it in its own place, so both spellings work and this client stays thin.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::Command;

use anyhow::Context;

/// Name of the admin executable, looked up beside `empathy` first, then on PATH.
pub const ADMIN_BINARY: &str = "empathy-admin";

/// The words after an admin command, passed on untouched (`--help` included).
#[derive(clap::Args, Debug)]
#[command(disable_help_flag = true)]
pub struct AdminArgs {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, num_args = 0..)]
    pub args: Vec<OsString>,
}

/// Runs `empathy-admin <command> <args>` in place of this process (Unix: exec, so
/// signals such as Ctrl-C on `empathy up` reach the supervisor directly).
pub fn run(command: &str, args: AdminArgs) -> anyhow::Result<()> {
    let binary = admin_binary();
    let mut child = Command::new(&binary);
    child.arg(command).args(&args.args);
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        let err = child.exec();
        Err(err).with_context(|| cannot_run(&binary))
    }
    #[cfg(not(unix))]
    {
        let status = child.status().with_context(|| cannot_run(&binary))?;
        anyhow::ensure!(
            status.success(),
            "{ADMIN_BINARY} {command} failed ({status})"
        );
        Ok(())
    }
}

fn admin_binary() -> PathBuf {
    let sibling = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join(ADMIN_BINARY)))
        .filter(|path| path.is_file());
    sibling.unwrap_or_else(|| PathBuf::from(ADMIN_BINARY))
}

fn cannot_run(binary: &std::path::Path) -> String {
    format!(
        "cannot run {}: this is an admin command; install {ADMIN_BINARY} beside empathy \
         (cargo build builds both) or on PATH",
        binary.display()
    )
}
