//! The versions fusion serves: the base line's serving version, and each tenant's line
//! (issue 13) where that tenant has one. A tenant without a line is served the base.
//!
//! Tenant versions are loaded on a tenant's first request and kept while they fit in
//! `--tenant-models-mib`; the least recently used are dropped beyond it and loaded
//! again when asked for. A request holds its own `Arc` to the version it started on,
//! so a swap or an eviction never fails it, and every answer names its version.
//!
//! Which version each line serves is read from the registry's pointers
//! (`model_watch` refreshes them); a request never reads the disk except to load a
//! version it is the first to need.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use empathy_model::FusionModel;
use empathy_model::registry;
use tonic::Status;

pub struct ModelLines {
    base: RwLock<Arc<FusionModel>>,
    /// None when fusion was started on one version directory: every tenant gets it.
    registry: Option<PathBuf>,
    lines: Mutex<Lines>,
    budget_bytes: u64,
    stats: Stats,
}

#[derive(Default)]
struct Lines {
    /// Tenant -> the version id its line's pointer names.
    pointers: HashMap<String, String>,
    /// Loaded tenant versions by id.
    loaded: HashMap<String, Loaded>,
    /// Bumped on every use; the smallest `used` is the least recently used.
    clock: u64,
    bytes: u64,
}

struct Loaded {
    model: Arc<FusionModel>,
    bytes: u64,
    used: u64,
}

/// What `/metrics` reports about the tenant versions.
struct Stats {
    loaded: prometheus::IntGauge,
    bytes: prometheus::IntGauge,
    loads: prometheus::IntCounter,
    evictions: prometheus::IntCounter,
}

impl Stats {
    fn new() -> anyhow::Result<Stats> {
        Ok(Stats {
            loaded: prometheus::IntGauge::new(
                "tenant_models_loaded",
                "Tenant model versions loaded in this fusion process",
            )?,
            bytes: prometheus::IntGauge::new(
                "tenant_models_bytes",
                "Bytes of the loaded tenant model versions (their files' size)",
            )?,
            loads: prometheus::IntCounter::new(
                "tenant_model_loads_total",
                "Tenant model versions loaded on a request or a refresh",
            )?,
            evictions: prometheus::IntCounter::new(
                "tenant_model_evictions_total",
                "Tenant model versions dropped to stay within --tenant-models-mib",
            )?,
        })
    }

    fn collectors(&self) -> Vec<Box<dyn prometheus::core::Collector>> {
        vec![
            Box::new(self.loaded.clone()),
            Box::new(self.bytes.clone()),
            Box::new(self.loads.clone()),
            Box::new(self.evictions.clone()),
        ]
    }
}

impl ModelLines {
    pub fn new(
        base: FusionModel,
        registry: Option<PathBuf>,
        budget_bytes: u64,
        metrics: &empathy_common::Metrics,
    ) -> anyhow::Result<ModelLines> {
        let stats = Stats::new()?;
        for c in stats.collectors() {
            metrics.register(c)?;
        }
        Ok(ModelLines {
            base: RwLock::new(Arc::new(base)),
            registry,
            lines: Mutex::new(Lines::default()),
            budget_bytes,
            stats,
        })
    }

    pub fn registry(&self) -> Option<&Path> {
        self.registry.as_deref()
    }

    /// The base line's serving version.
    pub fn base(&self) -> Arc<FusionModel> {
        Arc::clone(&self.base.read().unwrap_or_else(|e| e.into_inner()))
    }

    pub fn base_version(&self) -> String {
        self.base().manifest().version.clone()
    }

    /// Serves `model` as the base line's version; returns the one it replaces.
    pub fn swap_base(&self, model: Arc<FusionModel>) -> Arc<FusionModel> {
        let mut base = self.base.write().unwrap_or_else(|e| e.into_inner());
        std::mem::replace(&mut *base, model)
    }

    fn lines(&self) -> MutexGuard<'_, Lines> {
        self.lines.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The version that serves `tenant`; keep the `Arc` for the whole request. Loads
    /// the tenant's version (off the async threads) on its first use.
    pub async fn get(&self, tenant: &str) -> Result<Arc<FusionModel>, Status> {
        let base = self.base();
        let id = {
            let mut lines = self.lines();
            let Some(id) = lines.pointers.get(tenant).cloned() else {
                return Ok(base);
            };
            if id == base.manifest().version {
                return Ok(base);
            }
            if let Some(model) = lines.touch(&id) {
                return Ok(model);
            }
            id
        };
        let Some(registry) = self.registry.clone() else {
            return Ok(base);
        };
        let loaded = load(registry, id.clone()).await.map_err(|e| {
            tracing::warn!(%tenant, version = %id, "tenant model does not load: {e:#}");
            Status::unavailable(format!(
                "tenant {tenant}'s model version {id} cannot be loaded; an operator must \
                 point the line at a version that loads (`empathy rollback --tenant \
                 {tenant} VERSION`)"
            ))
        })?;
        Ok(self.keep(id, loaded))
    }

