//! A model version is a directory: `model.safetensors` plus `manifest.json`, which
//! records the labels, dims, training provenance, test metrics and the weights'
//! sha256. Versions are written into a hidden temp directory beside the others,
//! fsynced, then renamed into place, so a reader never sees half a version.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail, ensure};
use candle_core::Tensor;
use candle_nn::VarMap;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::network::Dims;

pub const FORMAT_VERSION: u32 = 1;
pub const MANIFEST_FILE: &str = "manifest.json";
pub const WEIGHTS_FILE: &str = "model.safetensors";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Labels {
    pub sentiment: Vec<String>,
    pub emotion: Vec<String>,
}

impl Labels {
    pub fn ours() -> Labels {
        let own = |labels: &[&str]| labels.iter().map(|l| l.to_string()).collect();
        Labels {
            sentiment: own(&empathy_proto::SENTIMENT_LABELS),
            emotion: own(&empathy_proto::EMOTION_LABELS),
        }
    }
}

/// Where a version's weights came from.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TrainingInfo {
    pub data_sha256: String,
    /// The text encoder's model id/version the embeddings came from.
    pub encoder: String,
    pub seed: u64,
    pub train_size: usize,
    pub validation_size: usize,
    pub test_size: usize,
    pub empty_removed: usize,
    pub duplicates_removed: usize,
    pub conflicting_removed: usize,
    pub epochs: usize,
    pub best_epoch: usize,
    pub batch_size: usize,
    pub learning_rate: f64,
    pub weight_decay: f64,
    pub dropout: f64,
    pub text_dropout: f64,
    pub class_weights: Vec<f64>,
    /// Weight of the per-topic label priors in training (see `topics`).
    pub topic_prior_weight: f64,
    pub seconds: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format_version: u32,
    pub version: String,
    pub parent: Option<String>,
    pub created_unix_ms: u64,
    pub labels: Labels,
    pub dims: Dims,
    /// Tokens the weights were trained on ("text", "lexicon", ..., "situation");
    /// others are masked at inference rather than fed through untrained weights.
    pub trained_tokens: Vec<String>,
    /// "lexicon" until the emotion head is trained on labelled emotions, then "model".
    pub emotion_source: String,
    pub training: TrainingInfo,
    pub metrics: BTreeMap<String, f64>,
    pub weights_sha256: String,
}

/// What a trainer supplies; `save_version` adds the name, time and checksum.
pub struct NewVersion {
    pub parent: Option<String>,
    pub dims: Dims,
    pub trained_tokens: Vec<String>,
    pub emotion_source: String,
    pub training: TrainingInfo,
    pub metrics: BTreeMap<String, f64>,
}

/// Writes a new version `vNNNN` (one above the highest present) under `models_dir`.
pub fn save_version(
    models_dir: &Path,
    varmap: &VarMap,
    new: NewVersion,
) -> anyhow::Result<(PathBuf, Manifest)> {
    std::fs::create_dir_all(models_dir)
        .with_context(|| format!("cannot create {}", models_dir.display()))?;
    let created_unix_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let tmp = models_dir.join(format!(".tmp-{}-{created_unix_ms}", std::process::id()));
    std::fs::create_dir(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    let result = write_and_publish(models_dir, &tmp, varmap, new, created_unix_ms);
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    result
}

fn write_and_publish(
    models_dir: &Path,
    tmp: &Path,
    varmap: &VarMap,
    new: NewVersion,
    created_unix_ms: u64,
) -> anyhow::Result<(PathBuf, Manifest)> {
    let tensors: HashMap<String, Tensor> = varmap
        .data()
        .lock()
        .map_err(|_| anyhow::anyhow!("model variables lock poisoned"))?
        .iter()
        .map(|(k, v)| (k.clone(), v.as_tensor().clone()))
        .collect();
    let weights_path = tmp.join(WEIGHTS_FILE);
    candle_core::safetensors::save(&tensors, &weights_path)?;
    // The safetensors writer creates the file owner-only; services may run as others.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&weights_path, std::fs::Permissions::from_mode(0o644))?;
    }
    let weights = std::fs::read(&weights_path)?;
    File::open(&weights_path)?.sync_all()?;
    let mut manifest = Manifest {
        format_version: FORMAT_VERSION,
        version: String::new(),
        parent: new.parent,
        created_unix_ms,
        labels: Labels::ours(),
        dims: new.dims,
        trained_tokens: new.trained_tokens,
        emotion_source: new.emotion_source,
        training: new.training,
        metrics: new.metrics,
        weights_sha256: hex::encode(Sha256::digest(&weights)),
    };
    // Another writer may take the same number between our scan and rename: retry.
    for _ in 0..16 {
        manifest.version = format!("v{:04}", highest_number(models_dir)? + 1);
        write_synced(
            &tmp.join(MANIFEST_FILE),
            &serde_json::to_vec_pretty(&manifest)?,
        )?;
        File::open(tmp)?.sync_all()?;
        let dir = models_dir.join(&manifest.version);
        if dir.exists() {
            continue;
        }
        match std::fs::rename(tmp, &dir) {
            Ok(()) => {
                File::open(models_dir)?.sync_all()?;
                return Ok((dir, manifest));
            }
            Err(_) if dir.exists() => continue,
            Err(e) => {
                return Err(e).with_context(|| format!("cannot publish {}", dir.display()));
            }
        }
    }
    bail!(
        "could not publish a new version in {}",
        models_dir.display()
    )
}

