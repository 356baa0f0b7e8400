//! Everything that makes a model version, and nothing that serves one: used by the
//! trainer service and the admin commands, never linked into fusion or the encoder.
//!
//! This file: supervised sentiment training on the tweet corpus: embed the tweets as
//! utterances (cached), add lexicon features, train the fusion network's sentiment head
//! with AdamW against per-topic label priors, stop early on validation macro-F1, fit the
//! sentiment temperature on the validation split (`calibration`), evaluate on the test
//! split against VADER (scoring the same utterances), and publish a model version.
//! Training may first grow the training split with made contrast and negation examples
//! (`augment`) and tune the text encoder itself (`encoder_tuning`). Beside it:
//! fine-tuning on feedback, self-training, the situations comparison, the
//! leave-one-domain-out benchmark (`generality`), lexicon expansion (English and
//! Chinese) and the metrics they report.

mod augment;
mod calibration;
pub mod dialogues;
mod embed;
pub mod embedding_cache;
pub mod encoder_tuning;
pub mod finetune;
mod fit;
pub mod generality;
pub mod lexicon_expansion;
pub mod lexicon_expansion_zh;
pub mod metrics;
mod prepared;
mod self_training;
mod situations;
mod test_scores;
mod typicality;
mod zh_news;
pub mod zh_sentiment;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::ensure;
use candle_nn::VarMap;
use rand::SeedableRng;
use rand::rngs::StdRng;

use embed::embeddings;
use empathy_corpus::topics::{TopicTagger, log_priors};
use empathy_corpus::{Corpus, Split, stratified_split};
use empathy_model::Calibration;
use empathy_model::checkpoint::{NewVersion, TrainingInfo, save_version_with_expansion};
use empathy_model::lexicon::{Expansion, Lexicon};
use empathy_model::network::{Dims, FusionNetwork, init_network};
use fit::{Features, Fit, Session, Shown, logits};
pub use prepared::tune_text_encoder;
use prepared::{Prepared, prepare};
pub use self_training::{
    Round, Scores, SelfTrainingConfig, SelfTrainingRow, compare_self_training, labelled_subset,
    select_pseudo_labels,
};
pub use situations::{SituationComparison, compare_situations, split_texts};
use test_scores::{confusion_on, dialogue_scores, record, test_metrics};

#[derive(Debug, Clone)]
pub struct TrainConfig {
    pub seed: u64,
    /// Upper bound; early stopping usually ends sooner.
    pub epochs: usize,
    /// Epochs without a better validation macro-F1 before stopping.
    pub patience: usize,
    pub batch_size: usize,
    pub learning_rate: f64,
    pub weight_decay: f64,
    /// Dropout on the pooled hidden vector.
    pub dropout: f64,
    /// Share of training examples whose text token is hidden, so the model still
    /// works from the lexicon alone when the text encoder is down.
    pub text_dropout: f64,
    /// Weight the loss by inverse class frequency. Off by default: the topic priors
    /// already take the label mix out of what the network learns, and both together
    /// over-predict the rare class.
    pub class_weighting: bool,
    /// Weight of the per-topic label priors added to the logits in training (see
    /// `topics`); 0 turns debiasing off, 1 is a plain product of experts.
    pub topic_prior_weight: f64,
    /// Share of each label held out for validation, and again for test.
    pub held_out_fraction: f64,
    pub dims: Dims,
    /// Texts per call of the encoder.
    pub embed_batch: usize,
    /// Where embeddings are cached; None = `$XDG_CACHE_HOME/empathy/embeddings`.
    pub cache_dir: Option<PathBuf>,
    /// Show the network the situation tokens of examples that have them.
    pub use_situations: bool,
    /// Contrast examples ("A, but B") made from the training split, plus every
    /// negation of a positive statement the patterns find (see `augment`); 0 = none.
    pub augment: usize,
    /// Conversations made from the training split (see `dialogues`), so the model
    /// learns to read previous turns; 0 = none, and the version reads no context.
    pub dialogues: usize,
    /// The text encoder's directory relative to the assets (a tuned one, or
    /// all-mpnet-base-v2), recorded in the version so that serving loads the same one;
    /// None: the base MiniLM.
    pub encoder_dir: Option<String>,
    /// A published expanded lexicon (`<assets>/lexicon/expanded/vNNNN`) for the
    /// lexicon features; the version records it and holds a copy. None: the plain
    /// lexicon.
    pub lexicon_expansion: Option<PathBuf>,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            seed: 42,
            epochs: 60,
            patience: 8,
            batch_size: 128,
            learning_rate: 1e-3,
            weight_decay: 1e-2,
            dropout: 0.2,
            text_dropout: 0.1,
            class_weighting: false,
            topic_prior_weight: 1.0,
            held_out_fraction: 0.1,
            dims: Dims::default(),
            embed_batch: 256,
            cache_dir: None,
            use_situations: false,
            augment: 0,
            dialogues: 6000,
            encoder_dir: None,
            lexicon_expansion: None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct TrainReport {
    pub version_dir: PathBuf,
    /// Model and VADER on the test split (accuracy, macro-F1, per-class F1), the
    /// lexicon-only model, validation macro-F1, split sizes.
    pub metrics: BTreeMap<String, f64>,
    /// The model on the test split, `counts[actual][predicted]` in
    /// `SENTIMENT_LABELS` order (for the confusion-matrix plot).
    pub test_confusion: Vec<Vec<usize>>,
}

pub type Embed<'a> = dyn FnMut(&[String]) -> anyhow::Result<Vec<Vec<f32>>> + 'a;

/// The encoder as training sees it: an id for the cache key and the function.
pub struct TextEncoder<'a> {
    /// Model id and version, e.g. "sentence-transformers/all-MiniLM-L6-v2@<sha>".
    pub id: &'a str,
    /// Embeds a batch of texts: one L2-normalised vector of `Dims::text` per text.
    pub embed: &'a mut Embed<'a>,
}

