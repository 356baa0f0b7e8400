//! Texts a second read one at a time against several at once, as fusion's
//! `--meaning-reader-concurrency` lets requests read side by side: three alternating
//! rounds over the texts of JSON lines with a "text" field (both questions, as fusion
//! asks them).
//!
//!   cargo run --release -p empathy-reader --example concurrent -- eval/meaning-test.jsonl
//!
//! AT_ONCE=N reads N at a time (default 2); PRECISION=f32 and READER as in the `read`
//! example.
//! RAYON_NUM_THREADS=<cores> times it as fusion serves (`scripts/reader-bench` sets it).

mod setup;

use std::time::Instant;

use anyhow::{Context, Result};

fn main() -> Result<()> {
    let (reader, _, precision) = setup::reader()?;
    let at_once: usize = match std::env::var("AT_ONCE") {
        Ok(n) => n.parse().context("AT_ONCE must be a number")?,
        Err(_) => 2,
    };
    let mut texts = Vec::new();
    for path in std::env::args().skip(1) {
        let lines =
            std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
        for line in lines.lines().filter(|l| !l.trim().is_empty()) {
            let row: serde_json::Value = serde_json::from_str(line)?;
            let text = row["text"].as_str().context("a line without \"text\"")?;
            texts.push(text.to_string());
        }
    }
    anyhow::ensure!(
        !texts.is_empty() && at_once > 0,
        "no texts, or AT_ONCE is 0"
    );
    let cpu = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpu.lines().find(|l| l.starts_with("model name"));
    let model = model.and_then(|l| l.split(':').nth(1)).unwrap_or("unknown");
    let unit = precision.bf16_unit().unwrap_or("nothing: f32");
    println!("CPU: {}, bf16 on {unit}", model.trim());
    for round in 1..=3 {
        let started = Instant::now();
        for text in &texts {
            reader.read_both(text)?;
        }
        let alone = texts.len() as f64 / started.elapsed().as_secs_f64();
        let started = Instant::now();
        std::thread::scope(|s| -> Result<()> {
            let readers: Vec<_> = (0..at_once)
                .map(|k| {
                    let (reader, texts) = (&reader, &texts);
                    s.spawn(move || -> Result<()> {
                        for text in texts.iter().skip(k).step_by(at_once) {
                            reader.read_both(text)?;
                        }
                        Ok(())
                    })
                })
                .collect();
            for r in readers {
                r.join()
                    .map_err(|_| anyhow::anyhow!("a reading panicked"))??;
            }
            Ok(())
        })?;
        let together = texts.len() as f64 / started.elapsed().as_secs_f64();
        println!(
            "round {round}: one at a time {alone:.1} texts/s, {at_once} at once {together:.1} \
             texts/s ({:.2}x)",
            together / alone
        );
    }
    Ok(())
}
