//! `empathy-trainer`: stores feedback durably, fine-tunes new model versions in the
//! background and publishes them to the registry when they are better.

mod examples;
mod jobs;
mod keys;
mod service;
mod store;
#[cfg(test)]
mod test_registry;
mod traffic;
mod unread;
mod versions;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use empathy_common::auth::{AuthLayer, Door, Policy};
use empathy_common::{Metrics, ServeOptions};
use empathy_grpc::v1::key_service_server::KeyServiceServer;
use empathy_grpc::v1::trainer_service_server::TrainerServiceServer;
use empathy_training::finetune::FinetuneConfig;

use crate::jobs::{Settings, Trainer};
use crate::service::TrainerApi;
use crate::store::{Database, FeedbackStore};

#[derive(Parser, Debug)]
#[command(
    version,
    about = "Serves empathy.v1.TrainerService: feedback store, training jobs, model registry"
)]
struct Args {
    /// Models and data (`empathy assets fetch` fills it).
    #[arg(long, env = "EMPATHY_ASSETS", default_value = "assets")]
    assets: PathBuf,
    /// The model registry (version directories and the `serving` pointer).
    /// Default: <assets>/models.
    #[arg(long)]
    models: Option<PathBuf>,
    /// The feedback database: a SQLite file path (or sqlite://PATH), or a PostgreSQL
    /// URL, postgres://USER[:PASSWORD]@HOST[:PORT]/DB, for several trainers on one
    /// database. Prefer the environment variable for a URL with a password (it then
    /// stays out of `ps`); logs and errors show it as `***`.
    #[arg(
        long,
        env = "EMPATHY_DATABASE",
        default_value = "empathy-feedback.sqlite"
    )]
    database: String,
    /// Feedback records waiting to be committed before new ones get RESOURCE_EXHAUSTED.
    #[arg(long, default_value_t = 1024)]
    max_queue: usize,
    /// Start a job when this many new feedback records are stored (0 = never).
    #[arg(long, default_value_t = 0)]
    train_after: u64,
    /// Start a job this often if new feedback is stored, e.g. 30m, 1h, 90s (unset = never).
    #[arg(long, value_parser = parse_duration)]
    train_every: Option<Duration>,
    /// Publish only if the held-out corrections improve with at most this chance of
    /// luck (a one-sided sign test over the corrections the versions answer
    /// differently).
    #[arg(long, default_value_t = FinetuneConfig::default().max_p_value)]
    max_p_value: f64,
    /// Publish only if at least this share of the tenant's sampled traffic keeps the
    /// serving version's sentiment (judged from 20 samples on).
    #[arg(long, default_value_t = FinetuneConfig::default().min_traffic_agreement)]
    min_traffic_agreement: f64,
    /// Epochs over the replay sample and the feedback.
    #[arg(long, default_value_t = FinetuneConfig::default().epochs)]
    epochs: usize,
    /// Base training examples replayed beside the feedback.
    #[arg(long, default_value_t = FinetuneConfig::default().replay)]
    replay: usize,
    /// Folds of the corrections, each held out once to judge whether training on the
    /// others carries over to it (cross-validation; at least 2).
    #[arg(long, default_value_t = FinetuneConfig::default().folds)]
    folds: usize,
    /// Share of each epoch's examples that are feedback (feedback is repeated).
    #[arg(long, default_value_t = FinetuneConfig::default().feedback_share)]
    feedback_share: f64,
    #[arg(long, default_value_t = FinetuneConfig::default().learning_rate)]
    learning_rate: f64,
    /// The emotion head's learning rate (trained once emotions are corrected).
    #[arg(long, default_value_t = FinetuneConfig::default().emotion_learning_rate)]
    emotion_learning_rate: f64,
    /// With emotion corrections: publish only if at least this share of the base test
    /// split keeps the serving version's top emotion.
    #[arg(long, default_value_t = FinetuneConfig::default().min_emotion_agreement)]
    min_emotion_agreement: f64,
    #[arg(long, default_value_t = FinetuneConfig::default().seed)]
    seed: u64,
    /// Publish only if accuracy on the check set (the lineage's base validation split,
    /// which no feedback enters) is at most this much below both the serving version's
    /// and the lineage's anchor (its score when first fine-tuned: small drops cannot
    /// add up). Measured in the README's adaptation benchmark.
    #[arg(long, default_value_t = FinetuneConfig::default().check_tolerance)]
    check_tolerance: f64,
    /// Another check tolerance for one tenant, as TENANT=VALUE; repeat for several.
    #[arg(long = "tenant-check-tolerance", value_parser = jobs::parse_tenant_tolerance)]
    tenant_check_tolerance: Vec<(String, f64)>,
    /// Delete stored feedback older than this many days, in the background (0 = keep
    /// it forever).
    #[arg(long, default_value_t = 30)]
    retain_days: u64,
    /// Store the audio, images and extra inputs that feedback resends. Off: they are
    /// dropped before storing (the features computed from them stand for them).
    #[arg(long)]
    keep_original_media: bool,
    /// Read the sentiment corrections stored without the meaning reader's reading
    /// before fine-tuning (the reader from <assets>), so that a fusion that reads can
    /// go on reading for the tenant's new versions. For a deployment whose fusion runs
    /// the reader; `empathy up` sets it when its fusion reads.
    #[arg(long)]
    meaning_reader: bool,
    /// What the meaning reader multiplies in when it reads corrections: fusion's
    /// `--meaning-reader-precision`, so the shift learnt is the one served (`empathy up`
    /// passes fusion's on).
    #[arg(long, default_value = "auto")]
    meaning_reader_precision: empathy_reader::Precision,
    /// Which model reads the corrections: fusion's `--meaning-reader-model` (`empathy
    /// up` passes fusion's on). A correction another reader read is read again, and a
    /// new version names the reader its corrections were read by.
    #[arg(long, default_value_t = empathy_reader::ReaderModel::default())]
    meaning_reader_model: empathy_reader::ReaderModel,
    /// Where `empathy train` cached the corpus embeddings (default: the user cache).
    #[arg(long)]
    cache_dir: Option<PathBuf>,
    /// Require an API key on every call but health (admin role; fusion and our other
    /// services get in by their mTLS certificate instead).
    #[arg(long)]
    api_keys: bool,
    /// A file holding the first admin key (`empathy up --secure` writes it): stored if
    /// it is not yet, so that admin can create the other keys.
    #[arg(long)]
    admin_key_file: Option<PathBuf>,
    #[command(flatten)]
    serve: ServeOptions,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (number, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{s:?}: expected a number and a unit, like 90s, 30m or 1h"))?;
    let seconds = match unit {
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        _ => return Err(format!("{s:?}: the unit must be s, m or h")),
    };
    if seconds == 0 {
        return Err("the interval must be positive".into());
    }
    Ok(Duration::from_secs(seconds))
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // Training and the meaning reader's attention run through candle, which without
    // it reads /proc/cpuinfo for every matrix product (about a tenth of a reading).
    // SAFETY: first thing in main; no other thread exists yet.
    unsafe { empathy_common::run_with_compute(0, run(args)) }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let _telemetry =
        empathy_common::telemetry::init("trainer", args.serve.otlp_endpoint.as_deref())?;
    let models = args
        .models
        .clone()
        .unwrap_or_else(|| args.assets.join("models"));
    let database = Database::parse(&args.database)?;
    let store = FeedbackStore::open_database(&database, args.max_queue)
        .with_context(|| format!("cannot open the feedback store {database}"))?;
    tracing::info!(
        stored = store.count()?,
        pending = store.pending().borrow().values().sum::<u64>(),
        "feedback store open: {}",
        store.describe()
    );
    match store.jobs(1) {
        Ok(last) => {
            if let Some(j) = last.first() {
                tracing::info!(job = %j.id, state = %j.state, "last training job: {}", j.message);
            }
        }
        Err(e) => tracing::warn!("cannot read the job history: {e:#}"),
    }
    let settings = Settings {
        assets: args.assets.clone(),
        models,
        finetune: FinetuneConfig {
            seed: args.seed,
            epochs: args.epochs,
            learning_rate: args.learning_rate,
            emotion_learning_rate: args.emotion_learning_rate,
            min_emotion_agreement: args.min_emotion_agreement,
            replay: args.replay,
            folds: args.folds,
            feedback_share: args.feedback_share,
            max_p_value: args.max_p_value,
            min_traffic_agreement: args.min_traffic_agreement,
            check_tolerance: args.check_tolerance,
            cache_dir: args.cache_dir.clone(),
            reader: args.meaning_reader_model,
            ..FinetuneConfig::default()
        },
        tenant_check_tolerance: args.tenant_check_tolerance.iter().cloned().collect(),
        read_corrections: args.meaning_reader.then_some(args.meaning_reader_precision),
    };
    if let Some(path) = &args.admin_key_file {
        keys::ensure_admin_key(&store, path)?;
    }
    let keys = keys::Keys::new(store.clone());
    let trainer = Trainer::new(store, settings);
    trainer.spawn_triggers(args.train_after, args.train_every);
    if args.retain_days > 0 {
        trainer.spawn_retention(Duration::from_secs(args.retain_days.saturating_mul(86_400)));
    } else {
        tracing::warn!("--retain-days 0: stored feedback is kept forever");
    }
    // Streams that never end by themselves (WatchModels) would hold graceful shutdown.
    let stopping = std::sync::Arc::clone(&trainer);
    tokio::spawn(async move {
        empathy_common::server::shutdown_signal().await;
        stopping.stop_streams();
    });

    let metrics = Metrics::new("trainer")?;
    let server = TrainerServiceServer::new(TrainerApi::new(
        trainer,
        metrics.clone(),
        args.keep_original_media,
    ))
    .max_decoding_message_size(args.serve.max_message_bytes);
    let auth = if args.api_keys {
        // Every other method needs an admin key.
        let policy = Policy::new()
            .allow("/empathy.v1.TrainerService/SubmitFeedback", Door::Internal)
            .allow("/empathy.v1.TrainerService/SubmitTraffic", Door::Internal)
            .allow("/empathy.v1.TrainerService/PutReplies", Door::Internal)
            .allow("/empathy.v1.TrainerService/GetReplies", Door::Internal)
            .allow("/empathy.v1.TrainerService/RecordAffect", Door::Internal)
            .allow("/empathy.v1.TrainerService/ReadAffect", Door::Internal)
            .allow("/empathy.v1.KeyService/Authenticate", Door::Internal);
        AuthLayer::new(policy, std::sync::Arc::new(keys.clone()), u32::MAX)
    } else {
        AuthLayer::off()
    };
    let routes = tonic::service::Routes::new(server).add_service(KeyServiceServer::new(keys));
    empathy_common::serve(
        "trainer",
        &args.serve,
        routes,
        &["empathy.v1.TrainerService", "empathy.v1.KeyService"],
        metrics,
        auth,
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("30m"), Ok(Duration::from_secs(1800)));
        assert_eq!(parse_duration("2"), Ok(Duration::from_secs(2)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("5d").is_err());
    }
}
