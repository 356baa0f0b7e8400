//! Leave-one-domain-out: how the model does on a domain it has never seen. For each
//! topic of the corpus (airline, football, Coachella, Apple, driverless cars, other),
//! train without that topic's tweets and test on all of them; beside it, the same
//! model on the test split of the topics it was trained on. The mean over topics of
//! the out-of-domain macro-F1 is the number a customer outside tweets cares about.
//! Given readings of the meaning reader, each fold is also scored with the reader's
//! rule as fusion serves it (`empathy_reader::mix`), on the rows that were read,
//! beside the model alone on the same rows.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, ensure};

use super::{TextEncoder, TrainConfig, class_weights, prior_bias, train_fresh};
use crate::embed::embed_texts;
use crate::encoder_tuning::{Keep, TuningConfig, tempdir_in, tune_on_corpus};
use crate::fit::{Features, Shown, logits};
use crate::metrics::Confusion;
use empathy_corpus::topics::TopicTagger;
use empathy_corpus::{Corpus, Split};
use empathy_model::typicality::Typicality;
use empathy_proto::{NEUTRAL_SENTIMENT, SENTIMENT_LABELS};
use empathy_reader::{ReaderModel, mix::Rule};

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
    /// With readings: the rows read of each, the model alone and with the reader.
    pub read: Option<ReadFold>,
}

/// The model alone and with the meaning reader, on the same rows (those read).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReadFold {
    pub in_domain: (Score, Score),
    pub out_of_domain: (Score, Score),
}

/// The meaning reader's readings by text (log-probabilities in SENTIMENT_LABELS
/// order), and which reader read them: its rule is the one they are scored with.
#[derive(Debug, Default)]
pub struct Readings {
    pub reader: ReaderModel,
    pub by_text: HashMap<String, [f32; 3]>,
}

