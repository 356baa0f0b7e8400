//! The encoder refuses to start on a plugin it cannot trust to work, and says which
//! file and why.

use std::process::Command;

use empathy_common::launch::sibling_binary;

fn encoder_with_plugin(plugin: &std::path::Path) -> (bool, String) {
    let out = Command::new(sibling_binary("empathy-encoder").expect("encoder binary"))
        .args(["--listen", "127.0.0.1:0", "--insecure-plugins", "--plugin"])
        .arg(plugin)
        .output()
        .expect("run the encoder");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn fixture(name: &str) -> std::path::PathBuf {
    let encoder = sibling_binary("empathy-encoder").expect("encoder binary");
    encoder.with_file_name(empathy_plugin_api::host::library_file_name(name))
}

#[test]
fn without_an_allow_list_the_encoder_does_not_start_and_says_what_to_pass() {
    let out = Command::new(sibling_binary("empathy-encoder").expect("encoder binary"))
        .args(["--listen", "127.0.0.1:0", "--plugin", "text"])
        .output()
        .expect("run the encoder");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the encoder must not start");
    assert!(
        stderr.contains("--allow-sha256") && stderr.contains("--insecure-plugins"),
        "{stderr}"
    );
}

#[test]
fn a_file_that_is_not_a_library_is_refused_by_name() {
    let path = std::env::temp_dir().join(format!("not-a-plugin-{}.so", std::process::id()));
    std::fs::write(&path, b"this is not a shared library").expect("write temp file");
    let (ok, stderr) = encoder_with_plugin(&path);
    let _ = std::fs::remove_file(&path);
    assert!(!ok, "the encoder must not start");
    assert!(
        stderr.contains(&path.display().to_string()),
        "names the file: {stderr}"
    );
}

#[test]
fn a_plugin_of_another_abi_version_is_refused_with_both_versions() {
    let path = fixture("empathy_fixture_wrong_abi");
    assert!(
        path.exists(),
        "{} missing: cargo build --workspace",
        path.display()
    );
    let (ok, stderr) = encoder_with_plugin(&path);
    assert!(!ok, "the encoder must not start");
    assert!(
        stderr.contains(&path.display().to_string()),
        "names the file: {stderr}"
    );
    assert!(
        stderr.contains("999") && stderr.contains('1'),
        "names both versions: {stderr}"
    );
}