pub fn train_sentiment(
    assets_dir: &Path,
    models_dir: &Path,
    config: &TrainConfig,
    encoder: TextEncoder,
    progress: &mut dyn FnMut(&str),
) -> anyhow::Result<TrainReport> {
    let started = Instant::now();
    ensure!(
        config.batch_size > 0 && config.embed_batch > 0,
        "batch sizes must be positive"
    );
    let encoder_id = encoder.id.to_string();
    let Prepared {
        corpus,
        split,
        text,
        context,
        test_dialogues,
        ..
    } = prepare(assets_dir, config, encoder, progress)?;
    let expansion = load_expansion(config, progress)?;
    let mut features = features_with(assets_dir, &corpus, text, config.dims, expansion.as_ref())?;
    let reads_context = config.dims.max_context > 0 && context.iter().any(|c| !c.is_empty());
    features.context = context;

    let class_weights = class_weights(&corpus.labels, &split.train, config.class_weighting);
    let bias = topic_bias(&corpus, &split, config.topic_prior_weight as f32)?;
    let (varmap, network, fit) = train_fresh(
        &features,
        &corpus.labels,
        &split,
        &class_weights,
        &bias,
        config,
        progress,
    )?;
    let (mut metrics, model) = test_metrics(&network, &features, &corpus.labels, &split, &fit)?;
    if !test_dialogues.is_empty() {
        let scores = dialogue_scores(&network, &features, &corpus.labels, &test_dialogues)?;
        progress(&scores.0);
        metrics.extend(scores.1);
    }
    let calibration = calibrate(&network, &features, &corpus.labels, &split, &mut metrics)?;
    let metric = |key: &str| metrics.get(key).copied().unwrap_or(f64::NAN);
    progress(&format!(
        "calibration: temperature {:.3} (validation NLL {:.4} -> {:.4}); test ECE {:.4} -> {:.4}",
        calibration.temperature,
        calibration.nll_uncalibrated,
        calibration.nll,
        metric("test_ece_uncalibrated"),
        metric("test_ece")
    ));

    let typicality = typicality::fit(&features.text, config.dims.text, &split.train)?;
    progress(&format!(
        "typicality: {:.0}% of the training texts lie within distance {:.2} of them",
        empathy_model::typicality::QUANTILE * 100.0,
        typicality.threshold
    ));

    let seconds = started.elapsed().as_secs_f64();
    let training = training_info(
        &corpus,
        &split,
        config,
        encoder_id,
        &fit,
        &class_weights,
        seconds,
    );
    let (version_dir, _) = save_version_with_expansion(
        models_dir,
        &varmap,
        NewVersion {
            tenant: None,
            typicality: Some(typicality),
            corrections_hold_with_reader: false,
            corrections_read_by: None,
            reader_shift_scale: None,
            parent: None,
            dims: config.dims,
            trained_tokens: ["text", "lexicon"]
                .into_iter()
                .chain(reads_context.then_some(empathy_model::CONTEXT))
                .map(String::from)
                .collect(),
            emotion_source: "lexicon".into(),
            training,
            metrics: metrics.clone(),
            calibration: Some(calibration),
        },
        expansion.as_ref(),
    )?;
    progress(&format!(
        "saved {} ({seconds:.0} s in all)",
        version_dir.display()
    ));
    Ok(TrainReport {
        version_dir,
        metrics,
        test_confusion: model.counts,
    })
}

