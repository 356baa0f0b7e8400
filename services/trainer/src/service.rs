//! `empathy.v1.TrainerService`.

use std::pin::Pin;
use std::sync::Arc;

use empathy_common::Metrics;
use empathy_grpc::v1::{
    CancelJobRequest, FeedbackAck, FeedbackRecord, ForgetRequest, ForgetResponse,
    ListModelsRequest, ListModelsResponse, ModelVersion, PurgeFeedbackRequest,
    PurgeFeedbackResponse, ResumeTrainingRequest, RollbackRequest, StartTrainingRequest,
    TrainingJob, TrainingStatus, WatchJobRequest, WatchModelsRequest,
    trainer_service_server::TrainerService,
};
use futures::{Stream, StreamExt};
use tokio_stream::wrappers::BroadcastStream;
use tonic::{Request, Response, Status};

use crate::jobs::{Trainer, is_terminal};
use crate::store::{SubmitError, now_ms};

/// Longest free-text note kept.
const MAX_NOTE_CHARS: usize = 4096;
/// Most feature values one record may carry (text 384 + lexicon + speech + image, with
/// room for situations).
const MAX_FEATURE_VALUES: usize = 16_384;

pub struct TrainerApi {
    trainer: Arc<Trainer>,
    metrics: Metrics,
}

impl TrainerApi {
    pub fn new(trainer: Arc<Trainer>, metrics: Metrics) -> TrainerApi {
        TrainerApi { trainer, metrics }
    }
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// Lower-cased and trimmed; empty means "no correction".
/// Checks and normalises a record; the message says what to fix.
pub fn validate(mut record: FeedbackRecord) -> Result<FeedbackRecord, Status> {
    let fb = record.feedback.as_mut().ok_or_else(|| {
        Status::invalid_argument("FeedbackRecord.feedback is missing: it carries the correction")
    })?;
    empathy_common::feedback::check(fb)?;
    if fb.note.chars().count() > MAX_NOTE_CHARS {
        return Err(Status::invalid_argument(format!(
            "note is longer than {MAX_NOTE_CHARS} characters"
        )));
    }
    if fb.analysis_id.trim().is_empty() {
        return Err(Status::invalid_argument(
            "analysis_id is empty: say which analysis is corrected",
        ));
    }
    let values: usize = record.features.values().map(|v| v.values.len()).sum();
    if values > MAX_FEATURE_VALUES {
        return Err(Status::invalid_argument(format!(
            "features hold {values} values; at most {MAX_FEATURE_VALUES} are kept"
        )));
    }
    for (name, v) in &record.features {
        if v.values.iter().any(|x| !x.is_finite()) {
            return Err(Status::invalid_argument(format!(
                "feature {name:?} holds NaN or infinity"
            )));
        }
    }
    if record.received_unix_ms == 0 {
        record.received_unix_ms = now_ms();
    }
    Ok(record)
}

#[tonic::async_trait]
impl TrainerService for TrainerApi {
    async fn submit_feedback(
        &self,
        request: Request<FeedbackRecord>,
    ) -> Result<Response<FeedbackAck>, Status> {
        let store = self.trainer.store.clone();
        let trainer = Arc::clone(&self.trainer);
        let work = async move {
            let record = validate(request.into_inner())?;
            // Reads a manifest the first time a version is seen (versions are immutable).
            tokio::task::block_in_place(|| trainer.versions.check(&record))?;
            let id = uuid::Uuid::new_v4().to_string();
            match store.submit(id.clone(), record).await {
                Ok(pending) => Ok(FeedbackAck {
                    feedback_id: id,
                    pending,
                }),
                Err(e @ (SubmitError::QueueFull(_) | SubmitError::DiskFull(_))) => {
                    Err(Status::resource_exhausted(e.to_string()))
                }
                Err(e @ SubmitError::NotStored(_)) => Err(Status::unavailable(e.to_string())),
            }
        };
        self.metrics
            .track("SubmitFeedback", work)
            .await
            .map(Response::new)
    }

    async fn start_training(
        &self,
        request: Request<StartTrainingRequest>,
    ) -> Result<Response<TrainingJob>, Status> {
        let reason = request.into_inner().reason;
        let reason = if reason.trim().is_empty() {
            "requested".to_string()
        } else {
            reason
        };
        self.trainer.start(&reason).map(Response::new)
    }

    type WatchJobStream = BoxStream<TrainingJob>;

