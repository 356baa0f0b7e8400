//! The host's call paths, driven through in-process vtables (no library file needed).

use empathy_proto::v1::{EncodeOutput, encode_input::Payload};

use super::*;
use crate::{ErrorKind, Plugin};

/// Embeds a text as [its length]; refuses empty text; panics on "panic".
struct Length;

impl Plugin for Length {
    fn create(config: &PluginConfig) -> Result<Self, PluginError> {
        match config.settings.get("fail") {
            Some(why) => Err(PluginError::unavailable(why.clone())),
            None => Ok(Length),
        }
    }

    fn info(&self) -> Vec<ModalityInfo> {
        vec![ModalityInfo {
            modality: "length".into(),
            embedding_dim: 1,
            ..ModalityInfo::default()
        }]
    }

    fn encode(&self, request: EncodeRequest) -> Result<EncodeResponse, PluginError> {
        let outputs = request.inputs.iter().map(|input| match &input.payload {
            Some(Payload::Text(text)) if text == "panic" => panic!("asked to"),
            Some(Payload::Text(text)) if !text.is_empty() => Ok(EncodeOutput {
                embedding: vec![text.len() as f32],
                ..EncodeOutput::default()
            }),
            _ => Err(PluginError::invalid_input("empty text")),
        });
        Ok(EncodeResponse {
            outputs: outputs.collect::<Result<_, _>>()?,
            model: None,
        })
    }
}

/// Breaks the contract: no modalities, and no outputs.
struct Broken;

impl Plugin for Broken {
    fn create(_: &PluginConfig) -> Result<Self, PluginError> {
        Ok(Broken)
    }

    fn info(&self) -> Vec<ModalityInfo> {
        Vec::new()
    }

    fn encode(&self, _: EncodeRequest) -> Result<EncodeResponse, PluginError> {
        Ok(EncodeResponse::default())
    }
}

static LENGTH: PluginVTable = crate::plugin::vtable::<Length>();
static BROKEN: PluginVTable = crate::plugin::vtable::<Broken>();

fn start(vtable: &'static PluginVTable, config: &PluginConfig) -> Result<LoadedPlugin, LoadError> {
    LoadedPlugin::start(
        vtable,
        config,
        PathBuf::from("/plugins/libfake.so"),
        "00".into(),
    )
}

fn texts(texts: &[&str]) -> EncodeRequest {
    EncodeRequest::texts("length", texts.iter().copied())
}

#[test]
fn info_is_cached_and_names_the_file() -> Result<(), LoadError> {
    let plugin = start(&LENGTH, &PluginConfig::default())?;
    assert_eq!(plugin.info().len(), 1);
    assert_eq!(plugin.info()[0].modality, "length");
    assert_eq!(plugin.info()[0].plugin, "libfake.so");
    Ok(())
}

#[test]
fn errors_and_panics_are_per_request() -> Result<(), Box<dyn std::error::Error>> {
    let plugin = start(&LENGTH, &PluginConfig::default())?;
    let response = plugin.encode(&texts(&["abc", "hello"]))?;
    let embeddings: Vec<_> = response
        .outputs
        .iter()
        .map(|o| o.embedding.clone())
        .collect();
    assert_eq!(embeddings, [vec![3.0], vec![5.0]]);

    let err = plugin
        .encode(&texts(&["ok", ""]))
        .expect_err("empty text is invalid");
    assert_eq!(
        (err.kind, err.message.as_str()),
        (ErrorKind::InvalidInput, "empty text")
    );

    let err = plugin
        .encode(&texts(&["panic"]))
        .expect_err("a panic is an error");
    assert_eq!(err.kind, ErrorKind::Internal);
    assert_eq!(err.message, "plugin panicked: asked to");

    assert_eq!(plugin.encode(&texts(&["again"]))?.outputs.len(), 1);
    Ok(())
}

#[test]
fn create_failure_names_the_file_and_reason() {
    let mut config = PluginConfig::default();
    config
        .settings
        .insert("fail".into(), "no model in assets".into());
    let err = start(&LENGTH, &config).expect_err("create fails");
    assert!(
        matches!(&err, LoadError::Create { error, .. } if error.kind == ErrorKind::Unavailable)
    );
    assert_eq!(
        err.to_string(),
        "plugin /plugins/libfake.so failed to start: unavailable: no model in assets"
    );
}

#[test]
fn contract_breaches_are_internal_errors() {
    let err = start(&BROKEN, &PluginConfig::default()).expect_err("no modality");
    assert!(err.to_string().contains("serves no modality"), "{err}");

    // Bypass the info check to reach encode's output-count check.
    let plugin = LoadedPlugin {
        vtable: &BROKEN,
        instance: NonNull::dangling(),
        info: Vec::new(),
        path: PathBuf::from("libbroken.so"),
        sha256: String::new(),
    };
    let err = plugin
        .encode(&texts(&["a", "b"]))
        .expect_err("outputs missing");
    assert_eq!(err.kind, ErrorKind::Internal);
    assert!(
        err.message
            .contains("libbroken.so is broken: it returned 0 outputs for 2 inputs")
    );
    // `Broken` is zero-sized, so destroying the dangling instance frees nothing.
}

#[test]
fn header_checks_name_file_and_both_values() {
    let path = Path::new("/p/libold.so");
    let current = abi::current_header();
    assert!(check_header(path, &current).is_ok());

    let old = VTableHeader {
        abi_version: 7,
        ..current
    };
    let msg = check_header(path, &old).expect_err("version").to_string();
    assert!(
        msg.contains("/p/libold.so") && msg.contains("version 7") && msg.contains("version 1"),
        "{msg}"
    );

    let short = VTableHeader { size: 8, ..current };
    let msg = check_header(path, &short).expect_err("size").to_string();
    assert!(
        msg.contains("/p/libold.so")
            && msg.contains("8-byte")
            && msg.contains(&current.size.to_string()),
        "{msg}"
    );
}

#[test]
fn library_file_names_follow_the_platform() {
    let name = library_file_name("empathy-plugin-text");
    if cfg!(target_os = "linux") {
        assert_eq!(name, "libempathy_plugin_text.so");
    } else if cfg!(target_os = "macos") {
        assert_eq!(name, "libempathy_plugin_text.dylib");
    } else if cfg!(windows) {
        assert_eq!(name, "empathy_plugin_text.dll");
    }
}
