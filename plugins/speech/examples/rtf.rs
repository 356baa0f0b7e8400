//! Real-time factor of the speech plugin on one clip: decoding, resampling, Whisper
//! and prosody, timed per `encode` call (model load excluded). bench/rtf.sh runs it
//! beside whisper.cpp alone.
//! `cargo run --release -p empathy-plugin-speech --example rtf -- CLIP.wav [tiny.en|base] [THREADS] [RUNS]`
//! prints: seconds of audio, fastest seconds per run (the least disturbed by other
//! work on the machine), the audio_ctx used, the transcript

use std::collections::HashMap;
use std::time::Instant;

use empathy_plugin_api::Plugin;
use empathy_plugin_speech::{SpeechPlugin, audio_ctx};
use empathy_proto::v1::{EncodeInput, EncodeRequest, PluginConfig, encode_input::Payload};

fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let clip = args
        .first()
        .ok_or("usage: rtf CLIP.wav [MODEL] [THREADS] [RUNS]")?;
    let model = args.get(1).map_or("tiny.en", String::as_str);
    let threads: u32 = args
        .get(2)
        .map_or(Ok(2), |t| t.parse())
        .map_err(|e| format!("threads: {e}"))?;
    let runs: usize = args
        .get(3)
        .map_or(Ok(5), |t| t.parse())
        .map_err(|e| format!("runs: {e}"))?;
    let assets = std::env::var("EMPATHY_ASSETS")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/../../assets").into());
    let config = PluginConfig {
        assets_dir: assets,
        threads,
        device: "cpu".into(),
        // One clip at a time, with every thread: as whisper.cpp runs it.
        settings: HashMap::from([
            ("model".into(), model.into()),
            ("max_concurrent".into(), "1".into()),
        ]),
    };
    let plugin = SpeechPlugin::create(&config).map_err(|e| e.to_string())?;
    let bytes = std::fs::read(clip).map_err(|e| format!("{clip}: {e}"))?;
    let request = EncodeRequest {
        modality: "speech".into(),
        inputs: vec![EncodeInput {
            payload: Some(Payload::Data(bytes.into())),
            mime_type: "audio/wav".into(),
        }],
        language: "en".into(),
    };
    let mut times = Vec::with_capacity(runs);
    let mut output = None;
    for run in 0..=runs {
        let started = Instant::now();
        let response = plugin.encode(request.clone()).map_err(|e| e.to_string())?;
        // The first run warms caches up, as whisper_rtf.c does.
        if run > 0 {
            times.push(started.elapsed().as_secs_f64());
        }
        output = response.outputs.into_iter().next();
    }
    times.sort_by(f64::total_cmp);
    let output = output.ok_or("no output")?;
    let seconds = output.features["duration_s"];
    let samples = (f64::from(seconds) * 16_000.0).round() as usize;
    println!(
        "{seconds:.3} {:.4} {} {}",
        times[0],
        audio_ctx(samples),
        output.transcript
    );
    Ok(())
}