/// The corpus split `config.seed` makes, reported.
fn split_corpus(corpus: &Corpus, config: &TrainConfig, progress: &mut dyn FnMut(&str)) -> Split {
    let split = stratified_split(&corpus.labels, config.seed, config.held_out_fraction);
    progress(&format!(
        "split (seed {}): train {}, validation {}, test {}",
        config.seed,
        split.train.len(),
        split.validation.len(),
        split.test.len()
    ));
    split
}

/// The published expansion `config` names, if any, reported.
fn load_expansion(
    config: &TrainConfig,
    progress: &mut dyn FnMut(&str),
) -> anyhow::Result<Option<Expansion>> {
    let expansion = config
        .lexicon_expansion
        .as_deref()
        .map(Expansion::load_published)
        .transpose()?;
    if let Some(x) = &expansion {
        let counting: usize = x.counting_words().iter().sum();
        progress(&format!(
            "lexicon expansion {}: {} words, {counting} add emotion evidence",
            x.version(),
            x.len()
        ));
    }
    Ok(expansion)
}

/// A fresh network, its weights drawn from `config.seed`, fitted on `split.train`:
/// every trainer's RNG draws in the same order (the weights, then the fit's).
fn train_fresh(
    features: &Features,
    labels: &[usize],
    split: &Split,
    class_weights: &[f32],
    bias: &[[f32; 3]],
    config: &TrainConfig,
    progress: &mut dyn FnMut(&str),
) -> anyhow::Result<(VarMap, FusionNetwork, Fit)> {
    let mut rng = StdRng::seed_from_u64(config.seed);
    let (varmap, network) = init_network(config.dims, &mut rng)?;
    let session = Session {
        network: &network,
        varmap: &varmap,
        features,
        labels,
        split,
        class_weights,
        bias,
        config,
    };
    let fit = session.fit(&mut rng, progress)?;
    Ok((varmap, network, fit))
}

/// The sentiment temperature, fitted on the validation split with the text token shown
/// as serving shows it; records it and the test split's NLL and ECE before and after in
/// `metrics` (`calibration::calibrate`).
fn calibrate(
    network: &FusionNetwork,
    features: &Features,
    labels: &[usize],
    split: &Split,
    metrics: &mut BTreeMap<String, f64>,
) -> anyhow::Result<Calibration> {
    let shown = Shown {
        text: true,
        situations: false,
    };
    let scored = |ix: &[usize]| -> anyhow::Result<calibration::Scored> {
        Ok(calibration::Scored {
            logits: logits(network, features, ix, shown)?,
            labels: ix.iter().map(|&i| labels[i]).collect(),
        })
    };
    let (validation, test) = (scored(&split.validation)?, scored(&split.test)?);
    let fitted_on = format!("validation split ({} tweets)", split.validation.len());
    Ok(calibration::calibrate(
        &validation,
        &test,
        fitted_on,
        metrics,
    ))
}

/// What the version records of its data, encoder, settings and fit.
fn training_info(
    corpus: &Corpus,
    split: &Split,
    config: &TrainConfig,
    encoder: String,
    fit: &Fit,
    class_weights: &[f32],
    seconds: f64,
) -> TrainingInfo {
    TrainingInfo {
        data_sha256: corpus.sha256.clone(),
        encoder,
        encoder_dir: config.encoder_dir.clone(),
        seed: config.seed,
        train_size: split.train.len(),
        validation_size: split.validation.len(),
        test_size: split.test.len(),
        empty_removed: corpus.empty_removed,
        duplicates_removed: corpus.duplicates_removed,
        conflicting_removed: corpus.conflicting_removed,
        epochs: fit.epochs,
        best_epoch: fit.best_epoch,
        batch_size: config.batch_size,
        learning_rate: config.learning_rate,
        weight_decay: config.weight_decay,
        dropout: config.dropout,
        text_dropout: config.text_dropout,
        class_weights: class_weights.iter().map(|w| f64::from(*w)).collect(),
        topic_prior_weight: config.topic_prior_weight,
        seconds,
    }
}

