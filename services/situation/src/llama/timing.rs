//! Step and prefill times of the generator per weight format (run by hand:
//! `cargo test --release -p empathy-situation --lib step_times -- --ignored --nocapture`).

use super::*;
use std::time::Instant;

/// Decoding steps timed after the 100-token prompt, as `llama-batched-bench -npp 100
/// -ntg 32` does in scripts/situation-bench.
const STEPS: usize = 32;

#[test]
#[ignore = "timing, run by hand"]
fn step_times() {
    // As the service does (configure_compute): freed outputs stay in the process.
    empathy_common::keep_freed_memory();
    for format in [WeightFormat::F32, WeightFormat::Q4, WeightFormat::Q4Amx] {
        let (model, _) = super::tests::model(format);
        let prompt: Vec<u32> = (100..200).collect();
        let mut cache = model.new_cache(200);
        let t = Instant::now();
        model.prefill(&prompt, &mut cache).unwrap();
        let took = t.elapsed();
        println!(
            "{format:?} prefill 100: {took:?} ({:.0} tokens/s)",
            100.0 / took.as_secs_f64()
        );
        for b in [1usize, 4, 16] {
            let mut caches: Vec<SeqCache> = (0..b)
                .map(|_| model.fork_cache(&cache, 200).unwrap())
                .collect();
            let t = Instant::now();
            for _ in 0..STEPS {
                let mut refs: Vec<&mut SeqCache> = caches.iter_mut().collect();
                model.step(&vec![300; b], &mut refs).unwrap();
            }
            let step = t.elapsed() / STEPS as u32;
            println!(
                "{format:?} step b={b}: {step:?} ({:.0} tokens/s)",
                b as f64 / step.as_secs_f64()
            );
        }
    }
}
