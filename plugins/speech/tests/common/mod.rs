//! Shared by the speech plugin's integration tests: the assets, clips made with
//! espeak-ng, and the plugin itself.

#![allow(dead_code)] // each test binary uses its own part of this module

mod clips;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use empathy_plugin_api::Plugin;
use empathy_plugin_speech::SpeechPlugin;
use empathy_proto::v1::{
    EncodeInput, EncodeOutput, EncodeRequest, PluginConfig, encode_input::Payload,
};

#[allow(unused_imports)] // as above
pub use clips::{espeak, espeak_voice, temp_dir};

/// `EMPATHY_ASSETS`, else `<workspace>/assets` (`empathy assets fetch` fills it).
pub fn assets() -> PathBuf {
    std::env::var_os("EMPATHY_ASSETS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../assets"))
}

pub fn plugin(settings: &[(&str, &str)]) -> SpeechPlugin {
    let config = PluginConfig {
        assets_dir: assets().display().to_string(),
        // Tests run side by side: one thread each, or ggml's spinning threads would
        // outnumber the cores and crawl.
        threads: 1,
        device: "cpu".into(),
        settings: settings
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<HashMap<_, _>>(),
    };
    match SpeechPlugin::create(&config) {
        Ok(p) => p,
        Err(e) => panic!("speech plugin: {e} (run `empathy assets fetch`)"),
    }
}

pub fn encode(plugin: &SpeechPlugin, bytes: Vec<u8>, mime: &str) -> EncodeOutput {
    let request = EncodeRequest {
        modality: "speech".into(),
        inputs: vec![EncodeInput {
            payload: Some(Payload::Data(bytes.into())),
            mime_type: mime.into(),
        }],
        language: String::new(),
    };
    match plugin.encode(request) {
        Ok(mut r) => r.outputs.remove(0),
        Err(e) => panic!("encode: {e}"),
    }
}

pub fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The five LibriVox clips of Debian's pocketsphinx-testdata: (WAV bytes, reference).
pub const LIBRIVOX: &str = "/usr/share/pocketsphinx/test/data/librivox";

pub fn librivox() -> Vec<(String, Vec<u8>, String)> {
    let dir = Path::new(LIBRIVOX);
    let listing = std::fs::read_to_string(dir.join("transcription")).unwrap_or_else(|e| {
        panic!("{LIBRIVOX}/transcription: {e} (scripts/setup installs pocketsphinx-testdata)")
    });
    // "<s> words </s> (file-id)" per line.
    listing
        .lines()
        .filter_map(|line| {
            let (words, id) = line.rsplit_once(" (")?;
            let id = id.trim_end_matches(')').to_string();
            let words = words
                .replace("<s>", "")
                .replace("</s>", "")
                .trim()
                .to_string();
            let wav = read(&dir.join(format!("{id}.wav")));
            Some((id, wav, words))
        })
        .collect()
}

/// Corpus word error rate (all errors over all reference words) of `plugin` on the
/// LibriVox clips, printing each transcript.
pub fn librivox_wer(plugin: &SpeechPlugin) -> f64 {
    let (mut errors, mut words) = (0, 0);
    for (id, wav, reference) in librivox() {
        let output = encode(plugin, wav, "audio/wav");
        let (r, h) = (
            empathy_plugin_speech::wer::normalise(&reference),
            empathy_plugin_speech::wer::normalise(&output.transcript),
        );
        let e = empathy_plugin_speech::wer::errors(&r, &h);
        println!(
            "{id}: {e}/{} errors\n  ref: {reference}\n  hyp: {}",
            r.len(),
            output.transcript
        );
        errors += e;
        words += r.len();
    }
    errors as f64 / words.max(1) as f64
}
