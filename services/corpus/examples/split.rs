//! One part of the corpus split `empathy train` makes, as `empathy eval` JSON lines,
//! so that a server (with what it adds to the model, such as the meaning reader) is
//! measured on the same held-out tweets as the training report:
//!
//!   cargo run -p empathy-corpus --example split -- test 42 > test.jsonl
//!
//! Arguments: the part (train, validation, test), the seed (`empathy train --seed`,
//! 42 by default) and the held-out fraction (0.1, `empathy train`'s). Each line also
//! names the tweet's topic (`empathy_corpus::topics`), for measuring one topic alone.

use std::path::PathBuf;

use anyhow::{Context, bail};
use empathy_corpus::topics::TopicTagger;
use empathy_corpus::{corpus_path, load_corpus, stratified_split};
use empathy_proto::SENTIMENT_LABELS;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let part = args.first().map_or("test", String::as_str);
    let seed: u64 = args
        .get(1)
        .map_or(Ok(42), |s| s.parse())
        .context("the seed")?;
    let fraction: f64 = args
        .get(2)
        .map_or(Ok(0.1), |s| s.parse())
        .context("the fraction")?;
    let assets =
        std::env::var_os("EMPATHY_ASSETS").map_or_else(|| PathBuf::from("assets"), PathBuf::from);
    let corpus = load_corpus(&corpus_path(&assets))?;
    let split = stratified_split(&corpus.labels, seed, fraction);
    let rows = match part {
        "train" => split.train,
        "validation" => split.validation,
        "test" => split.test,
        other => bail!("no part {other:?}: train, validation or test"),
    };
    let topics = TopicTagger::names();
    for i in rows {
        let line = serde_json::json!({
            "text": corpus.texts[i],
            "label": SENTIMENT_LABELS[corpus.labels[i]],
            "topic": topics[corpus.topics[i]],
        });
        println!("{line}");
    }
    Ok(())
}
