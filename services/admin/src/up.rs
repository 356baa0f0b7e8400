//! `empathy up`: the whole system on this machine, in the foreground.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use empathy_common::launch::{self, Service, sibling_binary};

#[derive(clap::Args)]
pub struct UpArgs {
    #[arg(long, env = "EMPATHY_ASSETS", default_value = "assets")]
    assets: PathBuf,
    /// Address of the public EmpathyService.
    #[arg(long, default_value = "127.0.0.1:50051")]
    listen: String,
    /// Fusion's HTTP/JSON API and its page (`off` = none).
    #[arg(long, default_value = "127.0.0.1:8080")]
    http_listen: String,
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
    /// The trainer's feedback database (SQLite file or URL) [default:
    /// <assets>/empathy-feedback.sqlite, beside the models it trains].
    #[arg(long)]
    database: Option<String>,
    /// Extra trainer flags, e.g. --trainer-arg=--train-after=50; repeat for several.
    #[arg(long = "trainer-arg", allow_hyphen_values = true)]
    trainer_args: Vec<String>,
    /// Extra encoder flags, e.g. --encoder-arg=--setting=text_zh.sentiment=lexicon;
    /// repeat for several.
    #[arg(long = "encoder-arg", allow_hyphen_values = true)]
    encoder_args: Vec<String>,
    /// Extra fusion flags, e.g. --fusion-arg=--tenant-models-mib=1024 or
    /// --fusion-arg=--traffic-sample=0.5; repeat for several.
    #[arg(long = "fusion-arg", allow_hyphen_values = true)]
    fusion_args: Vec<String>,
    /// Which requests fusion's meaning reader (Gemma 3 270M, about 0.2 s a text on 2
    /// cores) reads: `on`, every request that does not turn it off; `on-request`, only
    /// those that ask; `off`, none (README, "The meaning reader"). A
    /// --fusion-arg=--meaning-reader=... takes its place.
    #[arg(long, default_value = "on", value_parser = ["off", "on", "on-request"])]
    meaning_reader: String,
    /// Fusion marks an answer low_confidence when its top sentiment score is below
    /// this, from 0 to 1 [default: fusion's own, 0.5, or EMPATHY_MIN_CONFIDENCE].
    #[arg(long)]
    min_confidence: Option<String>,
    /// TLS everywhere, mTLS between the services, API keys at fusion and the trainer:
    /// a local CA, certificates and a first admin key are made under <assets>/secure.
    #[arg(long)]
    secure: bool,
    /// Plugins the encoder loads.
    #[arg(long = "plugin", default_values_t = ["text".to_string(), "text_zh".to_string(), "image".to_string(), "speech".to_string()])]
    plugins: Vec<String>,
}

/// `empathy train --assets <assets>` with every other flag at its default.
fn default_train_args(assets: &Path) -> crate::train::TrainArgs {
    #[derive(clap::Parser)]
    struct Wrap {
        #[command(flatten)]
        train: crate::train::TrainArgs,
    }
    let assets = assets.to_string_lossy().into_owned();
    <Wrap as clap::Parser>::parse_from(["train", "--assets", &assets]).train
}

