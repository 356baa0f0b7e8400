//! The learning loop from the command line: `empathy feedback`, `empathy retrain
//! --wait`, `empathy models`, `empathy rollback`.

use std::io::Write;

use anyhow::bail;
use empathy_grpc::v1::{
    FeedbackRequest, JobState, ListModelsRequest, ModelVersion, RollbackRequest,
    StartTrainingRequest, WatchJobRequest, trainer_service_client::TrainerServiceClient,
};

use crate::connection::{Conn, Tenant};

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
    // Whose line to train, on that tenant's feedback only.
    #[command(flatten)]
    tenant: Tenant,
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
            tenant: args.tenant.field(),
        })
        .await
        .map_err(|s| anyhow::anyhow!("{}: {}", s.code(), s.message()))?
        .into_inner();
    println!("training job {} (tenant {})", job.job_id, job.tenant);
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
    // Whose line to list beside the base line's versions.
    #[command(flatten)]
    tenant: Tenant,
    #[command(flatten)]
    endpoint: TrainerEndpoint,
}

pub async fn models(args: ModelsArgs) -> anyhow::Result<()> {
    let mut client = args.endpoint.connect().await?;
    let versions = client
        .list_models(ListModelsRequest {
            tenant: args.tenant.field(),
        })
        .await
        .map_err(|s| anyhow::anyhow!("{}: {}", s.code(), s.message()))?
        .into_inner()
        .versions;
    print!("{}", models_table(&versions));
    Ok(())
}

/// The versions as a table: which line each is in, its parent and metrics.
fn models_table(versions: &[ModelVersion]) -> String {
    use std::fmt::Write;
    let line = |v: &ModelVersion| {
        if v.tenant.is_empty() {
            "base".to_string()
        } else {
            v.tenant.clone()
        }
    };
    // Tenant versions ("acme/v0003") and names are longer than base ones.
    let width = |f: &dyn Fn(&ModelVersion) -> usize, min: usize| {
        versions.iter().map(f).max().unwrap_or(0).max(min)
    };
    let (wv, wp, wl) = (
        width(&|v| v.version.len(), 8),
        width(&|v| v.parent.len(), 8),
        width(&|v| line(v).len(), 6),
    );
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<2} {:<wv$} {:<wp$} {:<wl$} {:>9} {:>9} {:>10} {:>10}",
        "", "version", "parent", "line", "test_F1", "test_acc", "fb_holdout", "created"
    );
    for v in versions {
        let metric = |k: &str| {
            v.metrics
                .get(k)
                .map_or_else(|| "-".to_string(), |x| format!("{x:.4}"))
        };
        let _ = writeln!(
            s,
            "{:<2} {:<wv$} {:<wp$} {:<wl$} {:>9} {:>9} {:>10} {:>10}",
            if v.serving { "*" } else { "" },
            v.version,
            if v.parent.is_empty() { "-" } else { &v.parent },
            line(v),
            metric("test_macro_f1"),
            metric("test_accuracy"),
            metric("feedback_holdout_accuracy"),
            v.created_unix_ms / 1000
        );
    }
    let _ = writeln!(
        s,
        "(* = serving the tenant asked about; line = the tenant whose feedback made it, \
         base = the shared line; test = the base test split; created in unix seconds)"
    );
    s
}

#[derive(clap::Args)]
pub struct RollbackArgs {
    /// The version to serve again: one of the tenant's line (acme/v0002), or a base
    /// version (v0001), which the tenant then serves without what its feedback taught.
    version: String,
    /// [admin] Move the base line itself (what every tenant without a line of its own
    /// serves, and what new lines start from); --tenant is then ignored.
    #[arg(long)]
    base: bool,
    // Whose line to roll back.
    #[command(flatten)]
    tenant: Tenant,
    #[command(flatten)]
    endpoint: TrainerEndpoint,
}

impl RollbackArgs {
    fn request(&self) -> RollbackRequest {
        RollbackRequest {
            version: self.version.clone(),
            tenant: self.tenant.field(),
            base: self.base,
        }
    }
}

pub async fn rollback(args: RollbackArgs) -> anyhow::Result<()> {
    let mut client = args.endpoint.connect().await?;
    let v = client
        .rollback(args.request())
        .await
        .map_err(|s| anyhow::anyhow!("{}: {}", s.code(), s.message()))?
        .into_inner();
    if args.base || v.tenant.is_empty() {
        println!(
            "the base line serves {} now (fusion swaps it in within seconds)",
            v.version
        );
    } else {
        println!(
            "tenant {} serves {} now (fusion swaps it in within seconds); its automatic \
             training is paused until `empathy resume --tenant {}`",
            v.tenant, v.version, v.tenant
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Rollback {
        #[command(flatten)]
        args: RollbackArgs,
    }

    fn rollback(args: &[&str]) -> Result<RollbackRequest, clap::Error> {
        Rollback::try_parse_from(std::iter::once("rollback").chain(args.iter().copied()))
            .map(|r| r.args.request())
    }

    #[test]
    fn rollback_names_the_tenant_or_the_base_line() {
        let r = rollback(&["acme/v0002", "--tenant", "acme"]).ok();
        assert_eq!(
            r,
            Some(RollbackRequest {
                version: "acme/v0002".into(),
                tenant: "acme".into(),
                base: false,
            })
        );
        let r = rollback(&["--base", "v0001"]).ok();
        assert_eq!(
            r,
            Some(RollbackRequest {
                version: "v0001".into(),
                tenant: String::new(),
                base: true,
            })
        );
    }

    #[test]
    fn a_bad_tenant_name_is_refused_before_any_call() {
        let err = rollback(&["v0001", "--tenant", "Acme Corp"])
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("\"Acme Corp\" is not a tenant name"), "{err}");
        assert!(err.contains("a-z, 0-9, '-' and '_'"), "{err}");
    }

    #[test]
    fn the_models_table_says_which_line_each_version_is_in() {
        let version = |version: &str, parent: &str, tenant: &str, serving: bool| ModelVersion {
            version: version.into(),
            parent: parent.into(),
            tenant: tenant.into(),
            serving,
            ..ModelVersion::default()
        };
        let table = models_table(&[
            version("v0001", "", "", false),
            version("clinic-north/v0001", "v0001", "clinic-north", true),
        ]);
        let lines: Vec<&str> = table.lines().collect();
        assert!(lines[0].contains(" line "), "{table}");
        assert!(lines[1].contains(" base "), "{table}");
        assert!(
            lines[2].starts_with("*  clinic-north/v0001 v0001"),
            "{table}"
        );
        assert!(lines[2].contains(" clinic-north "), "{table}");
    }
}
