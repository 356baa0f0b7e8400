//! What one caller waits for k situations with the service's defaults (the PMI critic,
//! the generator's emotion reading, 48 tokens): 20 ordinary sentences, one request at
//! a time after a warm-up, as `--situations 3` sends them. Prints each request's time
//! and the median, beside the CPU it ran on.
//!
//!     cargo run --release -p empathy-situation --example latency -- [--k 3] [--threads 2]

mod common;

use std::time::{Duration, Instant};

use anyhow::Result;
use candle_core::Device;
use empathy_situation::{
    engine::{Event, Job, SamplingParams},
    judge::Judge,
    loader, situation_text,
};

use common::{arg, assets_dir, cpu_model, weights_arg};

/// Sentences a virtual assistant or a support desk hears; none from the corpus.
const SENTENCES: [&str; 20] = [
    "My flight got cancelled again",
    "I have not slept in two days",
    "My dog died yesterday",
    "I finally got the job!",
    "The exam results come out tomorrow.",
    "My landlord raised the rent again.",
    "We're having a baby!",
    "Nobody came to my birthday party.",
    "The package arrived broken.",
    "I passed my driving test this morning.",
    "My sister is moving to another country.",
    "The doctor wants to see me again next week.",
    "I lost my wallet on the train.",
    "They promoted someone who started after me.",
    "My son called me for the first time in a year.",
    "The neighbours have been drilling since seven.",
    "I have to give a speech at the wedding.",
    "Our team won the regional final.",
    "The bank charged me twice for the same thing.",
    "I found out my best friend lied to me.",
];

fn main() -> Result<()> {
    let threads = u32::try_from(arg("--threads", 0)).unwrap_or(u32::MAX);
    // SAFETY: no other thread exists yet.
    unsafe { empathy_common::configure_compute(threads) };
    let k = arg("--k", 3);
    println!("CPU: {}", cpu_model());
    let generator = loader::load_generator(&assets_dir(), &Device::Cpu, weights_arg())?;
    // The service's defaults: PMI critic, 16 sequences a step, 3 attempts, threshold 0.
    let (engine, tok) = generator.start_engine(Judge::Pmi, 16, 3, 0.0, None)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let warm = "I finally finished the project.";
    rt.block_on(engine.warm_up(warm, situation_text::prompt_ids(&tok, warm, &[])?))?;

    let mut times = Vec::new();
    let mut short = 0;
    println!("| sentence | situations | seconds |");
    println!("|---|---:|---:|");
    for sentence in SENTENCES {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let started = Instant::now();
        engine.submit(
            Job {
                utterance: sentence.to_string(),
                prompt: situation_text::prompt_ids(&tok, sentence, &[])?,
                k,
                seed: 1,
                sampling: SamplingParams::defaults(48),
                deadline: Instant::now() + Duration::from_secs(120),
            },
            tx,
            None,
        )?;
        let mut produced = 0;
        while let Some(event) = rx.blocking_recv() {
            match event {
                Event::Situation(_) => produced += 1,
                Event::Failed(m) => anyhow::bail!("{sentence}: {m}"),
                Event::Finished { .. } | Event::DeadlineExceeded { .. } => break,
            }
        }
        let secs = started.elapsed().as_secs_f64();
        short += usize::from(produced < k);
        println!("| {sentence} | {produced} | {secs:.2} |");
        times.push(secs);
    }
    times.sort_by(f64::total_cmp);
    let at = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize];
    println!();
    println!(
        "k={k}: p50 {:.2} s, p90 {:.2} s, max {:.2} s; {short} of {} requests had fewer than {k}",
        at(0.5),
        at(0.9),
        at(1.0),
        times.len()
    );
    Ok(())
}
