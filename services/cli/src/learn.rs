//! The learning loop from the command line: `empathy feedback`, `empathy retrain
//! --wait`, `empathy models`, `empathy rollback`.

use std::io::Write;

use anyhow::bail;
use empathy_grpc::v1::{
    FeedbackRequest, JobState, ListModelsRequest, RollbackRequest, StartTrainingRequest,
    WatchJobRequest, trainer_service_client::TrainerServiceClient,
};

use crate::connection::Conn;

#[derive(clap::Args)]
pub struct TrainerEndpoint {
    /// The trainer service (`empathy up` starts one here).
    #[arg(
        long,
        env = "EMPATHY_TRAINER",
        default_value = "http://127.0.0.1:50081"
    )]
    pub trainer: String,
}

impl TrainerEndpoint {
    pub async fn connect(&self) -> anyhow::Result<TrainerServiceClient<Conn>> {
        let conn = crate::connection::connect(&self.trainer, "the trainer").await?;
        Ok(TrainerServiceClient::new(conn))
    }
}

#[derive(clap::Args)]
pub struct FeedbackArgs {
    /// The analysis_id an analysis returned.
    analysis_id: String,
    /// The right sentiment: negative, neutral or positive.
    #[arg(long, default_value = "")]
    sentiment: String,
    /// The right top emotion: anger, disgust, fear, joy, sadness, surprise or neutral.
    #[arg(long, default_value = "")]
    emotion: String,
    /// How good the analysis was, 1..5.
    #[arg(long, default_value_t = 0)]
    rating: i32,
    #[arg(long, default_value = "")]
    note: String,
    /// The person the feedback is about (a pseudonym); default: the analysis's
    /// `--subject`, if it had one.
    #[arg(long, default_value = "")]
    subject: String,
    #[command(flatten)]
    fusion: crate::FusionEndpoint,
}

pub async fn feedback(args: FeedbackArgs) -> anyhow::Result<()> {
    let mut client = args.fusion.connect().await?;
    let response = client
        .feedback(FeedbackRequest {
            analysis_id: args.analysis_id.clone(),
            sentiment: args.sentiment,
            emotion: args.emotion,
            rating: args.rating,
            note: args.note,
            subject_id: args.subject,
            ..FeedbackRequest::default()
        })
        .await
        .map_err(|s| anyhow::anyhow!("{}: {}", s.code(), s.message()))?
        .into_inner();
    println!(
        "stored feedback {} on analysis {}",
        response.feedback_id, args.analysis_id
    );
    Ok(())
}

#[derive(clap::Args)]
pub struct RetrainArgs {
    /// Wait for the job and print the published version or why there is none.
    #[arg(long)]
    wait: bool,
    #[command(flatten)]
    endpoint: TrainerEndpoint,
}

fn bar(progress: f32) -> String {
    let filled = (progress.clamp(0.0, 1.0) * 30.0).round() as usize;
    format!("[{}{}]", "#".repeat(filled), " ".repeat(30 - filled))
}

pub async fn retrain(args: RetrainArgs) -> anyhow::Result<()> {
    let mut client = args.endpoint.connect().await?;
    let job = client
        .start_training(StartTrainingRequest {
            reason: "empathy retrain".into(),
            ..Default::default()
        })
        .await
        .map_err(|s| anyhow::anyhow!("{}: {}", s.code(), s.message()))?
        .into_inner();
    println!("training job {}", job.job_id);
    if !args.wait {
        return Ok(());
    }
    let mut stream = client
        .watch_job(WatchJobRequest {
            job_id: job.job_id.clone(),
        })
        .await?
        .into_inner();
    let mut last = job;
    let mut stderr = std::io::stderr();
    while let Some(update) = stream.message().await? {
        let message: String = update.message.chars().take(70).collect();
        let _ = write!(
            stderr,
            "\r{} {:3.0}% {message:<70}",
            bar(update.progress),
            update.progress * 100.0
        );
        let _ = stderr.flush();
        last = update;
    }
    eprintln!();
    let state = JobState::try_from(last.state).unwrap_or(JobState::Unspecified);
    let mut metrics: Vec<_> = last.metrics.iter().collect();
    metrics.sort_by(|a, b| a.0.cmp(b.0));
    match state {
        JobState::Published => {
            println!("published {}", last.published_version);
            for (k, v) in metrics {
                println!("  {k:<36} {v:.4}");
            }
            println!("{}", last.message);
            Ok(())
        }
        JobState::Rejected => {
            println!("not published: {}", last.message);
            Ok(())
        }
        _ => bail!("job {} ended {:?}: {}", last.job_id, state, last.message),
    }
}

#[derive(clap::Args)]
pub struct ModelsArgs {
    #[command(flatten)]
    endpoint: TrainerEndpoint,
}

pub async fn models(args: ModelsArgs) -> anyhow::Result<()> {
    let mut client = args.endpoint.connect().await?;
    let versions = client
        .list_models(ListModelsRequest::default())
        .await
        .map_err(|s| anyhow::anyhow!("{}: {}", s.code(), s.message()))?
        .into_inner()
        .versions;
    println!(
        "{:<2} {:<8} {:<8} {:>9} {:>9} {:>10} {:>10}",
        "", "version", "parent", "test_F1", "test_acc", "fb_holdout", "created"
    );
    for v in versions {
        let metric = |k: &str| {
            v.metrics
                .get(k)
                .map_or_else(|| "-".to_string(), |x| format!("{x:.4}"))
        };
        let created = v.created_unix_ms / 1000;
        println!(
            "{:<2} {:<8} {:<8} {:>9} {:>9} {:>10} {:>10}",
            if v.serving { "*" } else { "" },
            v.version,
            if v.parent.is_empty() { "-" } else { &v.parent },
            metric("test_macro_f1"),
            metric("test_accuracy"),
            metric("feedback_holdout_accuracy"),
            created
        );
    }
    println!("(* = serving; test = the base test split; created in unix seconds)");
    Ok(())
}

#[derive(clap::Args)]
pub struct RollbackArgs {
    /// The version to serve again, e.g. v0001.
    version: String,
    #[command(flatten)]
    endpoint: TrainerEndpoint,
}

pub async fn rollback(args: RollbackArgs) -> anyhow::Result<()> {
    let mut client = args.endpoint.connect().await?;
    let v = client
        .rollback(RollbackRequest {
            version: args.version,
            ..Default::default()
        })
        .await
        .map_err(|s| anyhow::anyhow!("{}: {}", s.code(), s.message()))?
        .into_inner();
    println!(
        "serving {} now (fusion swaps it in within seconds)",
        v.version
    );
    Ok(())
}
