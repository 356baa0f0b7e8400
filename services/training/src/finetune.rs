//! Fine-tuning a serving version on user feedback: start from its weights, train the
//! heads and the fusion layers on the corrected examples mixed with a replay sample of
//! the base training split (so old skills are kept, and with the same per-topic priors
//! the base model was trained against), hold part of the feedback out, and compare new
//! against serving on that hold-out and on the base test split. The caller publishes
//! only an accepted result (`publish`).
//!
//! Emotions: no labelled emotion corpus exists, so a version's emotions start as the
//! lexicon's. Once feedback corrects an emotion, the emotion head learns to correct the
//! lexicon (`model::corrected_emotions`; `emotion_source` "lexicon+model"): it starts
//! at zero, which changes nothing, and is trained on the corrections (the corrected
//! emotion 1, the others 0) and, to keep what the serving version says everywhere
//! else, on the serving version's own emotions for every other example
//! (distillation). Every later fine-tune keeps distilling them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail, ensure};
use candle_core::{D, DType, Device, Tensor};
use candle_nn::{AdamW, Optimizer, ParamsAdamW, VarBuilder, VarMap};
use rand::rngs::StdRng;
use rand::seq::{IndexedRandom, SliceRandom};
use rand::{Rng, SeedableRng};

use crate::embedding_cache;
use crate::metrics::Confusion;
use empathy_corpus::topics::{TopicTagger, log_priors};
use empathy_corpus::{corpus_path, load_corpus, stratified_split};
use empathy_model::batch::{BatchBuilder, Example};
use empathy_model::checkpoint::{
    Manifest, NewVersion, TrainingInfo, read_version, save_version_with_expansion,
};
use empathy_model::lexicon::{EMOTION_FEATURES, Expansion, Lexicon};
use empathy_model::network::{FusionNetwork, LEXICON, TEXT, init_network};
use empathy_model::{EMOTIONS_CORRECTED, corrected_emotions, prior_logit};

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
    /// Share of the feedback held out for validation (at least one example).
    pub holdout_fraction: f64,
    /// Share of each epoch's examples that are feedback (by repeating them).
    pub feedback_share: f64,
    /// How much lower the base-test macro-F1 may be and still publish.
    pub tolerance: f64,
    /// When emotions are trained: the least share of base test examples whose top
    /// emotion must stay the serving version's (emotions have no test labels, so
    /// this bounds how far corrections may move everything else).
    pub min_emotion_agreement: f64,
    /// Where the corpus embeddings are cached; None = the default cache.
    pub cache_dir: Option<PathBuf>,
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
            replay: 16000,
            holdout_fraction: 0.25,
            feedback_share: 0.1,
            tolerance: 0.01,
            min_emotion_agreement: 0.9,
            cache_dir: None,
        }
    }
}

/// A fine-tuned network, its evaluation, and the decision.
pub struct Finetuned {
    pub varmap: VarMap,
    pub serving: Manifest,
    pub training: TrainingInfo,
    /// base_test_macro_f1 / serving_base_test_macro_f1, feedback_holdout_accuracy /
    /// serving_feedback_holdout_accuracy, sizes; plus the serving version's own
    /// metrics carried over under their names where they are still true.
    pub metrics: BTreeMap<String, f64>,
    pub accepted: bool,
    /// Why it was (not) accepted, with the numbers.
    pub reason: String,
    /// Where the new version's emotions come from.
    pub emotion_source: String,
    /// The serving version's lexicon expansion, which the new version keeps.
    pub expansion: Option<Expansion>,
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
        }
    }
}

