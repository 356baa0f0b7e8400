//! With or without imagined situations: the same seed, the same split restricted to
//! the tweets that have situations, the network trained twice — once blind to the
//! situation tokens, once attending over them — and both scored on the same test
//! tweets.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use anyhow::ensure;

use super::{
    Shown, TextEncoder, TrainConfig, class_weights, confusion_on, embeddings, features, record,
    topic_bias, train_fresh,
};
use empathy_corpus::{Split, corpus_path, load_corpus, stratified_split};

/// Test-split metrics of both runs, and the sizes they were trained and tested on.
#[derive(Debug, Clone)]
pub struct SituationComparison {
    pub without: BTreeMap<String, f64>,
    pub with: BTreeMap<String, f64>,
    pub train_size: usize,
    pub validation_size: usize,
    pub test_size: usize,
}

/// The corpus split `config.seed` makes, as utterance texts: which tweets to imagine
/// situations for.
pub fn split_texts(assets_dir: &Path, config: &TrainConfig) -> anyhow::Result<[Vec<String>; 3]> {
    let corpus = load_corpus(&corpus_path(assets_dir))?;
    let split = stratified_split(&corpus.labels, config.seed, config.held_out_fraction);
    let texts = |ix: &[usize]| ix.iter().map(|&i| corpus.texts[i].clone()).collect();
    Ok([
        texts(&split.train),
        texts(&split.validation),
        texts(&split.test),
    ])
}

/// Trains without and with situation tokens. `situations` maps an utterance (as in
/// `split_texts`) to the embeddings of its situations; tweets without any are left out
/// of both runs.
pub fn compare_situations(
    assets_dir: &Path,
    config: &TrainConfig,
    encoder: TextEncoder,
    situations: &HashMap<String, Vec<Vec<f32>>>,
    progress: &mut dyn FnMut(&str),
) -> anyhow::Result<SituationComparison> {
    let corpus = load_corpus(&corpus_path(assets_dir))?;
    let full = stratified_split(&corpus.labels, config.seed, config.held_out_fraction);
    let has = |i: &usize| {
        situations
            .get(&corpus.texts[*i])
            .is_some_and(|s| !s.is_empty())
    };
    let split = Split {
        train: full.train.iter().copied().filter(has).collect(),
        validation: full.validation.iter().copied().filter(has).collect(),
        test: full.test.iter().copied().filter(has).collect(),
    };
    ensure!(
        !split.train.is_empty() && !split.validation.is_empty() && !split.test.is_empty(),
        "situations cover {} train, {} validation and {} test tweets: each split needs some",
        split.train.len(),
        split.validation.len(),
        split.test.len()
    );
    progress(&format!(
        "with situations: train {}, validation {}, test {}",
        split.train.len(),
        split.validation.len(),
        split.test.len()
    ));
    let text = embeddings(&corpus, config, encoder, progress)?;
    let mut features = features(assets_dir, &corpus, text, config.dims)?;
    features.situations = corpus
        .texts
        .iter()
        .map(|t| situations.get(t).cloned().unwrap_or_default())
        .collect();
    let weights = class_weights(&corpus.labels, &split.train, config.class_weighting);
    let bias = topic_bias(&corpus, &split, config.topic_prior_weight as f32)?;
    let truth: Vec<usize> = split.test.iter().map(|&i| corpus.labels[i]).collect();
    let mut run = |use_situations: bool| -> anyhow::Result<BTreeMap<String, f64>> {
        let config = TrainConfig {
            use_situations,
            ..config.clone()
        };
        let (_, network, fit) = train_fresh(
            &features,
            &corpus.labels,
            &split,
            &weights,
            &bias,
            &config,
            progress,
        )?;
        let shown = Shown {
            text: true,
            situations: use_situations,
        };
        let mut metrics = BTreeMap::new();
        let confusion = confusion_on(&network, &features, &split.test, &truth, shown)?;
        record(&mut metrics, "test", &confusion);
        metrics.insert("validation_macro_f1".into(), fit.best_f1);
        Ok(metrics)
    };
    let without = run(false)?;
    let with = run(true)?;
    Ok(SituationComparison {
        without,
        with,
        train_size: split.train.len(),
        validation_size: split.validation.len(),
        test_size: split.test.len(),
    })
}
