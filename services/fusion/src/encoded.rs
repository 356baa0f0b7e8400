//! What the encoders gave back for one request, and what they could not give: each
//! modality's outcome, timing, and the reasons for what is missing.

use empathy_model::PreviousTurn;
use empathy_proto::{
    modality::SITUATION,
    v1::{EncodeOutput, ExtraInput, MissingModality, Situation, StageTiming, TextReading},
};
use tonic::Status;

use crate::{context::ReadContext, encoders::EncodeError};

/// Situations and their text embeddings, or why there are none.
pub type Imagined = Result<(Vec<Situation>, Vec<Vec<f32>>), String>;

/// What the encoders gave back, and what they could not give.
#[derive(Default)]
pub struct Encoded {
    pub text: Option<Vec<f32>>,
    /// A language plugin's reading of the words (its modality, the reading), instead
    /// of `text`.
    pub reading: Option<(String, TextReading)>,
    pub speech: Option<EncodeOutput>,
    pub image: Option<EncodeOutput>,
    pub used: Vec<String>,
    pub missing: Vec<MissingModality>,
    pub timings: Vec<StageTiming>,
    /// An encoder refused for lack of capacity.
    pub busy: bool,
}

impl Encoded {
    /// Records one modality's outcome; a refused input fails the whole request.
    pub fn take(
        &mut self,
        modality: &str,
        result: Option<(Result<EncodeOutput, EncodeError>, f32)>,
    ) -> Result<Option<EncodeOutput>, Status> {
        let Some((result, ms)) = result else {
            return Ok(None);
        };
        self.timings.push(StageTiming {
            stage: format!("encode_{modality}"),
            ms,
        });
        match result {
            Ok(out) => {
                self.used.push(modality.to_string());
                Ok(Some(out))
            }
            Err(EncodeError::BadInput(m)) => {
                Err(Status::invalid_argument(format!("{modality}: {m}")))
            }
            Err(EncodeError::Missing(reason)) => Ok(self.miss(modality, reason, false)),
            Err(EncodeError::Busy(reason)) => Ok(self.miss(modality, reason, true)),
        }
    }

    /// A modality that is missing, and whether for lack of capacity.
    pub fn miss(&mut self, modality: &str, reason: String, busy: bool) -> Option<EncodeOutput> {
        self.busy |= busy;
        self.missing.push(MissingModality {
            modality: modality.to_string(),
            reason,
        });
        None
    }
}

impl Encoded {
    /// Records the previous turns' outcome: without them the analysis goes on from
    /// the last turn alone, and why is reported as a missing input.
    pub fn take_context(&mut self, read: Option<(ReadContext, f32)>) -> Vec<PreviousTurn> {
        let Some((result, ms)) = read else {
            return Vec::new();
        };
        self.timings.push(StageTiming {
            stage: "encode_context".into(),
            ms,
        });
        result.unwrap_or_else(|reason| {
            self.missing.push(MissingModality {
                modality: empathy_model::CONTEXT.to_string(),
                reason,
            });
            Vec::new()
        })
    }

    /// Records the situations' outcome: without them the analysis goes on, and why is
    /// reported as a missing modality.
    pub fn take_situations(
        &mut self,
        imagined: Option<(Imagined, f32)>,
    ) -> (Vec<Situation>, Vec<Vec<f32>>) {
        let Some((result, ms)) = imagined else {
            return (Vec::new(), Vec::new());
        };
        self.timings.push(StageTiming {
            stage: "situations".into(),
            ms,
        });
        match result {
            Ok(found) => found,
            Err(reason) => {
                self.missing.push(MissingModality {
                    modality: SITUATION.to_string(),
                    reason,
                });
                (Vec::new(), Vec::new())
            }
        }
    }

    /// Extra modalities are reported missing: no model version takes them yet.
    pub fn note_extras(&mut self, extra: &[ExtraInput], version: &str) {
        for extra in extra {
            self.missing.push(MissingModality {
                modality: extra.modality.clone(),
                reason: format!("model version {version} has no input for this modality yet"),
            });
        }
    }

    /// UNAVAILABLE, with every modality's reason, when none could be encoded;
    /// RESOURCE_EXHAUSTED instead when an encoder was at capacity: the client should
    /// back off, not fail over.
    pub fn require_any(&self) -> Result<(), Status> {
        if !self.used.is_empty() {
            return Ok(());
        }
        let reasons: Vec<String> = self
            .missing
            .iter()
            .map(|m| format!("{}: {}", m.modality, m.reason))
            .collect();
        let message = format!("no modality could be encoded ({})", reasons.join("; "));
        Err(if self.busy {
            Status::resource_exhausted(format!("{message}; retry with backoff"))
        } else {
            Status::unavailable(message)
        })
    }
}
