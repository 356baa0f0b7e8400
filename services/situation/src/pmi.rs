//! A critic that needs no training: pointwise mutual information under the generator
//! itself. A situation that explains an utterance makes the generator find the
//! utterance more likely than after a neutral context; a situation written for
//! another utterance does not. Per token, in nats:
//!
//!   utterance | situation:  [log p(u | s) - log p(u | neutral)] / |u|
//!   situation | utterance:  [log p(s | u) - log p(s | neutral)] / |s|

use anyhow::Result;

use crate::{llama::Model, tokenizer::GgufTokenizer};

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
    let (with, without, target) = match direction {
        Direction::UtteranceGivenSituation => (
            format!("{situation} They said: \""),
            "Something happened. They said: \"".to_string(),
            format!("{utterance}\""),
        ),
        Direction::SituationGivenUtterance => (
            format!("Someone said: \"{utterance}\" What had happened: "),
            "Someone said something. What had happened: ".to_string(),
            situation.to_string(),
        ),
    };
    let target = tok.encode(&target)?;
    let with = model.log_likelihood(&tok.encode(&with)?, &target)?;
    let without = model.log_likelihood(&tok.encode(&without)?, &target)?;
    Ok((with - without) / target.len().max(1) as f32)
}
