//! Fine-tuning a serving version on user feedback: start from its weights, train the
//! heads and the fusion layers on the corrected examples mixed with a replay sample of
//! the base training split (so old skills are kept, and with the same per-topic priors
//! the base model was trained against), judge by cross-validation how well that
//! carries over to corrections it did not see, and compare the version trained on every
//! correction against serving on the check set, the tenant's traffic and the base test
//! split (`evaluate`). The caller publishes only an accepted result (`publish`).
//!
//! Emotions: no labelled emotion corpus exists, so a version's emotions start as the
//! lexicon's. Once feedback corrects an emotion, the emotion head learns to correct the
//! lexicon (`model::corrected_emotions`; `emotion_source` "lexicon+model"): it starts
//! at zero, which changes nothing, and is trained on the corrections (the corrected
//! emotion 1, the others 0) and, to keep what the serving version says everywhere
//! else, on the serving version's own emotions for every other example
//! (distillation). Every later fine-tune keeps distilling them.

mod evaluate;
mod prepare;
mod train;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail, ensure};
use candle_nn::VarMap;
use rand::rngs::StdRng;

use empathy_model::batch::Example;
use empathy_model::checkpoint::{
    Manifest, NewVersion, TrainingInfo, read_version, save_version_with_expansion,
};
use empathy_model::lexicon::{EMOTION_FEATURES, Expansion};
use empathy_model::network::{FusionNetwork, LEXICON, TEXT};
use empathy_model::{Calibration, EMOTIONS_CORRECTED, corrected_emotions};
use empathy_reader::ReaderModel;

/// One sampled analysis of the tenant's traffic, uncorrected: the features fusion
/// computed with the serving version (the gate compares parent and candidate on them).
#[derive(Debug, Clone)]
pub struct TrafficExample {
    pub text: Vec<f32>,
    pub lexicon: Vec<f32>,
}

/// One corrected analysis: the text embedding fusion computed, the text it analysed,
/// and the corrections (at least one).
#[derive(Debug, Clone)]
pub struct FeedbackExample {
    /// Stable id (the feedback id): decides the hold-out deterministically.
    pub id: String,
    pub text: Vec<f32>,
    /// The analysed text (typed or transcribed); its lexicon features are computed
    /// again by the serving version's lexicon, as the replay examples' are.
    pub utterance: String,
    /// Index into SENTIMENT_LABELS.
    pub sentiment: Option<usize>,
    /// Index into EMOTION_LABELS.
    pub emotion: Option<usize>,
    /// What the meaning reader added to the model's sentiment log-probabilities in the
    /// corrected analysis (`empathy_model::MEANING_SHIFT`); None where it was not
    /// asked to read. The correction is learnt both without it and with it, so it
    /// holds whether a request is read or not.
    pub meaning: Option<[f32; 3]>,
}

#[derive(Debug, Clone)]
pub struct FinetuneConfig {
    pub seed: u64,
    pub epochs: usize,
    pub batch_size: usize,
    pub learning_rate: f64,
    /// The emotion head's (a linear layer trained alone on a fixed representation).
    pub emotion_learning_rate: f64,
    pub weight_decay: f64,
    pub dropout: f64,
    /// Base training examples replayed beside the feedback.
    pub replay: usize,
    /// Folds of the corrections, each held out once to judge a candidate trained on
    /// the others (at least 2, at most one per correction).
    pub folds: usize,
    /// Share of each epoch's examples that are feedback (by repeating them).
    pub feedback_share: f64,
    /// How much the tenant's traffic, labelled as the serving version labels it,
    /// weighs in each epoch against the corrections (1: as much; 0: not shown). It
    /// keeps the line's answers on the tenant's own kind of sentences where no
    /// correction pulls them: thirty corrections that mostly said "positive" otherwise
    /// turn the tenant's factual and negative sentences positive too (`empathy
    /// adapt-bench`, see the trainer's README).
    pub traffic_weight: f64,
    /// The largest chance, by a one-sided sign test, that the held-out corrections
    /// improved by luck (see `evaluate`).
    pub max_p_value: f64,
    /// The least share of the tenant's sampled traffic whose sentiment must stay the
    /// serving version's, judged once at least `min_traffic` samples exist.
    pub min_traffic_agreement: f64,
    pub min_traffic: usize,
    /// How much lower the check-set accuracy may be than the serving version's and
    /// the lineage's anchor and still publish (see `evaluate`); per tenant.
    pub check_tolerance: f64,
    /// When emotions are trained: the least share of base test examples whose top
    /// emotion must stay the serving version's (emotions have no test labels, so
    /// this bounds how far corrections may move everything else).
    pub min_emotion_agreement: f64,
    /// Where the corpus embeddings are cached; None = the default cache.
    pub cache_dir: Option<PathBuf>,
    /// The meaning reader whose shifts the corrections carry (the deployment's): a
    /// version whose every sentiment correction was read names it, since another
    /// reader's shifts would not move it as it learnt.
    pub reader: ReaderModel,
}

