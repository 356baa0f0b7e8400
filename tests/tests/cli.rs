//! `empathy` is a thin client; its admin commands (`up`, `train`, `eval`, ...) run
//! `empathy-admin` in its place, so every documented spelling keeps working.

use std::path::PathBuf;
use std::process::{Command, Output};

use empathy_common::launch::sibling_binary;

fn empathy() -> PathBuf {
    sibling_binary("empathy").expect("the empathy binary")
}

fn run(binary: &PathBuf, args: &[&str]) -> Output {
    Command::new(binary)
        .args(args)
        .output()
        .expect("empathy runs")
}

#[test]
fn an_admin_command_runs_empathy_admin_with_every_argument() {
    // `--help` passes through untouched: the admin's own help for `train` answers.
    let out = run(&empathy(), &["train", "--help"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("empathy-admin train"), "{text}");
    assert!(text.contains("--seed"), "{text}");
}

#[test]
fn an_admin_error_reaches_the_caller_with_a_failing_exit_code() {
    let out = run(
        &empathy(),
        &["eval", "--data", "/nonexistent/labelled.jsonl"],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("cannot read /nonexistent/labelled.jsonl"),
        "{err}"
    );
}

#[test]
fn the_help_lists_admin_commands_beside_the_client_ones() {
    let out = run(&empathy(), &["--help"]);
    let text = String::from_utf8_lossy(&out.stdout);
    for command in [
        "analyze", "feedback", "models", "up", "train", "assets", "eval",
    ] {
        assert!(text.contains(&format!("  {command} ")), "{command}: {text}");
    }
    assert!(text.contains("[admin]"), "{text}");
}

#[test]
fn without_empathy_admin_the_client_says_what_is_missing() {
    let dir = std::env::temp_dir().join(format!("empathy-cli-alone-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let alone = dir.join("empathy");
    std::fs::copy(empathy(), &alone).expect("copy empathy");
    let out = Command::new(&alone)
        .args(["up"])
        .env("PATH", &dir)
        .output()
        .expect("empathy runs");
    let _ = std::fs::remove_dir_all(&dir);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("cannot run empathy-admin"), "{err}");
    assert!(err.contains("admin command"), "{err}");
}
