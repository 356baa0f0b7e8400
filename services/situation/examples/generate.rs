//! Prints k situations for each utterance given on the command line (no critic):
//! a quick look at what the generator writes with the service's prompt.
//!
//!     cargo run --release -p empathy-situation --example generate -- "My dog died yesterday"

mod common;

use std::time::{Duration, Instant};

use anyhow::Result;
use candle_core::Device;
use empathy_situation::{
    engine::{Event, Job, SamplingParams},
    judge::Judge,
    loader, situation_text,
};

use common::{assets_dir, weights_arg};

fn main() -> Result<()> {
    let generator = loader::load_generator(&assets_dir(), &Device::Cpu, weights_arg())?;
    let (engine, tok) = generator.start_engine(Judge::None, 16, 3, 0.0, None)?;
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
                sampling: SamplingParams::defaults(48),
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
