//! Loads the built library as the empathy encoder does (the same loader: hash, ABI
//! version, vtable, create, info) and calls it across the C boundary.

use std::path::PathBuf;

use empathy_plugin_api::host::{LoadedPlugin, library_file_name};
use empathy_plugin_api::proto::v1::{
    EncodeInput, EncodeRequest, PluginConfig, encode_input::Payload,
};

/// The shared library cargo built beside this test (target/<profile>/ or its deps/).
fn library() -> PathBuf {
    let name = library_file_name(env!("CARGO_PKG_NAME"));
    let exe = std::env::current_exe().expect("test executable");
    let deps = exe.parent().expect("deps directory").to_path_buf();
    let candidates = [deps.join(&name), deps.join("..").join(&name)];
    candidates
        .iter()
        .find(|p| p.exists())
        .cloned()
        .unwrap_or_else(|| panic!("{name} not built: run `cargo build` first"))
}

fn series(samples: &[f32]) -> EncodeInput {
    let bytes: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
    EncodeInput {
        payload: Some(Payload::Data(bytes.into())),
        mime_type: String::new(),
    }
}

#[test]
fn the_encoder_loader_loads_it_and_it_encodes() {
    let plugin =
        LoadedPlugin::load(&library(), &PluginConfig::default(), None).expect("the plugin loads");
    let info = &plugin.info()[0];
    assert_eq!(info.modality, empathy_plugin_signal::MODALITY);
    assert_eq!(
        info.embedding_dim as usize,
        empathy_plugin_signal::EMBEDDING_DIM
    );

    let request = EncodeRequest {
        modality: info.modality.clone(),
        inputs: vec![series(&[70.0, 72.0, 74.0]), series(&[100.0])],
        language: String::new(),
    };
    let response = plugin.encode(&request).expect("encodes");
    assert_eq!(response.outputs.len(), 2);
    assert_eq!(response.outputs[0].embedding[0], 72.0);
    assert_eq!(response.outputs[1].embedding[3], 100.0);

    // A caller's mistake comes back as an error with its reason; the plugin goes on.
    let bad = EncodeRequest {
        inputs: vec![EncodeInput::default()],
        ..request.clone()
    };
    let err = plugin.encode(&bad).expect_err("refused");
    assert!(err.message.contains("expected bytes"), "{}", err.message);
    assert!(plugin.encode(&request).is_ok());
}

#[test]
fn unknown_settings_are_refused() {
    let mut config = PluginConfig::default();
    config.settings.insert("max_bach".into(), "8".into());
    let err = LoadedPlugin::load(&library(), &config, None).expect_err("a typo is refused");
    assert!(err.to_string().contains("max_bach"), "{err}");
}
