//! `empathy-fusion`: the public `empathy.v1.EmpathyService`. Fans a request out to the
//! modality encoders, fuses what comes back with lexicon features through the serving
//! model, and answers.

mod analyze;
mod care;
mod context;
mod encoded;
mod encoders;
mod explain;
mod feedback;
mod http;
mod meaning;
mod model_lines;
mod model_watch;
mod reader_turns;
mod reading;
mod recent;
mod replies;
mod service;
mod situations;
mod suggest;
mod traffic;
mod trainer_link;
mod trajectory;
mod utterances;
mod validate;

use std::{path::PathBuf, sync::Arc, time::Duration};

use anyhow::Context;
use clap::Parser;
use empathy_common::auth::{AuthLayer, Door, Policy};
use empathy_common::{Metrics, ServeOptions};
use empathy_grpc::v1::Role;
use empathy_grpc::v1::empathy_service_server::EmpathyServiceServer;
use empathy_model::{FusionModel, Lexicon};

use crate::meaning::Meaning;

use crate::{
    analyze::Analyzer, encoders::EncoderPool, model_lines::ModelLines, service::Empathy,
    situations::SituationSource,
};

#[derive(Parser, Debug)]
#[command(version, about = "Serves empathy.v1.EmpathyService, the public API")]
struct Args {
    /// An encoder endpoint, e.g. http://127.0.0.1:50061; repeat for several. Each
    /// one's Info says which modalities it serves.
    #[arg(long = "encoder", required = true)]
    encoders: Vec<String>,
    /// The situation service (imagined situations), e.g. http://127.0.0.1:50071.
    /// Without it, requests that ask for situations are answered without them.
    #[arg(long)]
    situations: Option<String>,
    /// Models and data (`empathy assets fetch` fills it).
    #[arg(long, env = "EMPATHY_ASSETS", default_value = "assets")]
    assets: PathBuf,
    /// A model version directory (pinned: never reloaded), or a registry of versions
    /// (the one its `serving` pointer names, else the newest valid one, is served and
    /// followed as it changes). Default: <assets>/models.
    #[arg(long)]
    model: Option<PathBuf>,
    /// The trainer (feedback store, new versions), e.g. http://127.0.0.1:50081. Without
    /// it Feedback answers FAILED_PRECONDITION and new versions are found by polling.
    #[arg(long)]
    trainer: Option<String>,
    /// How often the registry's serving pointer is checked while no trainer stream is
    /// up, in seconds.
    #[arg(long, default_value_t = 3)]
    model_poll_s: u64,
    /// Memory for tenants' own model versions (issue 13), in MiB of their files: the
    /// least recently used are dropped beyond it and loaded again when asked for.
    #[arg(long, default_value_t = 512)]
    tenant_models_mib: u64,
    #[command(flatten)]
    recent: recent::RecentLimits,
    /// The share of analyses, from 0 to 1, whose features (no text) go to the
    /// trainer's per-tenant traffic sample, which a tenant line's candidate is checked
    /// against (0 = none).
    #[arg(long, default_value_t = 0.2, value_parser = validate::probability)]
    traffic_sample: f32,
    /// How long the encoders get when a request sets no deadline.
    #[arg(long, default_value_t = 5_000)]
    default_deadline_ms: u64,
    /// How long imagined situations get when a request sets no deadline: generating
    /// them takes seconds on a CPU, longer than encoding.
    #[arg(long, default_value_t = 15_000)]
    situations_deadline_ms: u64,
    /// Answers whose top sentiment score (calibrated by the model version's
    /// temperature) is below this, from 0 to 1, are marked low_confidence with a note.
    #[arg(
        long,
        env = "EMPATHY_MIN_CONFIDENCE",
        default_value_t = 0.5,
        value_parser = validate::probability
    )]
    min_confidence: f32,
    /// Shift the sentiment by the meaning reader (Gemma 3 270M; a text costs about
    /// 0.09 s on 2 cores with AMX, 0.24 s without): better on negation, contrast,
    /// idiom and, in a conversation, what the turns before imply, at a fraction of
    /// the throughput (README, "The meaning reader" and "Conversations"). `on` reads
    /// every request that does not turn it off (`options.meaning_reading`);
    /// `on-request` only those that ask for it; bare `--meaning-reader` is `on`. Off
    /// by default, for what it costs. A version fine-tuned on corrections is read
    /// only where every correction was (README, "The meaning reader").
    #[arg(long, value_enum, default_value_t = meaning::Mode::Off, num_args = 0..=1,
          default_missing_value = "on")]
    meaning_reader: meaning::Mode,
    /// What the meaning reader multiplies in: `auto` is bf16 where the CPU has AMX or
    /// AVX-512 BF16 (1.5 to 2 times faster there; readings within a few hundredths of
    /// a nat of f32's) and f32 elsewhere; `f32` gives the same readings on every CPU, for a fleet
    /// that mixes CPUs and wants identical answers.
    #[arg(long, default_value = "auto")]
    meaning_reader_precision: empathy_reader::Precision,
    /// Which language model reads: `gemma-3-270m` (the default) or
    /// `qwen2.5-coder-1.5b`, which reads single messages outside social media much
    /// better, for about eight times the time a text and 3.1 GB of memory (5.7 GB in
    /// f32); on tweets and in conversations it does worse than the default, since the
    /// rule that mixes it in was chosen for Gemma (README, "A larger reader").
    #[arg(long, default_value_t = empathy_reader::ReaderModel::default())]
    meaning_reader_model: empathy_reader::ReaderModel,
    /// Readings the meaning reader runs at once (0: one per compute thread, that is
    /// `RAYON_NUM_THREADS`, every core unless the deployment sets it). Half of a
    /// reading is work on one thread, so a second one beside it uses the core that
    /// work leaves idle: on 2 cores, 1.1x to 1.2x the texts a second through the
    /// service (README, "What it costs"). A request alone is read as fast either way.
    #[arg(long, default_value_t = 0)]
    meaning_reader_concurrency: usize,
    #[command(flatten)]
    limits: validate::Limits,
    /// Require an API key (checked with the trainer's key store, so --trainer is
    /// needed) on every call but health.
    #[arg(long, requires = "trainer")]
    api_keys: bool,
    /// Feedback calls each API key may make per minute.
    #[arg(long, default_value_t = 60)]
    feedback_per_minute: u32,
    /// HTTP/JSON door beside gRPC (`POST /v1/analyze`, `GET /v1/info`, `GET /health`,
    /// `GET /openapi.json`, and a page at `/`), e.g. 127.0.0.1:8080; unset = none.
    #[arg(long)]
    http_listen: Option<std::net::SocketAddr>,
    #[command(flatten)]
    serve: ServeOptions,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // The meaning reader's attention and the serving model run through candle, which
    // without it reads /proc/cpuinfo for every matrix product (about a tenth of a
    // reading). SAFETY: first thing in main; no other thread exists yet.
    unsafe { empathy_common::run_with_compute(0, run(args)) }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let _telemetry =
        empathy_common::telemetry::init("fusion", args.serve.otlp_endpoint.as_deref())?;
    args.serve.tls.install_client()?;
    let model_path = args
        .model
        .clone()
        .unwrap_or_else(|| args.assets.join("models"));
    let assets = args.assets.clone();
    let pinned = model_path.join("manifest.json").exists();
    let registry = (!pinned).then(|| model_path.clone());
    let (meaning_reader, reader_precision) = (args.meaning_reader, args.meaning_reader_precision);
    let reader_model = args.meaning_reader_model;
    let reader_concurrency = match args.meaning_reader_concurrency {
        0 => empathy_common::compute_threads(),
        n => n,
    };
    let (lexicon, model, meaning) = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
        let lexicon = Lexicon::load(&assets)?;
        let meaning = match meaning_reader {
            meaning::Mode::Off => None,
            meaning::Mode::On | meaning::Mode::OnRequest => {
                Meaning::load(&assets, reader_model, reader_precision, reader_concurrency)?
            }
        };
        let version_dir = if pinned {
            model_path
        } else {
            empathy_model::registry::serving_version(&model_path)?
        };
        let model = FusionModel::load(&version_dir)
            .with_context(|| format!("cannot load the model at {}", version_dir.display()))?;
        Ok((lexicon, model, meaning))
    })
    .await??;
    tracing::info!(
        version = %model.manifest().version,
        lexicon_expansion = model.lexicon_expansion().map_or("none", |x| x.version()),
        "model loaded"
    );

    // lingua loads its language models on first use (0.1 s): before serving, not on
    // the first request.
    empathy_common::language::warm_up();
    let pool = EncoderPool::new(&args.encoders, args.serve.max_message_bytes)?;
    pool.refresh().await;
    pool.spawn_refresh(Duration::from_secs(10));

    let trainer = args
        .trainer
        .as_deref()
        .map(|url| trainer_link::TrainerLink::new(url, args.serve.max_message_bytes))
        .transpose()?;

    let auth = match (&trainer, args.api_keys) {
        (Some(link), true) => {
            AuthLayer::new(doors(), Arc::new(link.clone()), args.feedback_per_minute)
        }
        _ => AuthLayer::off(),
    };

    let metrics = Metrics::new("fusion")?;
    let budget = args.tenant_models_mib.saturating_mul(1 << 20);
    let models = Arc::new(ModelLines::new(model, registry, budget, &metrics)?);
    models.refresh_lines().await;
    let poll = Duration::from_secs(args.model_poll_s.max(1));
    model_watch::spawn(Arc::clone(&models), args.trainer.clone(), poll);
    let analyzer = Analyzer {
        pool,
        situations: SituationSource::new(args.situations.as_deref(), args.serve.max_message_bytes)?,
        lexicon: Arc::new(lexicon),
        models,
        recent: Arc::new(
            recent::RecentAnalyses::new(args.recent, trainer.is_some()).with_traffic(
                trainer
                    .clone()
                    .and_then(|link| traffic::spawn(link, args.traffic_sample)),
            ),
        ),
        trainer,
        limits: args.limits.clone(),
        default_deadline: Duration::from_millis(args.default_deadline_ms),
        situations_deadline: Duration::from_millis(args.situations_deadline_ms),
        min_confidence: args.min_confidence,
        meaning,
        meaning_mode: args.meaning_reader,
    };
    let server = EmpathyServiceServer::new(Empathy::new(analyzer, metrics.clone()))
        .max_decoding_message_size(args.serve.max_message_bytes);
    let (max_message_bytes, max_in_flight_bytes) =
        (args.serve.max_message_bytes, args.serve.max_in_flight_bytes);
    let http = args.http_listen.map(|listen| empathy_common::HttpDoor {
        listen,
        app: Box::new(move |channel| http::router(channel, max_message_bytes, max_in_flight_bytes)),
    });
    empathy_common::serve_with_http(
        "fusion",
        &args.serve,
        tonic::service::Routes::new(server),
        &["empathy.v1.EmpathyService"],
        metrics,
        auth,
        http,
    )
    .await
}

