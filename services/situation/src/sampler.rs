//! Nucleus (top-p) sampling that draws exactly what candle's `LogitsProcessor` with
//! `Sampling::TopP` draws for the same seed, without sorting the whole vocabulary.
//! candle argsorts all 49,152 probabilities for every token; that sort ran on the engine
//! thread between steps, ~4 ms a sequence while the compute threads waited. Here the
//! most likely 64 tokens are selected in linear time and only they are sorted (more
//! when they do not reach p), then candle draws from the clamped distribution.

use candle_core::{Result, Tensor};
use candle_transformers::generation::{LogitsProcessor, Sampling};

pub struct Sampler {
    inner: LogitsProcessor,
    top_p: f64,
}

impl Sampler {
    pub fn new(seed: u64, temperature: f64, top_p: f64) -> Self {
        Self {
            // `All` draws from the probabilities as `nucleus` leaves them, with the same
            // generator candle's `TopP` uses.
            inner: LogitsProcessor::from_sampling(seed, Sampling::All { temperature }),
            top_p,
        }
    }

    pub fn sample(&mut self, logits: &Tensor) -> Result<u32> {
        let p = self.top_p;
        self.inner.sample_f(logits, |prs| nucleus(prs, p))
    }
}

/// Zeroes every probability outside the nucleus, as candle's `sample_topp` does: in
/// descending order (ties by index, as its stable sort leaves them), tokens are kept
/// while the running f32 sum of those before is below p. p outside (0, 1) keeps all.
fn nucleus(prs: &mut [f32], p: f64) {
    if p <= 0.0 || p >= 1.0 {
        return;
    }
    let p = p as f32;
    let n = prs.len();
    let mut k = 64.min(n);
    let kept = loop {
        let probs = &*prs;
        let order = |i: &usize, j: &usize| probs[*j].total_cmp(&probs[*i]).then(i.cmp(j));
        let mut top: Vec<usize> = (0..n).collect();
        if k < n {
            top.select_nth_unstable_by(k - 1, order);
            top.truncate(k);
        }
        top.sort_unstable_by(order);
        let mut sum = 0f32;
        let reached = top.iter().position(|&i| {
            let before = sum;
            sum += probs[i];
            before >= p
        });
        match reached {
            Some(end) => break top[..end].to_vec(),
            None if k == n => break top,
            None => k = (2 * k).min(n),
        }
    };
    let mut keep = vec![false; n];
    for i in kept {
        keep[i] = true;
    }
    for (pr, keep) in prs.iter_mut().zip(keep) {
        if !keep {
            *pr = 0.0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// Token for token the draws of candle's top-p sampler, over peaked and flat
    /// distributions (nuclei of a few tokens and of thousands), several seeds and p.
    #[test]
    fn draws_what_candle_draws() {
        let vocab = 49_152;
        for (scale, p, seed) in [(8.0, 0.95, 1), (1.0, 0.95, 2), (0.1, 0.9, 3), (3.0, 0.5, 4)] {
            let mut ours = Sampler::new(seed, 0.8, p);
            let mut theirs = LogitsProcessor::from_sampling(
                seed,
                Sampling::TopP {
                    p,
                    temperature: 0.8,
                },
            );
            for step in 0..40 {
                let logits =
                    (Tensor::randn(0f32, 1.0, vocab, &Device::Cpu).unwrap() * scale).unwrap();
                assert_eq!(
                    ours.sample(&logits).unwrap(),
                    theirs.sample(&logits).unwrap(),
                    "scale {scale}, p {p}, seed {seed}, step {step}"
                );
            }
        }
    }

    #[test]
    fn keeps_the_smallest_prefix_that_reaches_p() {
        let mut prs = [0.1, 0.4, 0.05, 0.3, 0.15];
        nucleus(&mut prs, 0.75);
        // 0.4 + 0.3 = 0.7 < 0.75, so 0.15 joins; then the sum is 0.85.
        assert_eq!(prs, [0.0, 0.4, 0.0, 0.3, 0.15]);
        let mut all = [0.5, 0.5];
        nucleus(&mut all, 1.0);
        assert_eq!(all, [0.5, 0.5]);
    }
}