pub async fn run(args: UpArgs) -> anyhow::Result<()> {
    train_if_missing(&args.assets).await?;
    let assets = args.assets.to_string_lossy().into_owned();
    let secure = args
        .secure
        .then(|| crate::secure::prepare(&args.assets))
        .transpose()?;
    // Per service: its certificate; internal ones accept only our certificates.
    let tls = |service: &str| -> Vec<String> {
        let Some(secure) = &secure else {
            return Vec::new();
        };
        let mut flags = secure.tls_args(service);
        match service {
            "encoder" | "situation" => flags.push("--require-client-cert".into()),
            "trainer" => flags.extend([
                "--api-keys".into(),
                "--admin-key-file".into(),
                secure.admin_key().to_string_lossy().into_owned(),
            ]),
            _ => flags.push("--api-keys".into()),
        }
        flags
    };
    let mut running = Running::default();
    let encoder = running
        .start(
            "empathy-encoder",
            &[encoder_args(&args, &assets)?, tls("encoder")].concat(),
            "the encoder did not start",
        )
        .await?;
    let trainer = running
        .start(
            "empathy-trainer",
            &[trainer_args(&args, &assets), tls("trainer")].concat(),
            "the trainer did not start",
        )
        .await?;
    let situation = running
        .start(
            "empathy-situation",
            &[situation_args(&args, &assets), tls("situation")].concat(),
            "the situation service did not start",
        )
        .await?;
    let mut fusion_args = service_args(&args.listen, &args.metrics_listen, &assets);
    fusion_args.extend(tls("fusion"));
    fusion_args.extend([
        "--encoder".into(),
        encoder.clone(),
        "--trainer".into(),
        trainer.clone(),
        "--situations".into(),
        situation.clone(),
    ]);
    if let Some(m) = &args.min_confidence {
        fusion_args.extend(["--min-confidence".into(), m.clone()]);
    }
    if reader_flag(&args).is_none() {
        fusion_args.push(format!("--meaning-reader={}", args.meaning_reader));
    }
    fusion_args.extend(args.fusion_args.iter().cloned());
    if args.http_listen != "off" {
        fusion_args.extend(["--http-listen".into(), args.http_listen.clone()]);
    }
    let fusion = running
        .start("empathy-fusion", &fusion_args, "fusion did not start")
        .await?;
    let http = running.0.last().and_then(|s| s.http_addr.clone());
    print_addresses(&args, &fusion, http, &encoder, &trainer, &situation);
    if let Some(secure) = &secure {
        println!(
            "secure: TLS with the local CA {ca}, API keys required; the admin key is in \
             {key}. The empathy command finds both by itself once it has the https URLs:\n  \
             export EMPATHY_ENDPOINT={fusion} EMPATHY_TRAINER={trainer}\n  \
             empathy keys create --tenant NAME --role analyze|feedback|admin",
            ca = secure.ca().display(),
            key = secure.admin_key().display(),
        );
    }

    tokio::signal::ctrl_c().await?;
    println!("stopping…");
    // Front door first, so no request reaches a stopped encoder.
    running.stop_all(Duration::from_secs(10)).await?;
    println!("stopped");
    Ok(())
}

/// Trains a model first when there is none under assets/models.
async fn train_if_missing(assets: &Path) -> anyhow::Result<()> {
    let models = assets.join("models");
    if empathy_model::latest_version(&models).is_err() {
        println!(
            "no trained model in {}: training one first (a few minutes)",
            models.display()
        );
        let train_args = default_train_args(assets);
        tokio::task::spawn_blocking(move || crate::train::run(&train_args)).await??;
    } else if !assets.join(empathy_plugin_text_zh::MODEL_SUBDIR).exists() {
        // Installs trained before the Chinese plugin: its model takes seconds.
        let train_args = default_train_args(assets);
        tokio::task::spawn_blocking(move || crate::train::train_chinese(&train_args)).await??;
    }
    Ok(())
}

/// The flags every service takes: where it listens, where its metrics are, the assets;
/// and reflection (for grpcurl) when it listens on this machine only.
fn service_args(listen: &str, metrics_listen: &str, assets: &str) -> Vec<String> {
    let mut args: Vec<String> = vec![
        "--listen".into(),
        listen.into(),
        "--metrics-listen".into(),
        metrics_listen.into(),
        "--assets".into(),
        assets.into(),
    ];
    if listen
        .parse::<std::net::SocketAddr>()
        .is_ok_and(|a| a.ip().is_loopback())
    {
        args.push("--reflection".into());
    }
    args
}

/// The sha256 of a plugin as the encoder will find it: the encoder requires every
/// plugin pinned, and these are the ones built next to it.
fn plugin_sha256(name: &str) -> anyhow::Result<String> {
    let file = if name.contains(std::path::MAIN_SEPARATOR) || name.contains('.') {
        PathBuf::from(name)
    } else {
        sibling_binary("empathy-encoder")?.with_file_name(
            empathy_plugin_api::host::library_file_name(&format!("empathy_plugin_{name}")),
        )
    };
    empathy_plugin_api::host::sha256_hex(&file)
        .map_err(|e| anyhow::anyhow!("cannot hash the plugin {}: {e}", file.display()))
}