/// What each of fusion's methods needs with `--api-keys`.
fn doors() -> Policy {
    let analyze = Door::Role(Role::Analyze);
    Policy::new()
        .allow(
            "/empathy.v1.EmpathyService/Feedback",
            Door::Role(Role::Feedback),
        )
        .rate_limit("/empathy.v1.EmpathyService/Feedback")
        .allow(
            "/empathy.v1.EmpathyService/SuggestLabels",
            Door::Role(Role::Feedback),
        )
        .allow(
            "/empathy.v1.EmpathyService/SubjectTrajectory",
            Door::Role(Role::Feedback),
        )
        .allow(
            "/empathy.v1.EmpathyService/SetReplies",
            Door::Role(Role::Admin),
        )
        .allow(
            "/empathy.v1.EmpathyService/ForgetAnalyses",
            Door::Role(Role::Admin),
        )
        .allow("/empathy.v1.EmpathyService/", analyze)
        .allow("/grpc.reflection.v1.ServerReflection/", analyze)
        .allow("/grpc.reflection.v1alpha.ServerReflection/", analyze)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_method_needs_the_least_role_that_may_call_it() {
        let doors = doors();
        let need = |path: &str| doors.door(path);
        let analyze = Door::Role(Role::Analyze);
        assert_eq!(need("/empathy.v1.EmpathyService/Analyze"), analyze);
        assert_eq!(need("/empathy.v1.EmpathyService/AnalyzeStream"), analyze);
        assert_eq!(need("/empathy.v1.EmpathyService/Info"), analyze);
        assert_eq!(
            need("/empathy.v1.EmpathyService/Feedback"),
            Door::Role(Role::Feedback)
        );
        let reflection = "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo";
        assert_eq!(need(reflection), analyze);
        assert_eq!(need("/grpc.health.v1.Health/Check"), Door::Open);
        assert_eq!(
            need("/empathy.v1.EmpathyService/SuggestLabels"),
            Door::Role(Role::Feedback)
        );
        let forget = "/empathy.v1.EmpathyService/ForgetAnalyses";
        assert_eq!(need(forget), Door::Role(Role::Admin));
        assert_eq!(need("/some.Other/Thing"), Door::Role(Role::Admin));
    }
}
