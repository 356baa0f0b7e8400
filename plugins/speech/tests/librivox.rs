//! Word error rate of tiny.en on real read speech: the five LibriVox clips of Debian's
//! pocketsphinx-testdata, after normalising case and punctuation. The base model's rate
//! is measured by `cargo run --release -p empathy-plugin-speech --example librivox_wer -- base`.

mod common;

#[test]
fn tiny_en_wer_on_librivox_is_at_most_15_percent() {
    let plugin = common::plugin(&[]);
    let wer = common::librivox_wer(&plugin);
    println!("tiny.en WER on LibriVox: {:.1}%", wer * 100.0);
    assert!(wer <= 0.15, "WER {:.1}%", wer * 100.0);
}
