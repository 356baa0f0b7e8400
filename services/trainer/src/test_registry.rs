//! Tests' scratch space: a temp directory with a feedback database and a registry of
//! tiny real versions (fresh networks), so jobs, rollbacks and publishing run without
//! the downloaded assets.

use std::path::PathBuf;
use std::sync::Arc;

use empathy_model::checkpoint::{Calibration, NewVersion, TrainingInfo, save_version};
use empathy_model::network::{Dims, init_network};
use empathy_model::registry;
use empathy_training::finetune::{FinetuneConfig, Finetuned};
use rand::SeedableRng;
use rand::rngs::StdRng;

use crate::jobs::{Settings, Trainer};
use crate::store::FeedbackStore;

pub fn dims() -> Dims {
    Dims {
        text: 8,
        lexicon: empathy_model::LEXICON_FEATURES,
        speech: 3,
        image: 2,
        situation: 8,
        max_situations: 2,
        max_context: 0,
        d_model: 16,
    }
}

/// A fresh directory under the system temp dir, removed on drop.
pub struct Scratch(PathBuf);

impl Scratch {
    pub fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("empathy-{name}-{}", uuid::Uuid::new_v4()));
        if let Err(e) = std::fs::create_dir_all(&dir) {
            panic!("cannot create {}: {e}", dir.display());
        }
        Scratch(dir)
    }

    pub fn database(&self) -> PathBuf {
        self.0.join("feedback.sqlite")
    }

    pub fn models(&self) -> PathBuf {
        self.0.join("models")
    }

    /// Versions v0001..v000N, each the next one's parent; the last one serves.
    pub fn registry(&self, versions: usize) -> anyhow::Result<()> {
        let models = self.models();
        let mut parent = None;
        for seed in 0..versions {
            let (varmap, _) = init_network(dims(), &mut StdRng::seed_from_u64(seed as u64))?;
            let (_, manifest) = save_version(
                &models,
                &varmap,
                NewVersion {
                    tenant: None,
                    typicality: None,
                    corrections_hold_with_reader: false,
                    corrections_read_by: None,
                    reader_shift_scale: None,
                    parent: parent.clone(),
                    dims: dims(),
                    trained_tokens: vec!["text".into(), "lexicon".into()],
                    emotion_source: "lexicon".into(),
                    training: TrainingInfo::default(),
                    metrics: Default::default(),
                    calibration: None,
                },
            )?;
            parent = Some(manifest.version);
        }
        if let Some(last) = parent {
            registry::set_serving(&models, &last)?;
        }
        Ok(())
    }

    /// A trainer on this directory's database and registry.
    pub fn trainer(&self) -> anyhow::Result<Arc<Trainer>> {
        let store = FeedbackStore::open(&self.database(), 16)?;
        Ok(Trainer::new(
            store,
            Settings {
                assets: self.0.join("assets"),
                models: self.models(),
                finetune: FinetuneConfig::default(),
                tenant_check_tolerance: Default::default(),
                read_corrections: None,
            },
        ))
    }

    /// An accepted fine-tune of `parent` (fresh weights: what it learnt is not the
    /// point, only where it is published).
    pub fn tuned(&self, parent: &str) -> anyhow::Result<Finetuned> {
        let (serving, _) = empathy_model::checkpoint::read_version(&self.models().join(parent))?;
        let (varmap, _) = init_network(dims(), &mut StdRng::seed_from_u64(99))?;
        Ok(Finetuned {
            varmap,
            serving,
            training: TrainingInfo::default(),
            metrics: Default::default(),
            accepted: true,
            reason: "better".into(),
            emotion_source: "lexicon".into(),
            expansion: None,
            calibration: Calibration {
                temperature: 1.0,
                fitted_on: "nothing".into(),
                nll_uncalibrated: 1.0,
                nll: 1.0,
            },
            read_by: None,
        })
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
