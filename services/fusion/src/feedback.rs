//! `EmpathyService.Feedback`: check the correction, find the analysis's features
//! (recent analyses, or the resent original inputs, analysed again; with what the
//! meaning reader added, read now where it did not read then), and hand a
//! `FeedbackRecord` to the trainer, which stores it durably before it answers. The
//! record says whose it is: the caller's tenant and key (from the authenticating
//! layer) and the subject (the feedback's, else the analysis's), so that it can be
//! purged by tenant or key and forgotten by subject.

use empathy_common::{Identity, language};
use empathy_proto::v1::{FeedbackRecord, FeedbackRequest, FeedbackResponse, FloatVector};
use empathy_reader::ReaderModel;
use tonic::Status;

use crate::analyze::Analyzer;
use crate::recent::{Features, Recent};
use crate::trainer_link::TrainerLink;

pub async fn submit(
    analyzer: &Analyzer,
    trainer: Option<&TrainerLink>,
    identity: Identity,
    mut req: FeedbackRequest,
) -> Result<FeedbackResponse, Status> {
    empathy_common::feedback::check(&mut req)?;
    let trainer = trainer.ok_or_else(|| {
        Status::failed_precondition(
            "feedback cannot be stored: this server runs without a trainer (start fusion with \
             --trainer URL, as `empathy up` does)",
        )
    })?;
    req.analysis_id = req.analysis_id.trim().to_string();
    // Another tenant's analysis is as unknown as one that never was.
    let mut found = analyzer
        .recent
        .get(&req.analysis_id)
        .filter(|r| r.tenant == identity.tenant);
    if found.is_none()
        && let Some(original) = req.original.take()
    {
        // Expired (or from another fusion replica): encode the inputs again.
        let again = analyzer.analyze(original, &identity.tenant).await?;
        if req.analysis_id.is_empty() {
            req.analysis_id = again.analysis_id.clone();
        }
        found = analyzer.recent.get(&again.analysis_id);
        if found.is_none() {
            return Err(Status::failed_precondition(
                "the resent inputs were analysed, but this server keeps no features \
                 (--recent-max 0)",
            ));
        }
    }
    let Some(recent) = found else {
        let limits = analyzer.recent.limits();
        return Err(Status::not_found(if req.analysis_id.is_empty() {
            "no analysis_id and no original inputs: say which analysis is corrected, or resend \
             its inputs in FeedbackRequest.original"
                .to_string()
        } else {
            format!(
                "analysis {} is unknown or expired (this server keeps the last {} analyses \
                 for {} s): resend the original inputs in FeedbackRequest.original",
                empathy_common::status::quote(&req.analysis_id),
                limits.recent_max,
                limits.recent_max_age_s
            )
        }));
    };
    let shift = match recent.features.meaning {
        Some(shift) => Some(shift),
        None => reading_for(analyzer, &recent.text).await,
    };
    // Only this server's reader read it (then, or now).
    let meaning = shift.zip(analyzer.meaning.as_ref().map(|m| m.model()));
    let ack = trainer
        .submit_feedback(record(req, &recent, meaning, identity))
        .await?;
    // Stored: no longer worth suggesting for labelling.
    recent.mark_corrected();
    Ok(FeedbackResponse {
        feedback_id: ack.feedback_id,
        stored: true,
    })
}

/// What the meaning reader would add to the text of a corrected analysis it did not
/// read (the request turned it off, or asked nothing of an `on-request` server, or the
/// version did not read): so the correction is learnt as a read request will be
/// served, and the tenant's line can go on being read. Zeros for text in a language it
/// does not read; None where this server has no reader or it could not read in time.
async fn reading_for(analyzer: &Analyzer, text: &str) -> Option<[f32; 3]> {
    let meaning = analyzer.meaning.as_ref()?;
    if text.trim().is_empty() || !empathy_reader::reads_language(&language::resolve("", None, text))
    {
        return Some([0.0; 3]);
    }
    meaning.text_shift(text, analyzer.default_deadline).await
}

