//! An expanded lexicon (`empathy lexicon expand`) as the lexicon features use it.
//!
//! A model version records which expansion it was trained with
//! (`Manifest::lexicon_expansion`) and holds its own copy of the expansion's
//! `lexicon.tsv` (checked against the recorded sha256), so a version directory is
//! self-contained and a request always analyses its text with the expansion of the
//! version that answers it.
//!
//! Expanded words only add emotion evidence, and only when their emotion is not
//! neutral and their confidence reaches `min_confidence`, at `weight × confidence`
//! (below every seed and text2emotion hit on a VADER word). Their polarity is not
//! used: VADER's scores stay VADER's (they are also the baseline the model is
//! compared with).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail, ensure};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::emotion_index::NEUTRAL;

/// The first line of every expansion's `lexicon.tsv` (the expansion writes it, this
/// parser checks it).
pub const TSV_HEADER: &str =
    "word\tcount\temotion\temotion_confidence\tpolarity\tpolarity_confidence\n";

/// The copy of the expansion inside a model version directory.
pub const VERSION_FILE: &str = "lexicon_expansion.tsv";
/// Least emotion margin of an expanded word that counts.
pub const DEFAULT_MIN_CONFIDENCE: f32 = 0.3;
/// Evidence of an expanded word per unit of confidence; a seed word gives 1, a
/// text2emotion word VADER rates at least 0.4.
pub const DEFAULT_WEIGHT: f32 = 0.25;

/// What a model version's manifest records of its expansion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExpansionRef {
    /// The published expansion's version, e.g. "v0003".
    pub version: String,
    /// sha256 of its `lexicon.tsv` (and of the version directory's copy).
    pub sha256: String,
    #[serde(default = "default_min_confidence")]
    pub min_confidence: f32,
    #[serde(default = "default_weight")]
    pub weight: f32,
}

fn default_min_confidence() -> f32 {
    DEFAULT_MIN_CONFIDENCE
}

fn default_weight() -> f32 {
    DEFAULT_WEIGHT
}

/// One expanded word. `emotion` is an EMOTION_LABELS index (NEUTRAL for "neutral").
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ExpandedWord {
    pub emotion: Option<usize>,
    pub emotion_confidence: f32,
    /// +1 positive, -1 negative.
    pub polarity: Option<i8>,
    pub polarity_confidence: f32,
}

/// A loaded expansion: its words and where it came from.
#[derive(Debug, Clone)]
pub struct Expansion {
    reference: ExpansionRef,
    /// The `lexicon.tsv` bytes as read, for copying into a model version.
    tsv: Vec<u8>,
    words: HashMap<String, ExpandedWord>,
}

impl Expansion {
    /// Parses `lexicon.tsv` bytes (header `word count emotion emotion_confidence
    /// polarity polarity_confidence`).
    pub fn parse(
        version: &str,
        tsv: Vec<u8>,
        min_confidence: f32,
        weight: f32,
    ) -> anyhow::Result<Expansion> {
        ensure!(
            min_confidence.is_finite() && weight.is_finite() && weight >= 0.0,
            "bad expansion threshold {min_confidence} or weight {weight}"
        );
        let text = std::str::from_utf8(&tsv).context("the expanded lexicon is not UTF-8")?;
        let mut lines = text.lines();
        let header = lines.next().unwrap_or_default();
        ensure!(
            header == TSV_HEADER.trim_end(),
            "the expanded lexicon has an unexpected header {header:?}"
        );
        let mut words = HashMap::new();
        for (n, line) in lines.enumerate() {
            if line.is_empty() {
                continue;
            }
            let fields: Vec<&str> = line.split('\t').collect();
            let [
                word,
                _count,
                emotion,
                emotion_confidence,
                polarity,
                polarity_confidence,
            ] = fields[..]
            else {
                bail!("expanded lexicon line {}: expected 6 fields", n + 2);
            };
            let number = |s: &str| -> anyhow::Result<f32> {
                let x: f32 = s.parse().with_context(|| {
                    format!("expanded lexicon line {}: bad number {s:?}", n + 2)
                })?;
                ensure!(x.is_finite(), "expanded lexicon line {}: {s}", n + 2);
                Ok(x)
            };
            let emotion = match emotion {
                "-" => None,
                label => Some(
                    empathy_proto::EMOTION_LABELS
                        .iter()
                        .position(|l| *l == label)
                        .with_context(|| {
                            format!("expanded lexicon line {}: unknown emotion {label:?}", n + 2)
                        })?,
                ),
            };
            let polarity = match polarity {
                "-" => None,
                "positive" => Some(1),
                "negative" => Some(-1),
                other => bail!(
                    "expanded lexicon line {}: unknown polarity {other:?}",
                    n + 2
                ),
            };
            words.insert(
                word.to_lowercase(),
                ExpandedWord {
                    emotion,
                    emotion_confidence: number(emotion_confidence)?,
                    polarity,
                    polarity_confidence: number(polarity_confidence)?,
                },
            );
        }
        Ok(Expansion {
            reference: ExpansionRef {
                version: version.to_string(),
                sha256: hex::encode(Sha256::digest(&tsv)),
                min_confidence,
                weight,
            },
            tsv,
            words,
        })
    }

