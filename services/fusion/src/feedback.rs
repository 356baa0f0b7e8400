//! `EmpathyService.Feedback`: check the correction, find the analysis's features
//! (recent analyses, or the resent original inputs, analysed again), and hand a
//! `FeedbackRecord` to the trainer, which stores it durably before it answers.

use empathy_proto::v1::{FeedbackRecord, FeedbackRequest, FeedbackResponse, FloatVector};
use tonic::Status;

use crate::analyze::Analyzer;
use crate::trainer_link::TrainerLink;

pub async fn submit(
    analyzer: &Analyzer,
    trainer: Option<&TrainerLink>,
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
    let mut found = analyzer.recent.get(&req.analysis_id);
    if found.is_none()
        && let Some(original) = req.original.take()
    {
        // Expired (or from another fusion replica): encode the inputs again.
        let again = analyzer.analyze(original).await?;
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
                "analysis {:?} is unknown or expired (this server keeps the last {} analyses \
                 for {} s): resend the original inputs in FeedbackRequest.original",
                req.analysis_id, limits.recent_max, limits.recent_max_age_s
            )
        }));
    };
    // The features stand for the inputs: the record does not carry the raw media.
    req.original = None;
    let record = FeedbackRecord {
        feedback: Some(req),
        model_version: recent.model_version.clone(),
        features: recent
            .features
            .named()
            .into_iter()
            .map(|(name, values)| (name.to_string(), FloatVector { values }))
            .collect(),
        text: recent.text.clone(),
        ..FeedbackRecord::default()
    };
    let ack = trainer.submit_feedback(record).await?;
    Ok(FeedbackResponse {
        feedback_id: ack.feedback_id,
        stored: true,
    })
}
