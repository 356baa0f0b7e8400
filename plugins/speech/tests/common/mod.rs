//! Shared by the speech plugin's integration tests: the assets, clips made with
//! espeak-ng, and the plugin itself.

#![allow(dead_code)] // each test binary uses its own part of this module

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use empathy_plugin_api::Plugin;
use empathy_plugin_speech::SpeechPlugin;
use empathy_proto::v1::{
    EncodeInput, EncodeOutput, EncodeRequest, PluginConfig, encode_input::Payload,
};

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

/// A WAV of espeak-ng saying `text` at `words_per_minute`, in a fresh temp dir.
pub fn espeak(text: &str, words_per_minute: u32) -> Vec<u8> {
    espeak_voice("en-us", text, words_per_minute)
}

/// The same in another espeak-ng voice (a language code such as "de").
pub fn espeak_voice(voice: &str, text: &str, words_per_minute: u32) -> Vec<u8> {
    let dir = temp_dir("espeak");
    let wav = dir.join("clip.wav");
    let status = Command::new("espeak-ng")
        .args(["-v", voice, "-s", &words_per_minute.to_string(), "-w"])
        .arg(&wav)
        .arg(text)
        .status()
        .expect("espeak-ng runs (scripts/setup installs it)");
    assert!(status.success(), "espeak-ng failed");
    let bytes = std::fs::read(&wav).expect("espeak-ng wrote the clip");
    let _ = std::fs::remove_dir_all(&dir);
    bytes
}

pub fn temp_dir(tag: &str) -> PathBuf {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "empathy-speech-{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

pub fn encode(plugin: &SpeechPlugin, bytes: Vec<u8>, mime: &str) -> EncodeOutput {
    let request = EncodeRequest {
        modality: "speech".into(),
        inputs: vec![EncodeInput {
            payload: Some(Payload::Data(bytes)),
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
