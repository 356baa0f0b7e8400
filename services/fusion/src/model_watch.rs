//! Hot reload: the serving model is an `Arc` behind a lock that requests clone in a
//! few nanoseconds; a new version is loaded and checked off the request path, then
//! swapped in. A request that started on the old version finishes on it (it holds its
//! own `Arc`), so nothing is dropped, and every response names the version it used.
//!
//! Fusion learns of a new version from the trainer's `WatchModels` stream; while the
//! trainer is down (or none is configured) it polls the registry's `serving` pointer
//! every `--model-poll-s` seconds instead.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use empathy_grpc::v1::WatchModelsRequest;
use empathy_grpc::v1::trainer_service_client::TrainerServiceClient;
use empathy_model::FusionModel;
use empathy_model::registry;

pub struct ServingModel {
    current: RwLock<Arc<FusionModel>>,
}

impl ServingModel {
    pub fn new(model: FusionModel) -> ServingModel {
        ServingModel {
            current: RwLock::new(Arc::new(model)),
        }
    }

    /// The version serving now; keep the `Arc` for the whole request.
    pub fn get(&self) -> Arc<FusionModel> {
        Arc::clone(&self.current.read().unwrap_or_else(|e| e.into_inner()))
    }

    fn swap(&self, model: Arc<FusionModel>) -> Arc<FusionModel> {
        let mut current = self.current.write().unwrap_or_else(|e| e.into_inner());
        std::mem::replace(&mut *current, model)
    }

    pub fn version(&self) -> String {
        self.get().manifest().version.clone()
    }
}

/// Loads `dir` (off the async threads) and serves it, unless it already serves.
async fn serve_version(serving: &ServingModel, dir: PathBuf) {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if name == serving.version() {
        return;
    }
    match tokio::task::spawn_blocking(move || FusionModel::load(&dir)).await {
        Ok(Ok(model)) => {
            let old = serving.swap(Arc::new(model));
            tracing::info!(
                from = %old.manifest().version,
                to = %name,
                "model version swapped in"
            );
        }
        Ok(Err(e)) => tracing::warn!("not serving {name}: {e:#}"),
        Err(e) => tracing::warn!("loading {name} failed: {e}"),
    }
}

/// Follows the trainer's announcements, and the registry's pointer every `poll` (which
/// catches what was announced while the stream was down, or written by another
/// trainer).
pub fn spawn(
    serving: Arc<ServingModel>,
    models_dir: PathBuf,
    trainer: Option<String>,
    poll: Duration,
) {
    if let Some(url) = trainer {
        let serving = Arc::clone(&serving);
        let models_dir = models_dir.clone();
        tokio::spawn(async move {
            loop {
                match watch(&serving, &models_dir, &url).await {
                    Ok(()) => {
                        tracing::info!("the trainer's model stream ended; polling the registry")
                    }
                    Err(e) => tracing::debug!(
                        "trainer model stream unavailable ({e}); polling the registry"
                    ),
                }
                tokio::time::sleep(poll).await;
            }
        });
    }
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(poll).await;
            check_registry(&serving, &models_dir).await;
        }
    });
}

/// Serves what the registry's pointer names (or the newest valid version without one).
async fn check_registry(serving: &ServingModel, models_dir: &std::path::Path) {
    // The cheap check first: the pointer names the version that already serves.
    if let Ok(Some(name)) = registry::serving_pointer(models_dir)
        && name == serving.version()
    {
        return;
    }
    let dir = models_dir.to_path_buf();
    match tokio::task::spawn_blocking(move || registry::serving_version(&dir)).await {
        Ok(Ok(dir)) => serve_version(serving, dir).await,
        Ok(Err(e)) => tracing::warn!("registry: {e:#}"),
        Err(e) => tracing::warn!("registry check failed: {e}"),
    }
}

async fn watch(
    serving: &ServingModel,
    models_dir: &std::path::Path,
    url: &str,
) -> anyhow::Result<()> {
    let channel = empathy_common::tls::endpoint(url, None)?
        .connect_timeout(Duration::from_secs(2))
        .connect()
        .await?;
    let mut stream = TrainerServiceClient::new(channel)
        .watch_models(WatchModelsRequest {})
        .await?
        .into_inner();
    tracing::info!(trainer = %url, "following the trainer's model versions");
    while let Some(version) = stream.message().await? {
        if version.serving && registry::is_version_name(&version.version) {
            serve_version(serving, models_dir.join(&version.version)).await;
        }
    }
    Ok(())
}
