//! Starting the real services for end-to-end tests.

#![allow(dead_code)] // each test binary uses its own part of this module

use std::{path::PathBuf, time::Duration};

use empathy_common::launch::{self, Service, sibling_binary};
use empathy_grpc::v1::trainer_service_client::TrainerServiceClient;
use empathy_grpc::v1::{
    AnalyzeRequest, AnalyzeResponse, empathy_service_client::EmpathyServiceClient,
};
use tonic::transport::Channel;

// espeak-ng clips and fresh temp dirs: the speech plugin's test helpers (std only).
#[path = "../../../plugins/speech/tests/common/clips.rs"]
mod clips;
#[allow(unused_imports)] // as above: not every test binary uses them
pub use clips::{clip_written_by, espeak, espeak_voice, temp_dir};

/// The assets directory: `EMPATHY_ASSETS`, else `<workspace>/assets`.
pub fn assets() -> PathBuf {
    let dir = std::env::var_os("EMPATHY_ASSETS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../assets"));
    assert!(
        dir.join("models").is_dir(),
        "no trained model under {}: run `empathy assets fetch` and `empathy train` (the README's test command does)",
        dir.display()
    );
    dir
}

const READY: Duration = Duration::from_secs(120);

pub async fn start_encoder(extra: &[&str]) -> anyhow::Result<Service> {
    let mut args: Vec<String> = vec![
        "--plugin".into(),
        "text".into(),
        "--assets".into(),
        assets().display().to_string(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    // Every plugin named is pinned, as an operator would.
    let named: Vec<String> = args
        .windows(2)
        .filter(|w| w[0] == "--plugin")
        .map(|w| w[1].clone())
        .collect();
    for name in named {
        args.extend(["--allow-sha256".into(), plugin_sha256(&name)?]);
    }
    launch::spawn(&sibling_binary("empathy-encoder")?, &args, READY).await
}

pub async fn start_fusion(encoders: &[String], extra: &[&str]) -> anyhow::Result<Service> {
    let mut args: Vec<String> = vec!["--assets".into(), assets().display().to_string()];
    for e in encoders {
        args.extend(["--encoder".into(), e.clone()]);
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    launch::spawn(&sibling_binary("empathy-fusion")?, &args, READY).await
}

pub async fn client(service: &Service) -> anyhow::Result<EmpathyServiceClient<Channel>> {
    Ok(EmpathyServiceClient::connect(service.url()).await?)
}

pub async fn analyze_text(
    client: &mut EmpathyServiceClient<Channel>,
    text: &str,
) -> Result<AnalyzeResponse, tonic::Status> {
    client
        .analyze(AnalyzeRequest {
            text: text.into(),
            ..Default::default()
        })
        .await
        .map(|r| r.into_inner())
}

/// `empathy <args>` run to its end; its output, or its standard error as the error.
pub fn empathy(args: &[&str]) -> anyhow::Result<std::process::Output> {
    let out = std::process::Command::new(sibling_binary("empathy")?)
        .args(args)
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "empathy {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(out)
}

/// The sha256 of a plugin built next to the encoder (or at a path), to pin it (the
/// encoder needs an allow-list).
pub fn plugin_sha256(name: &str) -> anyhow::Result<String> {
    let file = match name.contains('/') {
        true => PathBuf::from(name),
        false => sibling_binary("empathy-encoder")?.with_file_name(
            empathy_plugin_api::host::library_file_name(&format!("empathy_plugin_{name}")),
        ),
    };
    empathy_plugin_api::host::sha256_hex(&file)
        .map_err(|e| anyhow::anyhow!("cannot hash {}: {e}", file.display()))
}

/// `message` as a call of `tenant`, named in the header fusion reads when it checks no
/// API keys.
pub fn as_tenant<T>(tenant: &str, message: T) -> anyhow::Result<tonic::Request<T>> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert(empathy_proto::TENANT_HEADER, tenant.parse()?);
    Ok(request)
}

/// The Prometheus page a service serves on `metrics_addr`.
pub async fn metrics_page(metrics_addr: &str) -> anyhow::Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(metrics_addr).await?;
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .await?;
    let mut page = String::new();
    stream.read_to_string(&mut page).await?;
    Ok(page)
}

/// An address nothing listens on (bound, then released).
pub fn dead_endpoint() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    let addr = l.local_addr().expect("local addr");
    drop(l);
    format!("http://{addr}")
}

