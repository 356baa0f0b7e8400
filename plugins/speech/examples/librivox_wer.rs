//! Word error rate of a Whisper model on the LibriVox clips of pocketsphinx-testdata.
//! `cargo run --release -p empathy-plugin-speech --example librivox_wer -- [tiny.en|base] [fit|full]`
//! (`full`: whisper.cpp's 30 s window for every clip, to see what `fit` costs in quality)

#[path = "../tests/common/mod.rs"]
mod common;

fn main() {
    let model = std::env::args().nth(1).unwrap_or_else(|| "tiny.en".into());
    let window = std::env::args().nth(2).unwrap_or_else(|| "fit".into());
    let plugin = common::plugin(&[("model", &model), ("window", &window)]);
    let wer = common::librivox_wer(&plugin);
    println!(
        "{model} (window {window}) WER on LibriVox (5 clips, case and punctuation normalised): {:.1}%",
        wer * 100.0
    );
}
