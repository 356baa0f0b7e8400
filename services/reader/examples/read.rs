//! The reader alone on labelled sentences (JSON lines with "text" and "label" or
//! "sentiment", and optionally "emotion"): its accuracy, and milliseconds per text
//! (median; both questions, feeling and emotion, in one pass, as fusion asks them);
//! where the lines name an emotion, how often the emotion question's top answer is it.
//!
//!   cargo run --release -p empathy-reader --example read -- eval/meaning-test.jsonl
//!
//! PRECISION=f32 reads in f32 on every CPU (the default, auto, reads in bf16 where the
//! CPU has AMX or AVX-512 BF16). SEPARATE=1 asks the two questions in two passes, as
//! fusion did before it asked them in one. READER=qwen2.5-coder-1.5b reads with the
//! larger model (default gemma-3-270m). With READINGS=FILE, each text's reading is
//! also written there as a JSON line (`{"reader", "text", "label", "reading": {word:
//! log-probability}}`), for choosing how much the reader weighs and for `empathy
//! generality --readings`.

mod setup;

use std::{io::Write, time::Instant};

use anyhow::{Context, Result};
use empathy_reader::{EMOTION_WORDS, LABEL_WORDS};

fn main() -> Result<()> {
    let (reader, model, _) = setup::reader()?;
    let mut readings = match std::env::var_os("READINGS") {
        Some(path) => Some(std::fs::File::create(path)?),
        None => None,
    };
    let separate = std::env::var_os("SEPARATE").is_some();
    for path in std::env::args().skip(1) {
        let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
        let (mut right, mut total, mut millis) = (0, 0, Vec::new());
        let (mut emotions_right, mut emotions_total) = (0, 0);
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let row: serde_json::Value = serde_json::from_str(line)?;
            let label = row["label"]
                .as_str()
                .or(row["sentiment"].as_str())
                .unwrap_or_default();
            let text = row["text"].as_str().unwrap_or_default();
            let start = Instant::now();
            let (read, emotions) = if separate {
                (reader.read(text)?, reader.read_emotions(text)?)
            } else {
                reader.read_both(text)?
            };
            millis.push(start.elapsed().as_secs_f64() * 1000.0);
            if let Some(out) = readings.as_mut() {
                let words = LABEL_WORDS.iter().zip(read);
                let line = serde_json::json!({
                    "reader": model.name(),
                    "text": row["text"],
                    "label": label,
                    "reading": words.map(|(w, r)| (w.to_string(), serde_json::Value::from(r))).collect::<serde_json::Map<_, _>>(),
                });
                writeln!(out, "{line}")?;
            }
            let best = (0..3)
                .max_by(|&a, &b| read[a].total_cmp(&read[b]))
                .unwrap_or(0);
            right += usize::from(LABEL_WORDS[best] == label);
            total += 1;
            if let Some(emotion) = row["emotion"].as_str() {
                let best = (0..emotions.len()).max_by(|&a, &b| emotions[a].total_cmp(&emotions[b]));
                emotions_right += usize::from(best.map(|b| EMOTION_WORDS[b]) == Some(emotion));
                emotions_total += 1;
            }
        }
        millis.sort_by(f64::total_cmp);
        println!(
            "{path}: {right}/{total} = {:.3}, median {:.1} ms per text",
            right as f64 / total.max(1) as f64,
            millis.get(millis.len() / 2).copied().unwrap_or(0.0)
        );
        if emotions_total > 0 {
            println!("  top emotion {emotions_right}/{emotions_total}");
        }
    }
    Ok(())
}
