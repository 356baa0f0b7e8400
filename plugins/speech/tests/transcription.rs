//! The converter and the plugin on the real tiny.en: a model converted here from the
//! CTranslate2 package transcribes a known espeak-ng clip correctly.

mod common;

use empathy_plugin_speech::wer::word_error_rate;
use empathy_whisper_convert::{WhisperAssets, convert};

const HAPPY: &str = "I am so happy today, everything is wonderful";

#[test]
fn converted_tiny_en_transcribes_espeak() {
    let assets = common::assets();
    let out_dir = common::temp_dir("convert");
    let out = out_dir.join("ggml-tiny.en.bin");
    let converted = convert(
        &[assets.join("speech/ctranslate2/tiny.en/model.bin")],
        &WhisperAssets::in_dir(&assets.join("speech/openai-whisper")),
        &out,
    )
    .expect("converts (run `empathy assets fetch` first)");
    assert_eq!(converted.hparams.n_audio_layer, 4);

    let dir = out_dir.display().to_string();
    let plugin = common::plugin(&[("model_dir", &dir)]);
    let output = common::encode(&plugin, common::espeak(HAPPY, 160), "audio/wav");
    let wer = word_error_rate(HAPPY, &output.transcript);
    assert!(wer <= 0.2, "WER {wer:.2}: {:?}", output.transcript);
    assert_eq!(output.detected_language, "en");
    assert!(!output.segments.is_empty());
    let _ = std::fs::remove_dir_all(&out_dir);
}
