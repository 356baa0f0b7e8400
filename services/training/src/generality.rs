//! Leave-one-domain-out: how the model does on a domain it has never seen. For each
//! topic of the corpus (airline, football, Coachella, Apple, driverless cars, other),
//! train without that topic's tweets and test on all of them; beside it, the same
//! model on the test split of the topics it was trained on. The mean over topics of
//! the out-of-domain macro-F1 is the number a customer outside tweets cares about.

use std::path::Path;

use anyhow::ensure;

use super::{TextEncoder, TrainConfig, class_weights, prior_bias, train_fresh};
use crate::embed::embed_texts;
use crate::encoder_tuning::{TuningConfig, tune_on_corpus};
use crate::fit::{Features, Shown, predict};
use crate::metrics::Confusion;
use empathy_corpus::topics::TopicTagger;
use empathy_corpus::{Corpus, Split};

/// Accuracy and macro-F1 on a set of examples.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Score {
    pub examples: usize,
    pub accuracy: f64,
    pub macro_f1: f64,
}

/// One topic left out.
#[derive(Debug, Clone, PartialEq)]
pub struct DomainFold {
    pub domain: String,
    pub train_size: usize,
    /// The test split of the other topics.
    pub in_domain: Score,
    /// Every tweet of the left-out topic.
    pub out_of_domain: Score,
}

/// Embeds texts with the encoder in a model directory.
pub type EmbedWith<'a> = dyn FnMut(&Path, &[String]) -> anyhow::Result<Vec<Vec<f32>>> + 'a;

/// Tuning the encoder in each fold, on that fold's training examples only.
pub struct FoldTuning<'a> {
    /// The base encoder's model directory.
    pub base_dir: &'a Path,
    pub config: &'a TuningConfig,
    pub embed_with: &'a mut EmbedWith<'a>,
}

/// The folds, one per topic, in topic order; `progress` gets the training lines.
/// With `tuning`, each fold tunes its own encoder first (the frozen `encoder` gives
/// the distillation targets).
pub fn leave_one_domain_out(
    assets_dir: &Path,
    config: &TrainConfig,
    encoder: TextEncoder,
    mut tuning: Option<FoldTuning>,
    progress: &mut dyn FnMut(&str),
) -> anyhow::Result<Vec<DomainFold>> {
    // Single sentences only: made conversations mix topics in their turns, which would
    // leak the held-out topic into training.
    let config = &TrainConfig {
        dialogues: 0,
        ..config.clone()
    };
    let crate::prepared::Prepared {
        corpus,
        split,
        text,
        original,
        ..
    } = crate::prepared::prepare(assets_dir, config, encoder, progress)?;
    let expansion = super::load_expansion(config, progress)?;
    let features = |text: Vec<f32>| {
        super::features_with(assets_dir, &corpus, text, config.dims, expansion.as_ref())
    };
    let frozen_features = features(text.clone())?;
    let names = TopicTagger::names();
    let mut folds = Vec::with_capacity(names.len());
    for (topic, name) in names.iter().enumerate() {
        progress(&format!("leaving out {name}"));
        let held_out: Vec<usize> = (0..original)
            .filter(|&i| corpus.topics[i] == topic)
            .collect();
        ensure!(!held_out.is_empty(), "no tweet of topic {name}");
        let keep = |indices: &[usize]| -> Vec<usize> {
            indices
                .iter()
                .copied()
                .filter(|&i| corpus.topics[i] != topic)
                .collect()
        };
        let fold_split = Split {
            train: keep(&split.train),
            validation: keep(&split.validation),
            test: keep(&split.test),
        };
        let bias = prior_bias(
            &corpus,
            &fold_split.train,
            names.len(),
            config.topic_prior_weight as f32,
        );
        let tuned_features = match tuning.as_mut() {
            None => None,
            Some(t) => {
                let tuned = tune_on_corpus(
                    assets_dir,
                    t.base_dir,
                    &corpus,
                    &text,
                    &bias,
                    &fold_split.train,
                    t.config,
                    progress,
                )?;
                let id = format!("tuned@{}", tuned.version);
                let mut embed = |texts: &[String]| (t.embed_with)(&tuned.dir, texts);
                let mut encoder = TextEncoder {
                    id: &id,
                    embed: &mut embed,
                };
                let sha = corpus.sha256.clone();
                let tuned_text = embed_texts(&corpus.texts, &sha, config, &mut encoder, progress)?;
                Some(features(tuned_text)?)
            }
        };
        let features = tuned_features.as_ref().unwrap_or(&frozen_features);
        let fold = Fold {
            corpus: &corpus,
            split: &fold_split,
            bias: &bias,
            features,
        };
        folds.push(fold.score(&held_out, name, config, progress)?);
    }
    Ok(folds)
}