impl Default for FinetuneConfig {
    fn default() -> Self {
        FinetuneConfig {
            seed: 7,
            epochs: 3,
            batch_size: 64,
            learning_rate: 2e-4,
            emotion_learning_rate: 1e-2,
            weight_decay: 1e-2,
            dropout: 0.1,
            replay: 4000,
            folds: 3,
            feedback_share: 0.1,
            traffic_weight: 1.0,
            max_p_value: 0.05,
            min_traffic_agreement: 0.5,
            min_traffic: 20,
            check_tolerance: 0.03,
            min_emotion_agreement: 0.9,
            cache_dir: None,
            reader: ReaderModel::default(),
        }
    }
}

/// A fine-tuned network, its evaluation, and the decision.
pub struct Finetuned {
    pub varmap: VarMap,
    pub serving: Manifest,
    pub training: TrainingInfo,
    /// base_test_macro_f1 / serving_base_test_macro_f1, feedback_holdout_accuracy /
    /// serving_feedback_holdout_accuracy, sizes, the temperature and test ECE (and the
    /// parent's); plus the serving version's own metrics carried over under their names
    /// where they are still true.
    pub metrics: BTreeMap<String, f64>,
    pub accepted: bool,
    /// Why it was (not) accepted, with the numbers.
    pub reason: String,
    /// Where the new version's emotions come from.
    pub emotion_source: String,
    /// The serving version's lexicon expansion, which the new version keeps.
    pub expansion: Option<Expansion>,
    /// The new version's sentiment temperature, refitted (see `Run::calibrate`).
    pub calibration: Calibration,
    /// The reader whose reading every sentiment correction came with, and holds with;
    /// None where some came without.
    pub read_by: Option<ReaderModel>,
}

impl Finetuned {
    /// What serving must multiply the reader's shift by to move the new version's
    /// logits as its read twins learnt: they carried the shift times
    /// `prepare::twin_scale`, and the new version divides its logits by its own
    /// refitted temperature. None for a version the reader does not read.
    pub fn reader_shift_scale(&self) -> Option<f64> {
        self.read_by
            .is_some()
            .then(|| prepare::twin_scale(&self.serving) / self.calibration.temperature)
    }
}

/// Features and targets of the rows a fine-tune touches.
#[derive(Default)]
struct Rows {
    text: Vec<Vec<f32>>,
    lexicon: Vec<Vec<f32>>,
    sentiment: Vec<Option<usize>>,
    /// The corrected emotion, on feedback that corrects one.
    emotion: Vec<Option<usize>>,
    /// Emotion head targets in [0, 1] (filled once the serving version is loaded).
    emotion_targets: Vec<[f32; 7]>,
    bias: Vec<[f32; 3]>,
}

impl Rows {
    fn push(
        &mut self,
        text: Vec<f32>,
        lexicon: Vec<f32>,
        (sentiment, emotion): (Option<usize>, Option<usize>),
        bias: [f32; 3],
    ) -> usize {
        self.text.push(text);
        self.lexicon.push(lexicon);
        self.sentiment.push(sentiment);
        self.emotion.push(emotion);
        self.bias.push(bias);
        self.sentiment.len() - 1
    }