    /// Keeps a freshly loaded tenant version, then drops the least recently used ones
    /// beyond the budget (never the one just kept).
    fn keep(&self, id: String, (model, bytes): (Arc<FusionModel>, u64)) -> Arc<FusionModel> {
        self.stats.loads.inc();
        let mut lines = self.lines();
        if let Some(model) = lines.touch(&id) {
            return model; // another request loaded it meanwhile
        }
        lines.clock += 1;
        let used = lines.clock;
        lines.bytes += bytes;
        lines.loaded.insert(
            id.clone(),
            Loaded {
                model: Arc::clone(&model),
                bytes,
                used,
            },
        );
        while lines.bytes > self.budget_bytes && lines.loaded.len() > 1 {
            let Some(oldest) = lines
                .loaded
                .iter()
                .filter(|(k, _)| **k != id)
                .min_by_key(|(_, l)| l.used)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            lines.drop_version(&oldest);
            self.stats.evictions.inc();
            tracing::debug!(version = %oldest, "tenant model evicted");
        }
        self.stats.loaded.set(lines.loaded.len() as i64);
        self.stats.bytes.set(lines.bytes as i64);
        model
    }

    /// Takes the tenants' pointers as the registry has them now. A tenant whose
    /// version was loaded gets its new one loaded before the pointer moves, so its
    /// requests go on being served by the old one meanwhile; versions no line names
    /// any more are dropped.
    pub async fn refresh_lines(&self) {
        let Some(registry) = self.registry.clone() else {
            return;
        };
        let dir = registry.clone();
        let read = tokio::task::spawn_blocking(move || read_pointers(&dir)).await;
        let pointers = match read {
            Ok(Ok(p)) => p,
            Ok(Err(e)) => return tracing::warn!("tenant lines: {e:#}"),
            Err(e) => return tracing::warn!("reading the tenant lines failed: {e}"),
        };
        let (changed, base) = {
            let lines = self.lines();
            let changed: Vec<String> = pointers
                .iter()
                .filter(|(t, id)| {
                    lines
                        .pointers
                        .get(*t)
                        .is_some_and(|old| old != *id && lines.loaded.contains_key(old))
                })
                .map(|(_, id)| id.clone())
                .collect();
            (changed, self.base_version())
        };
        for id in changed.into_iter().filter(|id| *id != base) {
            match load(registry.clone(), id.clone()).await {
                Ok(loaded) => {
                    self.keep(id.clone(), loaded);
                    tracing::info!(version = %id, "tenant model version swapped in");
                }
                Err(e) => tracing::warn!(version = %id, "not serving it: {e:#}"),
            }
        }
        let mut lines = self.lines();
        lines.pointers = pointers;
        let unnamed: Vec<String> = lines
            .loaded
            .keys()
            .filter(|id| !lines.pointers.values().any(|p| p == *id))
            .cloned()
            .collect();
        for id in unnamed {
            lines.drop_version(&id);
        }
        self.stats.loaded.set(lines.loaded.len() as i64);
        self.stats.bytes.set(lines.bytes as i64);
    }
}

impl Lines {
    /// The loaded version `id`, marked as just used.
    fn touch(&mut self, id: &str) -> Option<Arc<FusionModel>> {
        self.clock += 1;
        let clock = self.clock;
        self.loaded.get_mut(id).map(|l| {
            l.used = clock;
            Arc::clone(&l.model)
        })
    }

    fn drop_version(&mut self, id: &str) {
        if let Some(l) = self.loaded.remove(id) {
            self.bytes -= l.bytes;
        }
    }
}

/// Every tenant line's pointer. A line without a pointer, or whose pointer does not
/// parse, is left out (the tenant is served the base) and logged.
fn read_pointers(registry: &Path) -> anyhow::Result<HashMap<String, String>> {
    let mut pointers = HashMap::new();
    for tenant in registry::tenants_with_lines(registry)? {
        match registry::line_pointer(registry, &tenant) {
            Ok(Some(id)) => {
                pointers.insert(tenant, id);
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(%tenant, "tenant line ignored: {e:#}"),
        }
    }
    Ok(pointers)
}

/// Loads version `id` of the registry off the async threads, with its files' size
/// (what the budget counts).
async fn load(registry: PathBuf, id: String) -> anyhow::Result<(Arc<FusionModel>, u64)> {
    tokio::task::spawn_blocking(move || {
        let dir = registry::version_dir(&registry, &id)?;
        let model = FusionModel::load(&dir)?;
        Ok((Arc::new(model), registry::version_bytes(&dir)?))
    })
    .await?
}