/// The record the trainer stores for `req` on the analysis `recent` (with the reader's
/// shift `meaning` and which reader read it), sent by `identity`.
fn record(
    mut req: FeedbackRequest,
    recent: &Recent,
    meaning: Option<([f32; 3], ReaderModel)>,
    identity: Identity,
) -> FeedbackRecord {
    // The features stand for the inputs: the record does not carry the raw media.
    req.original = None;
    if req.subject_id.is_empty() {
        req.subject_id = recent.subject_id.clone();
    }
    FeedbackRecord {
        model_version: recent.model_version.clone(),
        features: Features {
            meaning: meaning.map(|(shift, _)| shift),
            ..recent.features.clone()
        }
        .named()
        .into_iter()
        .map(|(name, values)| (name.to_string(), FloatVector { values }))
        .collect(),
        text: recent.text.clone(),
        received_unix_ms: 0,
        tenant: identity.tenant,
        key_id: identity.key_id,
        subject_id: req.subject_id.clone(),
        meaning_reader: meaning.map_or("", |(_, m)| m.name()).to_string(),
        feedback: Some(req),
    }
}

#[cfg(test)]
mod tests {
    use empathy_proto::v1::{AnalyzeRequest, Role};

    use super::*;
    use crate::recent::{Features, RecentAnalyses, RecentLimits, Verdict};

    #[test]
    fn records_say_whose_they_are() {
        let recent = RecentAnalyses::new(
            RecentLimits {
                recent_max: 10,
                recent_max_age_s: 3600,
                recent_cache_bytes: 1 << 20,
            },
            true,
        );
        let features = Features {
            text: Some(vec![0.5; 3]),
            ..Features::default()
        };
        let owner = crate::recent::Owner {
            tenant: "clinic-a",
            subject_id: "patient-7",
        };
        let id = recent.remember("so tired", features, "v0002", owner, Verdict::default());
        let Some(analysis) = recent.get(&id) else {
            panic!("the analysis was not kept");
        };
        let caller = Identity {
            tenant: "clinic-a".into(),
            key_id: "k_123".into(),
            role: Role::Feedback,
        };
        let req = FeedbackRequest {
            analysis_id: id,
            sentiment: "negative".into(),
            original: Some(AnalyzeRequest {
                audio: vec![1, 2, 3].into(),
                ..AnalyzeRequest::default()
            }),
            ..FeedbackRequest::default()
        };
        // No subject on the feedback: the analysis's.
        let r = record(
            req.clone(),
            &analysis,
            Some(([0.5, 0.0, -0.5], ReaderModel::Qwen25Coder_1_5b)),
            caller.clone(),
        );
        assert_eq!(
            (r.tenant.as_str(), r.key_id.as_str(), r.subject_id.as_str()),
            ("clinic-a", "k_123", "patient-7")
        );
        let meaning = r.features.get(empathy_model::MEANING_SHIFT);
        assert_eq!(
            meaning.map(|v| v.values.clone()),
            Some(vec![0.5, 0.0, -0.5])
        );
        assert_eq!(r.meaning_reader, "qwen2.5-coder-1.5b");
        let fb = r.feedback.unwrap_or_default();
        assert_eq!(fb.subject_id, "patient-7");
        assert!(fb.original.is_none(), "raw media forwarded");
        assert_eq!(
            (r.text.as_str(), r.model_version.as_str()),
            ("so tired", "v0002")
        );
        // The feedback's own subject wins.
        let named = FeedbackRequest {
            subject_id: "patient-8".into(),
            ..req
        };
        let r = record(named, &analysis, None, caller);
        assert_eq!(r.subject_id, "patient-8");
        assert!(!r.features.contains_key(empathy_model::MEANING_SHIFT));
        assert_eq!(r.meaning_reader, "");
    }
}
