//! A fine-tune's first phases: the checks, the feedback hold-out, the base corpus as
//! the serving version's lineage split it, the rows of both, and the networks.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, bail, ensure};
use candle_core::{DType, Device};
use candle_nn::{VarBuilder, VarMap};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::{IndexedRandom, SliceRandom};

use super::{FeedbackExample, FinetuneConfig, Rows, Run, Tokens, TrafficExample, served_emotions};
use crate::embedding_cache;
use empathy_corpus::topics::{TopicTagger, log_priors};
use empathy_corpus::{Corpus, Split, corpus_path, load_corpus, stratified_split};
use empathy_model::EMOTIONS_CORRECTED;
use empathy_model::checkpoint::Manifest;
use empathy_model::lexicon::{Expansion, Lexicon};
use empathy_model::network::{FusionNetwork, init_network};

/// The corrections in a seeded order, each in one of `folds` folds (see
/// `Run::cross_validate`).
pub(super) struct Folds<'f> {
    pub order: Vec<&'f FeedbackExample>,
    pub folds: usize,
}

/// The base corpus as the serving version's lineage split it, with its cached text
/// embeddings (row-major).
pub(super) struct Base {
    corpus: Corpus,
    split: Split,
    embeddings: Vec<f32>,
}

/// The rows a fine-tune touches, and which part each plays.
pub(super) struct Data {
    pub rows: Rows,
    /// The sample of the base training split replayed beside the feedback.
    pub replay: Vec<usize>,
    /// The base test split.
    pub test: Vec<usize>,
    /// The base validation split: what the new version's temperature is fitted on.
    pub validation: Vec<usize>,
    /// Every correction's row, and the fold that holds it out.
    pub feedback: Vec<usize>,
    pub fold: Vec<usize>,
    /// A read correction's row (by its row) as the reader moved it: the same example
    /// with the reader's shift as the logits' bias, so it is learnt both ways.
    pub read_twins: BTreeMap<usize, usize>,
    /// The corrections the network being trained learns from (one fold's complement
    /// while cross-validating, then all of them).
    pub fb_train: Vec<usize>,
    /// The tenant's sampled traffic (no labels) that fits this version's widths.
    pub traffic: Vec<usize>,
    /// The serving version's lexicon expansion (every row's lexicon features use it).
    pub expansion: Option<Expansion>,
}

/// The serving network (for comparison) and a trainable copy of it.
pub(super) struct Networks {
    pub old: FusionNetwork,
    pub varmap: VarMap,
    pub network: FusionNetwork,
}