fn encoder_args(args: &UpArgs, assets: &str) -> anyhow::Result<Vec<String>> {
    let mut encoder_args = service_args(&args.encoder_listen, &args.encoder_metrics_listen, assets);
    for p in &args.plugins {
        encoder_args.extend(["--plugin".into(), p.clone()]);
        encoder_args.extend(["--allow-sha256".into(), plugin_sha256(p)?]);
    }
    if let Some(dir) = serving_encoder_dir(&args.assets)? {
        encoder_args.extend([
            "--setting".into(),
            format!("text.model_dir={}", dir.display()),
        ]);
    }
    encoder_args.extend(args.encoder_args.iter().cloned());
    Ok(encoder_args)
}

/// The text encoder the serving model version was trained with where it is not the
/// plugin's default MiniLM: a tuned MiniLM, or all-mpnet-base-v2.
fn serving_encoder_dir(assets: &Path) -> anyhow::Result<Option<std::path::PathBuf>> {
    let version = empathy_model::registry::serving_version(&assets.join("models"))?;
    let (manifest, _) = empathy_model::checkpoint::read_version(&version)?;
    Ok(manifest.training.encoder_dir.map(|d| assets.join(d)))
}

/// `--database`, else the SQLite file under the assets (never the working directory,
/// which may be a checkout).
fn database(args: &UpArgs) -> String {
    args.database.clone().unwrap_or_else(|| {
        args.assets
            .join("empathy-feedback.sqlite")
            .display()
            .to_string()
    })
}

/// A `--fusion-arg=--meaning-reader...` given, which takes `--meaning-reader`'s place.
fn reader_flag(args: &UpArgs) -> Option<&str> {
    args.fusion_args
        .iter()
        .map(String::as_str)
        .find(|a| *a == "--meaning-reader" || a.starts_with("--meaning-reader="))
}

/// The `--fusion-arg=--meaning-reader-precision=...` and `--meaning-reader-model=...`
/// given: the same flags for the trainer, which reads corrections as fusion reads.
fn reader_setting_flags(args: &UpArgs) -> impl Iterator<Item = &str> {
    args.fusion_args.iter().map(String::as_str).filter(|a| {
        a.starts_with("--meaning-reader-precision=") || a.starts_with("--meaning-reader-model=")
    })
}

/// Whether fusion's meaning reader reads any request: then the trainer reads the
/// corrections stored without a reading, so the tenants' lines stay readable.
fn fusion_reads(args: &UpArgs) -> bool {
    match reader_flag(args) {
        Some(flag) => !flag.ends_with("=off"),
        None => args.meaning_reader != "off",
    }
}

fn trainer_args(args: &UpArgs, assets: &str) -> Vec<String> {
    let mut trainer_args = service_args(&args.trainer_listen, &args.trainer_metrics_listen, assets);
    trainer_args.extend(["--database".into(), database(args)]);
    if fusion_reads(args) {
        trainer_args.push("--meaning-reader".into());
        // The trainer reads corrections as fusion reads requests.
        trainer_args.extend(reader_setting_flags(args).map(String::from));
    }
    trainer_args.extend(args.trainer_args.iter().cloned());
    trainer_args
}

fn situation_args(args: &UpArgs, assets: &str) -> Vec<String> {
    // Without a trained critic the service scores situations by the generator's PMI.
    service_args(
        &args.situation_listen,
        &args.situation_metrics_listen,
        assets,
    )
}

/// The services started so far, in the order they started.
#[derive(Default)]
struct Running(Vec<Service>);

