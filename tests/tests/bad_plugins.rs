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

/// A plugin call that never returns: the encoder does not wait forever behind it, it
/// exits (code 70) with a log line that says why, so that its supervisor starts a
/// fresh one; the caller gets an error, not a hang.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_call_that_hangs_ends_the_encoder_instead_of_stalling_it() -> anyhow::Result<()> {
    use empathy_grpc::v1::{
        EncodeInput, EncodeRequest, encoder_service_client::EncoderServiceClient,
    };
    let plugin = fixture("empathy_fixture_panicking");
    let args: Vec<String> = [
        "--insecure-plugins",
        "--setting",
        "hang_in_encode=1",
        "--plugin-timeout-ms",
        "500",
        "--plugin",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([plugin.display().to_string()])
    .collect();
    let binary = sibling_binary("empathy-encoder")?;
    let mut encoder =
        empathy_common::launch::spawn(&binary, &args, std::time::Duration::from_secs(60)).await?;
    let mut client = EncoderServiceClient::connect(encoder.url()).await?;
    let request = EncodeRequest {
        modality: "panic".into(),
        inputs: vec![EncodeInput::default()],
        ..EncodeRequest::default()
    };
    let call = tokio::time::timeout(std::time::Duration::from_secs(20), client.encode(request));
    assert!(call.await?.is_err(), "the call must fail, not answer");
    let exit =
        tokio::time::timeout(std::time::Duration::from_secs(20), encoder.child.wait()).await??;
    assert_eq!(exit.code(), Some(70), "{exit:?}");
    Ok(())
}
