//! Prints k situations for each utterance given on the command line (no critic):
//! a quick look at what the generator writes with the service's prompt.
//!
//!     cargo run --release -p empathy-situation --example generate -- "My dog died yesterday"

use std::{
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::Result;
use candle_core::Device;
use empathy_situation::{
    engine::{Engine, EngineOptions, Event, Job, SamplingParams},
    llama::WeightFormat,
    loader, situation_text,
};

/// `WEIGHTS=gguf` keeps the Q4_1 blocks; the default dequantizes to f32.
fn weights_arg() -> WeightFormat {
    match std::env::var("WEIGHTS").as_deref() {
        Ok("gguf") => WeightFormat::Gguf,
        _ => WeightFormat::F32,
    }
}

fn main() -> Result<()> {
    let assets = PathBuf::from(std::env::var("EMPATHY_ASSETS").unwrap_or_else(|_| "assets".into()));
    let generator = loader::load_generator(&assets, &Device::Cpu, weights_arg())?;
    let tok = Arc::clone(&generator.tokenizer);
    let engine = Engine::start(
        generator.model,
        Arc::clone(&tok),
        None,
        EngineOptions {
            max_batch: 16,
            max_attempts: 3,
            critic_threshold: 0.0,
            shared_prefix: situation_text::shared_prefix_ids(&tok)?,
        },
        None,
    )?;
    for (i, utterance) in std::env::args().skip(1).enumerate() {
        let prompt = situation_text::prompt_ids(&tok, &utterance, &[])?;
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let (dtx, mut drx) = tokio::sync::mpsc::unbounded_channel();
        let t = Instant::now();
        engine.submit(
            Job {
                utterance: utterance.clone(),
                prompt,
                k: 4,
                seed: i as u64 + 1,
                sampling: SamplingParams {
                    temperature: 0.8,
                    top_p: 0.95,
                    max_tokens: 48,
                    repeat_penalty: 1.1,
                },
                deadline: Instant::now() + Duration::from_secs(120),
            },
            tx,
            Some(dtx),
        )?;
        println!("{utterance}");
        while let Some(Event::Situation(g)) = rx.blocking_recv() {
            println!(
                "  [{}] {} ({} tokens, {:.0} ms)",
                g.index, g.text, g.tokens, g.generation_ms
            );
        }
        while let Ok(d) = drx.try_recv() {
            println!("  discarded ({}): {:?}", d.reason, d.text);
        }
        println!("  {:.1} s", t.elapsed().as_secs_f32());
    }
    Ok(())
}