pub fn finetune(
    assets_dir: &Path,
    serving_dir: &Path,
    feedback: &[FeedbackExample],
    config: &FinetuneConfig,
    progress: &mut dyn FnMut(f32, &str),
    cancelled: &dyn Fn() -> bool,
) -> anyhow::Result<Finetuned> {
    let started = Instant::now();
    ensure!(config.batch_size > 0, "batch size must be positive");
    let (serving, weights) = read_version(serving_dir)?;
    let dims = serving.dims;
    let uses = |t: &str| serving.trained_tokens.iter().any(|x| x == t);
    ensure!(
        uses("text") || uses("lexicon"),
        "version {} uses neither the text nor the lexicon token: nothing to fine-tune",
        serving.version
    );
    let (use_text, use_lexicon) = (uses("text"), uses("lexicon"));
    let mask = move |slot: usize| (use_text && slot == TEXT) || (use_lexicon && slot == LEXICON);
    for f in feedback {
        ensure!(
            f.text.len() == dims.text,
            "feedback {} has {} text feature values, version {} expects {}",
            f.id,
            f.text.len(),
            serving.version,
            dims.text
        );
        ensure!(
            f.sentiment.is_some_and(|s| s < 3) || f.emotion.is_some_and(|e| e < 7),
            "feedback {}: no sentiment or emotion correction",
            f.id
        );
        ensure!(
            f.sentiment.is_none_or(|s| s < 3) && f.emotion.is_none_or(|e| e < 7),
            "feedback {}: a label index outside the label set",
            f.id
        );
    }
    // The head learns emotions once any are corrected, and keeps learning them after.
    let corrects_emotions = serving.emotion_source == EMOTIONS_CORRECTED;
    let train_emotions = corrects_emotions || feedback.iter().any(|f| f.emotion.is_some());
    let mut rng = StdRng::seed_from_u64(config.seed);

    // Feedback: a seeded shuffle, then the hold-out off the front. Sorted by text
    // first, so the same corrections give the same hold-out whatever ids they got.
    let mut order: Vec<&FeedbackExample> = feedback.iter().collect();
    order.sort_by(|a, b| a.utterance.cmp(&b.utterance).then(a.id.cmp(&b.id)));
    order.shuffle(&mut rng);
    let holdout_n = ((order.len() as f64 * config.holdout_fraction).ceil() as usize).max(1);
    if order.len() < 2 {
        bail!(
            "{} correction(s) stored: fine-tuning needs at least 2 (one to train on, one to \
             hold out)",
            order.len()
        );
    }
    let (holdout_fb, train_fb) = order.split_at(holdout_n.min(order.len() - 1));
    progress(
        0.02,
        &format!(
            "feedback: {} to train on, {} held out",
            train_fb.len(),
            holdout_fb.len()
        ),
    );

    // The base corpus as the serving version's lineage split it.
    let corpus = load_corpus(&corpus_path(assets_dir))?;
    ensure!(
        corpus.sha256 == serving.training.data_sha256,
        "the corpus in {} (sha256 {}) is not the one version {} was trained on ({})",
        assets_dir.display(),
        corpus.sha256,
        serving.version,
        serving.training.data_sha256
    );
    let split = stratified_split(&corpus.labels, serving.training.seed, 0.1);
    ensure!(
        split.test.len() == serving.training.test_size,
        "the base test split has {} examples, version {} was tested on {}",
        split.test.len(),
        serving.version,
        serving.training.test_size
    );
    let cache_dir = config
        .cache_dir
        .clone()
        .or_else(embedding_cache::default_dir)
        .context("no embedding cache directory (set XDG_CACHE_HOME or HOME)")?;
    let cache = embedding_cache::path(
        &cache_dir,
        &serving.training.encoder,
        &corpus.sha256,
        &corpus.texts,
    );
    let embeddings =
        embedding_cache::load(&cache, corpus.texts.len(), dims.text).with_context(|| {
            format!(
                "no cached corpus embeddings for encoder {} at {}: run `empathy train` once \
                 (it fills the cache) or pass the cache directory",
                serving.training.encoder,
                cache.display()
            )
        })?;
    if cancelled() {
        bail!(Cancelled);
    }
    let lexicon = Lexicon::load(assets_dir)?;
    // The serving version's lexicon features, expansion included, for every row.
    let expansion = Expansion::for_version(serving_dir, serving.lexicon_expansion.as_ref())?;
    let tagger = TopicTagger::new()?;
    let priors = log_priors(&corpus.labels, &corpus.topics, &split.train, tagger.count());
    let prior_weight = serving.training.topic_prior_weight as f32;
    let mut rows = Rows::default();
    let base_row = |rows: &mut Rows, i: usize, bias: bool| {
        let analysis = lexicon.analyze_with(&corpus.texts[i], expansion.as_ref());
        let b = if bias {
            priors[corpus.topics[i]].map(|p| prior_weight * p)
        } else {
            [0.0; 3]
        };
        rows.push(
            embeddings[i * dims.text..(i + 1) * dims.text].to_vec(),
            analysis.features,
            (Some(corpus.labels[i]), None),
            b,
        )
    };
    let replay: Vec<usize> = split
        .train
        .choose_multiple(&mut rng, config.replay.min(split.train.len()))
        .map(|&i| base_row(&mut rows, i, true))
        .collect();
    let test: Vec<usize> = split
        .test
        .iter()
        .map(|&i| base_row(&mut rows, i, false))
        .collect();
    let add_feedback = |rows: &mut Rows, f: &FeedbackExample| {
        rows.push(
            f.text.clone(),
            lexicon
                .analyze_with(&f.utterance, expansion.as_ref())
                .features,
            (f.sentiment, f.emotion),
            [0.0; 3],
        )
    };
    let fb_train: Vec<usize> = train_fb
        .iter()
        .map(|f| add_feedback(&mut rows, f))
        .collect();
    let fb_holdout: Vec<usize> = holdout_fb
        .iter()
        .map(|f| add_feedback(&mut rows, f))
        .collect();
    progress(
        0.1,
        &format!(
            "replaying {} base training examples; base test split {}",
            replay.len(),
            test.len()
        ),
    );

    // Serving network (for comparison) and a trainable copy of it.
    let old = FusionNetwork::new(
        dims,
        VarBuilder::from_buffered_safetensors(weights.clone(), DType::F32, &Device::Cpu)?,
    )?;
    let (varmap, network) = init_network(dims, &mut rng)?;
    let loaded = candle_core::safetensors::load_buffer(&weights, &Device::Cpu)?;
    for (name, var) in varmap
        .data()
        .lock()
        .map_err(|_| anyhow::anyhow!("model variables lock poisoned"))?
        .iter()
    {
        let tensor = loaded
            .get(name)
            .with_context(|| format!("version {} has no tensor {name}", serving.version))?;
        // A head that has never corrected emotions starts at zero: no correction.
        if train_emotions && !corrects_emotions && name.starts_with("head.emotion.") {
            var.set(&tensor.zeros_like()?)?;
        } else {
            var.set(tensor)?;
        }
    }
    let all: Vec<usize> = (0..rows.text.len()).collect();
    let served = served_emotions(&old, &serving, &rows, &all, &mask)?;
    rows.emotion_targets = rows
        .emotion
        .iter()
        .zip(&served)
        .map(|(corrected, served)| match corrected {
            Some(e) => std::array::from_fn(|k| if k == *e { 1.0 } else { 0.0 }),
            None => *served,
        })
        .collect();

    // Each epoch: the replay sample plus the feedback repeated to its share.
    let share = config.feedback_share.clamp(0.0, 0.9);
    let copies = if fb_train.is_empty() {
        0
    } else {
        ((share * replay.len() as f64 / ((1.0 - share) * fb_train.len() as f64)).round() as usize)
            .max(1)
    };
    let mut epoch_rows: Vec<usize> = replay.clone();
    for _ in 0..copies {
        epoch_rows.extend(&fb_train);
    }
    // The emotion head is a logistic regression on a representation it does not
    // shape (see `network`), so it takes its own, larger steps.
    let (head, body): (Vec<_>, Vec<_>) = varmap
        .data()
        .lock()
        .map_err(|_| anyhow::anyhow!("model variables lock poisoned"))?
        .iter()
        .map(|(name, var)| (name.starts_with("head.emotion."), var.clone()))
        .partition(|(is_head, _)| *is_head);
    let adamw = |vars: Vec<(bool, candle_core::Var)>, lr: f64| {
        AdamW::new(
            vars.into_iter().map(|(_, v)| v).collect(),
            ParamsAdamW {
                lr,
                weight_decay: config.weight_decay,
                ..ParamsAdamW::default()
            },
        )
    };
    let mut optimizer = adamw(body, config.learning_rate)?;
    let mut emotion_optimizer = adamw(head, config.emotion_learning_rate)?;
    for epoch in 1..=config.epochs {
        epoch_rows.shuffle(&mut rng);
        let mut loss_sum = 0.0;
        for batch in epoch_rows.chunks(config.batch_size) {
            if cancelled() {
                bail!(Cancelled);
            }
            let loss = loss(
                &network,
                &rows,
                batch,
                &mask,
                train_emotions,
                config.dropout,
                &mut rng,
            )?;
            let grads = loss.backward()?;
            optimizer.step(&grads)?;
            if train_emotions {
                emotion_optimizer.step(&grads)?;
            }
            loss_sum += f64::from(loss.to_scalar::<f32>()?) * batch.len() as f64;
        }
        let fraction = 0.1 + 0.8 * epoch as f32 / config.epochs.max(1) as f32;
        progress(
            fraction,
            &format!(
                "epoch {epoch}/{}: loss {:.4} over {} examples ({} feedback copies)",
                config.epochs,
                loss_sum / epoch_rows.len().max(1) as f64,
                epoch_rows.len(),
                copies
            ),
        );
    }

    // Evaluation: new against serving, same data.
    let score = |net: &FusionNetwork, ix: &[usize]| -> anyhow::Result<Confusion> {
        let ix: Vec<usize> = ix
            .iter()
            .copied()
            .filter(|&i| rows.sentiment[i].is_some())
            .collect();
        let predicted = predict(net, &rows, &ix, &mask)?;
        let actual: Vec<usize> = ix.iter().filter_map(|&i| rows.sentiment[i]).collect();
        Ok(Confusion::from_labels(3, &actual, &predicted))
    };
    // Top emotions as each version serves them.
    let new_source = if train_emotions {
        EMOTIONS_CORRECTED.to_string()
    } else {
        serving.emotion_source.clone()
    };
    let new_serving = Manifest {
        emotion_source: new_source.clone(),
        ..serving.clone()
    };
    let tops = |net: &FusionNetwork, m: &Manifest, ix: &[usize]| -> anyhow::Result<Vec<usize>> {
        Ok(served_emotions(net, m, &rows, ix, &mask)?
            .iter()
            .map(top)
            .collect())
    };
    let emotion_hits = |net: &FusionNetwork, m: &Manifest, ix: &[usize]| {
        let ix: Vec<usize> = ix
            .iter()
            .copied()
            .filter(|&i| rows.emotion[i].is_some())
            .collect();
        let predicted = tops(net, m, &ix)?;
        let hits = ix
            .iter()
            .zip(&predicted)
            .filter(|(i, p)| rows.emotion[**i] == Some(**p))
            .count();
        anyhow::Ok(Hits {
            hits,
            total: ix.len(),
        })
    };
    let (base_new, base_old) = (score(&network, &test)?, score(&old, &test)?);
    let (hold_new, hold_old) = (score(&network, &fb_holdout)?, score(&old, &fb_holdout)?);
    let (fit_new, fit_old) = (score(&network, &fb_train)?, score(&old, &fb_train)?);
    let (emo_new, emo_old) = (
        emotion_hits(&network, &new_serving, &fb_holdout)?,
        emotion_hits(&old, &serving, &fb_holdout)?,
    );
    let sentiment_hits = |c: &Confusion| Hits {
        hits: (c.accuracy() * c.total() as f64).round() as usize,
        total: c.total(),
    };
    // Every held-out correction counts once, sentiment or emotion.
    let (all_new, all_old) = (
        sentiment_hits(&hold_new).plus(emo_new),
        sentiment_hits(&hold_old).plus(emo_old),
    );
    let agreement = if train_emotions {
        let (a, b) = (
            tops(&network, &new_serving, &test)?,
            tops(&old, &serving, &test)?,
        );
        a.iter().zip(&b).filter(|(x, y)| x == y).count() as f64 / test.len().max(1) as f64
    } else {
        1.0
    };
    let mut metrics = BTreeMap::new();
    metrics.insert("test_macro_f1".to_string(), base_new.macro_f1());
    metrics.insert("test_accuracy".to_string(), base_new.accuracy());
    for (c, label) in empathy_proto::SENTIMENT_LABELS.iter().enumerate() {
        metrics.insert(format!("test_f1_{label}"), base_new.class(c).f1);
    }
    metrics.insert("parent_test_macro_f1".into(), base_old.macro_f1());
    metrics.insert("feedback_holdout_accuracy".into(), all_new.rate());
    metrics.insert("parent_feedback_holdout_accuracy".into(), all_old.rate());
    if hold_new.total() > 0 {
        metrics.insert(
            "feedback_holdout_sentiment_accuracy".into(),
            hold_new.accuracy(),
        );
        metrics.insert(
            "parent_feedback_holdout_sentiment_accuracy".into(),
            hold_old.accuracy(),
        );
    }
    if emo_new.total > 0 {
        metrics.insert("feedback_holdout_emotion_accuracy".into(), emo_new.rate());
        metrics.insert(
            "parent_feedback_holdout_emotion_accuracy".into(),
            emo_old.rate(),
        );
    }
    if train_emotions {
        metrics.insert("test_emotion_agreement_with_parent".into(), agreement);
    }
    metrics.insert("feedback_train_accuracy".into(), fit_new.accuracy());
    metrics.insert("parent_feedback_train_accuracy".into(), fit_old.accuracy());
    metrics.insert("feedback_train_size".into(), fb_train.len() as f64);
    metrics.insert("feedback_holdout_size".into(), fb_holdout.len() as f64);
    metrics.insert("replay_size".into(), replay.len() as f64);
    metrics.insert("test_size".into(), test.len() as f64);
    for key in ["vader_test_macro_f1", "vader_test_accuracy"] {
        if let Some(v) = serving.metrics.get(key) {
            metrics.insert(key.to_string(), *v);
        }
    }
    let base_drop = base_old.macro_f1() - base_new.macro_f1();
    let mut numbers = format!(
        "base test macro-F1 {:.4} -> {:.4} (tolerance {:.4}); feedback hold-out accuracy \
         {:.3} -> {:.3} on {} correction(s)",
        base_old.macro_f1(),
        base_new.macro_f1(),
        config.tolerance,
        all_old.rate(),
        all_new.rate(),
        all_new.total
    );
    if train_emotions {
        numbers += &format!(
            "; top emotion kept on {:.1}% of the base test split (at least {:.1}% required)",
            100.0 * agreement,
            100.0 * config.min_emotion_agreement
        );
    }
    let (accepted, reason) = if base_drop > config.tolerance {
        (
            false,
            format!("worse on the base test split beyond the tolerance: {numbers}"),
        )
    } else if agreement < config.min_emotion_agreement {
        (
            false,
            format!("the corrections moved the emotions of too many other texts: {numbers}"),
        )
    } else if all_new.hits <= all_old.hits {
        (
            false,
            format!("not better on the feedback hold-out: {numbers}"),
        )
    } else {
        (true, format!("better: {numbers}"))
    };
    progress(0.95, &reason);
    let training = TrainingInfo {
        epochs: config.epochs,
        best_epoch: config.epochs,
        batch_size: config.batch_size,
        learning_rate: config.learning_rate,
        weight_decay: config.weight_decay,
        dropout: config.dropout,
        text_dropout: 0.0,
        train_size: epoch_rows.len(),
        validation_size: fb_holdout.len(),
        seconds: started.elapsed().as_secs_f64(),
        // Data, encoder, seed and split sizes stay the lineage's: the base split.
        ..serving.training.clone()
    };
    Ok(Finetuned {
        varmap,
        serving,
        training,
        metrics,
        accepted,
        reason,
        emotion_source: new_source,
        expansion,
    })
}

