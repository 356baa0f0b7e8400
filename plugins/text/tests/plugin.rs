//! The plugin as the encoder host sees it, on the real model.

mod common;

use std::collections::HashMap;

use empathy_plugin_api::{ErrorKind, Plugin};
use empathy_plugin_text::{MODEL_ID, MPNET_MODEL_ID, MPNET_SUBDIR, TextPlugin};
use empathy_proto::v1::{EncodeRequest, PluginConfig};

fn config(settings: &[(&str, &str)]) -> PluginConfig {
    PluginConfig {
        assets_dir: common::assets_dir().to_string_lossy().into_owned(),
        settings: settings
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<HashMap<_, _>>(),
        ..Default::default()
    }
}

fn create_error(config: &PluginConfig) -> empathy_plugin_api::PluginError {
    match TextPlugin::create(config) {
        Ok(_) => panic!("created a plugin from {config:?}"),
        Err(e) => e,
    }
}

#[test]
fn encodes_texts_with_model_info() {
    common::model_dir();
    let plugin = TextPlugin::create(&config(&[("max_batch", "16")])).expect("creating");
    let info = plugin.info();
    assert_eq!(info.len(), 1);
    assert_eq!(info[0].modality, "text");
    assert_eq!(info[0].embedding_dim, 384);
    assert_eq!(info[0].max_batch, 16);
    assert_eq!(info[0].max_input_size, 10_000);
    let model = info[0].model.clone().expect("model ref");
    assert_eq!(model.id, MODEL_ID);
    assert_eq!(model.version.len(), 12);

    let request = EncodeRequest::texts("text", ["I am thrilled!", "This is awful.", "我很难过"]);
    let response = plugin.encode(request).expect("encoding");
    assert_eq!(response.model, Some(model));
    assert_eq!(response.outputs.len(), 3);
    assert!(response.outputs.iter().all(|o| o.embedding.len() == 384));

    let bad = EncodeRequest {
        modality: "text".to_string(),
        ..Default::default()
    };
    let error = plugin.encode(bad).expect_err("an empty request");
    assert_eq!(error.kind, ErrorKind::InvalidInput);
}

/// `model_dir` pointing at all-mpnet-base-v2 serves its 768-wide embeddings under its
/// own model id, so a version trained on them is never served MiniLM's.
#[test]
fn model_dir_serves_mpnet_under_its_own_id() {
    let dir = common::model_dir_of("all-mpnet-base-v2");
    assert!(dir.ends_with(MPNET_SUBDIR));
    let plugin =
        TextPlugin::create(&config(&[("model_dir", &dir.to_string_lossy())])).expect("creating");
    let info = plugin.info();
    assert_eq!(info[0].embedding_dim, 768);
    let model = info[0].model.clone().expect("model ref");
    assert_eq!(model.id, MPNET_MODEL_ID);
    let response = plugin
        .encode(EncodeRequest::texts(
            "text",
            ["Not bad at all.", "I wouldn't go back."],
        ))
        .expect("encoding");
    assert_eq!(response.model, Some(model));
    assert!(response.outputs.iter().all(|o| o.embedding.len() == 768));
}

/// `precision=f32` is the exact path on every CPU; the default (bf16 where AMX is) stays
/// within cosine 0.999 of it.
#[test]
fn precision_setting_chooses_the_path() {
    common::model_dir();
    let texts = [
        "The nurse was kind, but the wait was endless.",
        "Not bad at all.",
    ];
    let encode = |precision: &str| {
        let plugin = TextPlugin::create(&config(&[("precision", precision)])).expect("creating");
        plugin
            .encode(EncodeRequest::texts("text", texts))
            .expect("encoding")
            .outputs
    };
    let (exact, default) = (encode("f32"), encode("auto"));
    for (a, b) in exact.iter().zip(&default) {
        let cosine: f32 = a
            .embedding
            .iter()
            .zip(&b.embedding)
            .map(|(x, y)| x * y)
            .sum();
        assert!(cosine >= 0.999, "cosine {cosine}");
    }
}

#[test]
fn missing_model_says_how_to_fetch_it() {
    let error = create_error(&config(&[("model_dir", "/nonexistent/minilm")]));
    assert_eq!(error.kind, ErrorKind::Unavailable);
    assert!(
        error.message.contains("/nonexistent/minilm")
            && error.message.contains("empathy assets fetch"),
        "{}",
        error.message
    );
}

#[test]
fn rejects_unknown_settings_and_devices() {
    let error = create_error(&config(&[("max_batchh", "8")]));
    assert_eq!(error.kind, ErrorKind::InvalidInput);
    assert!(error.message.contains("max_batchh"), "{}", error.message);

    let error = create_error(&config(&[("precision", "fp8")]));
    assert_eq!(error.kind, ErrorKind::InvalidInput);
    assert!(
        error.message.contains("fp8") && error.message.contains("auto or f32"),
        "{}",
        error.message
    );

    let mut bad_device = config(&[]);
    bad_device.device = "tpu".to_string();
    assert!(create_error(&bad_device).message.contains("tpu"));
}

#[test]
fn loads_through_the_plugin_abi() {
    common::model_dir();
    // Cargo builds the cdylib beside this test binary, in target/<profile>/deps.
    let exe = std::env::current_exe().expect("test binary path");
    let library = exe.with_file_name(empathy_plugin_api::host::library_file_name(
        "empathy_plugin_text",
    ));
    let plugin = empathy_plugin_api::host::LoadedPlugin::load(&library, &config(&[]), None)
        .expect("loading the cdylib");
    assert_eq!(plugin.info()[0].embedding_dim, 384);
    let request = EncodeRequest::texts("text", ["over the ABI"]);
    let response = plugin.encode(&request).expect("encoding");
    assert_eq!(response.outputs[0].embedding.len(), 384);
    let error = plugin
        .encode(&EncodeRequest {
            modality: "speech".to_string(),
            ..request
        })
        .expect_err("wrong modality");
    assert_eq!(error.kind, ErrorKind::InvalidInput);
}
