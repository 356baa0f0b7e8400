//! Lexicon expansion by label propagation over the text encoder's embedding space.
//!
//! Seeds: text2emotion's single-emotion words (five classes: text2emotion has no
//! disgust) plus a "neutral" class (see `neutral_seeds`), and VADER's words by the
//! sign of their valence. Candidates: words of the
//! tweet corpus seen at least `min_count` times that the lexicon does not rate and
//! that are not stopwords. Every word is embedded alone with the text encoder (cached
//! on disk); a symmetrised k-nearest-neighbour cosine graph joins them, and labels
//! spread from the seeds by iterated weighted averaging with the seeds clamped
//! (Zhu & Ghahramani 2002). A word's confidence is the margin between its two most
//! probable classes.
//!
//! Evaluation: 20% of each task's seeds (seeded) lose their label, propagation runs
//! from the rest, and the held-out words' predicted labels are scored against the
//! majority class of the remaining seeds.
//!
//! Output: `<out>/vNNNN/{lexicon.tsv, manifest.json}`, published atomically.

mod graph;
mod publish;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use anyhow::{Context, ensure};
use serde::{Deserialize, Serialize};

use crate::TextEncoder;
use crate::embedding_cache;
use empathy_corpus::{Corpus, corpus_path, load_corpus, stratified_split};
use empathy_model::lexicon::Lexicon;
pub use graph::{Graph, HeldOut, evaluate_held_out, knn_graph, propagate, propagate_with};
pub use publish::latest_version;
pub(crate) use publish::{Table, publish};

/// Emotion classes of the expansion (text2emotion's five), as EMOTION_LABELS
/// indices.
pub const EMOTION_CLASSES: [usize; 5] = [0, 2, 3, 4, 5];
/// The English expansion's emotion classes: text2emotion's five plus neutral ("no
/// emotion", EMOTION_LABELS\[6\]), as EMOTION_LABELS indices.
pub const EMOTION_CLASSES_WITH_NEUTRAL: [usize; 6] = [0, 2, 3, 4, 5, 6];
pub const POLARITY_LABELS: [&str; 2] = ["negative", "positive"];

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct ExpansionConfig {
    /// Neighbours per word in the graph.
    pub k: usize,
    /// Least corpus frequency of a candidate word.
    pub min_count: usize,
    pub iterations: usize,
    /// Share of each task's seeds held out for the evaluation.
    pub held_out_fraction: f64,
    pub seed: u64,
    /// VADER words with |mean valence| below this are not polarity seeds.
    pub min_valence: f64,
    /// Neutral seeds: candidates in at least this many training tweets (0: no
    /// neutral class).
    pub neutral_min_tweets: usize,
    /// The tweet split whose training part the neutral rule reads (the same seed and
    /// held-out fraction as `empathy train`'s, so no validation or test label leaks
    /// into the lexicon features).
    pub neutral_split_seed: u64,
    pub neutral_split_fraction: f64,
    /// Zhu et al. (2003) class-mass normalisation of the propagated distributions.
    pub class_mass_normalisation: bool,
    /// Emotion margin from which a candidate counts as confidently labelled in the
    /// report (the lexicon features use their own threshold, recorded per model).
    pub report_confidence: f32,
}

impl Default for ExpansionConfig {
    fn default() -> Self {
        ExpansionConfig {
            k: 10,
            min_count: 3,
            iterations: 40,
            held_out_fraction: 0.2,
            seed: 42,
            min_valence: 0.5,
            neutral_min_tweets: 5,
            neutral_split_seed: 42,
            neutral_split_fraction: 0.1,
            class_mass_normalisation: false,
            report_confidence: 0.3,
        }
    }
}

/// Lowercase a-z words of at least 3 letters, in order.
fn words(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !c.is_ascii_alphabetic() && c != '\'')
        .filter(|w| w.len() >= 3 && w.bytes().all(|b| b.is_ascii_alphabetic()))
        .map(|w| w.to_ascii_lowercase())
}

