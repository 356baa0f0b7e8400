//! `empathy adapt-bench`: how a tenant's line learns a domain the base never saw from a
//! few corrections (issue 13), in this process, with the trainer's own fine-tune and
//! gate. For each domain file the base version answers every sentence; `--corrections`
//! of its wrong answers, drawn with the seed, are corrected as a tenant would correct
//! them; of the rest of the domain, half is the tenant's traffic (features only, no
//! labels) and half what the correction must carry over to. Prints before and after on the
//! corrected sentences, on the rest of the domain and on the check set, the gate's
//! decision and the time the fine-tune took.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use empathy_model::{FusionModel, Lexicon, Prediction};
use empathy_proto::SENTIMENT_LABELS;
use empathy_training::finetune::{
    FeedbackExample, FinetuneConfig, TrafficExample, finetune, publish,
};
use empathy_training::metrics::Confusion;
use rand::SeedableRng;
use rand::seq::SliceRandom;

use crate::eval::read_examples;
use crate::train::{embed, load_text_plugin, predict_texts};

#[derive(clap::Args)]
pub struct AdaptBenchArgs {
    /// A domain's sentences, JSONL of {"text", "label"}; repeat for several domains
    /// (each is one tenant).
    #[arg(long = "data", required = true)]
    data: Vec<PathBuf>,
    /// The base version the tenants' lines start from.
    #[arg(long)]
    model: PathBuf,
    #[arg(long, env = "EMPATHY_ASSETS", default_value = "assets")]
    assets: PathBuf,
    /// Wrong answers each tenant corrects.
    #[arg(long, default_value_t = 30)]
    corrections: usize,
    /// Seeds which wrong answers are corrected, and the fine-tune.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// The fine-tune's settings (default: the trainer's defaults).
    #[arg(long)]
    epochs: Option<usize>,
    #[arg(long)]
    feedback_share: Option<f64>,
    #[arg(long)]
    learning_rate: Option<f64>,
    #[arg(long)]
    replay: Option<usize>,
    #[arg(long)]
    check_tolerance: Option<f64>,
    #[arg(long)]
    traffic_weight: Option<f64>,
    /// Print every uncorrected sentence whose answer the line changed.
    #[arg(long)]
    show_changes: bool,
}

/// One domain's sentences as the base version reads them.
struct Domain {
    name: String,
    texts: Vec<String>,
    labels: Vec<usize>,
    embeddings: Vec<Vec<f32>>,
    lexicon: Vec<Vec<f32>>,
}

pub fn run(args: &AdaptBenchArgs) -> anyhow::Result<()> {
    let base = FusionModel::load(&args.model)?;
    let encoder_dir = base
        .manifest()
        .training
        .encoder_dir
        .as_ref()
        .map(|d| args.assets.join(d));
    let plugin = load_text_plugin(&args.assets, None, encoder_dir.as_deref())?;
    let lexicon = Lexicon::load(&args.assets)?;
    let config = args.config();
    println!(
        "base {} ; {} corrections per tenant ; seed {} ; epochs {} ; feedback share {} ; \
         learning rate {} ; replay {} ; check tolerance {}",
        base.manifest().version,
        args.corrections,
        args.seed,
        config.epochs,
        config.feedback_share,
        config.learning_rate,
        config.replay,
        config.check_tolerance
    );
    let scratch = tempdir()?;
    let mut table = vec![
        "| tenant (domain) | corrected: right before -> after | rest of the domain: accuracy \
         before -> after | rest: macro-F1 before -> after | check set accuracy | published \
         | fine-tune |"
            .to_string(),
        "|---|---|---|---|---|---|---|".to_string(),
    ];
    for path in &args.data {
        let examples = read_examples(path)?;
        let texts: Vec<String> = examples.iter().map(|(e, _)| e.text.clone()).collect();
        let domain = Domain {
            name: path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default(),
            labels: examples.iter().map(|(_, l)| *l).collect(),
            embeddings: embed(&plugin, &texts)?,
            lexicon: texts
                .iter()
                .map(|t| lexicon.analyze_with(t, base.lexicon_expansion()).features)
                .collect(),
            texts,
        };
        let scratch = scratch.join(&domain.name);
        table.push(adapt(args, &config, &base, &domain, &scratch)?);
    }
    println!("\n{}", table.join("\n"));
    let _ = std::fs::remove_dir_all(&scratch);
    Ok(())
}

impl AdaptBenchArgs {
    fn config(&self) -> FinetuneConfig {
        let d = FinetuneConfig::default();
        FinetuneConfig {
            seed: self.seed,
            epochs: self.epochs.unwrap_or(d.epochs),
            feedback_share: self.feedback_share.unwrap_or(d.feedback_share),
            learning_rate: self.learning_rate.unwrap_or(d.learning_rate),
            replay: self.replay.unwrap_or(d.replay),
            check_tolerance: self.check_tolerance.unwrap_or(d.check_tolerance),
            traffic_weight: self.traffic_weight.unwrap_or(d.traffic_weight),
            ..d
        }
    }
}

