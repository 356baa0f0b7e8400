//! `empathy-situation`: serves `empathy.v1.SituationService` (virtual situations from
//! SmolLM2 with a critic), and `empathy-situation train-critic` builds the critic.

use std::{path::PathBuf, sync::Arc, time::Duration};

use anyhow::Context;
use clap::{Parser, Subcommand};
use empathy_common::{Metrics, ServeOptions};
use empathy_grpc::v1::{ModelRef, situation_service_server::SituationServiceServer};
use empathy_situation::{
    engine::EngineMetrics,
    judge::Judge,
    llama::WeightFormat,
    loader,
    service::{Info, Limits, Situations},
    situation_text, train,
};

#[derive(Parser, Debug)]
#[command(
    version,
    about = "Serves empathy.v1.SituationService: virtual situations from SmolLM2-135M-Instruct, scored by a critic",
    args_conflicts_with_subcommands = true
)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    /// Models and data (`empathy assets fetch` fills it).
    #[arg(long, env = "EMPATHY_ASSETS", default_value = "assets", global = true)]
    assets: PathBuf,
    /// Compute threads (0 = all cores; sets RAYON_NUM_THREADS).
    #[arg(long, env = "EMPATHY_THREADS", default_value_t = 0, global = true)]
    threads: u32,
    /// Compute device: "cpu" or "cuda:N" (needs the `cuda` build feature).
    #[arg(long, default_value = "cpu", global = true)]
    device: String,
    /// How the generator's weights are held: "q4-amx" (as "q4", plus a bf16 copy,
    /// ~270 MB more, that runs prompts and scored texts on Intel AMX tiles, or with
    /// AVX-512 BF16, where the CPU has them; exactly "q4" elsewhere), "q4" (the GGUF's
    /// blocks as stored, ~100 MB, our AVX2 kernel: decoding reads a quarter of the
    /// bytes), "f32" (dequantized at load, ~540 MB, gemm) or "gguf" (as stored through
    /// candle's kernels, slow on CPU).
    #[arg(long, value_enum, default_value = "q4-amx", global = true)]
    weights: WeightFormat,
    #[command(flatten)]
    engine: EngineArgs,
    #[command(flatten)]
    serve: ServeOptions,
}

