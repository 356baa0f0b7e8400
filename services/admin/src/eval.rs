//! `empathy eval` (`empathy-admin eval`): accuracy and macro-F1 on a JSONL file of
//! `{"text": ..., "label": "negative|neutral|positive", "kind": optional group}`, either
//! of a running server over its public API or of a model version in this process (with
//! the text encoder it was trained with); accuracy per kind where the file has kinds.
//! Lines may carry the turns before (`"context": [{"speaker", "text"}]`, oldest first,
//! and `"sentiment"` for the label, as in `eval/dialogues-*.jsonl`): the server reads
//! them, or not with `--without-context`. Lines with an `"emotion"` (one of
//! EMOTION_LABELS) also count whether the answer's top emotion agrees, per emotion.
//! The expected calibration error of the top sentiment score (15 bins) is printed too.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use empathy_model::{FusionModel, top_index};
use empathy_proto::{
    EMOTION_LABELS, SENTIMENT_LABELS,
    v1::{AnalyzeOptions, AnalyzeRequest, Turn},
};
use empathy_training::metrics::{Confusion, expected_calibration_error};
use futures::{StreamExt, TryStreamExt};

use crate::train::{embed, load_text_plugin, predict_texts};

#[derive(clap::Args)]
pub struct EvalArgs {
    #[arg(long)]
    data: PathBuf,
    #[command(flatten)]
    fusion: empathy_cli::FusionEndpoint,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Evaluate this model version directory in this process instead of a server.
    #[arg(long)]
    model: Option<PathBuf>,
    #[arg(long, env = "EMPATHY_ASSETS", default_value = "assets")]
    assets: PathBuf,
    /// Print every example the model gets wrong.
    #[arg(long)]
    show_errors: bool,
    /// Send each line's text alone, leaving out its `context` turns.
    #[arg(long)]
    without_context: bool,
    /// Whether the server's meaning reader reads each line: `on` asks for it (a server
    /// started with `--meaning-reader on-request` reads only those that ask), `off`
    /// leaves it out. Default: the server's choice.
    #[arg(long, value_enum, conflicts_with = "model")]
    meaning_reader: Option<empathy_cli::analyze::MeaningToggle>,
}

#[derive(serde::Deserialize)]
pub struct Example {
    pub text: String,
    #[serde(alias = "sentiment")]
    label: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    context: Vec<ContextTurn>,
    /// The top emotion the answer should have, if the line says.
    #[serde(default)]
    emotion: Option<String>,
}

#[derive(serde::Deserialize, Clone)]
struct ContextTurn {
    #[serde(default)]
    speaker: String,
    text: String,
}

pub async fn run(args: EvalArgs) -> anyhow::Result<()> {
    let examples = read_examples(&args.data)?;
    let with_context = !args.without_context && examples.iter().any(|(e, _)| !e.context.is_empty());
    let predicted = match &args.model {
        Some(_) if with_context => bail!(
            "{} has turns of context, which only a server reads: leave out --model, or \
             pass --without-context",
            args.data.display()
        ),
        Some(dir) => {
            let texts: Vec<String> = examples.iter().map(|(e, _)| e.text.clone()).collect();
            predict_in_process(&args.assets, dir, &texts)?
        }
        None => {
            let reading = empathy_cli::analyze::MeaningToggle::reading(args.meaning_reader);
            let requests = examples
                .iter()
                .map(|(e, _)| request(e, with_context, reading))
                .collect();
            predict_on_server(&args.fusion, args.concurrency, requests).await?
        }
    };
    let mut confusion = Confusion::new(SENTIMENT_LABELS.len());
    let mut by_kind: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    let mut by_emotion: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    let mut confidence = Vec::with_capacity(predicted.len());
    let mut correct = Vec::with_capacity(predicted.len());
    for ((ex, truth), (p, score, top_emotion)) in examples.iter().zip(&predicted) {
        confidence.push(f64::from(*score));
        correct.push(truth == p);
        if let Some(want) = &ex.emotion {
            let entry = by_emotion.entry(want.as_str()).or_default();
            entry.0 += usize::from(want == top_emotion);
            entry.1 += 1;
            if args.show_errors && want != top_emotion {
                println!("  emotion: {top_emotion} (not {want}): {}", ex.text);
            }
        }
        confusion.add(*truth, *p);
        let entry = by_kind.entry(ex.kind.as_str()).or_default();
        entry.0 += usize::from(truth == p);
        entry.1 += 1;
        if args.show_errors && truth != p {
            println!(
                "  wrong: {} (not {}): {}",
                SENTIMENT_LABELS[*p], SENTIMENT_LABELS[*truth], ex.text
            );
        }
    }
    println!("examples  {}", predicted.len());
    println!("accuracy  {:.4}", confusion.accuracy());
    println!("macro-F1  {:.4}", confusion.macro_f1());
    let ece = expected_calibration_error(&confidence, &correct, 15);
    println!("ECE       {ece:.4}  (top sentiment score, 15 bins)");
    if by_kind.len() > 1 {
        for (kind, (right, n)) in by_kind {
            println!("  {kind:12} {right}/{n} = {:.4}", right as f64 / n as f64);
        }
    }
    if !by_emotion.is_empty() {
        let right: usize = by_emotion.values().map(|(r, _)| r).sum();
        let n: usize = by_emotion.values().map(|(_, n)| n).sum();
        println!(
            "top emotion agrees  {right}/{n} = {:.4}",
            right as f64 / n as f64
        );
        for (emotion, (right, n)) in by_emotion {
            println!("  {emotion:12} {right}/{n}");
        }
    }
    Ok(())
}

