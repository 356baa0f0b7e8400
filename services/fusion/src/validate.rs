//! Checks an AnalyzeRequest before any work is done, so a bad request gets one clear
//! INVALID_ARGUMENT naming the field and the limit.

use empathy_common::status::quote;
use empathy_proto::v1::{AnalyzeRequest, MeaningReading};
use tonic::Status;

#[derive(Clone, Debug, clap::Args)]
pub struct Limits {
    /// Longest text (and context turn), in characters.
    #[arg(long, default_value_t = 10_000)]
    pub max_text_chars: usize,
    /// Largest audio clip, in bytes.
    #[arg(long, default_value_t = 25 * 1024 * 1024)]
    pub max_audio_bytes: usize,
    /// Largest `audio_pcm` chunk of a live stream, in bytes (1 MiB is 32 s of audio):
    /// a stream sends audio as it is spoken, in small chunks.
    #[arg(long, default_value_t = 1024 * 1024)]
    pub max_audio_pcm_bytes: usize,
    /// Largest image, in bytes.
    #[arg(long, default_value_t = 10 * 1024 * 1024)]
    pub max_image_bytes: usize,
    /// Most previous turns in `context`.
    #[arg(long, default_value_t = 50)]
    pub max_context_turns: usize,
    /// Most virtual situations one request may ask for.
    #[arg(long, default_value_t = 8)]
    pub max_situations: u32,
    /// Longest deadline a client may ask for, in milliseconds.
    #[arg(long, default_value_t = 60_000)]
    pub max_deadline_ms: u32,
}

/// Longest modality name, in characters.
const MAX_NAME_CHARS: usize = 64;

const SPEAKERS: [&str; 5] = ["", "user", "assistant", "agent", "system"];

pub fn check(
    req: &AnalyzeRequest,
    limits: &Limits,
    known_modalities: &[String],
) -> Result<(), Status> {
    let bad = |msg: String| Err(Status::invalid_argument(msg));
    if req.text.trim().is_empty()
        && req.audio.is_empty()
        && req.image.is_empty()
        && req.extra.is_empty()
    {
        return bad(
            "the request has no input: set at least one of text, audio, image or extra".into(),
        );
    }
    empathy_common::status::check_len("text", &req.text, limits.max_text_chars)?;
    if req.audio.len() > limits.max_audio_bytes {
        return bad(format!(
            "audio is {} bytes; the limit is {} bytes",
            req.audio.len(),
            limits.max_audio_bytes
        ));
    }
    check_audio_pcm(req.audio_pcm.len(), limits)?;
    if req.image.len() > limits.max_image_bytes {
        return bad(format!(
            "image is {} bytes; the limit is {} bytes",
            req.image.len(),
            limits.max_image_bytes
        ));
    }
    let record_affect = req.options.as_ref().is_some_and(|o| o.record_affect);
    if record_affect && req.subject_id.is_empty() {
        return bad(
            "options.record_affect needs subject_id: the pseudonym of the person who opted in"
                .into(),
        );
    }
    if req.context.len() > limits.max_context_turns {
        return bad(format!(
            "context has {} turns; the limit is {} (send the most recent ones)",
            req.context.len(),
            limits.max_context_turns
        ));
    }
    for (i, turn) in req.context.iter().enumerate() {
        if turn.text.trim().is_empty() {
            return bad(format!(
                "context[{i}].text is empty: every turn needs its text"
            ));
        }
        empathy_common::status::check_len(
            &format!("context[{i}].text"),
            &turn.text,
            limits.max_text_chars,
        )?;
        if !SPEAKERS.contains(&turn.speaker.as_str()) {
            return bad(format!(
                "context[{i}].speaker {} is not one of user, assistant, agent, system",
                quote(&turn.speaker)
            ));
        }
    }
    for (i, extra) in req.extra.iter().enumerate() {
        if extra.modality.is_empty() || extra.data.is_empty() {
            return bad(format!("extra[{i}] needs both a modality name and data"));
        }
        // The name is echoed in modalities_missing.
        empathy_common::status::check_len(
            &format!("extra[{i}].modality"),
            &extra.modality,
            MAX_NAME_CHARS,
        )?;
    }
    if let Some(o) = &req.options {
        if o.num_situations > limits.max_situations {
            return bad(format!(
                "options.num_situations is {}; the limit is {}",
                o.num_situations, limits.max_situations
            ));
        }
        if o.deadline_ms > limits.max_deadline_ms {
            return bad(format!(
                "options.deadline_ms is {}; the limit is {}",
                o.deadline_ms, limits.max_deadline_ms
            ));
        }
        if !o.language.is_empty() && !is_language_tag(&o.language) {
            return bad(format!(
                "options.language {} is not a BCP-47 tag such as \"en\" or \"zh-CN\"",
                quote(&o.language)
            ));
        }
        if MeaningReading::try_from(o.meaning_reading).is_err() {
            return bad(format!(
                "options.meaning_reading {} is not one of 0 (MEANING_READING_SERVER_DEFAULT), \
                 1 (MEANING_READING_ON), 2 (MEANING_READING_OFF)",
                o.meaning_reading
            ));
        }
        for (i, m) in o.disable_modalities.iter().enumerate() {
            if !known_modalities.contains(m) {
                return bad(format!(
                    "options.disable_modalities[{i}] {} is not a modality; known: {}",
                    quote(m),
                    known_modalities.join(", ")
                ));
            }
        }
    }
    Ok(())
}

/// Refuses an `audio_pcm` chunk over the limit, naming the field and the limit.
pub fn check_audio_pcm(len: usize, limits: &Limits) -> Result<(), Status> {
    if len > limits.max_audio_pcm_bytes {
        return Err(Status::invalid_argument(format!(
            "audio_pcm is {len} bytes in one chunk; the limit is {} bytes (send the live \
             audio in chunks as it is spoken, e.g. 100 ms = 3200 bytes)",
            limits.max_audio_pcm_bytes
        )));
    }
    Ok(())
}

