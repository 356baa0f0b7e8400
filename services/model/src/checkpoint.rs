//! A model version is a directory: `model.safetensors` plus `manifest.json`, which
//! records the labels, dims, training provenance, test metrics, the sentiment
//! calibration and the weights' sha256; a version trained with an expanded lexicon
//! also holds its copy, `lexicon_expansion.tsv`, whose version and sha256 the manifest
//! records. Versions are written into a hidden temp directory beside the others,
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

use crate::lexicon::expansion::{self, Expansion, ExpansionRef};
use crate::network::Dims;
use crate::typicality::{self, Typicality, TypicalityRef};

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
    /// The text encoder's directory relative to the assets where it is not the base
    /// MiniLM (a tuned one, `text/tuned/<version>`, or `text/all-mpnet-base-v2`),
    /// which the text plugin must load to serve this version; None: the base encoder.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encoder_dir: Option<String>,
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

/// Temperature scaling of the sentiment softmax (Guo et al. 2017): serving divides the
/// sentiment logits by `temperature` before the softmax, so that a score of 0.8 is
/// right about 80% of the time on held-out data. It never changes the top label.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    /// > 0; above 1 softens over-confident scores, below 1 sharpens timid ones.
    pub temperature: f64,
    /// What it was fitted on, e.g. "validation split (3494 tweets)".
    pub fitted_on: String,
    /// Mean negative log-likelihood of the true label there, before (T = 1) and after.
    pub nll_uncalibrated: f64,
    pub nll: f64,
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
    /// The expanded lexicon the lexicon features were computed with; None (also for
    /// manifests written before the field) means the plain lexicon.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lexicon_expansion: Option<ExpansionRef>,
    /// The sentiment temperature; None (also for manifests written before the field)
    /// means uncalibrated, a temperature of 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calibration: Option<Calibration>,
    /// How unlike its training texts a text is (`typicality`); None (also for
    /// manifests written before the field): not known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub typicality: Option<TypicalityRef>,
    /// A fine-tuned version that learnt every correction both as the model alone
    /// answers it and as the meaning reader moves that answer, so fusion's reader
    /// reads for it without overruling them. False (also for manifests written before
    /// the field) for a version fine-tuned without the reader's readings, which the
    /// reader leaves alone; base versions are read either way.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub corrections_hold_with_reader: bool,
    /// Which meaning reader read them (its flag name): only that reader reads for the
    /// version, since another's shifts differ. None where they were not read, and in
    /// manifests written before the field, whose corrections the default reader read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub corrections_read_by: Option<String>,
    /// What fusion multiplies the meaning reader's sentiment shift by for this version:
    /// the temperature its corrections were learnt with the shift at, over its own
    /// (refitted after training), so a read request is served exactly as they were
    /// learnt. None (base versions, and manifests written before the field): 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reader_shift_scale: Option<f64>,
}

impl Manifest {
    /// What serving divides the sentiment logits by: the calibration's, else 1.
    pub fn temperature(&self) -> f64 {
        self.calibration.as_ref().map_or(1.0, |c| c.temperature)
    }

    /// See `reader_shift_scale`.
    pub fn shift_scale(&self) -> f64 {
        self.reader_shift_scale.unwrap_or(1.0)
    }
}

/// What a trainer supplies; `save_version` adds the name, time and checksum.
pub struct NewVersion {
    pub parent: Option<String>,
    pub dims: Dims,
    pub trained_tokens: Vec<String>,
    pub emotion_source: String,
    pub training: TrainingInfo,
    pub metrics: BTreeMap<String, f64>,
    /// None: uncalibrated (temperature 1).
    pub calibration: Option<Calibration>,
    /// The tenant whose line it joins (its id is then `tenant/vNNNN`, see
    /// `registry`); None: the base line.
    pub tenant: Option<String>,
    /// How unlike the training texts a text is; None: not measured.
    pub typicality: Option<Typicality>,
    /// See `Manifest::corrections_hold_with_reader`.
    pub corrections_hold_with_reader: bool,
    /// See `Manifest::corrections_read_by`.
    pub corrections_read_by: Option<String>,
    /// See `Manifest::reader_shift_scale`.
    pub reader_shift_scale: Option<f64>,
}

