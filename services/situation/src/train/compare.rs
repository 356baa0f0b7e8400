//! `compare-critics`: how well each critic tells an utterance's own situation from a
//! situation generated for another utterance (own-vs-other discrimination), on the
//! same pairs: the generator's PMI both ways, and the trained critic if there is one.

use std::path::Path;

use anyhow::Result;
use candle_core::Device;
use rand::{Rng, SeedableRng, rngs::StdRng};

use super::{TrainOptions, corpus_generations};
use crate::{
    llama::WeightFormat,
    loader,
    pmi::{Direction, pmi},
};

/// Own-vs-other pairs: (utterance, its situation, another utterance's situation).
type Pair = (String, String, String);

pub fn compare_critics(
    assets: &Path,
    device: &Device,
    weights: WeightFormat,
    opts: &TrainOptions,
) -> Result<()> {
    let (gens, _) = corpus_generations(assets, device, weights, opts)?;
    let gens: Vec<_> = gens
        .into_iter()
        .filter(|g| !g.situations.is_empty())
        .collect();
    anyhow::ensure!(gens.len() >= 2, "fewer than two utterances got a situation");
    let mut rng = StdRng::seed_from_u64(opts.seed);
    let pairs: Vec<Pair> = (0..gens.len())
        .map(|i| {
            let j = (i + rng.random_range(1..gens.len())) % gens.len();
            (
                gens[i].utterance.clone(),
                gens[i].situations[0].clone(),
                gens[j].situations[0].clone(),
            )
        })
        .collect();
    println!(
        "own-vs-other discrimination on {} corpus utterances (seed {}): the share of pairs \
         where a critic scores the utterance's own situation above another's (ties half)",
        pairs.len(),
        opts.seed
    );

    let generator = loader::load_generator(assets, device, weights)?;
    for direction in Direction::ALL {
        let scores = pairs
            .iter()
            .map(|(u, own, other)| {
                let own = pmi(&generator.model, &generator.tokenizer, u, own, direction)?;
                let other = pmi(&generator.model, &generator.tokenizer, u, other, direction)?;
                Ok((own, other))
            })
            .collect::<Result<Vec<_>>>()?;
        report(direction.name(), &scores);
    }
    match loader::load_scorer(assets, device) {
        Ok(scorer) => {
            let scores = pairs
                .iter()
                .map(|(u, own, other)| {
                    let u = scorer.embed(u)?;
                    Ok((scorer.score(&u, own)?, scorer.score(&u, other)?))
                })
                .collect::<Result<Vec<_>>>()?;
            report("trained critic (MLP over MiniLM embeddings)", &scores);
        }
        Err(e) => println!("  trained critic: none to compare ({e:#})"),
    }
    Ok(())
}

/// Prints the share of (own, other) pairs where own scored higher, with a 95% Wilson
/// interval.
fn report(name: &str, scores: &[(f32, f32)]) {
    let n = scores.len() as f64;
    let wins: f64 = scores
        .iter()
        .map(|(own, other)| match own.partial_cmp(other) {
            Some(std::cmp::Ordering::Greater) => 1.0,
            Some(std::cmp::Ordering::Equal) => 0.5,
            _ => 0.0,
        })
        .sum();
    let p = wins / n;
    let z = 1.96;
    let centre = (p + z * z / (2.0 * n)) / (1.0 + z * z / n);
    let half = z * (p * (1.0 - p) / n + z * z / (4.0 * n * n)).sqrt() / (1.0 + z * z / n);
    let mean = |f: fn(&(f32, f32)) -> f32| scores.iter().map(f).sum::<f32>() / n as f32;
    println!(
        "  {name:<46} {p:.3}  (95% CI {:.3}-{:.3}; mean score own {:.3}, other {:.3})",
        centre - half,
        centre + half,
        mean(|s| s.0),
        mean(|s| s.1)
    );
}