/// Text embeddings plus each tweet's lexicon features and VADER score.
fn features(
    assets_dir: &Path,
    corpus: &Corpus,
    text: Vec<f32>,
    dims: Dims,
) -> anyhow::Result<Features> {
    features_with(assets_dir, corpus, text, dims, None)
}

/// `features` with the lexicon features computed with an expanded lexicon.
fn features_with(
    assets_dir: &Path,
    corpus: &Corpus,
    text: Vec<f32>,
    dims: Dims,
    expansion: Option<&Expansion>,
) -> anyhow::Result<Features> {
    let lexicon = Lexicon::load(assets_dir)?;
    let mut lexicon_rows = Vec::with_capacity(corpus.texts.len() * dims.lexicon);
    let mut vader = Vec::with_capacity(corpus.texts.len());
    for t in &corpus.texts {
        let analysis = lexicon.analyze_with(t, expansion);
        ensure!(
            analysis.features.len() == dims.lexicon,
            "the lexicon gives {} features, dims.lexicon is {}",
            analysis.features.len(),
            dims.lexicon
        );
        lexicon_rows.extend_from_slice(&analysis.features);
        vader.push(analysis.vader_compound);
    }
    Ok(Features {
        text,
        lexicon: lexicon_rows,
        vader,
        situations: Vec::new(),
        context: Vec::new(),
        dims,
    })
}

/// Per example, the log label prior of its topic on the training split.
fn topic_bias(corpus: &Corpus, split: &Split, weight: f32) -> anyhow::Result<Vec<[f32; 3]>> {
    if weight == 0.0 {
        return Ok(vec![[0.0; 3]; corpus.texts.len()]);
    }
    let count = TopicTagger::new()?.count();
    Ok(prior_bias(corpus, &split.train, count, weight))
}

/// Per example, `weight` times the log label prior of its topic among the `train`
/// examples.
fn prior_bias(corpus: &Corpus, train: &[usize], topic_count: usize, weight: f32) -> Vec<[f32; 3]> {
    let priors = log_priors(&corpus.labels, &corpus.topics, train, topic_count);
    corpus
        .topics
        .iter()
        .map(|&t| priors[t].map(|p| weight * p))
        .collect()
}