/// Writes a new version `vNNNN` (one above the highest present) under `models_dir`.
pub fn save_version(
    models_dir: &Path,
    varmap: &VarMap,
    new: NewVersion,
) -> anyhow::Result<(PathBuf, Manifest)> {
    save_version_with_expansion(models_dir, varmap, new, None)
}

/// `save_version` for weights trained on lexicon features computed with
/// `expansion`: the version records it and holds a copy of its lexicon.
pub fn save_version_with_expansion(
    models_dir: &Path,
    varmap: &VarMap,
    new: NewVersion,
    expansion: Option<&Expansion>,
) -> anyhow::Result<(PathBuf, Manifest)> {
    if let Some(c) = &new.calibration {
        check_temperature(c.temperature)?;
    }
    std::fs::create_dir_all(models_dir)
        .with_context(|| format!("cannot create {}", models_dir.display()))?;
    let created_unix_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let tmp = models_dir.join(format!(".tmp-{}-{created_unix_ms}", std::process::id()));
    std::fs::create_dir(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    let result = write_and_publish(models_dir, &tmp, varmap, new, expansion, created_unix_ms);
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
    expansion: Option<&Expansion>,
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
    readable_by_all(&weights_path)?;
    let weights = std::fs::read(&weights_path)?;
    File::open(&weights_path)?.sync_all()?;
    if let Some(x) = expansion {
        write_synced(&expansion::copy_path(tmp), x.tsv())?;
    }
    let typicality = match &new.typicality {
        Some(t) => {
            let bytes = t.write(tmp)?;
            readable_by_all(&tmp.join(typicality::FILE))?;
            Some(TypicalityRef {
                sha256: hex::encode(Sha256::digest(bytes)),
                threshold: t.threshold,
                quantile: typicality::QUANTILE,
            })
        }
        None => None,
    };
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
        lexicon_expansion: expansion.map(|x| x.reference().clone()),
        calibration: new.calibration,
        typicality,
        corrections_hold_with_reader: new.corrections_hold_with_reader,
        corrections_read_by: new.corrections_read_by,
        reader_shift_scale: new.reader_shift_scale,
    };
    let tenant = new.tenant;
    // Another writer may take the same number between our scan and rename: retry.
    for _ in 0..16 {
        let name = format!("v{:04}", highest_number(models_dir)? + 1);
        manifest.version = crate::version_id::version_id(tenant.as_deref(), &name);
        write_synced(
            &tmp.join(MANIFEST_FILE),
            &serde_json::to_vec_pretty(&manifest)?,
        )?;
        File::open(tmp)?.sync_all()?;
        let dir = models_dir.join(&name);
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

/// The safetensors writer creates files owner-only; services may run as others.
fn readable_by_all(path: &Path) -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644))
            .with_context(|| format!("cannot make {} readable", path.display()))?;
    }
    Ok(())
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
/// and labels ours, weights present and matching their checksum, and the copy of
/// the expanded lexicon it names (if any) matching its checksum.
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
    if let Some(reference) = &manifest.lexicon_expansion {
        expansion::read_checked(dir, reference)?;
    }
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
    check_temperature(manifest.temperature())
        .with_context(|| format!("model version {}", dir.display()))?;
    Ok(manifest)
}