/// A command-line probability: a number from 0 to 1.
pub fn probability(s: &str) -> Result<f32, String> {
    match s.trim().parse::<f32>() {
        Ok(p) if (0.0..=1.0).contains(&p) => Ok(p),
        _ => Err(format!("must be a number from 0 to 1, not {s:?}")),
    }
}

/// A pragmatic BCP-47 check: a 2–3 letter language, then alphanumeric subtags.
fn is_language_tag(tag: &str) -> bool {
    let mut parts = tag.split('-');
    let lang_ok = parts
        .next()
        .is_some_and(|l| (2..=3).contains(&l.len()) && l.chars().all(|c| c.is_ascii_alphabetic()));
    lang_ok
        && parts.all(|p| (1..=8).contains(&p.len()) && p.chars().all(|c| c.is_ascii_alphanumeric()))
}

#[cfg(test)]
mod proptests;

#[cfg(test)]
mod tests {
    use super::*;
    use empathy_proto::v1::{AnalyzeOptions, Turn};

    fn limits() -> Limits {
        Limits {
            max_text_chars: 20,
            max_audio_bytes: 10,
            max_audio_pcm_bytes: 8,
            max_image_bytes: 10,
            max_context_turns: 2,
            max_situations: 4,
            max_deadline_ms: 1000,
        }
    }

    fn known() -> Vec<String> {
        vec!["text".into(), "speech".into(), "image".into()]
    }

    fn message(req: &AnalyzeRequest) -> String {
        match check(req, &limits(), &known()) {
            Ok(()) => String::new(),
            Err(s) => {
                assert_eq!(s.code(), tonic::Code::InvalidArgument);
                s.message().to_string()
            }
        }
    }

    #[test]
    fn probabilities_are_numbers_from_0_to_1() {
        assert_eq!(probability("0.5"), Ok(0.5));
        assert_eq!(probability("0"), Ok(0.0));
        assert_eq!(probability("1"), Ok(1.0));
        for bad in ["1.5", "-0.1", "NaN", "inf", "half", ""] {
            let e = probability(bad).expect_err(bad);
            assert!(e.contains("from 0 to 1"), "{e}");
        }
    }

    #[test]
    fn accepts_a_plain_text_request() {
        let req = AnalyzeRequest {
            text: "hello".into(),
            ..Default::default()
        };
        assert_eq!(message(&req), "");
    }

    #[test]
    fn empty_request_names_the_fields() {
        let m = message(&AnalyzeRequest {
            text: "   ".into(),
            ..Default::default()
        });
        assert!(m.contains("text, audio, image"), "{m}");
    }

    #[test]
    fn oversized_inputs_name_the_limit() {
        let m = message(&AnalyzeRequest {
            text: "x".repeat(21),
            ..Default::default()
        });
        assert!(m.contains("limit is 20"), "{m}");
        let m = message(&AnalyzeRequest {
            audio: vec![0; 11].into(),
            ..Default::default()
        });
        assert!(m.contains("limit is 10 bytes"), "{m}");
        let m = message(&AnalyzeRequest {
            text: "hi".into(),
            audio_pcm: vec![0; 9].into(),
            ..Default::default()
        });
        assert!(
            m.contains("audio_pcm is 9 bytes") && m.contains("limit is 8"),
            "{m}"
        );
    }

    #[test]
    fn malformed_context_is_refused() {
        let turn = |s: &str, t: &str| Turn {
            speaker: s.into(),
            text: t.into(),
        };
        let m = message(&AnalyzeRequest {
            text: "hi".into(),
            context: vec![turn("user", "ok"), turn("user", " ")],
            ..Default::default()
        });
        assert!(m.contains("context[1].text is empty"), "{m}");
        let m = message(&AnalyzeRequest {
            text: "hi".into(),
            context: vec![turn("robot", "ok")],
            ..Default::default()
        });
        assert!(m.contains("context[0].speaker"), "{m}");
        let m = message(&AnalyzeRequest {
            text: "hi".into(),
            context: vec![turn("", "a"); 3],
            ..Default::default()
        });
        assert!(m.contains("limit is 2"), "{m}");
    }

    #[test]
    fn unknown_options_are_refused() {
        let with = |o: AnalyzeOptions| AnalyzeRequest {
            text: "hi".into(),
            options: Some(o),
            ..Default::default()
        };
        let m = message(&with(AnalyzeOptions {
            disable_modalities: vec!["vidio".into()],
            ..Default::default()
        }));
        assert!(m.contains("\"vidio\" is not a modality"), "{m}");
        let m = message(&with(AnalyzeOptions {
            language: "english please".into(),
            ..Default::default()
        }));
        assert!(m.contains("BCP-47"), "{m}");
        // What the client sent is echoed truncated, whatever its length.
        let m = message(&with(AnalyzeOptions {
            disable_modalities: vec!["v".repeat(100_000)],
            ..Default::default()
        }));
        assert!(m.contains("is not a modality") && m.len() < 200, "{m}");
        let m = message(&with(AnalyzeOptions {
            num_situations: 5,
            ..Default::default()
        }));
        assert!(m.contains("num_situations"), "{m}");
        let m = message(&with(AnalyzeOptions {
            meaning_reading: 7,
            ..Default::default()
        }));
        assert!(
            m.contains("options.meaning_reading 7 is not one of 0"),
            "{m}"
        );
        assert_eq!(
            message(&with(AnalyzeOptions {
                language: "zh-CN".into(),
                ..Default::default()
            })),
            ""
        );
    }
}
