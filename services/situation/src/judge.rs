//! How the engine scores a situation for its utterance, in [0, 1]: the generator's own
//! pointwise mutual information (no training needed: every install has it; the
//! default), the trained critic, or a constant 0.5.

use std::sync::Arc;

use anyhow::{Context, Result};

use crate::{
    critic::Scorer,
    llama::Model,
    pmi::{Direction, pmi},
    tokenizer::GgufTokenizer,
};

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

/// The score of `situation` for `utterance`; `embedding` is the utterance's sentence
/// embedding, which the trained critic needs.
pub fn judge(
    judge: &Judge,
    model: &Model,
    tokenizer: &GgufTokenizer,
    utterance: &str,
    embedding: Option<&[f32]>,
    situation: &str,
) -> Result<f32> {
    match judge {
        Judge::None => Ok(0.5),
        Judge::Trained(scorer) => {
            let u = embedding.context("the utterance was not embedded")?;
            scorer.score(u, situation)
        }
        Judge::Pmi => {
            let nats = pmi(
                model,
                tokenizer,
                utterance,
                situation,
                Direction::SituationGivenUtterance,
            )?;
            Ok(1.0 / (1.0 + (-PMI_SCALE * nats).exp()))
        }
    }
}
