//! How the engine scores a situation for its utterance, in [0, 1]: the generator's own
//! pointwise mutual information (no training needed: every install has it; the
//! default), the trained critic, or a constant 0.5.

use std::sync::Arc;

use anyhow::{Context, Result};

use crate::{
    critic::Scorer,
    llama::Model,
    pmi::{Direction, pmi_after},
    prefix::CachedPrefix,
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

/// What a judge may reuse for one utterance: the sentence embedding the trained critic
/// needs, and the prefilled contexts PMI compares (`pmi::situation_context` of the
/// utterance, `pmi::NEUTRAL_CONTEXT`).
pub struct UtteranceCache<'a> {
    pub embedding: Option<&'a [f32]>,
    pub with: &'a CachedPrefix,
    pub without: &'a CachedPrefix,
}

/// The score of `situation` for `utterance`.
pub fn judge(
    judge: &Judge,
    model: &Model,
    tokenizer: &GgufTokenizer,
    utterance: &str,
    cache: UtteranceCache,
    situation: &str,
) -> Result<f32> {
    match judge {
        Judge::None => Ok(0.5),
        Judge::Trained(scorer) => {
            let u = cache.embedding.context("the utterance was not embedded")?;
            scorer.score(u, situation)
        }
        Judge::Pmi => {
            let nats = pmi_after(
                model,
                tokenizer,
                [cache.with, cache.without],
                utterance,
                situation,
                Direction::SituationGivenUtterance,
            )?;
            Ok(1.0 / (1.0 + (-PMI_SCALE * nats).exp()))
        }
    }
}
