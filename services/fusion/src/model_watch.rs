//! Hot reload of the lines `ModelLines` serves: a new version is loaded and checked
//! off the request path, then swapped in. A request that started on the old version
//! finishes on it (it holds its own `Arc`), so nothing is dropped, and every response
//! names the version it used.
//!
//! Fusion learns of a new version from the trainer's `WatchModels` stream; while the
//! trainer is down (or none is configured) it polls the registry's `serving` pointer
//! every `--model-poll-s` seconds instead.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use empathy_grpc::v1::WatchModelsRequest;
use empathy_grpc::v1::trainer_service_client::TrainerServiceClient;
use empathy_model::FusionModel;
use empathy_model::registry;

use crate::model_lines::ModelLines;

/// Loads `dir` (off the async threads) and serves it as the base line's version,
/// unless it already serves.
async fn serve_base(lines: &ModelLines, dir: PathBuf) {
    let name = registry::dir_name(&dir);
    if name == lines.base_version() {
        return;
    }
    match tokio::task::spawn_blocking(move || FusionModel::load(&dir)).await {
        Ok(Ok(model)) => {
            let old = lines.swap_base(Arc::new(model));
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

/// Follows the trainer's announcements, and the registry's pointers every `poll`
/// (which catches what was announced while the stream was down, or written by another
/// trainer).
pub fn spawn(lines: Arc<ModelLines>, trainer: Option<String>, poll: Duration) {
    let Some(models_dir) = lines.registry().map(Path::to_path_buf) else {
        return;
    };
    if let Some(url) = trainer {
        let lines = Arc::clone(&lines);
        tokio::spawn(async move {
            loop {
                match watch(&lines, &url).await {
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
            check_base(&lines, &models_dir).await;
            lines.refresh_lines().await;
        }
    });
}

/// Serves as the base what the registry's pointer names (or the newest valid version
/// without one).
async fn check_base(lines: &ModelLines, models_dir: &Path) {
    // The cheap check first: the pointer names the version that already serves.
    if let Ok(Some(name)) = registry::serving_pointer(models_dir)
        && name == lines.base_version()
    {
        return;
    }
    let dir = models_dir.to_path_buf();
    match tokio::task::spawn_blocking(move || registry::serving_version(&dir)).await {
        Ok(Ok(dir)) => serve_base(lines, dir).await,
        Ok(Err(e)) => tracing::warn!("registry: {e:#}"),
        Err(e) => tracing::warn!("registry check failed: {e}"),
    }
}

/// Each announcement of a line's new serving version: the base's is loaded from its
/// directory, a tenant's by reading the lines' pointers again.
async fn watch(lines: &ModelLines, url: &str) -> anyhow::Result<()> {
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
        if !version.serving {
            continue;
        }
        match lines.registry() {
            Some(models_dir) if version.tenant.is_empty() => {
                if registry::is_version_name(&version.version) {
                    serve_base(lines, models_dir.join(&version.version)).await;
                }
            }
            _ => lines.refresh_lines().await,
        }
    }
    Ok(())
}
