//! The speech plugin through its safe trait, on the real tiny.en: results, prosody on
//! speech, silence, and every kind of bad request.

mod common;

use std::collections::HashMap;

use empathy_plugin_api::{ErrorKind, Plugin, PluginError};
use empathy_plugin_speech::{PROSODY_FEATURES, SpeechPlugin};
use empathy_proto::v1::{EncodeInput, EncodeRequest, PluginConfig, encode_input::Payload};

fn clip(bytes: Vec<u8>, mime: &str) -> EncodeInput {
    EncodeInput {
        payload: Some(Payload::Data(bytes.into())),
        mime_type: mime.into(),
    }
}

fn request(inputs: Vec<EncodeInput>, language: &str) -> EncodeRequest {
    EncodeRequest {
        modality: "speech".into(),
        inputs,
        language: language.into(),
    }
}

fn refused(plugin: &SpeechPlugin, request: EncodeRequest) -> PluginError {
    match plugin.encode(request) {
        Err(e) => e,
        Ok(r) => panic!("accepted: {:?}", r.outputs),
    }
}

fn feature(output: &empathy_proto::v1::EncodeOutput, name: &str) -> f32 {
    output.features[name]
}

/// One second of 16 kHz 16-bit PCM at a constant level (0 = digital silence).
fn pcm_noise(amplitude: f32) -> Vec<u8> {
    let mut s = 0x9e37_79b9u32;
    (0..16_000)
        .flat_map(|_| {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            let v = (s as f32 / u32::MAX as f32 - 0.5) * 2.0 * amplitude;
            ((v * 32767.0) as i16).to_le_bytes()
        })
        .collect()
}

#[test]
fn speech_gives_transcript_segments_and_prosody() {
    let plugin = common::plugin(&[]);
    let response = plugin
        .encode(request(
            vec![clip(
                common::espeak("Good morning, how are you?", 160),
                "audio/wav",
            )],
            "en-US",
        ))
        .expect("encodes");
    let output = &response.outputs[0];
    assert_eq!(
        output
            .transcript
            .to_lowercase()
            .trim_end_matches(['?', '.']),
        "good morning, how are you"
    );
    assert_eq!(output.detected_language, "en");
    let segment = &output.segments[0];
    assert!(
        segment.start_s >= 0.0 && segment.end_s > segment.start_s,
        "{segment:?}"
    );
    assert_eq!(output.embedding.len(), PROSODY_FEATURES.len());
    for (i, name) in PROSODY_FEATURES.iter().enumerate() {
        assert_eq!(output.features[*name], output.embedding[i], "{name}");
    }
    // espeak-ng's default voice speaks around 100-200 Hz.
    let pitch = feature(output, "pitch_mean_hz");
    assert!((70.0..250.0).contains(&pitch), "pitch {pitch}");
    assert!(
        feature(output, "voiced_ratio") > 0.2,
        "{:?}",
        output.features
    );
    assert_eq!(response.model.expect("model").id, "openai/whisper-tiny.en");
}

#[test]
fn two_speeds_give_two_rates() {
    let plugin = common::plugin(&[]);
    let text = "The quick brown fox jumps over the lazy dog near the river bank";
    let response = plugin
        .encode(request(
            vec![
                clip(common::espeak(text, 110), "audio/wav"),
                clip(common::espeak(text, 260), "audio/wav"),
            ],
            "",
        ))
        .expect("encodes a batch");
    let (slow, fast) = (&response.outputs[0], &response.outputs[1]);
    let (slow_rate, fast_rate) = (
        feature(slow, "speaking_rate_wps"),
        feature(fast, "speaking_rate_wps"),
    );
    assert!(
        fast_rate > slow_rate * 1.5,
        "slow {slow_rate} w/s, fast {fast_rate} w/s"
    );
    assert!(feature(fast, "duration_s") < feature(slow, "duration_s"));
}

#[test]
fn silence_is_a_result_not_an_error() {
    let plugin = common::plugin(&[]);
    for amplitude in [0.0, 0.0005] {
        let response = plugin
            .encode(request(vec![clip(pcm_noise(amplitude), "audio/pcm")], ""))
            .expect("silence encodes");
        let output = &response.outputs[0];
        assert_eq!(output.transcript, "", "amplitude {amplitude}");
        assert!(output.segments.is_empty());
        assert_eq!(feature(output, "pitch_mean_hz"), 0.0);
        assert_eq!(feature(output, "speaking_rate_wps"), 0.0);
    }
}