    /// The lexicon's emotions, read back from row `i`'s lexicon features.
    fn lexicon_emotions(&self, i: usize) -> anyhow::Result<[f32; 7]> {
        self.lexicon[i]
            .get(EMOTION_FEATURES)
            .and_then(|e| <[f32; 7]>::try_from(e).ok())
            .context("lexicon features too short to hold emotions")
    }

    fn example(&self, i: usize) -> Example<'_> {
        Example {
            text: Some(&self.text[i]),
            lexicon: &self.lexicon[i],
            speech: None,
            image: None,
            situations: &[],
            context: Vec::new(),
        }
    }
}

pub fn finetune(
    assets_dir: &Path,
    serving_dir: &Path,
    feedback: &[FeedbackExample],
    traffic: &[TrafficExample],
    config: &FinetuneConfig,
    progress: &mut dyn FnMut(f32, &str),
    cancelled: &dyn Fn() -> bool,
) -> anyhow::Result<Finetuned> {
    let started = Instant::now();
    ensure!(config.batch_size > 0, "batch size must be positive");
    let (serving, weights) = read_version(serving_dir)?;
    let mut run = Run::start(serving, feedback, config)?;
    let fb = run.fold_feedback(feedback)?;
    let corrections_hold_with_reader = all_read(feedback);
    let read_by = corrections_hold_with_reader.then_some(config.reader);
    progress(
        0.02,
        &format!(
            "{} corrections in {} folds, each held out once; {}",
            fb.order.len(),
            fb.folds,
            if corrections_hold_with_reader {
                format!(
                    "each read by the meaning reader {}, so it reads for the new version too",
                    config.reader.name()
                )
            } else {
                "some not read by the meaning reader, so it will not read for the new version"
                    .to_string()
            }
        ),
    );
    let base = run.load_base(assets_dir)?;
    if cancelled() {
        bail!(Cancelled);
    }
    let mut data = run.gather(assets_dir, serving_dir, &base, &fb, traffic)?;
    progress(
        0.1,
        &format!(
            "replaying {} base training examples; base test split {}",
            data.replay.len(),
            data.test.len()
        ),
    );
    let networks = run.networks(&weights)?;
    run.set_emotion_targets(&networks.old, &mut data.rows)?;
    run.anchor_traffic(&networks.old, &mut data)?;
    let held_out = run.cross_validate(&weights, &mut data, progress, cancelled)?;
    let mut epochs = run.epoch_rows(&data);
    progress(0.7, "training on every correction");
    run.train(
        &networks,
        &data,
        &mut epochs,
        (0.7, 0.9),
        progress,
        cancelled,
    )?;
    let evaluation = run.evaluate(&networks, &data, held_out)?;
    let (accepted, reason) = run.decide(&evaluation);
    let mut metrics = run.metrics(&evaluation, &data);
    let calibration = run.calibrate(&networks, &data, &mut metrics)?;
    progress(0.95, &reason);
    let Run {
        serving, config, ..
    } = run;
    let training = TrainingInfo {
        epochs: config.epochs,
        best_epoch: config.epochs,
        batch_size: config.batch_size,
        learning_rate: config.learning_rate,
        weight_decay: config.weight_decay,
        dropout: config.dropout,
        text_dropout: 0.0,
        train_size: epochs.rows.len(),
        validation_size: data.feedback.len(),
        seconds: started.elapsed().as_secs_f64(),
        // Data, encoder, seed and split sizes stay the lineage's: the base split.
        ..serving.training.clone()
    };
    Ok(Finetuned {
        varmap: networks.varmap,
        serving,
        training,
        metrics,
        accepted,
        reason,
        emotion_source: evaluation.new_source,
        expansion: data.expansion,
        calibration,
        read_by,
    })
}

/// Whether every sentiment correction carries the reader's reading: only then can
/// the new version be read without overruling one (emotions it leaves alone).
fn all_read(feedback: &[FeedbackExample]) -> bool {
    feedback
        .iter()
        .filter(|f| f.sentiment.is_some())
        .all(|f| f.meaning.is_some())
}

