//! `empathy-encoder`: hosts modality plugins and serves `empathy.v1.EncoderService`.

mod batcher;
mod load;
mod plugins;
mod service;

use std::{collections::HashMap, path::PathBuf, sync::Arc, time::Duration};

use anyhow::Context;
use clap::Parser;
use empathy_common::{Metrics, ServeOptions};
use empathy_grpc::v1::encoder_service_server::EncoderServiceServer;

use crate::{
    batcher::{BatchLimits, Batcher},
    service::Encoder,
};

#[derive(Parser, Debug)]
#[command(
    version,
    about = "Serves empathy.v1.EncoderService for the modality plugins it loads"
)]
struct Args {
    /// Plugins to load: a short name ("text" loads libempathy_plugin_text.so from
    /// --plugin-dir) or a path to a library. Repeat for several.
    #[arg(long = "plugin", required = true)]
    plugins: Vec<String>,
    /// Where short plugin names are looked up (default: this executable's directory).
    #[arg(long, env = "EMPATHY_PLUGIN_DIR")]
    plugin_dir: Option<PathBuf>,
    /// Only load libraries whose sha256 (hex) is listed; repeat, or use --allow-list.
    #[arg(long = "allow-sha256")]
    allow_sha256: Vec<String>,
    /// A file of allowed sha256 digests, one per line (`#` starts a comment).
    #[arg(long)]
    allow_list: Option<PathBuf>,
    /// Load plugins without an allow-list. Loading a library runs its code: for local
    /// development only.
    #[arg(long)]
    insecure_plugins: bool,
    /// Models and data (`empathy assets fetch` fills it).
    #[arg(long, env = "EMPATHY_ASSETS", default_value = "assets")]
    assets: PathBuf,
    /// Compute threads for the models (0 = all cores; sets RAYON_NUM_THREADS).
    #[arg(long, env = "EMPATHY_THREADS", default_value_t = 0)]
    threads: u32,
    /// Compute device passed to plugins, e.g. "cpu" or "cuda:0".
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Plugin setting as key=value for every plugin, or plugin.key=value for one
    /// (e.g. speech.model=base); repeat for several.
    #[arg(long = "setting")]
    settings: Vec<String>,
    /// Most inputs merged into one plugin call.
    #[arg(long, default_value_t = 64)]
    max_batch_inputs: usize,
    /// How long a batch waits for more requests once the first one arrived.
    #[arg(long, default_value_t = 2)]
    max_batch_wait_ms: u64,
    /// Requests queued per modality before new ones get RESOURCE_EXHAUSTED.
    #[arg(long, default_value_t = 512)]
    max_queue: usize,
    /// Longest a request may wait in the queue (estimated from the work ahead of it)
    /// before it is refused with RESOURCE_EXHAUSTED; also never longer than 80% of the
    /// caller's own deadline. Keeps answers prompt under overload instead of late.
    #[arg(long, default_value_t = 1000)]
    max_queue_wait_ms: u64,
    /// Longest one plugin call may take; past it the encoder exits (code 70) so that
    /// its supervisor starts a fresh one, since a stuck call cannot be cancelled.
    #[arg(long, default_value_t = 60_000)]
    plugin_timeout_ms: u64,
    #[command(flatten)]
    serve: ServeOptions,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // SAFETY: first thing in main; no other thread exists yet.
    unsafe { empathy_common::run_with_compute(args.threads, run(args)) }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let _telemetry =
        empathy_common::telemetry::init("encoder", args.serve.otlp_endpoint.as_deref())?;
    let settings = parse_settings(&args.settings)?;
    let specs = plugins::LoadSpec {
        plugin_dir: match args.plugin_dir.clone() {
            Some(d) => d,
            None => plugins::exe_dir()?,
        },
        allow: plugins::allow_list(
            &args.allow_sha256,
            args.allow_list.as_deref(),
            args.insecure_plugins,
        )?,
        assets: args.assets.clone(),
        threads: args.threads,
        device: args.device.clone(),
        settings,
    };
    let names = args.plugins.clone();
    // Loading reads model weights: keep it off the async runtime.
    let loaded = tokio::task::spawn_blocking(move || plugins::load_all(&names, &specs))
        .await
        .context("plugin loading thread failed")??;

    let metrics = Metrics::new("encoder")?;
    let limits = BatchLimits {
        max_inputs: args.max_batch_inputs,
        max_wait: Duration::from_millis(args.max_batch_wait_ms),
        max_queue: args.max_queue,
        max_queue_wait: Duration::from_millis(args.max_queue_wait_ms),
        max_call: Duration::from_millis(args.plugin_timeout_ms.max(1)),
    };
    let mut batchers = HashMap::new();
    let mut infos = Vec::new();
    for plugin in loaded {
        for info in plugin.info() {
            tracing::info!(modality = %info.modality, plugin = %plugin.path().display(), "serving modality");
            // A merged batch never exceeds what the plugin takes in one call.
            let mut modality_limits = limits.clone();
            if info.max_batch > 0 {
                modality_limits.max_inputs =
                    modality_limits.max_inputs.min(info.max_batch as usize);
            }
            let batcher = Batcher::start(
                Arc::clone(&plugin),
                info.modality.clone(),
                modality_limits,
                &metrics,
            )?;
            if batchers.insert(info.modality.clone(), batcher).is_some() {
                anyhow::bail!(
                    "two plugins serve the modality {:?}; load only one",
                    info.modality
                );
            }
            infos.push(info.clone());
        }
    }

    let encoder = Encoder::new(batchers, infos, metrics.clone());
    let server =
        EncoderServiceServer::new(encoder).max_decoding_message_size(args.serve.max_message_bytes);
    empathy_common::serve(
        "encoder",
        &args.serve,
        tonic::service::Routes::new(server),
        &["empathy.v1.EncoderService"],
        metrics,
        // Only our services reach it: --require-client-cert checks them at the handshake.
        empathy_common::auth::AuthLayer::off(),
    )
    .await
}

fn parse_settings(pairs: &[String]) -> anyhow::Result<HashMap<String, String>> {
    pairs
        .iter()
        .map(|p| match p.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => anyhow::bail!("--setting {p:?} is not of the form key=value"),
        })
        .collect()
}