#[test]
fn bad_requests_name_the_problem() {
    let plugin = common::plugin(&[("max_batch", "2")]);
    let good = || clip(common::espeak("hello", 160), "audio/wav");
    let cases: Vec<(EncodeRequest, &str)> = vec![
        (request(vec![], ""), "no inputs"),
        (
            request(vec![good(), good(), good()], ""),
            "batch of 3 clips is over the limit of 2",
        ),
        (
            request(vec![good(), clip(Vec::new(), "audio/wav")], ""),
            "input 1: the audio is empty",
        ),
        (
            request(vec![clip(b"definitely not audio".to_vec(), "")], ""),
            "input 0: not a recognised audio file",
        ),
        (
            request(
                vec![EncodeInput {
                    payload: Some(Payload::Text("hi".into())),
                    mime_type: String::new(),
                }],
                "",
            ),
            "input 0: expected audio bytes, got text",
        ),
        (
            request(vec![EncodeInput::default()], ""),
            "input 0: no audio given",
        ),
        (request(vec![good()], "de"), "English-only model tiny.en"),
        (request(vec![good()], "xx"), "cannot be transcribed"),
    ];
    for (req, expected) in cases {
        let err = refused(&plugin, req);
        assert_eq!(err.kind, ErrorKind::InvalidInput, "{}", err.message);
        assert!(
            err.message.contains(expected),
            "{:?} lacks {expected:?}",
            err.message
        );
    }
    let mut wrong = request(vec![good()], "");
    wrong.modality = "text".into();
    assert!(
        refused(&plugin, wrong)
            .message
            .contains("not served by the speech plugin")
    );
}

#[test]
fn limits_come_from_settings() {
    let plugin = common::plugin(&[("max_duration_s", "1.5")]);
    let long = common::espeak(
        "this sentence takes clearly more than one and a half seconds to say",
        160,
    );
    let err = refused(&plugin, request(vec![clip(long, "audio/wav")], ""));
    assert!(
        err.message.contains("over the limit of 1.5 s"),
        "{}",
        err.message
    );
    let plugin = common::plugin(&[("max_input_bytes", "100000")]);
    let big = vec![0u8; 100_001];
    let err = refused(&plugin, request(vec![clip(big, "audio/pcm")], ""));
    assert!(
        err.message
            .contains("100001 bytes, over the limit of 100000"),
        "{}",
        err.message
    );
}

#[test]
fn bad_settings_are_refused_at_load() {
    let config = |pairs: &[(&str, &str)]| PluginConfig {
        assets_dir: common::assets().display().to_string(),
        settings: pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<HashMap<_, _>>(),
        ..PluginConfig::default()
    };
    let error = |pairs: &[(&str, &str)]| match SpeechPlugin::create(&config(pairs)) {
        Err(e) => e,
        Ok(_) => panic!("{pairs:?} accepted"),
    };
    assert!(
        error(&[("modle", "base")])
            .message
            .contains("unknown speech plugin setting \"modle\"")
    );
    assert!(
        error(&[("model", "large")])
            .message
            .contains("expected one of tiny.en, base")
    );
    assert!(
        error(&[("window", "wide")])
            .message
            .contains("expected fit or full")
    );
    assert!(
        error(&[("max_concurrent", "0")])
            .message
            .contains("max_concurrent")
    );
    let missing = error(&[("model_dir", "/nonexistent")]);
    assert_eq!(missing.kind, ErrorKind::Unavailable);
    assert!(
        missing.message.contains("empathy assets fetch"),
        "{}",
        missing.message
    );
}

#[test]
fn base_detects_the_language() {
    let plugin = common::plugin(&[("model", "base")]);
    let german = common::espeak_voice("de", "Guten Morgen, heute ist ein schöner Tag", 150);
    let response = plugin
        .encode(request(vec![clip(german.clone(), "audio/wav")], ""))
        .expect("encodes");
    assert_eq!(
        response.outputs[0].detected_language, "de",
        "{:?}",
        response.outputs[0].transcript
    );
    assert_eq!(response.model.expect("model").id, "openai/whisper-base");
    // A hint is taken as given.
    let hinted = plugin
        .encode(request(vec![clip(german, "audio/wav")], "de-AT"))
        .expect("encodes");
    assert_eq!(hinted.outputs[0].detected_language, "de");
}
