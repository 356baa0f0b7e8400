//! One request's settings, resolved once, and the checks that the request and the
//! serving version go together (its pinned version, its text encoder).

use std::time::Duration;

use empathy_common::status::quote;
use empathy_model::Manifest;
use empathy_proto::v1::{AnalyzeOptions, AnalyzeRequest, EncodeResponse, ModelRef, Turn};
use empathy_reader::ReaderModel;
use tonic::Status;

use crate::{context, meaning, situations::Ask};

/// One request's settings, resolved once.
pub(super) struct Call<'a> {
    pub(super) req: &'a AnalyzeRequest,
    pub(super) opts: &'a AnalyzeOptions,
    pub(super) deadline: Duration,
    /// How long the situations get (generating them takes seconds).
    situations_deadline: Duration,
    /// The typed text, trimmed.
    pub(super) text: String,
    /// The serving version and the text encoder ("id@version") it was trained with.
    pub(super) model_version: &'a str,
    text_encoder: &'a str,
    /// How many of the most recent previous turns the version reads.
    pub(super) context_read: usize,
    /// Whether the meaning reader reads this request (`meaning::wanted`).
    pub(super) read_meaning: bool,
    /// Why the reader does not read for the version, fine-tuned on corrections it
    /// would overrule (`meaning::not_read_for`); None where it reads for it.
    pub(super) reader_overrules: Option<String>,
    /// Whether the reader moves the emotions: not those of a version whose emotion
    /// head learnt from corrections.
    pub(super) reader_emotions: meaning::Emotions,
    /// What the reader's sentiment shift is multiplied by for this version
    /// (`Manifest::reader_shift_scale`).
    pub(super) reader_shift_scale: f32,
}

impl<'a> Call<'a> {
    pub(super) fn new(
        req: &'a AnalyzeRequest,
        opts: &'a AnalyzeOptions,
        manifest: &'a Manifest,
        defaults: (Duration, Duration),
        (read_meaning, reader): (bool, Option<ReaderModel>),
    ) -> Call<'a> {
        let (deadline, situations_deadline) = match opts.deadline_ms {
            0 => defaults,
            ms => (
                Duration::from_millis(ms.into()),
                Duration::from_millis(ms.into()),
            ),
        };
        Call {
            req,
            opts,
            deadline,
            situations_deadline,
            text: req.text.trim().to_string(),
            model_version: &manifest.version,
            text_encoder: &manifest.training.encoder,
            context_read: context::turns_read(manifest, req.context.len()),
            read_meaning,
            // Asked only of a request the reader reads (the note is built per request).
            reader_overrules: reader
                .filter(|_| read_meaning)
                .and_then(|m| meaning::not_read_for(manifest, m)),
            reader_emotions: meaning::Emotions::of(manifest),
            reader_shift_scale: manifest.shift_scale() as f32,
        }
    }

    pub(super) fn check_text_encoder(&self, response: &EncodeResponse) -> Result<(), String> {
        same_text_encoder(
            response.model.as_ref(),
            self.text_encoder,
            self.model_version,
        )
    }

    /// The most recent previous turns, those the version reads (oldest first).
    pub(super) fn turns_read(&self) -> &'a [Turn] {
        &self.req.context[self.req.context.len() - self.context_read..]
    }

    /// Whether the client left `modality` enabled.
    pub(super) fn wanted(&self, modality: &str) -> bool {
        !self.opts.disable_modalities.iter().any(|d| d == modality)
    }

    /// Whether situations are to be imagined for `utterance`.
    pub(super) fn situations_for(&self, utterance: &str) -> bool {
        self.opts.num_situations > 0 && !utterance.is_empty()
    }

    pub(super) fn ask<'b>(&'b self, utterance: &'b str, language: &'b str) -> Ask<'b> {
        Ask {
            utterance,
            context: &self.req.context,
            k: self.opts.num_situations,
            seed: self.opts.seed,
            language,
            deadline: self.situations_deadline,
        }
    }
}

/// Text embeddings from another encoder than the serving version was trained on (a
/// tuned one, or the base) would be read as if they were its own: refused, so the text
/// counts as missing with this reason (a text-only request is then UNAVAILABLE).
fn same_text_encoder(
    served: Option<&ModelRef>,
    trained_on: &str,
    version: &str,
) -> Result<(), String> {
    let Some(model) = served else {
        return Ok(());
    };
    let served = format!("{}@{}", model.id, model.version);
    // Versions from test encoders, or older than the record, have no "id@version".
    if !trained_on.contains('@') || served == trained_on {
        return Ok(());
    }
    Err(format!(
        "the text encoder serves {served}, but model version {version} was trained on \
         {trained_on}: start the encoder with that model (`empathy up` does) or serve \
         another version"
    ))
}

/// NOT_FOUND when the client pinned a version of another tenant's line (whose existence
/// is not the caller's business); FAILED_PRECONDITION when it pinned a version other
/// than the one serving the caller.
pub(super) fn check_model_version(wanted: &str, loaded: &str, tenant: &str) -> Result<(), Status> {
    if let Ok((Some(owner), _)) = empathy_model::registry::parse_version_id(wanted)
        && owner != tenant
    {
        return Err(Status::not_found(format!(
            "model version {} is not a version of tenant {tenant}'s line",
            quote(wanted)
        )));
    }
    if !wanted.is_empty() && wanted != loaded {
        return Err(Status::failed_precondition(format!(
            "model version {} is not loaded; this server serves {loaded:?}",
            quote(wanted)
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_from_another_encoder_than_the_version_was_trained_on_is_refused() {
        let model = |version: &str| ModelRef {
            id: "sentence-transformers/all-MiniLM-L6-v2".into(),
            version: version.into(),
        };
        let trained_on = "sentence-transformers/all-MiniLM-L6-v2@53aa51172d14";
        assert!(same_text_encoder(Some(&model("53aa51172d14")), trained_on, "v0001").is_ok());
        let refused = same_text_encoder(Some(&model("771eac7d4ff2")), trained_on, "v0002");
        let message = refused.err().unwrap_or_default();
        assert!(
            message.contains("@771eac7d4ff2") && message.contains("v0002"),
            "{message}"
        );
        // Nothing to compare: an encoder that names no model, a version without a record.
        assert!(same_text_encoder(None, trained_on, "v0001").is_ok());
        assert!(same_text_encoder(Some(&model("x")), "test/bag-of-words", "v0001").is_ok());
    }
}
