//! The registry's lines as the trainer shows and moves them: the base line (an admin's)
//! and each tenant's (see `empathy_model::registry`). Listing, what serves, rollback.

use empathy_model::Manifest;
use empathy_model::checkpoint::read_version;
use empathy_model::registry;
use empathy_proto::v1::ModelVersion;
use tonic::Status;

use super::Trainer;
use crate::store::now_ms;

impl Trainer {
    /// The base line's versions and `tenant`'s, the one serving `tenant` marked.
    pub fn list(&self, tenant: &str) -> anyhow::Result<Vec<ModelVersion>> {
        let models = &self.settings.models;
        let serving = registry::serving_for(models, tenant).ok().map(|(_, id)| id);
        let (mut versions, mut broken) = registry::list_versions(models)?;
        let (line, line_broken) = registry::list_versions(&registry::line_dir(models, tenant)?)?;
        versions.extend(line);
        broken.extend(line_broken);
        for (name, why) in broken {
            tracing::warn!("version {name} is not listed: {why}");
        }
        Ok(versions
            .iter()
            .map(|m| {
                let serves = serving.as_deref() == Some(m.version.as_str());
                model_version(m, serves, line_tenant(m))
            })
            .collect())
    }

    /// What serves each line now: the base's serving version (tenant ""), then each
    /// tenant line's (tenants whose line was rolled back to a base version included).
    pub fn serving_lines(&self) -> anyhow::Result<Vec<ModelVersion>> {
        let models = &self.settings.models;
        let base = registry::serving_version(models)?;
        let mut out = vec![model_version(&read_version(&base)?.0, true, "")];
        for tenant in registry::tenants_with_lines(models)? {
            match registry::serving_for(models, &tenant) {
                Ok((dir, _)) => out.push(model_version(&read_version(&dir)?.0, true, &tenant)),
                Err(e) => tracing::warn!(tenant, "no version serves this line: {e:#}"),
            }
        }
        Ok(out)
    }

    /// Points `tenant`'s line at `version` (one of its own, or a base version: the base
    /// as it is, without what its feedback taught) and pauses its automatic training
    /// until `resume`: what was rolled back was likely learnt from bad feedback, which
    /// should be purged first.
    pub fn rollback(&self, tenant: &str, version: &str) -> Result<ModelVersion, Status> {
        let models = &self.settings.models;
        let dir = self.rollback_target(version, Some(tenant))?;
        let _pointer = self.pointer.lock().unwrap_or_else(|e| e.into_inner());
        // Paused first: a rollback whose pause is not stored does not happen.
        let from = registry::serving_for(models, tenant).map_or_else(|_| "none".into(), |s| s.1);
        self.store
            .set_pause(
                tenant,
                &format!(
                    "rolled back from {from} to {version} at unix ms {}; purge the feedback \
                     that taught {from} (PurgeFeedback, `empathy purge --tenant {tenant}`), then \
                     resume automatic training (ResumeTraining, `empathy resume --tenant \
                     {tenant}`)",
                    now_ms()
                ),
            )
            .map_err(|e| {
                Status::unavailable(format!(
                    "cannot pause automatic training ({e:#}); nothing was rolled back, retry"
                ))
            })?;
        registry::set_line_serving(models, tenant, version)
            .map_err(|e| Status::failed_precondition(format!("cannot serve {version}: {e:#}")))?;
        tracing::info!(
            tenant,
            version,
            "rolled back: the line's pointer moved; its automatic training paused"
        );
        self.announce(&dir, tenant)
    }

    /// Points the base line at `version` (an admin's act: what every tenant without a
    /// line of its own serves, and what new lines start from).
    pub fn rollback_base(&self, version: &str) -> Result<ModelVersion, Status> {
        let dir = self.rollback_target(version, None)?;
        let _pointer = self.pointer.lock().unwrap_or_else(|e| e.into_inner());
        registry::set_serving(&self.settings.models, version)
            .map_err(|e| Status::failed_precondition(format!("cannot serve {version}: {e:#}")))?;
        tracing::info!(version, "base line rolled back: its pointer moved");
        self.announce(&dir, "")
    }

    /// The directory of `version`, a base version or one of `tenant`'s line.
    fn rollback_target(
        &self,
        version: &str,
        tenant: Option<&str>,
    ) -> Result<std::path::PathBuf, Status> {
        let listed = match tenant {
            Some(t) => format!("`empathy models --tenant {t}` lists them"),
            None => "`empathy models` lists them".into(),
        };
        let owner = registry::parse_version_id(version)
            .map_err(|e| Status::invalid_argument(format!("{e:#}; {listed}")))?
            .0;
        if owner.is_some() && owner != tenant {
            return Err(Status::not_found(format!(
                "no model version {version} here; {listed}"
            )));
        }
        let dir = registry::version_dir(&self.settings.models, version)
            .map_err(|e| Status::invalid_argument(format!("{e:#}")))?;
        if !dir.is_dir() {
            return Err(Status::not_found(format!(
                "no model version {version} in the registry; {listed}"
            )));
        }
        Ok(dir)
    }

    /// Tells WatchModels subscribers that `dir` now serves `tenant`'s line.
    fn announce(&self, dir: &std::path::Path, tenant: &str) -> Result<ModelVersion, Status> {
        let (manifest, _) = read_version(dir).map_err(|e| Status::internal(format!("{e:#}")))?;
        let announced = model_version(&manifest, true, tenant);
        let _ = self.models_tx.send(announced.clone());
        Ok(announced)
    }
}

/// The tenant whose line a version is in ("" for the base).
fn line_tenant(m: &Manifest) -> &str {
    m.version.split_once('/').map_or("", |(t, _)| t)
}

/// `m` as the API shows it; `tenant` is the line it serves or belongs to.
pub fn model_version(m: &Manifest, serving: bool, tenant: &str) -> ModelVersion {
    ModelVersion {
        version: m.version.clone(),
        parent: m.parent.clone().unwrap_or_default(),
        created_unix_ms: m.created_unix_ms as i64,
        metrics: m
            .metrics
            .iter()
            .map(|(k, v)| (k.clone(), *v as f32))
            .collect(),
        serving,
        tenant: tenant.to_string(),
    }
}
