//! `empathy eval` (`empathy-admin eval`): accuracy and macro-F1 of a running server, over its public API,
//! on a JSONL file of `{"text": ..., "label": "negative|neutral|positive"}`.

use std::path::PathBuf;

use anyhow::{Context, bail};
use empathy_proto::{SENTIMENT_LABELS, v1::AnalyzeRequest};
use empathy_training::metrics::Confusion;
use futures::{StreamExt, TryStreamExt};

#[derive(clap::Args)]
pub struct EvalArgs {
    #[arg(long)]
    data: PathBuf,
    #[arg(
        long,
        env = "EMPATHY_ENDPOINT",
        default_value = "http://127.0.0.1:50051"
    )]
    endpoint: String,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
}

#[derive(serde::Deserialize)]
struct Example {
    text: String,
    label: String,
}

pub async fn run(args: EvalArgs) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&args.data)
        .with_context(|| format!("cannot read {}", args.data.display()))?;
    let mut examples = Vec::new();
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let ex: Example = serde_json::from_str(line).with_context(|| {
            format!(
                "{} line {}: expected {{\"text\": ..., \"label\": ...}}",
                args.data.display(),
                i + 1
            )
        })?;
        let Some(label) = SENTIMENT_LABELS.iter().position(|l| *l == ex.label) else {
            bail!(
                "{} line {}: label {:?} is not one of {SENTIMENT_LABELS:?}",
                args.data.display(),
                i + 1,
                ex.label
            );
        };
        examples.push((ex.text, label));
    }
    if examples.is_empty() {
        bail!("{} holds no examples", args.data.display());
    }
    let client = empathy_cli::connect(&args.endpoint).await?;
    let predictions: Vec<(usize, usize)> = futures::stream::iter(examples)
        .map(|(text, label)| {
            let mut client = client.clone();
            async move {
                let r = client
                    .analyze(AnalyzeRequest {
                        text,
                        ..Default::default()
                    })
                    .await
                    .map_err(|s| {
                        anyhow::anyhow!("Analyze failed ({:?}): {}", s.code(), s.message())
                    })?
                    .into_inner();
                let predicted = r
                    .sentiment
                    .and_then(|s| SENTIMENT_LABELS.iter().position(|l| *l == s.label))
                    .context("the response has no sentiment")?;
                Ok::<_, anyhow::Error>((label, predicted))
            }
        })
        .buffered(args.concurrency.max(1))
        .try_collect()
        .await?;
    let mut confusion = Confusion::new(SENTIMENT_LABELS.len());
    for (truth, predicted) in &predictions {
        confusion.add(*truth, *predicted);
    }
    println!("examples  {}", predictions.len());
    println!("accuracy  {:.4}", confusion.accuracy());
    println!("macro-F1  {:.4}", confusion.macro_f1());
    Ok(())
}