/// Readings from JSON lines `{"reader", "text", "reading": {label: log-probability}}`,
/// as the reader's `read` example writes them with READINGS=FILE; all by one reader.
pub fn load_readings(paths: &[std::path::PathBuf]) -> anyhow::Result<Readings> {
    #[derive(serde::Deserialize)]
    struct Line {
        reader: String,
        text: String,
        reading: HashMap<String, f32>,
    }
    let mut readings = Readings::default();
    let mut first: Option<(ReaderModel, String)> = None;
    for path in paths {
        let file = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        for (n, line) in file
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
        {
            let at = || format!("{} line {}", path.display(), n + 1);
            let line: Line = serde_json::from_str(line).with_context(at)?;
            let reader: ReaderModel = line
                .reader
                .parse()
                .map_err(anyhow::Error::msg)
                .with_context(at)?;
            match &first {
                None => first = Some((reader, at())),
                Some((model, first_at)) => ensure!(
                    *model == reader,
                    "{}: read by {reader}, but {first_at} by {model}; score one reader's \
                     readings at a time",
                    at()
                ),
            }
            let mut reading = [0f32; 3];
            for (k, label) in SENTIMENT_LABELS.iter().enumerate() {
                reading[k] = *line
                    .reading
                    .get(*label)
                    .with_context(|| format!("{}: no reading for {label}", at()))?;
            }
            readings.by_text.insert(line.text, reading);
        }
    }
    readings.reader = first.map(|(model, _)| model).unwrap_or_default();
    Ok(readings)
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
/// the distillation targets); with `readings`, each is scored with the reader too.
pub fn leave_one_domain_out(
    assets_dir: &Path,
    config: &TrainConfig,
    encoder: TextEncoder,
    mut tuning: Option<FoldTuning>,
    readings: &Readings,
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
                // A fold's encoder serves no version: it is read from the user cache
                // (without one, from a scratch directory in the system's temp
                // directory), never published among the assets.
                let scratch = tempdir_in(&std::env::temp_dir().join("empathy-folds"))?;
                let tuned = tune_on_corpus(
                    Keep::Unpublished { scratch: &scratch },
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
                std::fs::remove_dir_all(&scratch)?;
                Some(features(tuned_text)?)
            }
        };
        let features = tuned_features.as_ref().unwrap_or(&frozen_features);
        let fold = Fold {
            corpus: &corpus,
            split: &fold_split,
            bias: &bias,
            features,
            readings,
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
    readings: &'a Readings,
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
        let typicality = if self.readings.by_text.is_empty() {
            None
        } else {
            Some(crate::typicality::fit(
                &features.text,
                config.dims.text,
                &self.split.train,
            )?)
        };
        let (in_domain, read_in) =
            self.evaluate(&network, typicality.as_ref(), &self.split.test)?;
        let (out_of_domain, read_out) = self.evaluate(&network, typicality.as_ref(), held_out)?;
        Ok(DomainFold {
            domain: name.to_string(),
            train_size: self.split.train.len(),
            in_domain,
            out_of_domain,
            read: read_in
                .zip(read_out)
                .map(|(in_domain, out_of_domain)| ReadFold {
                    in_domain,
                    out_of_domain,
                }),
        })
    }

    /// Scores the model on `indices` and, given readings, on the rows of them that
    /// were read, alone and with the reader as fusion serves it (trusted more on texts
    /// unlike the fold's training texts, by `typicality`); one forward pass.
    fn evaluate(
        &self,
        network: &empathy_model::network::FusionNetwork,
        typicality: Option<&Typicality>,
        indices: &[usize],
    ) -> anyhow::Result<(Score, Option<(Score, Score)>)> {
        let shown = Shown {
            text: true,
            situations: false,
        };
        let model: Vec<[f32; 3]> = logits(network, self.features, indices, shown)?
            .iter()
            .map(|l| crate::calibration::softmax(l, 1.0).map(|p| p as f32))
            .collect();
        let all = self.scored(indices, &model);
        if self.readings.by_text.is_empty() {
            return Ok((all, None));
        }
        let rule = Rule::of(self.readings.reader);
        let mut rows = Vec::new();
        let (mut alone, mut shifted) = (Vec::new(), Vec::new());
        for (&i, p) in indices.iter().zip(&model) {
            if let Some(r) = self.readings.by_text.get(&self.corpus.texts[i]) {
                rows.push(i);
                alone.push(*p);
                let dim = self.features.dims.text;
                let text = &self.features.text[i * dim..(i + 1) * dim];
                shifted.push(empathy_reader::mix::shift_by_text(
                    *p,
                    *r,
                    NEUTRAL_SENTIMENT,
                    (typicality.is_some_and(|t| t.unusual(text)), &rule),
                ));
            }
        }
        let read = (self.scored(&rows, &alone), self.scored(&rows, &shifted));
        Ok((all, Some(read)))
    }

    /// Accuracy and macro-F1 of the top sentiment of `scores` on `rows`.
    fn scored(&self, rows: &[usize], scores: &[[f32; 3]]) -> Score {
        let truth: Vec<usize> = rows.iter().map(|&i| self.corpus.labels[i]).collect();
        let predicted: Vec<usize> = scores.iter().map(|q| empathy_model::top_index(q)).collect();
        let m = Confusion::from_labels(3, &truth, &predicted);
        Score {
            examples: rows.len(),
            accuracy: m.accuracy(),
            macro_f1: m.macro_f1(),
        }
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

/// Over runs with different seeds, the mean and the sample standard deviation of
/// their means (`mean_macro_f1`): (in-domain, out-of-domain), each (mean, sd).
/// A model change moves the out-of-domain mean by chance alone by about its sd.
pub fn across_seeds(runs: &[Vec<DomainFold>]) -> ((f64, f64), (f64, f64)) {
    let means: Vec<(f64, f64)> = runs.iter().map(|folds| mean_macro_f1(folds)).collect();
    let spread = |values: Vec<f64>| {
        let n = values.len() as f64;
        let mean = values.iter().sum::<f64>() / n.max(1.0);
        let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
        (mean, var.sqrt())
    };
    (
        spread(means.iter().map(|m| m.0).collect()),
        spread(means.iter().map(|m| m.1).collect()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::{bag_of_words, one_epoch};
    use empathy_model::test_support::{TempDir, assets_dir};

    fn fold(in_domain: f64, out_of_domain: f64) -> DomainFold {
        let score = |macro_f1| Score {
            examples: 10,
            accuracy: macro_f1,
            macro_f1,
        };
        DomainFold {
            domain: "d".into(),
            train_size: 10,
            in_domain: score(in_domain),
            out_of_domain: score(out_of_domain),
            read: None,
        }
    }

    #[test]
    fn seeds_are_summarised_by_the_mean_and_spread_of_their_means() {
        let runs = vec![
            vec![fold(0.7, 0.4), fold(0.7, 0.6)],
            vec![fold(0.8, 0.6), fold(0.8, 0.6)],
        ];
        let ((inside, inside_sd), (outside, outside_sd)) = across_seeds(&runs);
        assert!((inside - 0.75).abs() < 1e-12 && (outside - 0.55).abs() < 1e-12);
        // Run means 0.7, 0.8 and 0.5, 0.6: sample variance 0.005 each.
        assert!((inside_sd - 0.005f64.sqrt()).abs() < 1e-9, "{inside_sd}");
        assert!((outside_sd - inside_sd).abs() < 1e-12);
        // One run has no spread to speak of.
        assert_eq!(across_seeds(&runs[..1]).1, (0.5, 0.0));
    }

    #[test]
    fn readings_say_which_reader_read_them_and_one_reader_at_a_time() -> anyhow::Result<()> {
        let dir = TempDir::new("readings");
        let line = |reader: &str, text: &str| {
            format!(
                r#"{{"reader":"{reader}","text":"{text}","reading":{{"positive":-2.5,"negative":-0.1,"neutral":-3.0}}}}"#
            )
        };
        let qwen = dir.path().join("qwen.jsonl");
        let gemma = dir.path().join("gemma.jsonl");
        std::fs::write(&qwen, line("qwen2.5-coder-1.5b", "late again") + "\n")?;
        std::fs::write(&gemma, line("gemma-3-270m", "lovely") + "\n")?;
        let read = load_readings(std::slice::from_ref(&qwen))?;
        assert_eq!(read.reader, ReaderModel::Qwen25Coder_1_5b);
        let late = read.by_text.get("late again").context("not loaded")?;
        // In SENTIMENT_LABELS order, whatever the order of the line's labels.
        assert_eq!(late, &[-0.1, -3.0, -2.5]);
        let err = load_readings(&[qwen, gemma]).unwrap_err().to_string();
        assert!(
            err.contains("gemma-3-270m") && err.contains("qwen2.5-coder-1.5b"),
            "{err}"
        );
        Ok(())
    }

    #[test]
    fn every_topic_is_left_out_once_and_scored() -> anyhow::Result<()> {
        let dir = TempDir::new("generality");
        let config = one_epoch(&dir);
        let mut embed = bag_of_words;
        let encoder = TextEncoder {
            id: "test/bag-of-words",
            embed: &mut embed,
        };
        let corpus = empathy_corpus::load_corpus(&empathy_corpus::corpus_path(&assets_dir()))?;
        // A reader that reads every seventh tweet, sure of its true label.
        let by_text = (0..corpus.texts.len())
            .step_by(7)
            .map(|i| {
                let sure = std::array::from_fn(|k| {
                    if k == corpus.labels[i] {
                        0.98f32.ln()
                    } else {
                        0.01f32.ln()
                    }
                });
                (corpus.texts[i].clone(), sure)
            })
            .collect();
        let readings = Readings {
            reader: ReaderModel::default(),
            by_text,
        };
        let folds = leave_one_domain_out(
            &assets_dir(),
            &config,
            encoder,
            None,
            &readings,
            &mut |_| {},
        )?;
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
            // The rows read are scored both ways; a sure, right reader only helps.
            let read = f.read.context("no scores with the reader")?;
            for (alone, with_reader) in [read.in_domain, read.out_of_domain] {
                assert_eq!(alone.examples, with_reader.examples);
                assert!(with_reader.accuracy >= alone.accuracy, "{read:?}");
            }
            assert!(read.out_of_domain.1.accuracy > 0.95, "{read:?}");
        }
        let read: usize = folds
            .iter()
            .filter_map(|f| f.read)
            .map(|r| r.out_of_domain.0.examples)
            .sum();
        assert_eq!(read, readings.by_text.len());
        Ok(())
    }
}
