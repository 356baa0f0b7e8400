//! A critic that needs no training: pointwise mutual information under the generator
//! itself. A situation that explains an utterance makes the generator find the
//! utterance more likely than after a neutral context; a situation written for
//! another utterance does not. Per token, in nats:
//!
//!   utterance | situation:  [log p(u | s) - log p(u | neutral)] / |u|
//!   situation | utterance:  [log p(s | u) - log p(s | neutral)] / |s|

use anyhow::Result;

use crate::{llama::Model, prefix::CachedPrefix, tokenizer::GgufTokenizer};

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
    let none = CachedPrefix::none(model);
    pmi_after(model, tok, [&none, &none], utterance, situation, direction)
}

/// As `pmi`, reusing what `prefixes` (with, without) hold of the two contexts (see
/// `situation_context` and `neutral_context`).
pub fn pmi_after(
    model: &Model,
    tok: &GgufTokenizer,
    prefixes: [&CachedPrefix; 2],
    utterance: &str,
    situation: &str,
    direction: Direction,
) -> Result<f32> {
    let (with, without, target) = match direction {
        Direction::UtteranceGivenSituation => (
            format!("{situation} They said: \""),
            "Something happened. They said: \"".to_string(),
            format!("{utterance}\""),
        ),
        Direction::SituationGivenUtterance => (
            situation_context(utterance),
            NEUTRAL_CONTEXT.to_string(),
            situation.to_string(),
        ),
    };
    let target = tok.encode(&target)?;
    let [with_prefix, without_prefix] = prefixes;
    let with = with_prefix.log_likelihood(model, &tok.encode(&with)?, &target)?;
    let without = without_prefix.log_likelihood(model, &tok.encode(&without)?, &target)?;
    Ok((with - without) / target.len().max(1) as f32)
}

/// What precedes a situation scored given its utterance (and read for its emotion:
/// the feeling reader's story starts the same).
pub fn situation_context(utterance: &str) -> String {
    format!("Someone said: \"{utterance}\" What had happened: ")
}

/// What precedes a situation scored without its utterance.
pub const NEUTRAL_CONTEXT: &str = "Someone said something. What had happened: ";
