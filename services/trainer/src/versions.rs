//! Which model version made an analysis decides whether its features can be learnt
//! from. Fine-tuning reuses the stored text embedding, so a correction must come from a
//! version of this registry whose text encoder is the serving version's; the lexicon
//! features are computed again from the stored text by the serving version's lexicon.
//! Versions are immutable, so their manifests are read once and kept.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use empathy_model::checkpoint::{Manifest, read_version};
use empathy_model::registry;
use empathy_proto::v1::FeedbackRecord;
use tonic::Status;

pub struct Versions {
    models: PathBuf,
    known: Mutex<HashMap<String, Arc<Manifest>>>,
}

impl Versions {
    pub fn new(models: PathBuf) -> Versions {
        Versions {
            models,
            known: Mutex::new(HashMap::new()),
        }
    }

    /// The manifest of version `name` of this registry, a base version (`v0002`) or
    /// one of a tenant's line (`acme/v0002`), blocking on the first read.
    pub fn get(&self, name: &str) -> anyhow::Result<Arc<Manifest>> {
        let dir = registry::version_dir(&self.models, name)?;
        if let Some(m) = self.lock().get(name) {
            return Ok(Arc::clone(m));
        }
        let (manifest, _) = read_version(&dir)?;
        let manifest = Arc::new(manifest);
        self.lock().insert(name.to_string(), Arc::clone(&manifest));
        Ok(manifest)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Manifest>>> {
        self.known.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Refuses a record whose analysis was not made by a version of this registry that
    /// could have served its tenant (the base, or the tenant's own line), or whose
    /// features do not have that version's widths.
    pub fn check(&self, record: &FeedbackRecord) -> Result<(), Status> {
        let name = record.model_version.trim();
        if name.is_empty() {
            return Err(Status::invalid_argument(
                "model_version is empty: say which model version made the analysis",
            ));
        }
        if let Some((owner, _)) = name.split_once('/')
            && owner != record.tenant
        {
            return Err(Status::invalid_argument(format!(
                "model version {name:?} is another tenant's; tenant {:?} was answered by the \
                 base line or its own",
                record.tenant
            )));
        }
        let manifest = self.get(name).map_err(|e| {
            Status::failed_precondition(format!(
                "the analysis was made by model version {name:?}, which this trainer's \
                 registry ({}) cannot read ({e:#}), so its features cannot be checked: send \
                 the correction through a fusion server that serves from this registry, \
                 resending the original inputs",
                self.models.display()
            ))
        })?;
        let widths = [
            ("text", manifest.dims.text),
            ("lexicon", manifest.dims.lexicon),
        ];
        for (feature, want) in widths {
            if let Some(v) = record.features.get(feature)
                && v.values.len() != want
            {
                return Err(Status::invalid_argument(format!(
                    "feature {feature:?} has {} values, but model version {name} makes {want}",
                    v.values.len()
                )));
            }
        }
        Ok(())
    }

    /// Whether a record from version `name` can train a version whose manifest is
    /// `serving`: the same text encoder and width. Err says why not.
    pub fn compatible(&self, name: &str, serving: &Manifest) -> Result<(), String> {
        if name == serving.version {
            return Ok(());
        }
        let made_by = self
            .get(name)
            .map_err(|e| format!("its version {name} does not read ({e:#})"))?;
        if made_by.training.encoder != serving.training.encoder
            || made_by.dims.text != serving.dims.text
        {
            return Err(format!(
                "{name} used the text encoder {:?}, {} uses {:?}",
                made_by.training.encoder, serving.version, serving.training.encoder
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feedback_on_another_tenants_version_is_refused() {
        let versions = Versions::new(PathBuf::from("/nonexistent"));
        let record = FeedbackRecord {
            model_version: "acme/v0001".into(),
            tenant: "globex".into(),
            ..FeedbackRecord::default()
        };
        let err = versions.check(&record).err();
        assert!(
            err.as_ref()
                .is_some_and(|e| e.code() == tonic::Code::InvalidArgument
                    && e.message().contains("another tenant's")),
            "{err:?}"
        );
    }
}
