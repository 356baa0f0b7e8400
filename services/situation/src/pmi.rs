//! A critic that needs no training: pointwise mutual information under the generator
//! itself. A situation that explains an utterance makes the generator find the
//! utterance more likely than after a neutral context; a situation written for
//! another utterance does not. Per token, in nats:
//!
//!   utterance | situation:  [log p(u | s) - log p(u | neutral)] / |u|
//!   situation | utterance:  [log p(s | u) - log p(s | neutral)] / |s|

use anyhow::{Context, Result, ensure};
use candle_core::Tensor;

use empathy_bpe::GgufTokenizer;

use crate::{
    llama::{Model, SeqCache},
    prefix::CachedPrefix,
};

/// Which text is scored given the other.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    UtteranceGivenSituation,
    SituationGivenUtterance,
}

impl Direction {
    pub const ALL: [Direction; 2] = [
        Direction::UtteranceGivenSituation,
        Direction::SituationGivenUtterance,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Direction::UtteranceGivenSituation => "PMI, utterance given situation",
            Direction::SituationGivenUtterance => "PMI, situation given utterance",
        }
    }
}

/// The PMI of `utterance` and `situation` under `model`, per scored token.
pub fn pmi(
    model: &Model,
    tok: &GgufTokenizer,
    utterance: &str,
    situation: &str,
    direction: Direction,
) -> Result<f32> {
    match direction {
        Direction::UtteranceGivenSituation => {
            let target = tok.encode(&format!("{utterance}\""))?;
            let with = tok.encode(&format!("{situation} They said: \""))?;
            let without = tok.encode("Something happened. They said: \"")?;
            let with = model.log_likelihood(&with, &target)?;
            let without = model.log_likelihood(&without, &target)?;
            Ok((with - without) / target.len().max(1) as f32)
        }
        Direction::SituationGivenUtterance => {
            let with = utterance_context(model, tok, utterance)?;
            let without = neutral_context(model, tok)?;
            situation_pass(model, tok, &with, Some(&without), situation, &[])?
                .pmi
                .context("no PMI without its neutral context")
        }
    }
}

/// "Someone said: "<utterance>" What had happened:" prefilled: a situation's PMI and
/// its emotion reading both continue it.
pub fn utterance_context(
    model: &Model,
    tok: &GgufTokenizer,
    utterance: &str,
) -> Result<CachedPrefix> {
    let ids = tok.encode(&format!("Someone said: \"{utterance}\" What had happened:"))?;
    CachedPrefix::new(model, ids)
}

/// The context a situation's likelihood is compared against, prefilled.
pub fn neutral_context(model: &Model, tok: &GgufTokenizer) -> Result<CachedPrefix> {
    CachedPrefix::new(
        model,
        tok.encode("Someone said something. What had happened:")?,
    )
}

/// What one forward pass over a situation after its utterance's context gives.
pub struct SituationPass {
    /// PMI of the situation given the utterance, nats per token (if asked for).
    pub pmi: Option<f32>,
    /// The cache of context, situation and tail, and the id of the last token run.
    pub story: SeqCache,
    pub last: u32,
    /// The logits after the tail (or the situation), shape (vocab,).
    pub next: Tensor,
}

/// Runs `situation` and then `tail` after `context` (`utterance_context`) in one pass:
/// the situation's likelihood there and the logits after the tail (the feeling reader
/// continues "... So they felt"); with `neutral` (`neutral_context`), its PMI too.
/// The situation is tokenised as it would follow the context in running text, after a
/// space.
pub fn situation_pass(
    model: &Model,
    tok: &GgufTokenizer,
    context: &CachedPrefix,
    neutral: Option<&CachedPrefix>,
    situation: &str,
    tail: &[u32],
) -> Result<SituationPass> {
    let target = tok.encode(&format!(" {}", situation.trim()))?;
    ensure!(!target.is_empty(), "an empty situation has no likelihood");
    let (mut story, rest) = context.fork(model, target.len() + tail.len())?;
    let (with, next) = model.likelihood_then(&mut story, rest, &target, tail)?;
    let pmi = match neutral {
        Some(n) => {
            let without = n.log_likelihood(model, &target)?;
            Some((with - without) / target.len() as f32)
        }
        None => None,
    };
    let last = *tail.last().or(target.last()).context("nothing was run")?;
    Ok(SituationPass {
        pmi,
        story,
        last,
        next,
    })
}
