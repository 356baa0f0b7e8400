//! Self-training with confidence-thresholded pseudo-labels (Lee 2013, "Pseudo-Label";
//! Xie et al. 2020, "Noisy Student") over the frozen text encoder's cached embeddings
//! and the lexicon features.
//!
//! Protocol, one seed throughout: the corpus split as `train_sentiment` makes it; a
//! stratified labelled subset of the training split (the rest of it is the unlabelled
//! pool, whose labels are never used for training); a teacher trained on the labelled
//! subset with the training session and hyper-parameters of `train_sentiment`, early
//! stopped on the whole validation split; then, per round, the teacher labels the pool,
//! the predictions with max-probability >= tau are kept, class-balanced, and a fresh
//! student is trained on labelled + pseudo-labelled examples with more noise (hidden
//! dropout and text-token dropout); the student is the next round's teacher.

use std::path::Path;
use std::time::Instant;

use anyhow::ensure;
use candle_core::D;
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

use super::embed::embeddings;
use super::fit::{Features, Shown};
use super::{
    TextEncoder, TrainConfig, class_weights, confusion_on, features, prior_bias, split_corpus,
    train_fresh,
};
use crate::metrics::Confusion;
use empathy_corpus::topics::TopicTagger;
use empathy_corpus::{Corpus, Split, corpus_path, load_corpus};
use empathy_model::batch::{BatchBuilder, Example};
use empathy_model::network::{FusionNetwork, LEXICON, TEXT};

#[derive(Debug, Clone)]
pub struct SelfTrainingConfig {
    /// Split, subsets, initial weights and batch order; the teacher's hyper-parameters.
    pub train: TrainConfig,
    /// Labelled examples taken from the training split; None = all of it.
    pub label_counts: Vec<Option<usize>>,
    /// Least max-probability for a pseudo-label to be kept.
    pub tau: f32,
    pub rounds: usize,
    /// The student's noise: dropout on the pooled hidden vector...
    pub student_dropout: f64,
    /// ...and the share of examples whose text token is hidden.
    pub student_text_dropout: f64,
}

impl Default for SelfTrainingConfig {
    fn default() -> Self {
        SelfTrainingConfig {
            train: TrainConfig::default(),
            label_counts: vec![Some(100), Some(500), None],
            tau: 0.9,
            rounds: 2,
            student_dropout: 0.5,
            student_text_dropout: 0.2,
        }
    }
}

/// Test-split accuracy and macro-F1.
#[derive(Debug, Clone, Copy)]
pub struct Scores {
    pub accuracy: f64,
    pub macro_f1: f64,
}