// ---- The trainer (shared by tests that start it on a database of their choice) ----

/// A private copy of the registry (versions and pointer) under `dir`, so tests never
/// publish into assets/models.
pub fn registry_copy(dir: &std::path::Path) -> anyhow::Result<PathBuf> {
    let models = dir.join("models");
    std::fs::create_dir_all(&models)?;
    for entry in std::fs::read_dir(assets().join("models"))? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if entry.file_type()?.is_dir() && name.starts_with('v') {
            std::fs::create_dir_all(models.join(&name))?;
            for file in std::fs::read_dir(entry.path())? {
                let file = file?;
                std::fs::copy(file.path(), models.join(&name).join(file.file_name()))?;
            }
        } else if name == "serving" {
            std::fs::copy(entry.path(), models.join(&name))?;
        }
    }
    Ok(models)
}

/// Starts empathy-trainer on `models` with `--database DATABASE` (a path or a URL).
pub async fn start_trainer_on(
    models: &std::path::Path,
    database: &str,
    extra: &[&str],
) -> anyhow::Result<Service> {
    let mut args: Vec<String> = vec![
        "--assets".into(),
        assets().display().to_string(),
        "--models".into(),
        models.display().to_string(),
        "--database".into(),
        database.to_string(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    launch::spawn(&sibling_binary("empathy-trainer")?, &args, READY).await
}

/// The learning loop's services on a private copy of the registry under `dir`: an
/// encoder, a trainer on `dir/feedback.sqlite` (with `trainer_args`), and fusion
/// forwarding feedback to it and serving its versions (with `fusion_args`).
pub struct LearningSystem {
    pub encoder: Service,
    pub trainer: Service,
    pub fusion: Service,
    pub models: PathBuf,
    pub database: PathBuf,
}

pub async fn start_learning_system(
    dir: &std::path::Path,
    trainer_args: &[&str],
    fusion_args: &[&str],
) -> anyhow::Result<LearningSystem> {
    let models = registry_copy(dir)?;
    let database = dir.join("feedback.sqlite");
    let encoder = start_encoder(&[]).await?;
    let trainer = start_trainer_on(&models, &database.display().to_string(), trainer_args).await?;
    let (models_arg, trainer_url) = (models.display().to_string(), trainer.url());
    let mut args = vec!["--model", &models_arg, "--trainer", &trainer_url];
    args.extend(fusion_args);
    let fusion = start_fusion(&[encoder.url()], &args).await?;
    Ok(LearningSystem {
        encoder,
        trainer,
        fusion,
        models,
        database,
    })
}

/// A sentiment correction with made-up text and lexicon features (the store does not
/// care what they mean; a training job can read them).
pub fn feedback_record(
    tag: &str,
    sentiment: &str,
    seed: usize,
) -> empathy_grpc::v1::FeedbackRecord {
    use empathy_grpc::v1::{FeedbackRecord, FeedbackRequest, FloatVector};
    let text: Vec<f32> = (0..384)
        .map(|j| (((seed * 31 + j * 7) % 97) as f32 / 97.0 - 0.5) / 10.0)
        .collect();
    let lexicon: Vec<f32> = (0..24).map(|j| ((seed + j) % 5) as f32 / 5.0).collect();
    FeedbackRecord {
        feedback: Some(FeedbackRequest {
            analysis_id: format!("analysis-{tag}"),
            sentiment: sentiment.into(),
            note: tag.into(),
            ..FeedbackRequest::default()
        }),
        model_version: "v0001".into(),
        features: [
            ("text".to_string(), FloatVector { values: text }),
            ("lexicon".to_string(), FloatVector { values: lexicon }),
        ]
        .into_iter()
        .collect(),
        text: format!("sentence {tag}"),
        ..FeedbackRecord::default()
    }
}

pub async fn trainer_client(s: &Service) -> anyhow::Result<TrainerServiceClient<Channel>> {
    Ok(TrainerServiceClient::connect(s.url()).await?)
}

/// Starts a training job for the caller's tenant and returns its last state.
pub async fn train_and_wait(
    trainer: &mut TrainerServiceClient<Channel>,
) -> anyhow::Result<empathy_grpc::v1::TrainingJob> {
    let job = trainer
        .start_training(empathy_grpc::v1::StartTrainingRequest::default())
        .await?
        .into_inner();
    wait_job(trainer, &job.job_id).await
}

/// The last state of a training job, following WatchJob until it ends.
pub async fn wait_job(
    trainer: &mut TrainerServiceClient<Channel>,
    job_id: &str,
) -> anyhow::Result<empathy_grpc::v1::TrainingJob> {
    let mut stream = trainer
        .watch_job(empathy_grpc::v1::WatchJobRequest {
            job_id: job_id.into(),
        })
        .await?
        .into_inner();
    let mut last = None;
    while let Some(update) = stream.message().await? {
        last = Some(update);
    }
    last.ok_or_else(|| anyhow::anyhow!("no job updates"))
}

/// Streams feedback to `trainer` from `clients` concurrent clients and SIGKILLs it
/// mid-stream once `kill_after` records are acknowledged (or 30 s passed); returns the
/// ids of every record acknowledged before it died.
pub async fn stream_feedback_then_kill(
    trainer: &mut Service,
    clients: usize,
    kill_after: usize,
) -> anyhow::Result<Vec<String>> {
    use std::sync::{Arc, Mutex};
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut writers = Vec::new();
    for w in 0..clients {
        let mut client = trainer_client(trainer).await?;
        let acked = Arc::clone(&acked);
        writers.push(tokio::spawn(async move {
            for i in 0.. {
                match client
                    .submit_feedback(feedback_record(&format!("{w}-{i}"), "positive", i))
                    .await
                {
                    Ok(ack) => acked
                        .lock()
                        .expect("lock")
                        .push(ack.into_inner().feedback_id),
                    Err(_) => return,
                }
            }
        }));
    }
    let started = std::time::Instant::now();
    while acked.lock().expect("lock").len() < kill_after
        && started.elapsed() < std::time::Duration::from_secs(30)
    {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    // Mid-stream: the clients are still sending when the process dies.
    trainer.child.start_kill()?;
    trainer.child.wait().await?;
    for w in writers {
        w.await?;
    }
    let acked = acked.lock().expect("lock").clone();
    Ok(acked)
}

/// POSTs a JSON `body` to fusion's HTTP door at `addr` (`host:port`), with `key` as
/// `Authorization: Bearer`; the HTTP status and the JSON answer (errors included).
pub fn http_post(
    addr: &str,
    path: &str,
    body: &str,
    key: Option<&str>,
) -> anyhow::Result<(u16, serde_json::Value)> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut request = agent
        .post(format!("http://{addr}{path}"))
        .header("Content-Type", "application/json");
    if let Some(key) = key {
        request = request.header("Authorization", format!("Bearer {key}"));
    }
    let mut answer = request.send(body)?;
    let status = answer.status().as_u16();
    Ok((
        status,
        serde_json::from_str(&answer.body_mut().read_to_string()?)?,
    ))
}

/// `program args` in `dir` with `env` added; its stdout and stderr, or both (and the
/// command) as the error.
pub fn run(
    program: impl AsRef<std::ffi::OsStr>,
    args: &[&str],
    dir: &std::path::Path,
    env: &[(&str, String)],
) -> anyhow::Result<(String, String)> {
    let program = program.as_ref();
    let out = std::process::Command::new(program)
        .args(args)
        .current_dir(dir)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .map_err(|e| anyhow::anyhow!("cannot run {program:?} ({e}): scripts/setup installs it"))?;
    anyhow::ensure!(
        out.status.success(),
        "{program:?} {}:\n{}\n{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok((
        String::from_utf8(out.stdout)?,
        String::from_utf8(out.stderr)?,
    ))
}

/// The workspace root (where `clients/` and `proto/` are).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A fresh Python virtual environment in `dir/venv` with `packages` installed by pip
/// (names, or paths relative to the workspace root); its python.
pub fn python_venv(dir: &std::path::Path, packages: &[&str]) -> anyhow::Result<PathBuf> {
    let venv = dir.join("venv");
    run(
        "python3",
        &["-m", "venv", &venv.display().to_string()],
        dir,
        &[],
    )?;
    let python = venv.join("bin/python");
    let mut args = vec!["-m", "pip", "install", "-q", "--disable-pip-version-check"];
    args.extend(packages);
    run(&python, &args, &workspace_root(), &[])?;
    Ok(python)
}
