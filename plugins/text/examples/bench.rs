//! Times the candle encoder on the sentences that reference/bench.py gives it and prints
//! one JSON line; bench.py runs it beside sentence-transformers and prints the ratios.
//!
//!     cargo run --release -p empathy-plugin-text --example bench -- SENTENCES.json [REPS]

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use candle_core::Device;
use empathy_plugin_text::{Precision, SentenceEncoder};
use serde::Deserialize;

#[derive(Deserialize)]
struct Sets {
    short: Vec<String>,
    long: Vec<String>,
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

/// Median seconds of `reps` runs of `f`, after one warm-up run.
fn time(reps: usize, mut f: impl FnMut() -> Result<()>) -> Result<f64> {
    f()?;
    let mut secs = Vec::with_capacity(reps);
    for _ in 0..reps {
        let start = Instant::now();
        f()?;
        secs.push(start.elapsed().as_secs_f64());
    }
    Ok(median(secs))
}

fn main() -> Result<()> {
    // SAFETY: no other thread exists yet. Threads come from RAYON_NUM_THREADS (bench.py).
    unsafe { empathy_common::configure_compute(0) };
    let mut args = std::env::args().skip(1);
    let sets_path = args.next().context("usage: bench SENTENCES.json [REPS]")?;
    let reps: usize = args.next().map_or(Ok(10), |r| r.parse())?;
    let sets: Sets = serde_json::from_str(&std::fs::read_to_string(&sets_path)?)?;
    let assets = std::env::var_os("EMPATHY_ASSETS").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../assets"),
        PathBuf::from,
    );
    // EMPATHY_TEXT_PRECISION=f32 measures the f32 path where the default would use bf16
    // (AMX tiles, AVX-512 BF16).
    let precision: Precision = std::env::var("EMPATHY_TEXT_PRECISION")
        .unwrap_or_else(|_| "auto".into())
        .parse()
        .map_err(anyhow::Error::msg)?;
    // EMPATHY_TEXT_MODEL=all-mpnet-base-v2 measures the larger encoder.
    let model = std::env::var("EMPATHY_TEXT_MODEL").unwrap_or_else(|_| "all-MiniLM-L6-v2".into());
    let encoder = SentenceEncoder::load(&assets.join("text").join(model), &Device::Cpu, precision)?;

    let short: Vec<&str> = sets.short.iter().map(String::as_str).collect();
    let long: Vec<&str> = sets.long.iter().map(String::as_str).collect();
    let short_s = time(reps, || encoder.encode(&short).map(drop))?;
    let long_s = time(reps.div_ceil(2), || encoder.encode(&long).map(drop))?;
    let mut one = short.iter().cycle();
    let one_s = time(reps * 5, || {
        let text = one.next().context("no sentences")?;
        encoder.encode(&[text]).map(drop)
    })?;

    let report = serde_json::json!({
        "threads": candle_core::utils::get_num_threads(),
        "dense": match precision.bf16_unit() {
            Some(unit) if encoder.bf16() => format!("bf16 ({unit})"),
            _ => "f32".into(),
        },
        "short_per_s": short.len() as f64 / short_s,
        "long_per_s": long.len() as f64 / long_s,
        "batch1_ms": one_s * 1e3,
    });
    println!("{report}");
    Ok(())
}