    async fn watch_job(
        &self,
        request: Request<WatchJobRequest>,
    ) -> Result<Response<Self::WatchJobStream>, Status> {
        let id = request.into_inner().job_id;
        let job = self
            .trainer
            .job(&id)
            .ok_or_else(|| Status::not_found(format!("no training job {id:?} on this trainer")))?;
        let rx = job.subscribe();
        // The current state at once, then each change, ending after a final state.
        let stream =
            futures::stream::unfold((rx, true, false), |(mut rx, first, done)| async move {
                if done {
                    return None;
                }
                if !first && rx.changed().await.is_err() {
                    return None;
                }
                let value = rx.borrow_and_update().clone();
                let end = is_terminal(value.state);
                Some((Ok(value), (rx, false, end)))
            });
        Ok(Response::new(Box::pin(
            stream.take_until(self.trainer.stopped()),
        )))
    }

    async fn cancel_job(
        &self,
        request: Request<CancelJobRequest>,
    ) -> Result<Response<TrainingJob>, Status> {
        self.trainer
            .cancel(&request.into_inner().job_id)
            .map(Response::new)
    }

    async fn list_models(
        &self,
        _: Request<ListModelsRequest>,
    ) -> Result<Response<ListModelsResponse>, Status> {
        let trainer = Arc::clone(&self.trainer);
        let versions = tokio::task::spawn_blocking(move || trainer.list())
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(|e| Status::unavailable(format!("cannot read the registry: {e:#}")))?;
        Ok(Response::new(ListModelsResponse { versions }))
    }

    type WatchModelsStream = BoxStream<ModelVersion>;

    async fn watch_models(
        &self,
        _: Request<WatchModelsRequest>,
    ) -> Result<Response<Self::WatchModelsStream>, Status> {
        // Subscribe first, so nothing published in between is missed.
        let updates = BroadcastStream::new(self.trainer.subscribe_models())
            .filter_map(|m| async move { m.ok().map(Ok) });
        let trainer = Arc::clone(&self.trainer);
        let current = tokio::task::spawn_blocking(move || trainer.serving())
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(|e| Status::unavailable(format!("no serving version: {e:#}")))?;
        let stream = futures::stream::once(async move { Ok(current) })
            .chain(updates)
            .take_until(self.trainer.stopped());
        Ok(Response::new(Box::pin(stream)))
    }

    async fn rollback(
        &self,
        request: Request<RollbackRequest>,
    ) -> Result<Response<ModelVersion>, Status> {
        let version = request.into_inner().version.trim().to_string();
        let trainer = Arc::clone(&self.trainer);
        tokio::task::spawn_blocking(move || trainer.rollback(&version))
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map(Response::new)
    }

    // Filled in by the poisoning and privacy work (issue 12).
    async fn purge_feedback(
        &self,
        _: Request<PurgeFeedbackRequest>,
    ) -> Result<Response<PurgeFeedbackResponse>, Status> {
        Err(Status::unimplemented("purging feedback is not built yet"))
    }

    async fn forget(&self, _: Request<ForgetRequest>) -> Result<Response<ForgetResponse>, Status> {
        Err(Status::unimplemented("forget is not built yet"))
    }

    async fn resume_training(
        &self,
        _: Request<ResumeTrainingRequest>,
    ) -> Result<Response<TrainingStatus>, Status> {
        Err(Status::unimplemented("pausing training is not built yet"))
    }
}

#[cfg(test)]
mod tests {
    use empathy_grpc::v1::FeedbackRequest;

    use super::*;

    fn with(sentiment: &str, emotion: &str, rating: i32) -> FeedbackRecord {
        FeedbackRecord {
            feedback: Some(FeedbackRequest {
                analysis_id: "a".into(),
                sentiment: sentiment.into(),
                emotion: emotion.into(),
                rating,
                ..FeedbackRequest::default()
            }),
            ..FeedbackRecord::default()
        }
    }

    #[test]
    fn bad_feedback_is_refused_with_a_reason() {
        let err = validate(with("happy", "", 0)).err();
        assert!(
            err.as_ref()
                .is_some_and(|e| e.code() == tonic::Code::InvalidArgument
                    && e.message().contains("negative, neutral, positive")),
            "{err:?}"
        );
        let err = validate(with("", "", 3)).err();
        assert!(err.is_some_and(|e| e.message().contains("both corrections are empty")));
        assert!(validate(with("", "joyful", 0)).is_err());
        assert!(validate(with("positive", "", 9)).is_err());
        let ok = validate(with(" Positive ", "JOY", 5)).ok();
        let fb = ok.and_then(|r| r.feedback).unwrap_or_default();
        assert_eq!(
            (fb.sentiment.as_str(), fb.emotion.as_str()),
            ("positive", "joy")
        );
    }
}