/// Writes an accepted fine-tune as a new version whose parent is the serving one.
pub fn publish(models_dir: &Path, tuned: &Finetuned) -> anyhow::Result<(PathBuf, Manifest)> {
    ensure!(tuned.accepted, "not accepted: {}", tuned.reason);
    save_version_with_expansion(
        models_dir,
        &tuned.varmap,
        NewVersion {
            parent: Some(tuned.serving.version.clone()),
            dims: tuned.serving.dims,
            trained_tokens: tuned.serving.trained_tokens.clone(),
            emotion_source: tuned.emotion_source.clone(),
            training: tuned.training.clone(),
            metrics: tuned.metrics.clone(),
        },
        tuned.expansion.as_ref(),
    )
}

/// The job was cancelled (`finetune` returns it as the error).
#[derive(Debug, thiserror::Error)]
#[error("cancelled")]
pub struct Cancelled;

fn predict(
    network: &FusionNetwork,
    rows: &Rows,
    ix: &[usize],
    mask: &dyn Fn(usize) -> bool,
) -> anyhow::Result<Vec<usize>> {
    super::fit::predict_rows(network, ix, |i| rows.example(i), mask)
}

/// Correct answers out of a count.
#[derive(Debug, Clone, Copy)]
struct Hits {
    hits: usize,
    total: usize,
}