/// Inverse class frequency on the training split, normalised to mean 1.
fn class_weights(labels: &[usize], train: &[usize], enabled: bool) -> Vec<f32> {
    let mut counts = [0usize; 3];
    for &i in train {
        counts[labels[i]] += 1;
    }
    if !enabled {
        return vec![1.0; 3];
    }
    let total: usize = counts.iter().sum();
    counts
        .iter()
        .map(|&c| total as f32 / (3.0 * c.max(1) as f32))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use empathy_corpus::{corpus_path, load_corpus};
    use empathy_model::FusionModel;
    use empathy_model::test_support::{TempDir, assets_dir};

    /// A stand-in encoder: hashed bag of words, L2-normalised.
    pub(crate) fn bag_of_words(texts: &[String]) -> anyhow::Result<Vec<Vec<f32>>> {
        Ok(texts
            .iter()
            .map(|t| {
                let mut v = vec![0.0f32; 384];
                for word in t.to_lowercase().split_whitespace() {
                    let h = word
                        .bytes()
                        .fold(7u64, |h, b| h.wrapping_mul(31) ^ u64::from(b));
                    v[(h % 384) as usize] += 1.0;
                }
                let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-6);
                v.iter().map(|x| x / norm).collect()
            })
            .collect())
    }

    /// One epoch, embeddings cached under `dir`: the settings of the real-corpus tests.
    pub(crate) fn one_epoch(dir: &TempDir) -> TrainConfig {
        TrainConfig {
            epochs: 1,
            cache_dir: Some(dir.path().join("cache")),
            ..TrainConfig::default()
        }
    }

    #[test]
    fn trains_publishes_and_caches_on_the_real_corpus() -> anyhow::Result<()> {
        let dir = TempDir::new("train");
        let config = one_epoch(&dir);
        let mut embed = bag_of_words;
        let encoder = TextEncoder {
            id: "test/bag-of-words",
            embed: &mut embed,
        };
        let models = dir.path().join("models");
        let report = train_sentiment(&assets_dir(), &models, &config, encoder, &mut |_| {})?;
        let model = FusionModel::load(&report.version_dir)?;
        let saved = &model.manifest().metrics;
        assert!(saved.keys().eq(report.metrics.keys()));
        // JSON keeps f64 to within an ulp or so.
        assert!(
            saved
                .iter()
                .all(|(k, v)| (v - report.metrics[k]).abs() < 1e-12)
        );
        assert_eq!(model.manifest().emotion_source, "lexicon");
        assert_eq!(model.manifest().training.encoder, "test/bag-of-words");
        // Calibrated on the validation split; the metrics say so before and after.
        let calibration = model.manifest().calibration.as_ref().expect("calibrated");
        assert_eq!(calibration.temperature, report.metrics["temperature"]);
        assert!(calibration.fitted_on.starts_with("validation split"));
        assert!(calibration.nll <= calibration.nll_uncalibrated);
        for key in ["test_ece", "test_ece_uncalibrated"] {
            let v = report.metrics[key];
            assert!((0.0..1.0).contains(&v), "{key} = {v}");
        }
        for key in ["test_macro_f1", "vader_test_macro_f1", "test_accuracy"] {
            let v = report.metrics[key];
            assert!(v > 0.3 && v < 1.0, "{key} = {v}");
        }
        assert_eq!(empathy_model::latest_version(&models)?, report.version_dir);

        // The embeddings are cached: a failing encoder is never called again.
        let corpus = load_corpus(&corpus_path(&assets_dir()))?;
        let mut failing = |_: &[String]| -> anyhow::Result<Vec<Vec<f32>>> {
            anyhow::bail!("encoder called despite the cache")
        };
        let encoder = TextEncoder {
            id: "test/bag-of-words",
            embed: &mut failing,
        };
        let cached = embeddings(&corpus, &config, encoder, &mut |_| {})?;
        assert_eq!(cached.len(), corpus.texts.len() * 384);
        finetuning_refits_the_temperature(&report, &config)
    }

    /// A fine-tune of the version `report` published fits its own temperature on the
    /// base validation split and records the parent's beside it.
    fn finetuning_refits_the_temperature(
        report: &TrainReport,
        config: &TrainConfig,
    ) -> anyhow::Result<()> {
        use crate::finetune::{FeedbackExample, FinetuneConfig, finetune};
        let texts = [
            "The biopsy came back negative.",
            "The scan came back clear.",
            "The tumour is benign.",
            "The test results came back negative.",
        ];
        let feedback: Vec<FeedbackExample> = bag_of_words(&texts.map(String::from))?
            .into_iter()
            .zip(texts)
            .enumerate()
            .map(|(i, (text, utterance))| FeedbackExample {
                id: format!("fb-{i}"),
                text,
                utterance: utterance.to_string(),
                sentiment: Some(2),
                emotion: None,
                // As if the meaning reader had read them negative.
                meaning: Some([1.5, 0.0, -1.5]),
            })
            .collect();
        let finetune_config = FinetuneConfig {
            epochs: 1,
            replay: 500,
            cache_dir: config.cache_dir.clone(),
            reader: empathy_reader::ReaderModel::Qwen25Coder_1_5b,
            ..FinetuneConfig::default()
        };
        let tuned = finetune(
            &assets_dir(),
            &report.version_dir,
            &feedback,
            &[],
            &finetune_config,
            &mut |_, _| {},
            &|| false,
        )?;
        let c = &tuned.calibration;
        eprintln!("fine-tuned: {c:?}; {}", tuned.reason);
        // Every correction was read, by the deployment's reader.
        assert_eq!(tuned.read_by, Some(finetune_config.reader));
        // The twins learnt the shift at the parent's temperature; the new version
        // serves it scaled to its own.
        assert_eq!(
            tuned.reader_shift_scale(),
            Some(report.metrics["temperature"] / c.temperature)
        );
        assert!(c.fitted_on.starts_with("base validation split"), "{c:?}");
        assert!(c.temperature > 0.0 && c.nll <= c.nll_uncalibrated, "{c:?}");
        assert_eq!(tuned.metrics["temperature"], c.temperature);
        assert_eq!(
            tuned.metrics["parent_temperature"],
            report.metrics["temperature"]
        );
        for key in ["test_ece", "test_ece_uncalibrated", "parent_test_ece"] {
            let v = tuned.metrics[key];
            assert!((0.0..1.0).contains(&v), "{key} = {v}");
        }
        Ok(())
    }

    #[test]
    fn class_weights_balance_the_classes() {
        let labels = [0, 0, 0, 0, 1, 1, 2, 2];
        let w = class_weights(&labels, &[0, 1, 2, 3, 4, 5, 6, 7], true);
        assert_eq!(w, vec![8.0 / 12.0, 8.0 / 6.0, 8.0 / 6.0]);
        assert_eq!(class_weights(&labels, &[0, 4], false), vec![1.0; 3]);
    }
}
