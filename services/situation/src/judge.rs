//! How the engine scores a situation for its utterance, in [0, 1]: the generator's own
//! pointwise mutual information (no training needed: every install has it; the
//! default), the trained critic, or a constant 0.5.

use std::sync::Arc;

use anyhow::{Context, Result};

use crate::critic::Scorer;

/// PMI (nats per token) to a score: sigmoid(PMI_SCALE x pmi), so 0 (the situation
/// says nothing about the utterance) is 0.5.
const PMI_SCALE: f32 = 4.0;

pub enum Judge {
    /// Every situation 0.5 (`--critic none`).
    None,
    /// The trained critic: an MLP over sentence embeddings of the pair.
    Trained(Arc<Scorer>),
    /// The generator's PMI of the situation given the utterance (it told own from
    /// other situations best: `empathy-situation compare-critics`).
    Pmi,
}

impl Judge {
    /// Whether `judge` needs the situation's PMI.
    pub fn needs_pmi(&self) -> bool {
        matches!(self, Judge::Pmi)
    }
}

/// The score of `situation` for an utterance: `embedding` is the utterance's sentence
/// embedding (the trained critic needs it), `pmi` the situation's PMI given it (from
/// `pmi::situation_pass`).
pub fn judge(
    judge: &Judge,
    embedding: Option<&[f32]>,
    pmi: Option<f32>,
    situation: &str,
) -> Result<f32> {
    match judge {
        Judge::None => Ok(0.5),
        Judge::Trained(scorer) => {
            let u = embedding.context("the utterance was not embedded")?;
            scorer.score(u, situation)
        }
        Judge::Pmi => {
            let nats = pmi.context("the situation's PMI was not computed")?;
            Ok(1.0 / (1.0 + (-PMI_SCALE * nats).exp()))
        }
    }
}