/// One fine-tune's settings and the state its phases share: the serving version,
/// what it is trained on, and the one seeded RNG every random draw comes from (in
/// this order: the feedback shuffle, the replay sample, the network's fresh
/// weights, then per epoch the shuffle and per batch the dropout masks).
struct Run<'a> {
    config: &'a FinetuneConfig,
    serving: Manifest,
    tokens: Tokens,
    /// The serving version's emotion head already corrects the lexicon.
    corrects_emotions: bool,
    /// The emotion head learns: once any emotion is corrected, and ever after.
    train_emotions: bool,
    rng: StdRng,
}

/// Which token slots the serving version was trained on: the only ones shown.
#[derive(Debug, Clone, Copy)]
struct Tokens {
    text: bool,
    lexicon: bool,
}

impl Tokens {
    fn shows(self, slot: usize) -> bool {
        (self.text && slot == TEXT) || (self.lexicon && slot == LEXICON)
    }
}

/// Writes an accepted fine-tune as a new version of the line in `line_dir` (the
/// registry itself for the base line, else `tenant`'s), whose parent is the serving one.
pub fn publish(
    line_dir: &Path,
    tuned: &Finetuned,
    tenant: Option<&str>,
) -> anyhow::Result<(PathBuf, Manifest)> {
    ensure!(tuned.accepted, "not accepted: {}", tuned.reason);
    save_version_with_expansion(
        line_dir,
        &tuned.varmap,
        NewVersion {
            tenant: tenant.map(str::to_string),
            typicality: None,
            corrections_hold_with_reader: tuned.read_by.is_some(),
            corrections_read_by: tuned.read_by.map(|m| m.name().to_string()),
            reader_shift_scale: tuned.reader_shift_scale(),
            parent: Some(tuned.serving.version.clone()),
            dims: tuned.serving.dims,
            trained_tokens: tuned.serving.trained_tokens.clone(),
            emotion_source: tuned.emotion_source.clone(),
            training: tuned.training.clone(),
            metrics: tuned.metrics.clone(),
            calibration: Some(tuned.calibration.clone()),
        },
        tuned.expansion.as_ref(),
    )
}

/// The job was cancelled (`finetune` returns it as the error).
#[derive(Debug, thiserror::Error)]
#[error("cancelled")]
pub struct Cancelled;

/// The emotions `manifest`'s version serves for the rows at `ix` (text-only rows, so
/// no expert blends in): the lexicon's, corrected by the head once it is trained.
fn served_emotions(
    network: &FusionNetwork,
    manifest: &Manifest,
    rows: &Rows,
    ix: &[usize],
    tokens: Tokens,
) -> anyhow::Result<Vec<[f32; 7]>> {
    let lexicon: Vec<[f32; 7]> = ix
        .iter()
        .map(|&i| rows.lexicon_emotions(i))
        .collect::<anyhow::Result<_>>()?;
    if manifest.emotion_source != EMOTIONS_CORRECTED {
        return Ok(lexicon);
    }
    let mut out = Vec::with_capacity(ix.len());
    super::fit::forward_rows(
        network,
        ix,
        |i| rows.example(i),
        |slot| tokens.shows(slot),
        |o| {
            for row in o.emotion_logits.to_vec2::<f32>()? {
                let head = <[f32; 7]>::try_from(row.as_slice())
                    .map_err(|_| anyhow::anyhow!("the emotion head has not 7 outputs"))?;
                out.push(corrected_emotions(&head, &lexicon[out.len()]));
            }
            Ok(())
        },
    )?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_version_is_read_only_if_every_sentiment_correction_was() {
        let correction = |sentiment, emotion, meaning| FeedbackExample {
            id: String::new(),
            text: Vec::new(),
            utterance: String::new(),
            sentiment,
            emotion,
            meaning,
        };
        let read = correction(Some(2), None, Some([0.0, 0.0, 1.0]));
        let unread = correction(Some(0), None, None);
        // An emotion alone: the reader leaves a corrected emotion head's emotions alone.
        let emotion_only = correction(None, Some(3), None);
        assert!(all_read(&[read.clone(), emotion_only.clone()]));
        assert!(!all_read(&[read, unread, emotion_only]));
    }
}
