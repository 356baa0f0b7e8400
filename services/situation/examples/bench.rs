//! Tokens per second of the situation engine at 1, 4 and 16 concurrent requests,
//! next to candle's own single-sequence quantized example on the same GGUF.
//!
//! The baseline is candle-examples/examples/quantized/main.rs's sampling loop,
//! reimplemented minimally and faithfully (candle_transformers' quantized_llama
//! ModelWeights, one `forward` per token with its internal KV cache,
//! LogitsProcessor top-p sampling, repeat penalty 1.1 over the last 64 tokens, stop
//! at the end-of-turn token), on the same prompt as the service.
//!
//!     cargo run --release -p empathy-situation --example bench -- [--threads 2] [--tokens 48]
//!
//! Counted: every sampled token (prefill time included in the wall time).

mod common;

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::Result;
use candle_core::{Device, Tensor, quantized::gguf_file};
use candle_transformers::{
    generation::{LogitsProcessor, Sampling},
    models::quantized_llama::ModelWeights,
};
use empathy_situation::{
    engine::{EngineMetrics, Event, Job, SamplingParams},
    judge::Judge,
    loader, situation_text,
};

use common::{arg, assets_dir, cpu_model, weights_arg};

const UTTERANCES: &[&str] = &[
    "My dog died yesterday",
    "I finally got the job!",
    "Why does nobody ever call me back?",
    "The exam results come out tomorrow.",
    "I can't believe they cancelled the concert.",
    "We're having a baby!",
    "My landlord raised the rent again.",
    "I haven't slept in two days.",
];