impl<'a> Run<'a> {
    /// Checks the serving version and the feedback, and seeds the run's RNG.
    pub(super) fn start(
        serving: Manifest,
        feedback: &[FeedbackExample],
        config: &'a FinetuneConfig,
    ) -> anyhow::Result<Run<'a>> {
        let uses = |t: &str| serving.trained_tokens.iter().any(|x| x == t);
        ensure!(
            uses("text") || uses("lexicon"),
            "version {} uses neither the text nor the lexicon token: nothing to fine-tune",
            serving.version
        );
        let tokens = Tokens {
            text: uses("text"),
            lexicon: uses("lexicon"),
        };
        check_feedback(&serving, feedback)?;
        // The head learns emotions once any are corrected, and keeps learning them after.
        let corrects_emotions = serving.emotion_source == EMOTIONS_CORRECTED;
        let train_emotions = corrects_emotions || feedback.iter().any(|f| f.emotion.is_some());
        Ok(Run {
            config,
            serving,
            tokens,
            corrects_emotions,
            train_emotions,
            rng: StdRng::seed_from_u64(config.seed),
        })
    }

    /// The corrections: a seeded shuffle, then dealt into folds in turn (as many as
    /// `config.folds`, at most one per correction). Sorted by text first, so the same
    /// corrections give the same folds whatever ids they got.
    pub(super) fn fold_feedback<'f>(
        &mut self,
        feedback: &'f [FeedbackExample],
    ) -> anyhow::Result<Folds<'f>> {
        if feedback.len() < 2 {
            bail!(
                "{} correction(s) stored: fine-tuning needs at least 2 (one to train on, one \
                 to hold out)",
                feedback.len()
            );
        }
        let mut order: Vec<&FeedbackExample> = feedback.iter().collect();
        order.sort_by(|a, b| a.utterance.cmp(&b.utterance).then(a.id.cmp(&b.id)));
        order.shuffle(&mut self.rng);
        let folds = self.config.folds.clamp(2, order.len());
        Ok(Folds { order, folds })
    }

    /// The base corpus as the serving version's lineage split it, and its embeddings
    /// from the cache `empathy train` filled.
    pub(super) fn load_base(&self, assets_dir: &Path) -> anyhow::Result<Base> {
        let serving = &self.serving;
        let dims = serving.dims;
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
        let cache_dir = self
            .config
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
        let embeddings = embedding_cache::load(&cache, corpus.texts.len(), dims.text)
            .with_context(|| {
                format!(
                    "no cached corpus embeddings for encoder {} at {}: run `empathy train` \
                     once (it fills the cache) or pass the cache directory",
                    serving.training.encoder,
                    cache.display()
                )
            })?;
        Ok(Base {
            corpus,
            split,
            embeddings,
        })
    }

    /// The rows: the replay sample (with the topic priors), the base test and
    /// validation splits, the corrections (with their folds), each with
    /// the serving version's lexicon features, expansion included; and the tenant's
    /// traffic, with the features fusion computed.
    pub(super) fn gather(
        &mut self,
        assets_dir: &Path,
        serving_dir: &Path,
        base: &Base,
        fb: &Folds,
        traffic: &[TrafficExample],
    ) -> anyhow::Result<Data> {
        let (serving, dims) = (&self.serving, self.serving.dims);
        let Base {
            corpus,
            split,
            embeddings,
        } = base;
        let lexicon = Lexicon::load(assets_dir)?;
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
            .choose_multiple(&mut self.rng, self.config.replay.min(split.train.len()))
            .map(|&i| base_row(&mut rows, i, true))
            .collect();
        let test: Vec<usize> = split
            .test
            .iter()
            .map(|&i| base_row(&mut rows, i, false))
            .collect();
        let validation: Vec<usize> = split
            .validation
            .iter()
            .map(|&i| base_row(&mut rows, i, false))
            .collect();
        let add_feedback = |rows: &mut Rows, f: &FeedbackExample, bias: [f32; 3]| {
            rows.push(
                f.text.clone(),
                lexicon
                    .analyze_with(&f.utterance, expansion.as_ref())
                    .features,
                (f.sentiment, f.emotion),
                bias,
            )
        };
        let feedback: Vec<usize> = fb
            .order
            .iter()
            .map(|f| add_feedback(&mut rows, f, [0.0; 3]))
            .collect();
        // Serving divides the logits by the temperature before the reader's shift
        // (times the version's shift scale) is added: in logit units the shift is
        // that much larger. The twins carry the serving version's served shift, so
        // the gate judges it as served; the new version's temperature is refitted
        // only after training, and its manifest scales the served shift to match
        // (`Finetuned::reader_shift_scale`).
        let scale = twin_scale(serving) as f32;
        let mut read_twins = BTreeMap::new();
        for (f, &row) in fb.order.iter().zip(&feedback) {
            let shift = f.meaning.filter(|m| m.iter().any(|x| *x != 0.0));
            if let (Some(shift), Some(_)) = (shift, f.sentiment) {
                let twin = add_feedback(&mut rows, f, shift.map(|x| x * scale));
                read_twins.insert(row, twin);
            }
        }
        let fold = (0..feedback.len()).map(|i| i % fb.folds).collect();
        // Traffic sampled under another version may have other widths: left out. So is
        // every analysis of a corrected sentence (the same text has the same
        // embedding): the traffic is what the corrections do not speak for.
        let lexicon_width = rows.lexicon.first().map_or(0, Vec::len);
        let corrected: std::collections::HashSet<Vec<u32>> =
            fb.order.iter().map(|f| bits(&f.text)).collect();
        let traffic: Vec<usize> = traffic
            .iter()
            .filter(|t| t.text.len() == dims.text && t.lexicon.len() == lexicon_width)
            .filter(|t| !corrected.contains(&bits(&t.text)))
            .map(|t| rows.push(t.text.clone(), t.lexicon.clone(), (None, None), [0.0; 3]))
            .collect();
        Ok(Data {
            rows,
            replay,
            test,
            validation,
            fb_train: feedback.clone(),
            feedback,
            read_twins,
            fold,
            traffic,
            expansion,
        })
    }

    /// The serving network, and a trainable copy of it (fresh weights drawn, then
    /// overwritten with the serving ones). A head that has never corrected emotions
    /// starts at zero: no correction.
    pub(super) fn networks(&mut self, weights: &[u8]) -> anyhow::Result<Networks> {
        let serving = &self.serving;
        let dims = serving.dims;
        let old = FusionNetwork::new(
            dims,
            VarBuilder::from_buffered_safetensors(weights.to_vec(), DType::F32, &Device::Cpu)?,
        )?;
        let (varmap, network) = init_network(dims, &mut self.rng)?;
        let loaded = candle_core::safetensors::load_buffer(weights, &Device::Cpu)?;
        for (name, var) in varmap
            .data()
            .lock()
            .map_err(|_| anyhow::anyhow!("model variables lock poisoned"))?
            .iter()
        {
            let tensor = loaded
                .get(name)
                .with_context(|| format!("version {} has no tensor {name}", serving.version))?;
            if self.train_emotions && !self.corrects_emotions && name.starts_with("head.emotion.") {
                var.set(&tensor.zeros_like()?)?;
            } else {
                var.set(tensor)?;
            }
        }
        Ok(Networks {
            old,
            varmap,
            network,
        })
    }

    /// The tenant's traffic, labelled with the serving version's sentiment.
    pub(super) fn anchor_traffic(
        &self,
        old: &FusionNetwork,
        data: &mut Data,
    ) -> anyhow::Result<()> {
        let labels = crate::fit::predict_rows(
            old,
            &data.traffic,
            |i| data.rows.example(i),
            |slot| self.tokens.shows(slot),
        )?;
        for (&i, label) in data.traffic.iter().zip(labels) {
            data.rows.sentiment[i] = Some(label);
        }
        Ok(())
    }

    /// The emotion head's targets: the corrected emotion where there is one, else the
    /// emotions the serving version serves (distillation).
    pub(super) fn set_emotion_targets(
        &self,
        old: &FusionNetwork,
        rows: &mut Rows,
    ) -> anyhow::Result<()> {
        let all: Vec<usize> = (0..rows.text.len()).collect();
        let served = served_emotions(old, &self.serving, rows, &all, self.tokens)?;
        rows.emotion_targets = rows
            .emotion
            .iter()
            .zip(&served)
            .map(|(corrected, served)| match corrected {
                Some(e) => std::array::from_fn(|k| if k == *e { 1.0 } else { 0.0 }),
                None => *served,
            })
            .collect();
        Ok(())
    }
}

/// What a read correction's twin multiplies the reader's shift by: the serving
/// version's temperature times its own shift scale, so the twin's logits are where
/// the serving version's read answer puts them.
pub(super) fn twin_scale(serving: &Manifest) -> f64 {
    serving.temperature() * serving.shift_scale()
}

/// An embedding as exact bits, to find the same text again.
fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// Every correction fits the serving version and corrects something in range.
fn check_feedback(serving: &Manifest, feedback: &[FeedbackExample]) -> anyhow::Result<()> {
    let dims = serving.dims;
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
    Ok(())
}