fn write_synced(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let mut file =
        File::create(path).with_context(|| format!("cannot write {}", path.display()))?;
    file.write_all(bytes)?;
    file.sync_all()?;
    Ok(())
}

fn highest_number(models_dir: &Path) -> anyhow::Result<u32> {
    let mut highest = 0;
    for entry in std::fs::read_dir(models_dir)? {
        let name = entry?.file_name();
        if let Some(n) = name
            .to_str()
            .and_then(|n| n.strip_prefix('v')?.parse().ok())
        {
            highest = highest.max(n);
        }
    }
    Ok(highest)
}

/// A version's manifest and weights, checked: manifest present and readable, format
/// and labels ours, weights present and matching their checksum.
pub fn read_version(dir: &Path) -> anyhow::Result<(Manifest, Vec<u8>)> {
    let manifest = read_manifest(dir)?;
    let weights_path = dir.join(WEIGHTS_FILE);
    let weights = std::fs::read(&weights_path).with_context(|| {
        format!(
            "model version {} has no readable {WEIGHTS_FILE}",
            dir.display()
        )
    })?;
    let digest = hex::encode(Sha256::digest(&weights));
    ensure!(
        digest == manifest.weights_sha256,
        "model version {}: checksum mismatch ({WEIGHTS_FILE} is {digest}, the manifest says {}): \
         the weights are corrupt or half-written",
        dir.display(),
        manifest.weights_sha256
    );
    Ok((manifest, weights))
}

fn read_manifest(dir: &Path) -> anyhow::Result<Manifest> {
    let path = dir.join(MANIFEST_FILE);
    let bytes = std::fs::read(&path).with_context(|| {
        format!(
            "model version {} has no readable {MANIFEST_FILE}: incomplete or not a model version",
            dir.display()
        )
    })?;
    let manifest: Manifest = serde_json::from_slice(&bytes)
        .with_context(|| format!("corrupt manifest {}", path.display()))?;
    ensure!(
        manifest.format_version == FORMAT_VERSION,
        "model version {} has format {}, this build reads format {FORMAT_VERSION}",
        dir.display(),
        manifest.format_version
    );
    ensure!(
        manifest.labels == Labels::ours(),
        "model version {} was trained for labels {:?}, this build uses {:?}",
        dir.display(),
        manifest.labels,
        Labels::ours()
    );
    Ok(manifest)
}

/// The newest version under `models_dir` (by creation time, then name) that loads;
/// broken versions are skipped with a warning.
pub fn latest_version(models_dir: &Path) -> anyhow::Result<PathBuf> {
    let none = || {
        format!(
            "no trained model in {}: run `empathy train`",
            models_dir.display()
        )
    };
    let entries = match std::fs::read_dir(models_dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(none()),
        Err(e) => return Err(e).with_context(|| format!("cannot list {}", models_dir.display())),
    };
    let mut candidates = Vec::new();
    for entry in entries {
        let entry = entry?;
        let hidden = entry.file_name().to_string_lossy().starts_with('.');
        if hidden || !entry.file_type()?.is_dir() {
            continue;
        }
        let dir = entry.path();
        match read_manifest(&dir) {
            Ok(m) => candidates.push((m.created_unix_ms, entry.file_name(), dir)),
            Err(e) => tracing::warn!("skipping model version: {e:#}"),
        }
    }
    candidates.sort();
    while let Some((_, _, dir)) = candidates.pop() {
        match crate::FusionModel::load(&dir) {
            Ok(_) => return Ok(dir),
            Err(e) => tracing::warn!("skipping model version: {e:#}"),
        }
    }
    bail!(none())
}