/// One topic left out: the other topics' split, their priors and the features.
struct Fold<'a> {
    corpus: &'a Corpus,
    split: &'a Split,
    bias: &'a [[f32; 3]],
    features: &'a Features,
}

impl Fold<'_> {
    /// Trains on the split and scores inside it and on `held_out`.
    fn score(
        &self,
        held_out: &[usize],
        name: &str,
        config: &TrainConfig,
        progress: &mut dyn FnMut(&str),
    ) -> anyhow::Result<DomainFold> {
        let (corpus, features) = (self.corpus, self.features);
        let weights = class_weights(&corpus.labels, &self.split.train, config.class_weighting);
        let (_varmap, network, _fit) = train_fresh(
            features,
            &corpus.labels,
            self.split,
            &weights,
            self.bias,
            config,
            progress,
        )?;
        let score = |indices: &[usize]| -> anyhow::Result<Score> {
            let shown = Shown {
                text: true,
                situations: false,
            };
            let predicted = predict(&network, features, indices, shown)?;
            let truth: Vec<usize> = indices.iter().map(|&i| corpus.labels[i]).collect();
            let m = Confusion::from_labels(3, &truth, &predicted);
            Ok(Score {
                examples: indices.len(),
                accuracy: m.accuracy(),
                macro_f1: m.macro_f1(),
            })
        };
        Ok(DomainFold {
            domain: name.to_string(),
            train_size: self.split.train.len(),
            in_domain: score(&self.split.test)?,
            out_of_domain: score(held_out)?,
        })
    }
}

/// Means over folds of the in-domain and out-of-domain macro-F1.
pub fn mean_macro_f1(folds: &[DomainFold]) -> (f64, f64) {
    let n = folds.len().max(1) as f64;
    (
        folds.iter().map(|f| f.in_domain.macro_f1).sum::<f64>() / n,
        folds.iter().map(|f| f.out_of_domain.macro_f1).sum::<f64>() / n,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::{bag_of_words, one_epoch};
    use empathy_model::test_support::{TempDir, assets_dir};

    #[test]
    fn every_topic_is_left_out_once_and_scored() -> anyhow::Result<()> {
        let dir = TempDir::new("generality");
        let config = one_epoch(&dir);
        let mut embed = bag_of_words;
        let encoder = TextEncoder {
            id: "test/bag-of-words",
            embed: &mut embed,
        };
        let folds = leave_one_domain_out(&assets_dir(), &config, encoder, None, &mut |_| {})?;
        let corpus = empathy_corpus::load_corpus(&empathy_corpus::corpus_path(&assets_dir()))?;
        assert_eq!(
            folds.iter().map(|f| f.domain.as_str()).collect::<Vec<_>>(),
            TopicTagger::names()
        );
        // Every tweet is out of domain in exactly one fold.
        let held: usize = folds.iter().map(|f| f.out_of_domain.examples).sum();
        assert_eq!(held, corpus.texts.len());
        for f in &folds {
            assert!(f.train_size + f.out_of_domain.examples < corpus.texts.len());
            for s in [f.in_domain, f.out_of_domain] {
                assert!(s.macro_f1 > 0.0 && s.macro_f1 < 1.0, "{f:?}");
            }
        }
        Ok(())
    }
}