/// Corpus words seen at least `min_count` times that the lexicon does not rate and
/// that are not stopwords, with their counts, sorted by word.
pub fn candidate_words(
    texts: &[String],
    lexicon: &Lexicon,
    min_count: usize,
) -> Vec<(String, usize)> {
    let mut counts: HashMap<String, usize> = HashMap::new();
    for t in texts {
        for w in words(t) {
            *counts.entry(w).or_default() += 1;
        }
    }
    let mut out: Vec<(String, usize)> = counts
        .into_iter()
        .filter(|(w, c)| {
            *c >= min_count && !empathy_model::lexicon::is_stopword(w) && !lexicon.covers(w)
        })
        .collect();
    out.sort();
    out
}

/// Neutral ("no emotion") seeds among the candidates, by a data-driven rule: the
/// candidate occurs in at least `min_tweets` of the `train` tweets, and the tweets
/// that contain it are labelled neutral at least as often as the training tweets
/// overall (P(neutral | word) >= P(neutral)). Candidates are already words that
/// neither VADER nor text2emotion rates; this keeps those that do not make a tweet
/// more likely to carry sentiment. Sorted.
pub fn neutral_seeds(
    texts: &[String],
    labels: &[usize],
    train: &[usize],
    neutral_label: usize,
    candidates: &[(String, usize)],
    min_tweets: usize,
) -> Vec<String> {
    if min_tweets == 0 || train.is_empty() {
        return Vec::new();
    }
    let wanted: HashMap<&str, ()> = candidates.iter().map(|(w, _)| (w.as_str(), ())).collect();
    // word -> (tweets, neutral tweets)
    let mut seen: HashMap<String, (usize, usize)> = HashMap::new();
    let mut neutral_tweets = 0usize;
    for &i in train {
        let (Some(text), Some(&label)) = (texts.get(i), labels.get(i)) else {
            continue;
        };
        let neutral = usize::from(label == neutral_label);
        neutral_tweets += neutral;
        let mut distinct: Vec<String> = words(text)
            .filter(|w| wanted.contains_key(w.as_str()))
            .collect();
        distinct.sort();
        distinct.dedup();
        for w in distinct {
            let e = seen.entry(w).or_default();
            e.0 += 1;
            e.1 += neutral;
        }
    }
    let prior = neutral_tweets as f64 / train.len() as f64;
    let mut out: Vec<String> = seen
        .into_iter()
        .filter(|(_, (n, neu))| *n >= min_tweets && *neu as f64 >= prior * *n as f64)
        .map(|(w, _)| w)
        .collect();
    out.sort();
    out
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExpansionManifest {
    pub version: String,
    pub created_unix_ms: u64,
    pub encoder: String,
    pub corpus_sha256: String,
    pub config: ExpansionConfig,
    pub emotion_seeds: usize,
    pub polarity_seeds: usize,
    /// text2emotion words listing several emotions: kept out of the candidates, not
    /// used as seeds.
    pub ambiguous_emotion_words: usize,
    pub candidates: usize,
    pub graph_nodes: usize,
    pub emotion_labelled_candidates: usize,
    pub polarity_labelled_candidates: usize,
    pub emotion_labels: Vec<String>,
    pub polarity_labels: Vec<String>,
    pub emotion_evaluation: HeldOut,
    pub polarity_evaluation: HeldOut,
    pub seconds: f64,
    /// Neutral seeds (candidates picked by `neutral_seeds`); 0 without the class.
    #[serde(default)]
    pub neutral_seeds: usize,
    /// Candidates that are not seeds, by emotion, whose margin is at least
    /// `config.report_confidence`.
    #[serde(default)]
    pub confident_candidates: BTreeMap<String, usize>,
}

#[derive(Debug, Clone)]
pub struct ExpansionReport {
    pub version_dir: PathBuf,
    pub manifest: ExpansionManifest,
    /// Per emotion, the most frequent confidently labelled non-seed candidates.
    pub examples: BTreeMap<String, Vec<String>>,
}

/// `<assets>/lexicon/expanded`.
pub fn default_dir(assets_dir: &Path) -> PathBuf {
    assets_dir.join("lexicon/expanded")
}

/// Runs the whole expansion and publishes a new version under `out_dir`.
pub fn expand(
    assets_dir: &Path,
    out_dir: &Path,
    config: &ExpansionConfig,
    mut encoder: TextEncoder,
    cache_dir: Option<&Path>,
    progress: &mut dyn FnMut(&str),
) -> anyhow::Result<ExpansionReport> {
    let started = std::time::Instant::now();
    let lexicon = Lexicon::load(assets_dir)?;
    let corpus = load_corpus(&corpus_path(assets_dir))?;
    let seeds = GraphSeeds::collect(&lexicon, &corpus, config)?;
    seeds.report(config, progress);
    let nodes = &seeds.nodes.words;
    let vectors = embed_words(nodes, &mut encoder, cache_dir, progress)?;
    let dim = vectors.len() / nodes.len().max(1);
    let graph = knn_graph(&vectors, dim, config.k)?;
    progress(&format!("graph: k = {}, {} nodes", config.k, nodes.len()));

    let n = nodes.len();
    let emotion_slots = slots(n, &seeds.emotion);
    let polarity_slots = slots(n, &seeds.polarity);
    let evaluate = |s: &[Option<usize>], classes, cmn| {
        evaluate_held_out(
            &graph,
            s,
            classes,
            config.iterations,
            config.held_out_fraction,
            config.seed,
            cmn,
        )
    };
    let classes = seeds.classes();
    let emotion_evaluation = evaluate(&emotion_slots, classes, config.class_mass_normalisation);
    let polarity_evaluation = evaluate(&polarity_slots, 2, false);
    progress(&format!(
        "held-out emotion seeds: accuracy {:.4} vs majority {:.4} ({} words); \
         polarity: {:.4} vs {:.4} ({} words)",
        emotion_evaluation.accuracy,
        emotion_evaluation.majority_accuracy,
        emotion_evaluation.held_out,
        polarity_evaluation.accuracy,
        polarity_evaluation.majority_accuracy,
        polarity_evaluation.held_out
    ));

    let emotions = propagate_with(
        &graph,
        &emotion_slots,
        classes,
        config.iterations,
        config.class_mass_normalisation,
    );
    let polarity = propagate(&graph, &polarity_slots, 2, config.iterations);
    let labels = seeds.label_candidates(&emotions, &polarity, &emotion_slots, config);
    let manifest = ExpansionManifest {
        version: String::new(),
        created_unix_ms: 0,
        encoder: encoder.id.to_string(),
        corpus_sha256: corpus.sha256.clone(),
        config: config.clone(),
        emotion_seeds: seeds.emotion.len(),
        polarity_seeds: seeds.polarity.len(),
        ambiguous_emotion_words: seeds.ambiguous,
        candidates: seeds.candidates.len(),
        graph_nodes: n,
        emotion_labelled_candidates: labels.table.emotion_labelled,
        polarity_labelled_candidates: labels.table.polarity_labelled,
        emotion_labels: EMOTION_CLASSES_WITH_NEUTRAL[..classes]
            .iter()
            .map(|&k| empathy_proto::EMOTION_LABELS[k].to_string())
            .collect(),
        polarity_labels: POLARITY_LABELS.iter().map(|s| s.to_string()).collect(),
        emotion_evaluation,
        polarity_evaluation,
        seconds: started.elapsed().as_secs_f64(),
        neutral_seeds: seeds.neutral.len(),
        confident_candidates: labels.confident_candidates,
    };
    let examples = top_examples(labels.ranked);
    let (version_dir, manifest) = publish(out_dir, &labels.table.tsv, manifest)?;
    progress(&format!("saved {}", version_dir.display()));
    Ok(ExpansionReport {
        version_dir,
        manifest,
        examples,
    })
}

/// Graph nodes, one per word, numbered in the order they are first added.
#[derive(Debug, Default)]
pub(crate) struct Nodes {
    index: BTreeMap<String, usize>,
    pub words: Vec<String>,
}

impl Nodes {
    /// The node of `w`, added if new.
    pub fn node(&mut self, w: &str) -> usize {
        *self.index.entry(w.to_string()).or_insert_with(|| {
            self.words.push(w.to_string());
            self.words.len() - 1
        })
    }

    /// The node of a word already added.
    pub fn of(&self, w: &str) -> usize {
        self.index[w]
    }
}

/// The English graph's nodes and seeds: emotion seeds (text2emotion's single-emotion
/// words, then the neutral seeds), polarity seeds (VADER), then the candidates.
struct GraphSeeds {
    nodes: Nodes,
    /// (node, class) pairs.
    emotion: Vec<(usize, usize)>,
    polarity: Vec<(usize, usize)>,
    /// text2emotion words listing several emotions.
    ambiguous: usize,
    candidates: Vec<(String, usize)>,
    /// Per candidate, (node, count).
    candidate_nodes: Vec<(usize, usize)>,
    neutral: Vec<String>,
}

impl GraphSeeds {
    fn collect(
        lexicon: &Lexicon,
        corpus: &Corpus,
        config: &ExpansionConfig,
    ) -> anyhow::Result<GraphSeeds> {
        let emotion_words = lexicon.emotion_seed_words();
        let vader_words = lexicon.valence_seed_words();
        let mut nodes = Nodes::default();
        let alpha = |w: &str| w.len() >= 2 && w.bytes().all(|b| b.is_ascii_alphabetic());
        let mut emotion_seed = Vec::new();
        let mut ambiguous = 0;
        for (w, set) in &emotion_words {
            if !alpha(w) {
                continue;
            }
            if set.count_ones() != 1 {
                ambiguous += 1;
                continue;
            }
            let class = EMOTION_CLASSES
                .iter()
                .position(|&k| set & (1 << k) != 0)
                .context("text2emotion emotion outside the expansion's classes")?;
            emotion_seed.push((nodes.node(w), class));
        }
        let mut polarity_seed = Vec::new();
        for (w, v) in &vader_words {
            if alpha(w) && v.abs() >= config.min_valence {
                polarity_seed.push((nodes.node(w), usize::from(*v > 0.0)));
            }
        }
        let candidates = candidate_words(&corpus.texts, lexicon, config.min_count);
        let candidate_nodes: Vec<(usize, usize)> = candidates
            .iter()
            .map(|(w, c)| (nodes.node(w), *c))
            .collect();
        let neutral = corpus_neutral_seeds(corpus, &candidates, config)?;
        let neutral_class = EMOTION_CLASSES_WITH_NEUTRAL.len() - 1;
        for w in &neutral {
            emotion_seed.push((nodes.node(w), neutral_class));
        }
        Ok(GraphSeeds {
            nodes,
            emotion: emotion_seed,
            polarity: polarity_seed,
            ambiguous,
            candidates,
            candidate_nodes,
            neutral,
        })
    }

    /// The emotion classes: text2emotion's five, plus neutral when it has seeds.
    fn classes(&self) -> usize {
        if self.neutral.is_empty() {
            EMOTION_CLASSES.len()
        } else {
            EMOTION_CLASSES_WITH_NEUTRAL.len()
        }
    }

    fn report(&self, config: &ExpansionConfig, progress: &mut dyn FnMut(&str)) {
        progress(&format!(
            "seeds: {} emotion ({} of them neutral; {} ambiguous text2emotion words skipped), \
             {} polarity; {} candidate words (count >= {}); {} nodes",
            self.emotion.len(),
            self.neutral.len(),
            self.ambiguous,
            self.polarity.len(),
            self.candidates.len(),
            config.min_count,
            self.nodes.words.len()
        ));
    }

    /// The candidates' TSV lines, and the confidently labelled non-seed ones per
    /// emotion.
    fn label_candidates(
        &self,
        emotions: &[Option<(usize, f32)>],
        polarity: &[Option<(usize, f32)>],
        emotion_slots: &[Option<usize>],
        config: &ExpansionConfig,
    ) -> CandidateLabels {
        let mut table = Table::new();
        let label = |c: usize| empathy_proto::EMOTION_LABELS[EMOTION_CLASSES_WITH_NEUTRAL[c]];
        let mut confident_candidates: BTreeMap<String, usize> = BTreeMap::new();
        let mut ranked: BTreeMap<String, Vec<(usize, String)>> = BTreeMap::new();
        for (&(i, count), (word, _)) in self.candidate_nodes.iter().zip(&self.candidates) {
            let (e, p) = (emotions[i], polarity[i]);
            if let Some((c, conf)) = e
                && emotion_slots[i].is_none()
                && conf >= config.report_confidence
            {
                *confident_candidates
                    .entry(label(c).to_string())
                    .or_default() += 1;
                ranked
                    .entry(label(c).to_string())
                    .or_default()
                    .push((count, word.clone()));
            }
            table.push(word, count, e, &label, p);
        }
        CandidateLabels {
            table,
            confident_candidates,
            ranked,
        }
    }
}

/// What labelling the candidates gives: the artifact's table, and per emotion the
/// confident non-seed candidates (a count, and (count, word) pairs).
struct CandidateLabels {
    table: Table,
    confident_candidates: BTreeMap<String, usize>,
    ranked: BTreeMap<String, Vec<(usize, String)>>,
}

/// The neutral seeds of `neutral_seeds`, read off the training part of the tweet
/// split `config` names.
fn corpus_neutral_seeds(
    corpus: &Corpus,
    candidates: &[(String, usize)],
    config: &ExpansionConfig,
) -> anyhow::Result<Vec<String>> {
    let neutral_label = empathy_proto::NEUTRAL_SENTIMENT;
    let split = stratified_split(
        &corpus.labels,
        config.neutral_split_seed,
        config.neutral_split_fraction,
    );
    Ok(neutral_seeds(
        &corpus.texts,
        &corpus.labels,
        &split.train,
        neutral_label,
        candidates,
        config.neutral_min_tweets,
    ))
}

/// One slot per node: the class of the seeds among them.
fn slots(n: usize, seed: &[(usize, usize)]) -> Vec<Option<usize>> {
    let mut s = vec![None; n];
    for &(i, c) in seed {
        s[i] = Some(c);
    }
    s
}

/// Per emotion, its 12 most frequent candidates (ties by word).
fn top_examples(ranked: BTreeMap<String, Vec<(usize, String)>>) -> BTreeMap<String, Vec<String>> {
    ranked
        .into_iter()
        .map(|(emotion, mut words)| {
            words.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
            (
                emotion,
                words.into_iter().take(12).map(|(_, w)| w).collect(),
            )
        })
        .collect()
}

/// One embedding per word, cached under the embedding cache directory.
pub(crate) fn embed_words(
    words: &[String],
    encoder: &mut TextEncoder,
    cache_dir: Option<&Path>,
    progress: &mut dyn FnMut(&str),
) -> anyhow::Result<Vec<f32>> {
    let dir = cache_dir
        .map(Path::to_path_buf)
        .or_else(embedding_cache::default_dir);
    let path = dir
        .as_ref()
        .map(|d| embedding_cache::path(d, encoder.id, "lexicon-expansion-words", words));
    // The width is unknown before the first call: try the encoder's usual widths.
    if let Some(p) = &path {
        for width in [384, 512, 768, 1024] {
            if let Some(v) = embedding_cache::load(p, words.len(), width) {
                progress(&format!("word embeddings: cached ({})", p.display()));
                return Ok(v);
            }
        }
    }
    progress(&format!("embedding {} words ...", words.len()));
    let mut values = Vec::new();
    let mut width = 0;
    for chunk in words.chunks(1024) {
        let rows = (encoder.embed)(chunk)?;
        ensure!(
            rows.len() == chunk.len(),
            "the encoder returned too few rows"
        );
        for r in rows {
            ensure!(
                width == 0 || r.len() == width,
                "the encoder's vectors change width"
            );
            width = r.len();
            values.extend(r);
        }
    }
    ensure!(width > 0, "the encoder returned empty vectors");
    if let Some(p) = &path {
        embedding_cache::store(p, words.len(), width, &values)?;
    }
    Ok(values)
}

#[cfg(test)]
mod tests;
