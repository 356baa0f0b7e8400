//! Loads the fixture plugins (plugins/api/fixtures) as real shared libraries.
//! They are built by `cargo build --workspace`, which the project runs before its tests.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use empathy_plugin_api::host::{AllowList, LoadError, LoadedPlugin, library_file_name};
use empathy_plugin_api::{ErrorKind, PluginError};
use empathy_proto::v1::{EncodeRequest, PluginConfig, encode_input::Payload};
use sha2::{Digest, Sha256};

const GOOD: &str = "empathy-fixture-good";
const WRONG_ABI: &str = "empathy-fixture-wrong-abi";
const PANICKING: &str = "empathy-fixture-panicking";

/// The fixture's library in this build's output directory.
fn fixture(crate_name: &str) -> PathBuf {
    // Tests run from <target>/<profile>/deps; cdylibs land in <target>/<profile>. This
    // follows CARGO_TARGET_DIR, config files and --target alike.
    let exe = std::env::current_exe().expect("the test binary has a path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("tests run from <target>/<profile>/deps");
    let path = profile_dir.join(library_file_name(crate_name));
    assert!(
        path.is_file(),
        "fixture plugin {} is missing; build them first: cargo build --workspace",
        path.display()
    );
    path
}

fn load(crate_name: &str) -> Result<LoadedPlugin, LoadError> {
    LoadedPlugin::load(&fixture(crate_name), &PluginConfig::default(), None)
}

fn config(key: &str, value: &str) -> PluginConfig {
    let mut config = PluginConfig::default();
    config.settings.insert(key.into(), value.into());
    config
}

fn texts(texts: &[&str]) -> EncodeRequest {
    EncodeRequest::texts("length", texts.iter().copied())
}

fn embeddings(
    plugin: &LoadedPlugin,
    request: &EncodeRequest,
) -> Result<Vec<Vec<f32>>, PluginError> {
    Ok(plugin
        .encode(request)?
        .outputs
        .into_iter()
        .map(|o| o.embedding)
        .collect())
}

fn sha256_hex(path: &Path) -> String {
    hex::encode(Sha256::digest(
        std::fs::read(path).expect("fixture is readable"),
    ))
}

/// A temp file holding `bytes`, removed on drop.
struct TempFile(PathBuf);

impl TempFile {
    fn new(name: &str, bytes: &[u8]) -> Self {
        let path = std::env::temp_dir().join(format!("empathy-{}-{name}", std::process::id()));
        std::fs::write(&path, bytes).expect("temp dir is writable");
        TempFile(path)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn good_plugin_loads_describes_itself_and_encodes() -> Result<(), Box<dyn std::error::Error>> {
    let path = fixture(GOOD);
    let plugin = LoadedPlugin::load(&path, &config("max_batch", "8"), None)?;
    assert_eq!(plugin.path(), path);
    assert_eq!(plugin.sha256(), sha256_hex(&path));

    let [info] = plugin.info() else {
        panic!("one modality expected: {:?}", plugin.info())
    };
    assert_eq!(
        (info.modality.as_str(), info.embedding_dim, info.max_batch),
        ("length", 2, 8)
    );
    assert_eq!(
        info.model.as_ref().map(|m| m.id.as_str()),
        Some("fixture/length")
    );
    assert_eq!(info.plugin, library_file_name(GOOD));

    let response = plugin.encode(&texts(&["hello big world", "hi"]))?;
    assert_eq!(response.model.map(|m| m.id), Some("fixture/length".into()));
    let got: Vec<_> = response.outputs.into_iter().map(|o| o.embedding).collect();
    assert_eq!(got, [vec![15.0, 3.0], vec![2.0, 1.0]]);
    Ok(())
}

#[test]
fn invalid_input_is_reported_with_the_plugins_message() -> Result<(), LoadError> {
    let plugin = load(GOOD)?;
    let err = plugin
        .encode(&texts(&["fine", "  "]))
        .expect_err("empty text is invalid");
    assert_eq!(
        (err.kind, err.message.as_str()),
        (ErrorKind::InvalidInput, "input 1 is empty text")
    );

    let mut bytes = texts(&["x"]);
    bytes.inputs[0].payload = Some(Payload::Data(vec![1, 2, 3].into()));
    let err = plugin.encode(&bytes).expect_err("bytes are not text");
    assert_eq!(
        (err.kind, err.message.as_str()),
        (ErrorKind::InvalidInput, "input 0 is not text")
    );
    Ok(())
}

#[test]
fn a_bad_setting_fails_create_naming_the_file() {
    let err = LoadedPlugin::load(&fixture(GOOD), &config("max_batch", "lots"), None)
        .expect_err("max_batch must be a number");
    let msg = err.to_string();
    assert!(matches!(err, LoadError::Create { .. }), "{msg}");
    assert!(
        msg.contains(&library_file_name(GOOD))
            && msg.contains(r#"max_batch must be a number, got "lots""#),
        "{msg}"
    );
}

#[test]
fn wrong_abi_version_is_refused_naming_file_and_both_versions() {
    let err = load(WRONG_ABI).expect_err("ABI 999 must be refused");
    let msg = err.to_string();
    assert!(
        matches!(
            err,
            LoadError::AbiMismatch {
                expected: 1,
                found: 999,
                ..
            }
        ),
        "{msg}"
    );
    assert!(msg.contains(&library_file_name(WRONG_ABI)), "{msg}");
    assert!(
        msg.contains("ABI version 999") && msg.contains("expects version 1"),
        "{msg}"
    );
}

#[cfg(target_os = "linux")]
#[test]
fn a_library_without_the_entry_symbol_is_refused() {
    // libc is a real shared library that certainly lacks our symbol; find the copy this
    // process already mapped so the test does not depend on the distribution's layout.
    let maps = std::fs::read_to_string("/proc/self/maps").expect("/proc is mounted");
    let libc = maps
        .lines()
        .filter_map(|line| line.split_whitespace().nth(5))
        .find(|path| {
            let name = path.rsplit('/').next().unwrap_or_default();
            name.starts_with("libc.so") || name.starts_with("libc-") || name.starts_with("ld-musl")
        })
        .expect("libc is mapped into the test process");
    let err = LoadedPlugin::load(Path::new(libc), &PluginConfig::default(), None)
        .expect_err("libc is not a plugin");
    let msg = err.to_string();
    assert!(matches!(err, LoadError::MissingEntry { .. }), "{msg}");
    assert!(
        msg.contains("is not an empathy plugin") && msg.contains("empathy_plugin_entry"),
        "{msg}"
    );
}

#[test]
fn a_file_that_is_not_a_library_is_refused_naming_it() {
    let garbage = TempFile::new("garbage.so", b"this is not a shared library\n");
    let err = LoadedPlugin::load(&garbage.0, &PluginConfig::default(), None).expect_err("garbage");
    let msg = err.to_string();
    assert!(matches!(err, LoadError::Open { .. }), "{msg}");
    assert!(
        msg.contains("garbage.so") && msg.contains("as a shared library"),
        "{msg}"
    );

    let missing = Path::new("/nonexistent/libempathy_nothing.so");
    let err = LoadedPlugin::load(missing, &PluginConfig::default(), None).expect_err("missing");
    assert!(
        matches!(err, LoadError::Read { .. }) && err.to_string().contains("libempathy_nothing.so"),
        "{err}"
    );
}

#[test]
fn a_panicking_plugin_fails_one_request_and_the_host_keeps_serving() -> Result<(), LoadError> {
    let good = load(GOOD)?;
    let panicking = load(PANICKING)?;
    for _ in 0..2 {
        let err = panicking
            .encode(&texts(&["a", "b"]))
            .expect_err("it panics");
        assert_eq!(err.kind, ErrorKind::Internal);
        assert_eq!(err.message, "plugin panicked: panicking fixture: 2 inputs");
        assert_eq!(
            embeddings(&good, &texts(&["still here"])).map_err(|e| e.to_string()),
            Ok(vec![vec![10.0, 2.0]])
        );
    }

    let err = LoadedPlugin::load(&fixture(PANICKING), &config("panic_in_create", ""), None)
        .expect_err("create panics");
    assert!(
        matches!(&err, LoadError::Create { error, .. } if error.kind == ErrorKind::Internal),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("plugin panicked: panicking fixture: create was told to panic"),
        "{err}"
    );
    Ok(())
}

#[test]
fn the_allow_list_is_checked_before_loading() -> Result<(), LoadError> {
    let path = fixture(GOOD);
    let digest = sha256_hex(&path);
    let others = AllowList::from_hex([sha256_hex(&fixture(PANICKING))])?;

    let err =
        LoadedPlugin::load(&path, &PluginConfig::default(), Some(&others)).expect_err("not listed");
    let msg = err.to_string();
    assert!(matches!(err, LoadError::NotAllowed { .. }), "{msg}");
    assert!(
        msg.contains(&library_file_name(GOOD)) && msg.contains(&digest),
        "{msg}"
    );

    // Were the file opened first, garbage would fail as "not a shared library" instead.
    let garbage = TempFile::new("unlisted.so", b"not a library");
    let err = LoadedPlugin::load(&garbage.0, &PluginConfig::default(), Some(&others))
        .expect_err("not listed");
    assert!(matches!(err, LoadError::NotAllowed { .. }), "{err}");

    let allowed = AllowList::from_hex([digest.to_uppercase()])?;
    let plugin = LoadedPlugin::load(&path, &PluginConfig::default(), Some(&allowed))?;
    assert_eq!(plugin.sha256(), digest);
    Ok(())
}

#[test]
fn concurrent_encodes_from_many_threads() -> Result<(), LoadError> {
    let plugin = Arc::new(load(GOOD)?);
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let plugin = Arc::clone(&plugin);
            std::thread::spawn(move || {
                for i in 0..100 {
                    let text = "w ".repeat(t + i + 1);
                    let words = (t + i + 1) as f32;
                    let got = embeddings(&plugin, &texts(&[&text])).map_err(|e| e.to_string());
                    assert_eq!(got, Ok(vec![vec![2.0 * words, words]]));
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().expect("encoder thread panicked");
    }
    Ok(())
}