impl Scores {
    fn of(m: &Confusion) -> Scores {
        Scores {
            accuracy: m.accuracy(),
            macro_f1: m.macro_f1(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Round {
    /// Pseudo-labels kept (per class) out of the pool.
    pub pseudo_per_class: [usize; 3],
    /// Diagnostic only, never used for training: how many kept pseudo-labels are right.
    pub pseudo_accuracy: f64,
    pub test: Scores,
    pub validation_macro_f1: f64,
}

#[derive(Debug, Clone)]
pub struct SelfTrainingRow {
    pub labelled: usize,
    pub unlabelled: usize,
    pub baseline: Scores,
    pub baseline_validation_macro_f1: f64,
    /// One per round; empty when the pool is empty.
    pub rounds: Vec<Round>,
    pub seconds: f64,
}

/// Runs the protocol for each labelled-subset size.
pub fn compare_self_training(
    assets_dir: &Path,
    config: &SelfTrainingConfig,
    encoder: TextEncoder,
    progress: &mut dyn FnMut(&str),
) -> anyhow::Result<Vec<SelfTrainingRow>> {
    let base = &config.train;
    ensure!(
        config.tau > 0.0 && config.tau <= 1.0,
        "tau must be in (0, 1]"
    );
    let corpus = load_corpus(&corpus_path(assets_dir))?;
    let split = split_corpus(&corpus, base, progress);
    let text = embeddings(&corpus, base, encoder, progress)?;
    let features = features(assets_dir, &corpus, text, base.dims)?;
    let topic_count = TopicTagger::new()?.count();
    let test_labels: Vec<usize> = split.test.iter().map(|&i| corpus.labels[i]).collect();
    let student_config = TrainConfig {
        dropout: config.student_dropout,
        text_dropout: config.student_text_dropout,
        ..base.clone()
    };
    let protocol = Protocol {
        config,
        student_config,
        corpus: &corpus,
        split: &split,
        features: &features,
        topic_count,
        test_labels,
    };
    let mut rows = Vec::new();
    for &count in &config.label_counts {
        rows.push(protocol.row(count, progress)?);
    }
    Ok(rows)
}

/// What every labelled-subset size shares: the corpus, its split and features.
struct Protocol<'a> {
    config: &'a SelfTrainingConfig,
    student_config: TrainConfig,
    corpus: &'a Corpus,
    split: &'a Split,
    features: &'a Features,
    topic_count: usize,
    test_labels: Vec<usize>,
}

/// One labelled subset: its examples, the unlabelled pool, and the topic bias.
struct Subset {
    labelled: Vec<usize>,
    pool: Vec<usize>,
    bias: Vec<[f32; 3]>,
}

impl Protocol<'_> {
    /// The baseline and the rounds for `count` labelled examples (None: all).
    fn row(
        &self,
        count: Option<usize>,
        progress: &mut dyn FnMut(&str),
    ) -> anyhow::Result<SelfTrainingRow> {
        let (base, corpus, split) = (&self.config.train, self.corpus, self.split);
        let started = Instant::now();
        let n = count.unwrap_or(split.train.len()).min(split.train.len());
        let (labelled, pool) = labelled_subset(&corpus.labels, &split.train, n, base.seed);
        progress(&format!(
            "-- {} labelled, {} unlabelled",
            labelled.len(),
            pool.len()
        ));
        // The topic priors (the bias expert) come from the labelled examples only.
        let bias: Vec<[f32; 3]> = if base.topic_prior_weight == 0.0 {
            vec![[0.0; 3]; corpus.texts.len()]
        } else {
            let w = base.topic_prior_weight as f32;
            prior_bias(corpus, &labelled, self.topic_count, w)
        };
        let subset = Subset {
            labelled,
            pool,
            bias,
        };
        let (mut teacher, baseline_f1) = self.train_once(
            &subset.bias,
            &corpus.labels,
            subset.labelled.clone(),
            base,
            progress,
        )?;
        let baseline = self.test_scores(&teacher)?;
        progress(&format!(
            "baseline: test accuracy {:.4}, macro-F1 {:.4}",
            baseline.accuracy, baseline.macro_f1
        ));
        let mut rounds = Vec::new();
        if !subset.pool.is_empty() {
            for round in 1..=self.config.rounds {
                let (result, student) = self.round(round, &teacher, &subset, progress)?;
                rounds.push(result);
                teacher = student;
            }
        }
        Ok(SelfTrainingRow {
            labelled: subset.labelled.len(),
            unlabelled: subset.pool.len(),
            baseline,
            baseline_validation_macro_f1: baseline_f1,
            rounds,
            seconds: started.elapsed().as_secs_f64(),
        })
    }

    /// One round: the teacher labels the pool, the confident labels are kept, and a
    /// student is trained on them and the labelled subset. Returns the student.
    fn round(
        &self,
        round: usize,
        teacher: &FusionNetwork,
        subset: &Subset,
        progress: &mut dyn FnMut(&str),
    ) -> anyhow::Result<(Round, FusionNetwork)> {
        let (corpus, pool) = (self.corpus, &subset.pool);
        let probs = probabilities(teacher, self.features, pool)?;
        let kept = select_pseudo_labels(&probs, self.config.tau);
        let mut per_class = [0usize; 3];
        let mut right = 0usize;
        // Labels as the student sees them: the truth on the labelled subset,
        // the teacher's guess on the kept part of the pool, nothing else.
        let mut labels = corpus.labels.clone();
        let mut train = subset.labelled.clone();
        for &(k, label) in &kept {
            let i = pool[k];
            per_class[label] += 1;
            right += usize::from(corpus.labels[i] == label);
            labels[i] = label;
            train.push(i);
        }
        train.sort_unstable();
        progress(&format!(
            "round {round}: {} pseudo-labels kept (per class {per_class:?}) of {}",
            kept.len(),
            pool.len()
        ));
        let (student, f1) =
            self.train_once(&subset.bias, &labels, train, &self.student_config, progress)?;
        let test = self.test_scores(&student)?;
        progress(&format!(
            "round {round}: test accuracy {:.4}, macro-F1 {:.4}",
            test.accuracy, test.macro_f1
        ));
        let result = Round {
            pseudo_per_class: per_class,
            pseudo_accuracy: right as f64 / kept.len().max(1) as f64,
            test,
            validation_macro_f1: f1,
        };
        Ok((result, student))
    }

    /// A fresh network trained on `train` with `labels`, early stopped on the whole
    /// validation split: the network and its best validation macro-F1.
    fn train_once(
        &self,
        bias: &[[f32; 3]],
        labels: &[usize],
        train: Vec<usize>,
        config: &TrainConfig,
        progress: &mut dyn FnMut(&str),
    ) -> anyhow::Result<(FusionNetwork, f64)> {
        let weights = class_weights(labels, &train, config.class_weighting);
        let session_split = Split {
            train,
            validation: self.split.validation.clone(),
            test: self.split.test.clone(),
        };
        let (_, network, fit) = train_fresh(
            self.features,
            labels,
            &session_split,
            &weights,
            bias,
            config,
            progress,
        )?;
        Ok((network, fit.best_f1))
    }

    fn test_scores(&self, network: &FusionNetwork) -> anyhow::Result<Scores> {
        let shown = Shown {
            text: true,
            situations: false,
        };
        let test = &self.split.test;
        let confusion = confusion_on(network, self.features, test, &self.test_labels, shown)?;
        Ok(Scores::of(&confusion))
    }
}

/// A stratified, seeded subset of `train` of size `n` (largest-remainder quotas per
/// label), and the rest of `train`: (labelled, unlabelled), both sorted.
pub fn labelled_subset(
    labels: &[usize],
    train: &[usize],
    n: usize,
    seed: u64,
) -> (Vec<usize>, Vec<usize>) {
    let n = n.min(train.len());
    let classes = train.iter().map(|&i| labels[i] + 1).max().unwrap_or(0);
    let mut rng = StdRng::seed_from_u64(seed);
    let mut members: Vec<Vec<usize>> = vec![Vec::new(); classes];
    for &i in train {
        members[labels[i]].push(i);
    }
    let exact: Vec<f64> = members
        .iter()
        .map(|m| n as f64 * m.len() as f64 / train.len().max(1) as f64)
        .collect();
    let mut quota: Vec<usize> = exact.iter().map(|q| q.floor() as usize).collect();
    let mut by_remainder: Vec<usize> = (0..classes).collect();
    by_remainder.sort_by(|&a, &b| {
        let (ra, rb) = (exact[a] - exact[a].floor(), exact[b] - exact[b].floor());
        rb.total_cmp(&ra).then(a.cmp(&b))
    });
    let short = n - quota.iter().sum::<usize>();
    for &c in by_remainder.iter().take(short) {
        quota[c] += 1;
    }
    let (mut labelled, mut rest) = (Vec::new(), Vec::new());
    for (class, mut m) in members.into_iter().enumerate() {
        m.shuffle(&mut rng);
        let q = quota[class].min(m.len());
        labelled.extend_from_slice(&m[..q]);
        rest.extend_from_slice(&m[q..]);
    }
    labelled.sort_unstable();
    rest.sort_unstable();
    (labelled, rest)
}

/// Positions (into `probs`) and labels of the pseudo-labels to keep: those whose
/// max-probability is at least `tau`, then class-balanced: every class is cut to the
/// count of the class with the fewest confident predictions, keeping the most
/// confident ones (ties by position). A class with no confident prediction leaves
/// nothing to keep.
pub fn select_pseudo_labels(probs: &[[f32; 3]], tau: f32) -> Vec<(usize, usize)> {
    let mut by_class: [Vec<(usize, f32)>; 3] = Default::default();
    for (k, p) in probs.iter().enumerate() {
        let (label, &max) = p
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .expect("three classes");
        if max >= tau {
            by_class[label].push((k, max));
        }
    }
    let cap = by_class.iter().map(Vec::len).min().unwrap_or(0);
    let mut kept = Vec::with_capacity(3 * cap);
    for (label, mut members) in by_class.into_iter().enumerate() {
        members.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        kept.extend(members.into_iter().take(cap).map(|(k, _)| (k, label)));
    }
    kept.sort_unstable();
    kept
}

/// Softmax of the network's sentiment logits (no topic prior: the network alone, as
/// it serves) for `indices`, showing it the text and lexicon tokens.
fn probabilities(
    network: &FusionNetwork,
    features: &Features,
    indices: &[usize],
) -> anyhow::Result<Vec<[f32; 3]>> {
    let (t, l) = (features.dims.text, features.dims.lexicon);
    let mut out = Vec::with_capacity(indices.len());
    for chunk in indices.chunks(1024) {
        let mut builder = BatchBuilder::new(features.dims);
        for &i in chunk {
            let example = Example {
                text: Some(&features.text[i * t..(i + 1) * t]),
                lexicon: &features.lexicon[i * l..(i + 1) * l],
                speech: None,
                image: None,
                situations: &[],
                context: Vec::new(),
            };
            builder.push(&example, |slot| slot == TEXT || slot == LEXICON);
        }
        let logits = network.forward(&builder.build()?)?.sentiment_logits;
        let p = candle_nn::ops::softmax(&logits, D::Minus1)?.to_vec2::<f32>()?;
        out.extend(p.into_iter().map(|row| [row[0], row[1], row[2]]));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_confident_predictions_balanced_across_classes() {
        let probs = [
            [0.95, 0.03, 0.02], // 0: class 0, kept (most confident of class 0)
            [0.91, 0.05, 0.04], // 1: class 0, confident but over the cap
            [0.92, 0.04, 0.04], // 2: class 0, kept (second)
            [0.10, 0.90, 0.00], // 3: class 1, exactly tau: kept
            [0.05, 0.93, 0.02], // 4: class 1, kept
            [0.30, 0.60, 0.10], // 5: class 1, not confident
            [0.01, 0.01, 0.98], // 6: class 2, kept
            [0.02, 0.02, 0.96], // 7: class 2, kept
            [0.02, 0.08, 0.90], // 8: class 2, over the cap
            [0.50, 0.10, 0.40], // 9: not confident
        ];
        let kept = select_pseudo_labels(&probs, 0.9);
        assert_eq!(kept, vec![(0, 0), (2, 0), (3, 1), (4, 1), (6, 2), (7, 2)]);
        // A stricter threshold leaves one confident class-1 prediction: one per class.
        assert_eq!(
            select_pseudo_labels(&probs, 0.93),
            vec![(0, 0), (4, 1), (6, 2)]
        );
        // No confident prediction of some class: nothing is kept.
        assert!(select_pseudo_labels(&probs, 0.97).is_empty());
        assert!(select_pseudo_labels(&[], 0.5).is_empty());
    }

    #[test]
    fn labelled_subset_is_stratified_seeded_and_disjoint() {
        let labels: Vec<usize> = (0..1000).map(|i| [0, 0, 0, 1, 2][i % 5]).collect();
        let train: Vec<usize> = (0..1000).filter(|i| i % 10 != 0).collect();
        let (labelled, pool) = labelled_subset(&labels, &train, 100, 42);
        assert_eq!(labelled.len(), 100);
        assert_eq!(labelled.len() + pool.len(), train.len());
        let count = |c: usize| labelled.iter().filter(|&&i| labels[i] == c).count();
        // 500, 200 and 200 in the training split: 55.6, 22.2 and 22.2 rounded.
        assert_eq!([count(0), count(1), count(2)], [56, 22, 22]);
        assert!(
            labelled
                .iter()
                .all(|i| train.contains(i) && !pool.contains(i))
        );
        assert_eq!(labelled_subset(&labels, &train, 100, 42).0, labelled);
        assert_ne!(labelled_subset(&labels, &train, 100, 7).0, labelled);
        let (all, none) = labelled_subset(&labels, &train, usize::MAX, 42);
        assert_eq!((all, none.len()), (train.clone(), 0));
    }
}
