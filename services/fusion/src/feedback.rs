//! `EmpathyService.Feedback`: check the correction, find the analysis's features
//! (recent analyses, or the resent original inputs, analysed again), and hand a
//! `FeedbackRecord` to the trainer, which stores it durably before it answers.

use std::time::Duration;

use empathy_grpc::v1::trainer_service_client::TrainerServiceClient;
use empathy_grpc::v1::{FeedbackRecord, FeedbackRequest, FeedbackResponse, FloatVector};
use tonic::transport::Channel;
use tonic::{Code, Status};

use crate::analyze::Analyzer;

/// The trainer fusion forwards feedback to.
#[derive(Clone)]
pub struct TrainerLink {
    url: String,
    client: TrainerServiceClient<Channel>,
}

impl TrainerLink {
    /// Connects lazily: fusion starts (and serves analyses) with the trainer down.
    pub fn new(url: &str, max_message_bytes: usize) -> anyhow::Result<TrainerLink> {
        let channel = tonic::transport::Endpoint::from_shared(url.to_string())?
            .connect_timeout(Duration::from_secs(2))
            .timeout(Duration::from_secs(30))
            .connect_lazy();
        Ok(TrainerLink {
            url: url.to_string(),
            client: TrainerServiceClient::new(channel)
                .max_decoding_message_size(max_message_bytes)
                .max_encoding_message_size(max_message_bytes),
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }
}

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
        received_unix_ms: 0,
    };
    let ack = trainer
        .client
        .clone()
        .submit_feedback(record)
        .await
        .map_err(|s| match s.code() {
            Code::InvalidArgument | Code::ResourceExhausted | Code::FailedPrecondition => s,
            _ => Status::unavailable(format!(
                "feedback not stored: the trainer at {} did not take it ({}: {}); retry",
                trainer.url(),
                s.code(),
                s.message()
            )),
        })?
        .into_inner();
    Ok(FeedbackResponse {
        feedback_id: ack.feedback_id,
        stored: true,
    })
}
