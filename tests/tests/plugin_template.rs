//! The out-of-tree plugin path as an integrator walks it: `empathy plugin new` makes a
//! crate outside the workspace that depends on the plugin API crate alone; its own
//! tests pass; the real encoder loads the built library (pinned) and serves the new
//! modality over gRPC.

mod support;

use std::{path::Path, process::Command};

use empathy_grpc::v1::{
    EncodeInput, EncodeRequest, EncoderInfoRequest, encode_input::Payload,
    encoder_service_client::EncoderServiceClient,
};

/// `cargo args` in `dir` with its own target directory.
fn cargo(dir: &Path, target: &Path, args: &[&str]) -> anyhow::Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let target = ("CARGO_TARGET_DIR", target.display().to_string());
    support::run(cargo, args, dir, &[target]).map(drop)
}

fn series(samples: &[f32]) -> EncodeInput {
    EncodeInput {
        payload: Some(Payload::Data(
            samples.iter().flat_map(|s| s.to_le_bytes()).collect(),
        )),
        mime_type: String::new(),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_plugin_made_from_the_template_builds_outside_and_loads_in_the_encoder()
-> anyhow::Result<()> {
    let dir = support::temp_dir("plugin-template");
    let crate_dir = dir.join("heart-rate");
    let target = dir.join("target");
    let made = support::empathy(&[
        "plugin",
        "new",
        "heart-rate",
        "--dir",
        &crate_dir.display().to_string(),
    ])?;
    assert!(String::from_utf8_lossy(&made.stdout).contains("heart_rate"));
    let manifest = std::fs::read_to_string(crate_dir.join("Cargo.toml"))?;
    assert!(manifest.contains("empathy-plugin-api"));
    assert!(
        !manifest.contains("empathy-proto"),
        "the API crate alone: {manifest}"
    );
    // Its own tests (the encoder's loader on the built library), then the library.
    cargo(&crate_dir, &target, &["test", "--quiet"])?;
    cargo(&crate_dir, &target, &["build", "--quiet"])?;
    let library = target
        .join("debug")
        .join(empathy_plugin_api::host::library_file_name(
            "empathy_plugin_heart_rate",
        ));

    // Made twice into the same place: refused, nothing overwritten.
    let again = Command::new(empathy_common::launch::sibling_binary("empathy")?)
        .args(["plugin", "new", "heart-rate", "--dir"])
        .arg(&crate_dir)
        .output()?;
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("not empty"));

    let library = library.display().to_string();
    let encoder = support::start_encoder(&["--plugin", &library]).await?;
    let mut client = EncoderServiceClient::connect(encoder.url()).await?;
    let info = client.info(EncoderInfoRequest {}).await?.into_inner();
    let served: Vec<&str> = info
        .modalities
        .iter()
        .map(|m| m.modality.as_str())
        .collect();
    assert!(
        served.contains(&"heart_rate") && served.contains(&"text"),
        "{served:?}"
    );

    let request = EncodeRequest {
        modality: "heart_rate".into(),
        inputs: vec![series(&[62.0, 64.0, 66.0, 68.0])],
        ..EncodeRequest::default()
    };
    let answer = client.encode(request.clone()).await?.into_inner();
    let embedding = &answer.outputs[0].embedding;
    assert_eq!(embedding.len(), 5);
    assert_eq!(
        (embedding[0], embedding[2], embedding[3]),
        (65.0, 62.0, 68.0)
    );
    assert!((embedding[4] - 2.0).abs() < 1e-4, "trend {embedding:?}");

    // A caller's mistake is INVALID_ARGUMENT with the plugin's reason; it keeps serving.
    let mut bad = request.clone();
    bad.inputs = vec![EncodeInput {
        payload: Some(Payload::Data(vec![1u8, 2, 3].into())),
        mime_type: String::new(),
    }];
    let refused = client.encode(bad).await.err();
    assert!(
        refused
            .as_ref()
            .is_some_and(|s| s.code() == tonic::Code::InvalidArgument
                && s.message().contains("whole number")),
        "{refused:?}"
    );
    assert!(client.encode(request).await.is_ok());
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