    /// A published expansion, `<assets>/lexicon/expanded/vNNNN`, with the default
    /// threshold and weight.
    pub fn load_published(dir: &Path) -> anyhow::Result<Expansion> {
        let version = dir
            .file_name()
            .and_then(|n| n.to_str())
            .with_context(|| format!("{} names no expansion version", dir.display()))?
            .to_string();
        let path = dir.join("lexicon.tsv");
        let tsv = std::fs::read(&path)
            .with_context(|| format!("cannot read the expanded lexicon {}", path.display()))?;
        Expansion::parse(&version, tsv, DEFAULT_MIN_CONFIDENCE, DEFAULT_WEIGHT)
            .with_context(|| format!("cannot parse {}", path.display()))
    }

    /// The expansion a model version was trained with (`reference`, from its manifest):
    /// None when the manifest names none (older versions too); the version's copy must
    /// match the recorded sha256.
    pub fn for_version(
        version_dir: &Path,
        reference: Option<&ExpansionRef>,
    ) -> anyhow::Result<Option<Self>> {
        let Some(reference) = reference else {
            return Ok(None);
        };
        let tsv = read_checked(version_dir, reference)?;
        let expansion = Expansion::parse(
            &reference.version,
            tsv,
            reference.min_confidence,
            reference.weight,
        )
        .with_context(|| {
            format!(
                "model version {}: cannot parse {VERSION_FILE}",
                version_dir.display()
            )
        })?;
        Ok(Some(expansion))
    }

    pub fn reference(&self) -> &ExpansionRef {
        &self.reference
    }

    pub fn version(&self) -> &str {
        &self.reference.version
    }

    pub fn tsv(&self) -> &[u8] {
        &self.tsv
    }

    pub fn len(&self) -> usize {
        self.words.len()
    }

    pub fn is_empty(&self) -> bool {
        self.words.is_empty()
    }

    pub fn word(&self, word: &str) -> Option<&ExpandedWord> {
        self.words.get(word)
    }

    /// (EMOTION_LABELS index, evidence) of a lowercased word, when it counts: an
    /// emotion other than neutral with confidence >= the threshold.
    pub fn emotion(&self, word: &str) -> Option<(usize, f64)> {
        let w = self.words.get(word)?;
        let emotion = w.emotion.filter(|&e| e != NEUTRAL)?;
        (w.emotion_confidence >= self.reference.min_confidence).then(|| {
            (
                emotion,
                f64::from(self.reference.weight * w.emotion_confidence.min(1.0)),
            )
        })
    }

    /// Words that add evidence, by emotion (EMOTION_LABELS order).
    pub fn counting_words(&self) -> [usize; 7] {
        let mut out = [0; 7];
        for w in self.words.keys() {
            if let Some((e, _)) = self.emotion(w) {
                out[e] += 1;
            }
        }
        out
    }
}

/// `<version_dir>/lexicon_expansion.tsv`, checked against the manifest's sha256.
pub fn read_checked(version_dir: &Path, reference: &ExpansionRef) -> anyhow::Result<Vec<u8>> {
    let path = copy_path(version_dir);
    let tsv = std::fs::read(&path).with_context(|| {
        format!(
            "model version {} names lexicon expansion {} but has no readable {VERSION_FILE}",
            version_dir.display(),
            reference.version
        )
    })?;
    let digest = hex::encode(Sha256::digest(&tsv));
    ensure!(
        digest == reference.sha256,
        "model version {}: checksum mismatch ({VERSION_FILE} is {digest}, the manifest says {}): \
         the expanded lexicon copy was changed or is half-written",
        version_dir.display(),
        reference.sha256
    );
    Ok(tsv)
}

pub fn copy_path(version_dir: &Path) -> PathBuf {
    version_dir.join(VERSION_FILE)
}
