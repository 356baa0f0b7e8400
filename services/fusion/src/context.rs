//! The turns before the analysed one, as the serving version reads them: the most
//! recent `max_context` turns, encoded by the text encoder in one request, each with
//! who said it. Attributions name a turn by its index in the request (oldest first).

use std::time::{Duration, Instant};

use empathy_model::{CONTEXT, Manifest, PreviousTurn, Speaker};
use empathy_proto::v1::{Attribution, EncodeRequest, EncodeResponse, Turn};

use crate::encoders::{EncodeError, EncoderPool};

/// The encoded turns, or why there are none.
pub(crate) type ReadContext = Result<Vec<PreviousTurn>, String>;

/// How many of `turns` previous turns the version reads: the most recent, up to its
/// `max_context`; none for a version trained without conversations.
pub(crate) fn turns_read(manifest: &Manifest, turns: usize) -> usize {
    if manifest.trained_tokens.iter().any(|t| t == CONTEXT) {
        turns.min(manifest.dims.max_context)
    } else {
        0
    }
}

/// The note for a request with turns that the serving version does not read.
pub(crate) fn unread_note(manifest: &Manifest, turns: usize) -> Option<String> {
    (turns > 0 && turns_read(manifest, turns) == 0).then(|| {
        format!(
            "context: model version {} was trained without conversations and does not read \
             previous turns; this answer is from the last turn alone",
            manifest.version
        )
    })
}

fn speaker(turn: &Turn) -> Speaker {
    match turn.speaker.as_str() {
        "" | "user" => Speaker::User,
        _ => Speaker::Other,
    }
}

/// Encodes `turns` (the ones read) within `deadline`; `check` refuses embeddings from
/// another text encoder than the version was trained on.
pub(crate) async fn encode(
    pool: &EncoderPool,
    turns: &[Turn],
    deadline: Duration,
    check: impl FnOnce(&EncodeResponse) -> Result<(), String>,
) -> (ReadContext, f32) {
    let t = Instant::now();
    let texts = turns.iter().map(|turn| turn.text.trim().to_string());
    let result = pool
        .encode(
            EncodeRequest::texts(empathy_proto::modality::TEXT, texts),
            deadline,
        )
        .await
        .map_err(|e| match e {
            EncodeError::BadInput(m) | EncodeError::Missing(m) | EncodeError::Busy(m) => m,
        })
        .and_then(|r| check(&r).map(|()| r))
        .and_then(|r| {
            if r.outputs.len() == turns.len() {
                Ok(r)
            } else {
                Err(format!(
                    "the text encoder returned {} vectors for {} turns",
                    r.outputs.len(),
                    turns.len()
                ))
            }
        })
        .map(|r| {
            r.outputs
                .into_iter()
                .zip(turns)
                .map(|(out, turn)| PreviousTurn {
                    embedding: out.embedding,
                    speaker: speaker(turn),
                })
                .collect()
        })
        .map_err(|m| format!("the previous turns could not be encoded: {m}"));
    (result, t.elapsed().as_secs_f32() * 1000.0)
}

/// Context attributions name the turn by its index among all `turns` of the request
/// (the model numbers the `read` ones it was given) and say who said it.
pub(crate) fn name_turns(attributions: &mut [Attribution], turns: &[Turn], read: usize) {
    let offset = turns.len() - read.min(turns.len());
    for a in attributions.iter_mut().filter(|a| a.kind == CONTEXT) {
        let Some(index) = a.name.parse::<usize>().ok().map(|j| j + offset) else {
            continue;
        };
        a.name = index.to_string();
        a.signal = turns
            .get(index)
            .map(|t| match t.speaker.as_str() {
                "" => "user".to_string(),
                s => s.to_string(),
            })
            .unwrap_or_default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn turn(speaker: &str, text: &str) -> Turn {
        Turn {
            speaker: speaker.into(),
            text: text.into(),
        }
    }

    #[test]
    fn turns_are_named_by_their_index_in_the_request_and_their_speaker() {
        let turns = [
            turn("agent", "Hello"),
            turn("user", "My order is late"),
            turn("agent", "It ships on Monday"),
        ];
        let attribution = |name: &str| Attribution {
            kind: CONTEXT.into(),
            name: name.into(),
            weight: 0.2,
            signal: String::new(),
        };
        // The model read the last two turns and numbered them 0 and 1.
        let mut found = vec![attribution("1"), attribution("0")];
        name_turns(&mut found, &turns, 2);
        let named: Vec<(&str, &str)> = found
            .iter()
            .map(|a| (a.name.as_str(), a.signal.as_str()))
            .collect();
        assert_eq!(named, [("2", "agent"), ("1", "user")]);
    }
}
