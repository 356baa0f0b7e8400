//! The conversations `empathy train` makes from the test split to check how well the
//! model learned to read the turns before, as `empathy eval` JSON lines, so that a
//! server (with what it adds, such as the meaning reader) is measured on them too:
//!
//!   cargo run -p empathy-training --example test_dialogues -- 42 > made.jsonl
//!
//! Arguments: the seed (`empathy train --seed`, 42 by default) and how many
//! conversations `empathy train` made from the training split (6,000 by default; a
//! fifth as many are made from the test split).

use std::path::PathBuf;

use anyhow::Context;
use empathy_corpus::{corpus_path, load_corpus, stratified_split};
use empathy_model::{Lexicon, Speaker};
use empathy_proto::SENTIMENT_LABELS;
use empathy_training::{dialogues, metrics::vader_label};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let seed: u64 = args
        .first()
        .map_or(Ok(42), |s| s.parse())
        .context("the seed")?;
    let trained: usize = args
        .get(1)
        .map_or(Ok(6000), |s| s.parse())
        .context("the number of conversations")?;
    let assets =
        std::env::var_os("EMPATHY_ASSETS").map_or_else(|| PathBuf::from("assets"), PathBuf::from);
    let corpus = load_corpus(&corpus_path(&assets))?;
    // As `empathy train` splits (its held-out fraction is 0.1) and reads the words.
    let split = stratified_split(&corpus.labels, seed, 0.1);
    let lexicon = Lexicon::load(&assets)?;
    let worded: Vec<usize> = corpus
        .texts
        .iter()
        .map(|t| vader_label(lexicon.analyze_with(t, None).vader_compound))
        .collect();
    let made = dialogues::compose(
        &corpus.texts,
        &corpus.labels,
        &corpus.topics,
        &worded,
        &split.test,
        (trained / 5).max(1),
        seed + 1,
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