/// A temperature serving can divide by: finite and positive.
fn check_temperature(t: f64) -> anyhow::Result<()> {
    ensure!(
        t.is_finite() && t > 0.0,
        "the sentiment temperature must be a positive number, not {t}"
    );
    Ok(())
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
        let versioned = crate::version_id::is_version_name(&entry.file_name().to_string_lossy());
        if !versioned || !entry.file_type()?.is_dir() {
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

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;
    use crate::FusionModel;
    use crate::lexicon::expansion::{DEFAULT_MIN_CONFIDENCE, DEFAULT_WEIGHT, VERSION_FILE};
    use crate::network::init_network;
    use crate::test_support::{TempDir, assets_dir};

    fn dims() -> Dims {
        Dims {
            text: 8,
            lexicon: crate::LEXICON_FEATURES,
            speech: 3,
            image: 2,
            situation: 8,
            max_situations: 2,
            // A version from before conversations: no context tokens.
            max_context: 0,
            d_model: 16,
        }
    }

    #[test]
    fn dims_recorded_before_conversations_read_as_no_context() -> anyhow::Result<()> {
        let mut json = serde_json::to_value(Dims {
            max_context: 3,
            ..dims()
        })?;
        if let Some(fields) = json.as_object_mut() {
            fields.remove("max_context");
        }
        let read: Dims = serde_json::from_value(json)?;
        assert_eq!(read, dims());
        Ok(())
    }

    fn new_version() -> NewVersion {
        NewVersion {
            tenant: None,
            typicality: None,
            corrections_hold_with_reader: false,
            corrections_read_by: None,
            reader_shift_scale: None,
            parent: None,
            dims: dims(),
            trained_tokens: vec!["text".into(), "lexicon".into()],
            emotion_source: "lexicon".into(),
            training: TrainingInfo::default(),
            metrics: BTreeMap::new(),
            calibration: None,
        }
    }

    fn expansion() -> anyhow::Result<Expansion> {
        let tsv = "word\tcount\temotion\temotion_confidence\tpolarity\tpolarity_confidence\n\
                   zorblaxing\t7\tsadness\t0.8000\tnegative\t0.9000\n";
        Expansion::parse(
            "v0007",
            tsv.as_bytes().to_vec(),
            DEFAULT_MIN_CONFIDENCE,
            DEFAULT_WEIGHT,
        )
    }

    fn save(dir: &Path, expansion: Option<&Expansion>) -> anyhow::Result<(PathBuf, Manifest)> {
        let (varmap, _) = init_network(dims(), &mut StdRng::seed_from_u64(1))?;
        save_version_with_expansion(dir, &varmap, new_version(), expansion)
    }

    #[test]
    fn a_version_keeps_its_typicality_readable_by_all() -> anyhow::Result<()> {
        let tmp = TempDir::new("ckpt-typicality");
        let (varmap, _) = init_network(dims(), &mut StdRng::seed_from_u64(1))?;
        let n = dims().text;
        let identity = (0..n * n)
            .map(|k| if k % (n + 1) == 0 { 1.0 } else { 0.0 })
            .collect();
        let t = Typicality::new(vec![0.0; n], identity, 2.0)?;
        let new = NewVersion {
            typicality: Some(t.clone()),
            ..new_version()
        };
        let (dir, manifest) = save_version(tmp.path(), &varmap, new)?;
        assert_eq!(manifest.typicality.map(|r| r.threshold), Some(2.0));
        #[cfg(unix)]
        {
            // A trainer writes it; fusion, perhaps another user, reads it.
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.join(typicality::FILE))?
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o644);
        }
        assert_eq!(FusionModel::load(&dir)?.typicality(), Some(&t));
        Ok(())
    }

    #[test]
    fn a_version_keeps_and_reloads_its_expansion() -> anyhow::Result<()> {
        let tmp = TempDir::new("ckpt-expansion");
        let x = expansion()?;
        let (dir, manifest) = save(tmp.path(), Some(&x))?;
        assert_eq!(manifest.lexicon_expansion.as_ref(), Some(x.reference()));
        assert_eq!(std::fs::read(dir.join(VERSION_FILE))?, x.tsv());
        let model = FusionModel::load(&dir)?;
        let loaded = model.lexicon_expansion().expect("the version's expansion");
        assert_eq!(loaded.reference(), x.reference());
        assert_eq!(loaded.emotion("zorblaxing"), x.emotion("zorblaxing"));
        assert!(loaded.emotion("zorblaxing").is_some());
        // And without one: no field written, no copy, nothing loaded.
        let (plain, manifest) = save(tmp.path(), None)?;
        assert_eq!(manifest.lexicon_expansion, None);
        assert!(!plain.join(VERSION_FILE).exists());
        let json = std::fs::read_to_string(plain.join(MANIFEST_FILE))?;
        assert!(!json.contains("lexicon_expansion"), "{json}");
        assert!(FusionModel::load(&plain)?.lexicon_expansion().is_none());
        Ok(())
    }

    #[test]
    fn a_manifest_without_the_field_loads_as_none() -> anyhow::Result<()> {
        let tmp = TempDir::new("ckpt-old-manifest");
        let (dir, _) = save(tmp.path(), Some(&expansion()?))?;
        // Strip the field, as a manifest written before it existed.
        let path = dir.join(MANIFEST_FILE);
        let mut json: serde_json::Value = serde_json::from_slice(&std::fs::read(&path)?)?;
        json.as_object_mut()
            .expect("an object")
            .remove("lexicon_expansion")
            .expect("the field was written");
        std::fs::write(&path, serde_json::to_vec_pretty(&json)?)?;
        let model = FusionModel::load(&dir)?;
        assert!(model.manifest().lexicon_expansion.is_none());
        assert!(model.lexicon_expansion().is_none());
        // The shipped test model predates the field.
        let shipped = assets_dir().join("models/v0001");
        if shipped.join(MANIFEST_FILE).exists() {
            let (m, _) = read_version(&shipped)?;
            assert_eq!(m.lexicon_expansion, None);
            // Nor calibration: served uncalibrated.
            if m.calibration.is_none() {
                assert_eq!(m.temperature(), 1.0);
            }
        }
        Ok(())
    }

    #[test]
    fn a_tampered_or_missing_expansion_copy_is_refused() -> anyhow::Result<()> {
        let tmp = TempDir::new("ckpt-tampered");
        let (dir, _) = save(tmp.path(), Some(&expansion()?))?;
        let copy = dir.join(VERSION_FILE);
        let mut bytes = std::fs::read(&copy)?;
        let last = bytes.len() - 2;
        bytes[last] = b'1'; // 0.9000 -> 0.9001
        std::fs::write(&copy, &bytes)?;
        for result in [
            FusionModel::load(&dir).map(|_| ()),
            read_version(&dir).map(|_| ()),
        ] {
            let Err(e) = result else {
                panic!("a tampered expansion copy loaded");
            };
            assert!(format!("{e:#}").contains("checksum mismatch"), "{e:#}");
        }
        // The registry passes over it.
        assert!(latest_version(tmp.path()).is_err());
        std::fs::remove_file(&copy)?;
        let Err(e) = FusionModel::load(&dir) else {
            panic!("a version without its expansion copy loaded");
        };
        assert!(format!("{e:#}").contains(VERSION_FILE), "{e:#}");
        Ok(())
    }

    /// What a writer killed mid-publish leaves (its temp directory, weights half
    /// written) is never served; nor is a numbered version whose weights are cut short.
    #[test]
    fn a_publish_cut_short_is_never_served() -> anyhow::Result<()> {
        let tmp = TempDir::new("ckpt-crash");
        let (good, _) = save(tmp.path(), None)?;
        let left = tmp.path().join(".tmp-4242-1");
        std::fs::create_dir_all(&left)?;
        std::fs::copy(good.join(MANIFEST_FILE), left.join(MANIFEST_FILE))?;
        std::fs::write(left.join(WEIGHTS_FILE), b"half")?;
        assert_eq!(latest_version(tmp.path())?, good);
        // A torn copy under a version name (say, restored by hand) fails its checksum.
        let torn = tmp.path().join("v9999");
        std::fs::create_dir_all(&torn)?;
        std::fs::copy(good.join(MANIFEST_FILE), torn.join(MANIFEST_FILE))?;
        let weights = std::fs::read(good.join(WEIGHTS_FILE))?;
        std::fs::write(torn.join(WEIGHTS_FILE), &weights[..weights.len() / 2])?;
        assert!(FusionModel::load(&torn).is_err());
        assert_eq!(latest_version(tmp.path())?, good);
        Ok(())
    }
}
