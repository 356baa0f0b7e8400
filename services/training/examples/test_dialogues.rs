//! The conversations `empathy train` makes from the test split to check how well the
//! model learned to read the turns before, as `empathy eval` JSON lines, so that a
//! server (with what it adds, such as the meaning reader) is measured on them too:
//!
//!   cargo run -p empathy-training --example test_dialogues -- 42 > made.jsonl
//!
//! Arguments: the seed (`empathy train --seed`, 42 by default) and how many
//! conversations `empathy train` made from the training split (its default if left
//! out); the held-out fraction is `empathy train`'s default.

use std::path::PathBuf;

use anyhow::Context;
use empathy_corpus::{corpus_path, load_corpus, stratified_split};
use empathy_model::{Lexicon, Speaker};
use empathy_proto::SENTIMENT_LABELS;
use empathy_training::{TrainConfig, dialogues};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let seed: u64 = args
        .first()
        .map_or(Ok(42), |s| s.parse())
        .context("the seed")?;
    let config = TrainConfig::default();
    let trained: usize = args
        .get(1)
        .map_or(Ok(config.dialogues), |s| s.parse())
        .context("the number of conversations")?;
    let assets =
        std::env::var_os("EMPATHY_ASSETS").map_or_else(|| PathBuf::from("assets"), PathBuf::from);
    let corpus = load_corpus(&corpus_path(&assets))?;
    let split = stratified_split(&corpus.labels, seed, config.held_out_fraction);
    let worded = dialogues::worded(&Lexicon::load(&assets)?, &corpus.texts);
    let (n, seed) = dialogues::test_draw(trained, seed);
    let made = dialogues::compose(
        &corpus.texts,
        &corpus.labels,
        &corpus.topics,
        &worded,
        &split.test,
        n,
        seed,
    );
    for ((text, label), turns) in made.texts.iter().zip(&made.labels).zip(&made.context) {
        let context: Vec<serde_json::Value> = turns
            .iter()
            .map(|&(i, speaker)| {
                let speaker = match speaker {
                    Speaker::User => "user",
                    Speaker::Other => "agent",
                };
                serde_json::json!({"speaker": speaker, "text": corpus.texts[i]})
            })
            .collect();
        let line = serde_json::json!({
            "text": text,
            "label": SENTIMENT_LABELS[*label],
            "context": context,
        });
        println!("{line}");
    }
    Ok(())
}