impl Hits {
    fn plus(self, other: Hits) -> Hits {
        Hits {
            hits: self.hits + other.hits,
            total: self.total + other.total,
        }
    }

    fn rate(self) -> f64 {
        self.hits as f64 / self.total.max(1) as f64
    }
}

fn top(scores: &[f32; 7]) -> usize {
    (0..7).fold(0, |best, k| if scores[k] > scores[best] { k } else { best })
}

/// The emotions `manifest`'s version serves for the rows at `ix` (text-only rows, so
/// no expert blends in): the lexicon's, corrected by the head once it is trained.
fn served_emotions(
    network: &FusionNetwork,
    manifest: &Manifest,
    rows: &Rows,
    ix: &[usize],
    mask: &dyn Fn(usize) -> bool,
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
        mask,
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

/// Cross-entropy of the corrected (or base) sentiment where there is one, plus, when
/// emotions are trained, binary cross-entropy of each emotion against its target.
fn loss(
    network: &FusionNetwork,
    rows: &Rows,
    batch: &[usize],
    mask: &dyn Fn(usize) -> bool,
    train_emotions: bool,
    dropout: f64,
    rng: &mut StdRng,
) -> anyhow::Result<Tensor> {
    let dims = *network.dims();
    let mut builder = BatchBuilder::new(dims);
    for &i in batch {
        builder.push(&rows.example(i), mask);
    }
    let keep = 1.0 - dropout;
    let hidden_mask: Vec<f32> = (0..batch.len() * dims.d_model)
        .map(|_| {
            if rng.random::<f64>() < keep {
                (1.0 / keep) as f32
            } else {
                0.0
            }
        })
        .collect();
    let hidden_mask = Tensor::from_vec(hidden_mask, (batch.len(), dims.d_model), &Device::Cpu)?;
    let out = network.forward_with_dropout(&builder.build()?, Some(&hidden_mask))?;
    let n = batch.len();
    let targets: Vec<u32> = batch
        .iter()
        .map(|&i| rows.sentiment[i].unwrap_or(0) as u32)
        .collect();
    let targets = Tensor::from_vec(targets, (n, 1), &Device::Cpu)?;
    let labelled: Vec<f32> = batch
        .iter()
        .map(|&i| f32::from(u8::from(rows.sentiment[i].is_some())))
        .collect();
    let count = labelled.iter().sum::<f32>().max(1.0);
    let labelled = Tensor::from_vec(labelled, n, &Device::Cpu)?;
    let bias: Vec<f32> = batch.iter().flat_map(|&i| rows.bias[i]).collect();
    let bias = Tensor::from_vec(bias, (n, 3), &Device::Cpu)?;
    let log_p = candle_nn::ops::log_softmax(&(out.sentiment_logits + bias)?, D::Minus1)?
        .gather(&targets, 1)?
        .squeeze(1)?;
    let sentiment = ((log_p * labelled)?.sum_all()? * f64::from(-1.0 / count))?;
    if !train_emotions {
        return Ok(sentiment);
    }
    let t: Vec<f32> = batch
        .iter()
        .flat_map(|&i| rows.emotion_targets[i])
        .collect();
    let t = Tensor::from_vec(t, (n, 7), &Device::Cpu)?;
    let mut prior = Vec::with_capacity(n * 7);
    for &i in batch {
        prior.extend(rows.lexicon_emotions(i)?.map(prior_logit));
    }
    let prior = Tensor::from_vec(prior, (n, 7), &Device::Cpu)?;
    // Binary cross-entropy on logits, in the stable form max(x, 0) - x t + ln(1 + e^-|x|).
    let x = &(&out.emotion_logits + prior)?;
    let bce = ((x.relu()? - (x * &t)?)? + (x.abs()?.neg()?.exp()? + 1.0)?.log()?)?.mean_all()?;
    Ok((sentiment + bce)?)
}
