//! `empathy up`: the whole system on this machine, in the foreground.

use std::{path::PathBuf, time::Duration};

use anyhow::Context;
use empathy_common::launch::{self, sibling_binary};

#[derive(clap::Args)]
pub struct UpArgs {
    #[arg(long, env = "EMPATHY_ASSETS", default_value = "assets")]
    assets: PathBuf,
    /// Address of the public EmpathyService.
    #[arg(long, default_value = "127.0.0.1:50051")]
    listen: String,
    /// Address of the encoder service.
    #[arg(long, default_value = "127.0.0.1:50061")]
    encoder_listen: String,
    /// Prometheus metrics of fusion and encoder (HTTP /metrics).
    #[arg(long, default_value = "127.0.0.1:9451")]
    metrics_listen: String,
    #[arg(long, default_value = "127.0.0.1:9461")]
    encoder_metrics_listen: String,
    /// Address of the trainer service (feedback, training jobs, model versions).
    #[arg(long, default_value = "127.0.0.1:50081")]
    trainer_listen: String,
    #[arg(long, default_value = "127.0.0.1:9481")]
    trainer_metrics_listen: String,
    /// Address of the situation service (imagined situations, SmolLM2).
    #[arg(long, default_value = "127.0.0.1:50071")]
    situation_listen: String,
    #[arg(long, default_value = "127.0.0.1:9471")]
    situation_metrics_listen: String,
    /// The trainer's feedback database (SQLite).
    #[arg(long, default_value = "empathy-feedback.sqlite")]
    database: String,
    /// Extra trainer flags, e.g. --trainer-arg=--train-after=50; repeat for several.
    #[arg(long = "trainer-arg", allow_hyphen_values = true)]
    trainer_args: Vec<String>,
    /// Plugins the encoder loads.
    #[arg(long = "plugin", default_values_t = ["text".to_string(), "image".to_string(), "speech".to_string()])]
    plugins: Vec<String>,
}

/// `empathy train --assets <assets>` with every other flag at its default.
fn default_train_args(assets: &std::path::Path) -> crate::train::TrainArgs {
    #[derive(clap::Parser)]
    struct Wrap {
        #[command(flatten)]
        train: crate::train::TrainArgs,
    }
    let assets = assets.to_string_lossy().into_owned();
    <Wrap as clap::Parser>::parse_from(["train", "--assets", &assets]).train
}

pub async fn run(args: UpArgs) -> anyhow::Result<()> {
    let models = args.assets.join("models");
    if empathy_model::latest_version(&models).is_err() {
        println!(
            "no trained model in {}: training one first (a few minutes)",
            models.display()
        );
        let train_args = default_train_args(&args.assets);
        tokio::task::spawn_blocking(move || crate::train::run(&train_args)).await??;
    }
    let assets = args.assets.to_string_lossy().into_owned();
    let mut encoder_args = vec![
        "--listen".into(),
        args.encoder_listen.clone(),
        "--metrics-listen".into(),
        args.encoder_metrics_listen.clone(),
        "--assets".into(),
        assets.clone(),
    ];
    for p in &args.plugins {
        encoder_args.extend(["--plugin".into(), p.clone()]);
    }
    let ready = Duration::from_secs(300);
    let encoder = launch::spawn(&sibling_binary("empathy-encoder")?, &encoder_args, ready)
        .await
        .context("the encoder did not start")?;
    let mut trainer_args = vec![
        "--listen".into(),
        args.trainer_listen.clone(),
        "--metrics-listen".into(),
        args.trainer_metrics_listen.clone(),
        "--assets".into(),
        assets.clone(),
        "--database".into(),
        args.database.clone(),
    ];
    trainer_args.extend(args.trainer_args.iter().cloned());
    let trainer =
        match launch::spawn(&sibling_binary("empathy-trainer")?, &trainer_args, ready).await {
            Ok(t) => t,
            Err(e) => {
                encoder.stop(Duration::from_secs(5)).await?;
                return Err(e.context("the trainer did not start"));
            }
        };
    let mut situation_args = vec![
        "--listen".into(),
        args.situation_listen.clone(),
        "--metrics-listen".into(),
        args.situation_metrics_listen.clone(),
        "--assets".into(),
        assets.clone(),
    ];
    // Situations are scored only once `empathy-situation train-critic` has run.
    if !args.assets.join("situation/critic").is_dir() {
        situation_args.push("--no-critic".into());
    }
    let situation = match launch::spawn(
        &sibling_binary("empathy-situation")?,
        &situation_args,
        ready,
    )
    .await
    {
        Ok(s) => s,
        Err(e) => {
            trainer.stop(Duration::from_secs(5)).await?;
            encoder.stop(Duration::from_secs(5)).await?;
            return Err(e.context("the situation service did not start"));
        }
    };
    let fusion_args = vec![
        "--listen".into(),
        args.listen.clone(),
        "--metrics-listen".into(),
        args.metrics_listen.clone(),
        "--assets".into(),
        assets,
        "--encoder".into(),
        encoder.url(),
        "--trainer".into(),
        trainer.url(),
        "--situations".into(),
        situation.url(),
    ];
    let fusion = match launch::spawn(&sibling_binary("empathy-fusion")?, &fusion_args, ready).await
    {
        Ok(f) => f,
        Err(e) => {
            situation.stop(Duration::from_secs(5)).await?;
            trainer.stop(Duration::from_secs(5)).await?;
            encoder.stop(Duration::from_secs(5)).await?;
            return Err(e.context("fusion did not start"));
        }
    };
    println!();
    println!("empathy is up:");
    println!(
        "  EmpathyService  {}  (metrics http://{}/metrics)",
        fusion.url(),
        args.metrics_listen
    );
    println!(
        "  EncoderService  {}  (metrics http://{}/metrics)",
        encoder.url(),
        args.encoder_metrics_listen
    );
    println!(
        "  TrainerService  {}  (metrics http://{}/metrics, feedback in {})",
        trainer.url(),
        args.trainer_metrics_listen,
        args.database
    );
    println!(
        "  SituationService {}  (metrics http://{}/metrics)",
        situation.url(),
        args.situation_metrics_listen
    );
    println!("try: empathy analyze --text \"I absolutely love this, thank you so much!\"");
    println!("Ctrl-C stops everything.");

    tokio::signal::ctrl_c().await?;
    println!("stopping…");
    // Front door first, so no request reaches a stopped encoder.
    fusion.stop(Duration::from_secs(10)).await?;
    situation.stop(Duration::from_secs(10)).await?;
    trainer.stop(Duration::from_secs(10)).await?;
    encoder.stop(Duration::from_secs(10)).await?;
    println!("stopped");
    Ok(())
}