fn main() -> Result<()> {
    let threads = u32::try_from(arg("--threads", 0)).unwrap_or(u32::MAX);
    // SAFETY: no other thread exists yet.
    unsafe { empathy_common::configure_compute(threads) };
    let max_tokens = arg("--tokens", 48);
    println!("CPU: {}", cpu_model());
    let assets = assets_dir();
    let device = Device::Cpu;
    let generator = loader::load_generator(&assets, &device, weights_arg())?;
    let tok = Arc::clone(&generator.tokenizer);
    let prompt_for = |u: &str| situation_text::prompt_ids(&tok, u, &[]);

    // Baseline: candle's example loop, one sequence at a time, on the GGUF as stored
    // and with candle's own CANDLE_DEQUANTIZE_ALL=1 (f32 weights, like ours).
    let rounds = 4;
    let prompts: Vec<Vec<u32>> = (0..rounds)
        .map(|r| prompt_for(UTTERANCES[r % UTTERANCES.len()]))
        .collect::<Result<_>>()?;
    let gguf = loader::gguf_path(&assets);
    let run_baseline = move |prompts: Vec<Vec<u32>>, eos: u32| -> Result<f64> {
        let mut f = std::fs::File::open(&gguf)?;
        let ct = gguf_file::Content::read(&mut f)?;
        let mut reference = ModelWeights::from_gguf(ct, &mut f, &Device::Cpu)?;
        let started = Instant::now();
        let mut tokens = 0;
        for (r, prompt) in prompts.iter().enumerate() {
            tokens += baseline(&mut reference, prompt, eos, max_tokens, r as u64 + 1)?;
        }
        Ok(tokens as f64 / started.elapsed().as_secs_f64())
    };
    let eos = tok.im_end;
    let base_tps = run_baseline(prompts.clone(), eos)?;
    println!(
        "baseline, candle's quantized example loop on the GGUF as stored: {base_tps:.1} tokens/s"
    );
    // candle reads CANDLE_DEQUANTIZE_ALL once per thread: use a fresh thread.
    // SAFETY: no other thread of ours runs now (the engine starts below).
    unsafe { std::env::set_var("CANDLE_DEQUANTIZE_ALL", "1") };
    let run = run_baseline.clone();
    let deq_tps = std::thread::spawn(move || run(prompts, eos))
        .join()
        .map_err(|_| anyhow::anyhow!("baseline thread panicked"))??;
    // SAFETY: the baseline thread has been joined; no other thread of ours runs.
    unsafe { std::env::remove_var("CANDLE_DEQUANTIZE_ALL") };
    println!(
        "baseline, same loop with CANDLE_DEQUANTIZE_ALL=1 (f32 weights): {deq_tps:.1} tokens/s"
    );

    let metrics = EngineMetrics::new()?;
    let (engine, _) = generator.start_engine(Judge::None, 16, 1, 0.0, Some(metrics.clone()))?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    println!();
    println!(
        "| concurrent requests | tokens | seconds | tokens/s | vs baseline (GGUF) | vs baseline (f32) | mean request s |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    for concurrency in [1usize, 4, 16] {
        let before = metrics.tokens.get();
        let started = Instant::now();
        // Each client sends requests (k = 1) back to back; enough rounds that the
        // batch stays full while requests come and go.
        let per_client = (32 / concurrency).max(2);
        let latencies = rt.block_on(async {
            let mut clients = Vec::new();
            for c in 0..concurrency {
                let engine = engine.clone();
                let prompts: Vec<(String, Vec<u32>)> = (0..per_client)
                    .map(|r| {
                        let u = UTTERANCES[(c + r) % UTTERANCES.len()];
                        Ok((u.to_string(), prompt_for(u)?))
                    })
                    .collect::<Result<_>>()?;
                clients.push(tokio::spawn(async move {
                    let mut latencies = Vec::new();
                    for (r, (utterance, prompt)) in prompts.into_iter().enumerate() {
                        let t = Instant::now();
                        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
                        engine.submit(
                            Job {
                                utterance,
                                prompt,
                                k: 1,
                                seed: (c * 1000 + r + 1) as u64,
                                sampling: SamplingParams::defaults(max_tokens),
                                deadline: Instant::now() + Duration::from_secs(600),
                            },
                            tx,
                            None,
                        )?;
                        while let Some(ev) = rx.recv().await {
                            if !matches!(ev, Event::Situation(_)) {
                                break;
                            }
                        }
                        latencies.push(t.elapsed().as_secs_f64());
                    }
                    anyhow::Ok(latencies)
                }));
            }
            let mut all = Vec::new();
            for c in clients {
                all.extend(c.await??);
            }
            anyhow::Ok(all)
        })?;
        let secs = started.elapsed().as_secs_f64();
        let tokens = metrics.tokens.get() - before;
        let tps = tokens as f64 / secs;
        let mean = latencies.iter().sum::<f64>() / latencies.len().max(1) as f64;
        println!(
            "| {concurrency} | {tokens} | {secs:.1} | {tps:.1} | {:.2}x | {:.2}x | {mean:.2} |",
            tps / base_tps,
            tps / deq_tps
        );
    }
    Ok(())
}

/// candle's quantized example loop for one sequence; returns the tokens sampled.
fn baseline(
    model: &mut ModelWeights,
    prompt: &[u32],
    eos: u32,
    to_sample: usize,
    seed: u64,
) -> Result<usize> {
    let mut processor = LogitsProcessor::from_sampling(
        seed,
        Sampling::TopP {
            p: 0.95,
            temperature: 0.8,
        },
    );
    let input = Tensor::new(prompt, &Device::Cpu)?.unsqueeze(0)?;
    let logits = model.forward(&input, 0)?.squeeze(0)?;
    let mut next = processor.sample(&logits)?;
    let mut all = vec![next];
    let mut sampled = 1;
    for index in 0..to_sample.saturating_sub(1) {
        if next == eos {
            break;
        }
        let input = Tensor::new(&[next], &Device::Cpu)?.unsqueeze(0)?;
        let logits = model.forward(&input, prompt.len() + index)?.squeeze(0)?;
        let start = all.len().saturating_sub(64);
        let logits = candle_transformers::utils::apply_repeat_penalty(&logits, 1.1, &all[start..])?;
        next = processor.sample(&logits)?;
        all.push(next);
        sampled += 1;
    }
    Ok(sampled)
}