#[derive(clap::Args, Debug, Clone)]
struct EngineArgs {
    /// Most sequences decoded together in one forward pass (across requests).
    #[arg(long, default_value_t = 16)]
    max_batch: usize,
    /// Requests in progress or queued; more get RESOURCE_EXHAUSTED.
    #[arg(long, default_value_t = 64)]
    max_requests: usize,
    /// Most situations per request.
    #[arg(long, default_value_t = 8)]
    max_k: u32,
    /// Longest utterance (and context turn), in characters.
    #[arg(long, default_value_t = 1000)]
    max_utterance_chars: usize,
    /// Most tokens a request may ask for per situation.
    #[arg(long, default_value_t = 128)]
    max_tokens: u32,
    /// Tokens per situation when the request says 0.
    #[arg(long, default_value_t = 48)]
    default_max_tokens: u32,
    /// Longest a request may run (the caller's deadline may be shorter).
    #[arg(long, default_value_t = 60_000)]
    max_request_ms: u64,
    /// Tries per situation before it is given up (degenerate text, low critic score).
    #[arg(long, default_value_t = 3)]
    max_attempts: u32,
    /// Regenerate situations the critic scores below this (default: the critic's own).
    #[arg(long)]
    critic_threshold: Option<f32>,
    /// Which critic scores situations: the generator's own PMI (every install has it,
    /// and it tells own from other situations best: `compare-critics`), the trained one
    /// (`train-critic`), or none (every score 0.5).
    #[arg(long, value_enum, default_value = "pmi")]
    critic: CriticChoice,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum CriticChoice {
    Pmi,
    Trained,
    None,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Generate situations for corpus tweets (cached), embed them and train the critic;
    /// writes assets/situation/critic/vNNNN/.
    TrainCritic(train::TrainOptions),
    /// How well each critic (the generator's PMI both ways, the trained one) tells an
    /// utterance's own situation from another's, on the same generated pairs; takes
    /// train-critic's options (e.g. --utterances 120 --per-utterance 1).
    CompareCritics(train::TrainOptions),
    /// How often the emotion the generator reads off its situations is the one a
    /// reader would infer, on a JSONL file of {"text", "emotion"}; --per-utterance
    /// situations each.
    ReadFeelings {
        #[arg(long)]
        data: PathBuf,
        #[command(flatten)]
        opts: train::TrainOptions,
    },
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // SAFETY: no other thread exists yet (the runtime is built below).
    unsafe { empathy_common::configure_compute(args.threads) };
    if let Some(command) = &args.command {
        // Offline work: no traces exported (and outside the async runtime).
        let _telemetry = empathy_common::telemetry::init("situation", None)?;
        let device = empathy_plugin_text::parse_device(&args.device)?;
        return match command {
            Command::TrainCritic(opts) => {
                train::train_critic(&args.assets, &device, args.weights, opts)
            }
            Command::CompareCritics(opts) => {
                train::compare_critics(&args.assets, &device, args.weights, opts)
            }
            Command::ReadFeelings { data, opts } => {
                train::read_feelings(&args.assets, &device, args.weights, data, opts)
            }
        };
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let _telemetry =
        empathy_common::telemetry::init("situation", args.serve.otlp_endpoint.as_deref())?;
    let device = empathy_plugin_text::parse_device(&args.device)?;
    let e = args.engine.clone();
    anyhow::ensure!(e.max_batch > 0, "--max-batch must be at least 1");
    anyhow::ensure!(e.max_requests > 0, "--max-requests must be at least 1");
    anyhow::ensure!(e.max_attempts > 0, "--max-attempts must be at least 1");
    let assets = args.assets.clone();
    let dev = device.clone();
    let choice = e.critic;
    let weights = args.weights;
    let (generator, judge) = tokio::task::spawn_blocking(move || {
        let generator = loader::load_generator(&assets, &dev, weights)?;
        let judge = match choice {
            CriticChoice::None => Judge::None,
            CriticChoice::Trained => Judge::Trained(Arc::new(loader::load_scorer(&assets, &dev)?)),
            CriticChoice::Pmi => Judge::Pmi,
        };
        anyhow::Ok((generator, judge))
    })
    .await
    .context("model loading thread failed")??;

    let metrics = Metrics::new("situation")?;
    let engine_metrics = EngineMetrics::new()?;
    for c in engine_metrics.collectors() {
        metrics.register(c)?;
    }
    let critic_ref = match &judge {
        Judge::None => None,
        Judge::Trained(s) => Some(ModelRef {
            id: "empathy/situation-critic (MLP over all-MiniLM-L6-v2 pairs)".into(),
            version: s.critic.manifest.version.clone(),
        }),
        Judge::Pmi => Some(ModelRef {
            id: "empathy/situation-critic (PMI of the situation given the utterance, under the generator)".into(),
            version: generator.version.clone(),
        }),
    };
    // PMI regenerates nothing by default: its scores are not calibrated as a threshold.
    let threshold = e.critic_threshold.unwrap_or(match &judge {
        Judge::Trained(s) => s.critic.manifest.threshold,
        _ => 0.0,
    });
    tracing::info!(
        generator = %generator.version,
        critic = critic_ref.as_ref().map_or("none", |c| c.id.as_str()),
        threshold,
        device = %args.device,
        "models loaded"
    );
    let info = Info {
        generator: ModelRef {
            id: loader::GENERATOR_ID.into(),
            version: generator.version.clone(),
        },
        critic: critic_ref,
        device: args.device.clone(),
    };
    let (engine, tokenizer) = generator.start_engine(
        judge,
        e.max_batch,
        e.max_attempts,
        threshold,
        Some(engine_metrics),
    )?;
    let warm = std::time::Instant::now();
    let utterance = "I finally finished the project.";
    engine
        .warm_up(
            utterance,
            situation_text::prompt_ids(&tokenizer, utterance, &[])?,
        )
        .await?;
    tracing::info!(ms = warm.elapsed().as_millis() as u64, "engine warmed up");
    let limits = Limits {
        max_k: e.max_k,
        max_utterance_chars: e.max_utterance_chars,
        max_tokens: e.max_tokens,
        default_max_tokens: e.default_max_tokens.min(e.max_tokens),
        max_duration: Duration::from_millis(e.max_request_ms),
        ..Limits::default()
    };
    let service = Situations::new(
        engine,
        tokenizer,
        limits,
        e.max_requests,
        info,
        metrics.clone(),
    );
    let server = SituationServiceServer::new(service)
        .max_decoding_message_size(args.serve.max_message_bytes);
    empathy_common::serve(
        "situation",
        &args.serve,
        tonic::service::Routes::new(server),
        &["empathy.v1.SituationService"],
        metrics,
        // Only our services reach it: --require-client-cert checks them at the handshake.
        empathy_common::auth::AuthLayer::off(),
    )
    .await
}