impl Running {
    /// Starts the sibling binary `name` and returns its URL. If it does not come up
    /// ready, the services already running are stopped (newest first) and its error
    /// is returned with `what` as context.
    async fn start(
        &mut self,
        name: &str,
        args: &[String],
        what: &'static str,
    ) -> anyhow::Result<String> {
        let program = sibling_binary(name)?;
        match launch::spawn(&program, args, Duration::from_secs(300)).await {
            Ok(service) => {
                let url = service.url();
                self.0.push(service);
                Ok(url)
            }
            Err(e) => {
                std::mem::take(self)
                    .stop_all(Duration::from_secs(5))
                    .await?;
                Err(e.context(what))
            }
        }
    }

    /// Stops every service, newest first, each given `grace` to exit.
    async fn stop_all(self, grace: Duration) -> anyhow::Result<()> {
        for service in self.0.into_iter().rev() {
            service.stop(grace).await?;
        }
        Ok(())
    }
}

fn print_addresses(
    args: &UpArgs,
    fusion: &str,
    http: Option<String>,
    encoder: &str,
    trainer: &str,
    situation: &str,
) {
    println!();
    println!("empathy is up:");
    println!(
        "  EmpathyService  {}  (metrics http://{}/metrics)",
        fusion, args.metrics_listen
    );
    println!(
        "  EncoderService  {}  (metrics http://{}/metrics)",
        encoder, args.encoder_metrics_listen
    );
    println!(
        "  TrainerService  {}  (metrics http://{}/metrics, feedback in {})",
        trainer,
        args.trainer_metrics_listen,
        database(args)
    );
    println!(
        "  SituationService {}  (metrics http://{}/metrics)",
        situation, args.situation_metrics_listen
    );
    if let Some(http) = http {
        println!(
            "  HTTP/JSON        http://{http}  (the page at /, the API under /v1, /openapi.json)"
        );
    }
    println!("try: empathy analyze --text \"I absolutely love this, thank you so much!\"");
    println!("Ctrl-C stops everything.");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reflection_only_on_loopback() {
        let local = service_args("127.0.0.1:50051", "127.0.0.1:9451", "assets");
        assert!(local.contains(&"--reflection".to_string()));
        let public = service_args("0.0.0.0:50051", "127.0.0.1:9451", "assets");
        assert!(!public.contains(&"--reflection".to_string()));
    }

    #[test]
    fn the_trainer_reads_stored_corrections_when_fusion_reads() {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            up: UpArgs,
        }
        let up = |flags: &[&str]| {
            <Cli as clap::Parser>::parse_from(std::iter::once("up").chain(flags.iter().copied())).up
        };
        let reads = |flags: &[&str]| fusion_reads(&up(flags));
        assert!(reads(&[]));
        assert!(reads(&["--meaning-reader", "on-request"]));
        assert!(!reads(&["--meaning-reader", "off"]));
        assert!(!reads(&["--fusion-arg=--meaning-reader=off"]));
        assert!(reads(&[
            "--meaning-reader",
            "off",
            "--fusion-arg=--meaning-reader"
        ]));
        // The reader's precision is another flag: it leaves `--meaning-reader` as it was.
        assert!(!reads(&[
            "--meaning-reader",
            "off",
            "--fusion-arg=--meaning-reader-precision=f32"
        ]));
        // It reads the corrections as fusion reads requests.
        let trainer = |flags: &[&str]| trainer_args(&up(flags), "assets");
        let f32_flag = "--meaning-reader-precision=f32".to_string();
        assert!(trainer(&["--fusion-arg=--meaning-reader-precision=f32"]).contains(&f32_flag));
        assert!(
            !trainer(&[])
                .iter()
                .any(|a| a.starts_with("--meaning-reader-precision"))
        );
        let qwen = "--meaning-reader-model=qwen2.5-coder-1.5b";
        let both = trainer(&[
            "--fusion-arg=--meaning-reader-precision=f32",
            &format!("--fusion-arg={qwen}"),
        ]);
        assert!(both.contains(&f32_flag) && both.contains(&qwen.to_string()));
        let off = trainer(&[
            "--meaning-reader",
            "off",
            "--fusion-arg=--meaning-reader-precision=f32",
            &format!("--fusion-arg={qwen}"),
        ]);
        assert!(!off.iter().any(|a| a.starts_with("--meaning-reader")));
    }
}