/// One tenant: corrects, fine-tunes, measures; returns its table row.
fn adapt(
    args: &AdaptBenchArgs,
    config: &FinetuneConfig,
    base: &FusionModel,
    d: &Domain,
    scratch: &Path,
) -> anyhow::Result<String> {
    let before = sentiments(&args.assets, base, d)?;
    let mut wrong: Vec<usize> = (0..d.texts.len())
        .filter(|&i| before[i] != d.labels[i])
        .collect();
    wrong.shuffle(&mut rand::rngs::StdRng::seed_from_u64(args.seed));
    wrong.truncate(args.corrections);
    // The uncorrected sentences, dealt in turn into the tenant's traffic sample and the
    // sentences the line is judged on, so none it is judged on reaches it in any form.
    let uncorrected: Vec<usize> = (0..d.texts.len()).filter(|i| !wrong.contains(i)).collect();
    let (sampled, rest): (Vec<usize>, Vec<usize>) = uncorrected.iter().partition(|&&i| i % 2 == 0);
    let feedback: Vec<FeedbackExample> = wrong
        .iter()
        .map(|&i| FeedbackExample {
            id: format!("{}-{i}", d.name),
            text: d.embeddings[i].clone(),
            utterance: d.texts[i].clone(),
            sentiment: Some(d.labels[i]),
            emotion: None,
            // The model alone: this bench measures what corrections teach it.
            meaning: None,
        })
        .collect();
    let traffic: Vec<TrafficExample> = sampled
        .iter()
        .map(|&i| TrafficExample {
            text: d.embeddings[i].clone(),
            lexicon: d.lexicon[i].clone(),
        })
        .collect();
    println!(
        "\n{}: {} sentences, base right on {}; correcting {} wrong answers",
        d.name,
        d.texts.len(),
        d.texts.len() - before.iter().zip(&d.labels).filter(|(p, l)| p != l).count(),
        wrong.len()
    );
    let started = Instant::now();
    let mut tuned = finetune(
        &args.assets,
        &args.model,
        &feedback,
        &traffic,
        config,
        &mut |_, message| println!("  {message}"),
        &|| false,
    )?;
    let seconds = started.elapsed().as_secs_f64();
    let published = tuned.accepted;
    // A refused candidate is measured all the same, to show what the gate refused.
    tuned.accepted = true;
    std::fs::create_dir_all(scratch)?;
    let (dir, _) = publish(scratch, &tuned, Some(&d.name))?;
    let after = sentiments(&args.assets, &FusionModel::load(&dir)?, d)?;
    let right = |p: &[usize], ix: &[usize]| ix.iter().filter(|&&i| p[i] == d.labels[i]).count();
    let confusion = |p: &[usize]| {
        let actual: Vec<usize> = rest.iter().map(|&i| d.labels[i]).collect();
        let predicted: Vec<usize> = rest.iter().map(|&i| p[i]).collect();
        Confusion::from_labels(SENTIMENT_LABELS.len(), &actual, &predicted)
    };
    let (rest_before, rest_after) = (confusion(&before), confusion(&after));
    if args.show_changes {
        for &i in rest.iter().filter(|&&i| before[i] != after[i]) {
            let mark = |p: usize| if p == d.labels[i] { "right" } else { "wrong" };
            println!(
                "  {} {} -> {} {} (truth {}): {}",
                SENTIMENT_LABELS[before[i]],
                mark(before[i]),
                SENTIMENT_LABELS[after[i]],
                mark(after[i]),
                SENTIMENT_LABELS[d.labels[i]],
                d.texts[i]
            );
        }
    }
    let metric = |k: &str| tuned.metrics.get(k).copied().unwrap_or(f64::NAN);
    Ok(format!(
        "| {} | {}/{} -> {}/{} | {:.3} -> {:.3} ({} sentences) | {:.3} -> {:.3} | {:.4} -> \
         {:.4} | {} | {:.0} s |",
        d.name,
        right(&before, &wrong),
        wrong.len(),
        right(&after, &wrong),
        wrong.len(),
        rest_before.accuracy(),
        rest_after.accuracy(),
        rest.len(),
        rest_before.macro_f1(),
        rest_after.macro_f1(),
        metric("parent_check_set_accuracy"),
        metric("check_set_accuracy"),
        if published {
            "yes".to_string()
        } else {
            format!("no: {}", tuned.reason)
        },
        seconds
    ))
}

/// The top sentiment `model` gives each of the domain's sentences (their embeddings
/// computed once, in `run`).
fn sentiments(assets: &Path, model: &FusionModel, d: &Domain) -> anyhow::Result<Vec<usize>> {
    let mut embedded = |_: &[String]| Ok(d.embeddings.clone());
    Ok(predict_texts(assets, model, &mut embedded, &d.texts)?
        .iter()
        .map(Prediction::top_sentiment)
        .collect())
}

/// A fresh directory for the candidates (removed at the end).
fn tempdir() -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("empathy-adapt-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    Ok(dir)
}