pub fn read_examples(path: &Path) -> anyhow::Result<Vec<(Example, usize)>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut examples = Vec::new();
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let ex: Example = serde_json::from_str(line).with_context(|| {
            format!(
                "{} line {}: expected {{\"text\": ..., \"label\": ...}}",
                path.display(),
                i + 1
            )
        })?;
        let Some(label) = SENTIMENT_LABELS.iter().position(|l| *l == ex.label) else {
            bail!(
                "{} line {}: label {:?} is not one of {SENTIMENT_LABELS:?}",
                path.display(),
                i + 1,
                ex.label
            );
        };
        if let Some(e) = &ex.emotion
            && !EMOTION_LABELS.contains(&e.as_str())
        {
            bail!(
                "{} line {}: emotion {e:?} is not one of {EMOTION_LABELS:?}",
                path.display(),
                i + 1
            );
        }
        examples.push((ex, label));
    }
    if examples.is_empty() {
        bail!("{} holds no examples", path.display());
    }
    Ok(examples)
}

fn request(example: &Example, with_context: bool, meaning_reading: i32) -> AnalyzeRequest {
    let context = example.context.iter().filter(|_| with_context);
    AnalyzeRequest {
        text: example.text.clone(),
        context: context
            .map(|t| Turn {
                speaker: t.speaker.clone(),
                text: t.text.clone(),
            })
            .collect(),
        options: Some(AnalyzeOptions {
            meaning_reading,
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// One answer: the top sentiment (index into SENTIMENT_LABELS), its score, and the
/// top emotion.
type Answer = (usize, f32, String);

async fn predict_on_server(
    fusion: &empathy_cli::FusionEndpoint,
    concurrency: usize,
    requests: Vec<AnalyzeRequest>,
) -> anyhow::Result<Vec<Answer>> {
    let client = fusion.connect().await?;
    futures::stream::iter(requests)
        .map(|request| {
            let mut client = client.clone();
            async move {
                let r = client
                    .analyze(request)
                    .await
                    .map_err(|s| {
                        anyhow::anyhow!("Analyze failed ({:?}): {}", s.code(), s.message())
                    })?
                    .into_inner();
                let sentiment = r.sentiment.context("the response has no sentiment")?;
                let top = SENTIMENT_LABELS
                    .iter()
                    .position(|l| *l == sentiment.label)
                    .context("the response's sentiment label is not one of ours")?;
                let score = sentiment
                    .scores
                    .iter()
                    .find(|s| s.label == sentiment.label)
                    .map_or(0.0, |s| s.score);
                Ok((top, score, r.emotions.map(|e| e.top).unwrap_or_default()))
            }
        })
        .buffered(concurrency.max(1))
        .try_collect()
        .await
}

/// The version's sentiment labels, their scores and top emotions for `texts`, from
/// its own text encoder and lexicon.
fn predict_in_process(
    assets: &Path,
    version_dir: &Path,
    texts: &[String],
) -> anyhow::Result<Vec<Answer>> {
    let model = FusionModel::load(version_dir)?;
    let encoder_dir = model
        .manifest()
        .training
        .encoder_dir
        .as_ref()
        .map(|d| assets.join(d));
    let plugin = load_text_plugin(assets, None, encoder_dir.as_deref())?;
    let mut embed = |texts: &[String]| embed(&plugin, texts);
    let predictions = predict_texts(assets, &model, &mut embed, texts)?;
    Ok(predictions
        .iter()
        .map(|p| {
            let emotion = EMOTION_LABELS[top_index(&p.emotions)].to_string();
            (p.top_sentiment(), p.sentiment[p.top_sentiment()], emotion)
        })
        .collect())
}
