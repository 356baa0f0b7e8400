//! `empathy.v1.TrainerService`.

use std::pin::Pin;
use std::sync::Arc;

use empathy_common::{Identity, Metrics};
use empathy_grpc::v1::{
    AffectAck, CancelJobRequest, FeedbackAck, FeedbackRecord, ForgetRequest, ForgetResponse,
    GetRepliesRequest, ListModelsRequest, ListModelsResponse, ModelVersion, PurgeFeedbackRequest,
    PurgeFeedbackResponse, ReadAffectRequest, ResumeTrainingRequest, RollbackRequest,
    StartTrainingRequest, SubjectAffect, TenantReplies, TrafficAck, TrafficBatch, TrainingJob,
    TrainingStatus, WatchJobRequest, WatchModelsRequest, trainer_service_server::TrainerService,
};
use futures::{Stream, StreamExt};
use tokio_stream::wrappers::BroadcastStream;
use tonic::{Request, Response, Status};

use crate::jobs::{Trainer, is_terminal};
use crate::keys::check_tenant;
use crate::store::{SubmitError, filter_is_empty, now_ms};

/// Longest free-text note kept.
const MAX_NOTE_CHARS: usize = 4096;
/// Longest subject id: a pseudonym, not a document.
const MAX_SUBJECT_CHARS: usize = 128;
/// Most feature values one record may carry (text 384 + lexicon + speech + image, with
/// room for situations).
const MAX_FEATURE_VALUES: usize = 16_384;

pub struct TrainerApi {
    trainer: Arc<Trainer>,
    metrics: Metrics,
    /// `--keep-original-media`: store resent audio, images and extra inputs as sent.
    keep_original_media: bool,
}

impl TrainerApi {
    pub fn new(trainer: Arc<Trainer>, metrics: Metrics, keep_original_media: bool) -> TrainerApi {
        TrainerApi {
            trainer,
            metrics,
            keep_original_media,
        }
    }
}

/// Drops the media of the resent original inputs (audio, image, the extra inputs'
/// bytes): the features stand for them, and a voice or a face identifies a person.
/// The text, the context turns and the options are kept.
pub fn drop_original_media(record: &mut FeedbackRecord) {
    if let Some(original) = record.feedback.as_mut().and_then(|f| f.original.as_mut()) {
        original.audio.clear();
        original.audio_pcm.clear();
        original.image.clear();
        for extra in &mut original.extra {
            extra.data.clear();
        }
    }
}

fn check_subject(subject: &str) -> Result<(), Status> {
    if subject.chars().count() > MAX_SUBJECT_CHARS {
        return Err(Status::invalid_argument(format!(
            "subject_id is longer than {MAX_SUBJECT_CHARS} characters: send an opaque \
             pseudonym, not a name or a document"
        )));
    }
    Ok(())
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
    check_subject(&record.subject_id)?;
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
        let keep_media = self.keep_original_media;
        let work = async move {
            let identity = Identity::of(&request)?;
            let mut record = validate(request.into_inner())?;
            // Fusion says whose it is; a record sent here directly is the caller's.
            if record.tenant.is_empty() {
                record.tenant = identity.tenant;
                record.key_id = identity.key_id;
            } else if !empathy_proto::is_tenant_name(&record.tenant) {
                return Err(Status::invalid_argument(format!(
                    "tenant {:?} is not a tenant name: 1-64 characters of a-z, 0-9, '-' and '_'",
                    record.tenant
                )));
            }
            if !keep_media {
                drop_original_media(&mut record);
            }
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
        let identity = Identity::of(&request)?;
        let StartTrainingRequest { reason, tenant } = request.into_inner();
        let tenant = identity.tenant_for(&tenant)?;
        let reason = if reason.trim().is_empty() {
            "requested".to_string()
        } else {
            reason
        };
        self.trainer.start(&tenant, &reason).map(Response::new)
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
        request: Request<ListModelsRequest>,
    ) -> Result<Response<ListModelsResponse>, Status> {
        let identity = Identity::of(&request)?;
        let tenant = identity.tenant_for(&request.into_inner().tenant)?;
        let trainer = Arc::clone(&self.trainer);
        let versions = tokio::task::spawn_blocking(move || trainer.list(&tenant))
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
        let current = tokio::task::spawn_blocking(move || trainer.serving_lines())
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(|e| Status::unavailable(format!("no serving version: {e:#}")))?;
        let stream = futures::stream::iter(current.into_iter().map(Ok))
            .chain(updates)
            .take_until(self.trainer.stopped());
        Ok(Response::new(Box::pin(stream)))
    }

    async fn rollback(
        &self,
        request: Request<RollbackRequest>,
    ) -> Result<Response<ModelVersion>, Status> {
        let identity = Identity::of(&request)?;
        let RollbackRequest {
            version,
            tenant,
            base,
        } = request.into_inner();
        let version = version.trim().to_string();
        let tenant = identity.tenant_for(&tenant)?;
        if base && identity.role != empathy_proto::v1::Role::Admin {
            return Err(Status::permission_denied(
                "moving the base line takes an admin key",
            ));
        }
        let trainer = Arc::clone(&self.trainer);
        tokio::task::spawn_blocking(move || {
            if base {
                trainer.rollback_base(&version)
            } else {
                trainer.rollback(&tenant, &version)
            }
        })
        .await
        .map_err(|e| Status::internal(e.to_string()))?
        .map(Response::new)
    }

    async fn purge_feedback(
        &self,
        request: Request<PurgeFeedbackRequest>,
    ) -> Result<Response<PurgeFeedbackResponse>, Status> {
        let PurgeFeedbackRequest { filter, delete } = request.into_inner();
        let filter = filter.unwrap_or_default();
        if filter_is_empty(&filter) {
            return Err(Status::invalid_argument(
                "the filter is empty and would match every record: set at least one of \
                 tenant, key_id, from_unix_ms, to_unix_ms, model_version, subject_id",
            ));
        }
        if filter.from_unix_ms < 0 || filter.to_unix_ms < 0 {
            return Err(Status::invalid_argument(
                "from_unix_ms and to_unix_ms are milliseconds since 1970 (0 = no bound)",
            ));
        }
        if filter.to_unix_ms != 0 && filter.from_unix_ms >= filter.to_unix_ms {
            return Err(Status::invalid_argument(
                "from_unix_ms is not before to_unix_ms: the time range is empty",
            ));
        }
        check_subject(&filter.subject_id)?;
        let store = self.trainer.store.clone();
        let matched = tokio::task::spawn_blocking(move || store.purge(&filter, delete))
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(|e| Status::unavailable(format!("feedback not purged: {e:#}; retry")))?;
        tracing::info!(
            matched,
            action = if delete { "deleted" } else { "quarantined" },
            "feedback purged"
        );
        Ok(Response::new(PurgeFeedbackResponse { matched }))
    }

    async fn forget(
        &self,
        request: Request<ForgetRequest>,
    ) -> Result<Response<ForgetResponse>, Status> {
        let subject = request.into_inner().subject_id;
        if subject.is_empty() {
            return Err(Status::invalid_argument(
                "subject_id is empty: say whose records to delete",
            ));
        }
        check_subject(&subject)?;
        let store = self.trainer.store.clone();
        let forgotten = tokio::task::spawn_blocking(move || store.forget(&subject))
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(|e| Status::unavailable(format!("nothing was deleted: {e:#}; retry")))?;
        // The count only: the subject id is a person's pseudonym.
        tracing::info!(
            deleted = forgotten.deleted,
            affect_points = forgotten.affect,
            trained_into = ?forgotten.trained_into,
            "forgot a subject's feedback"
        );
        Ok(Response::new(ForgetResponse {
            feedback_deleted: forgotten.deleted,
            trained_into: forgotten.trained_into,
            affect_points_deleted: forgotten.affect,
        }))
    }

    async fn resume_training(
        &self,
        request: Request<ResumeTrainingRequest>,
    ) -> Result<Response<TrainingStatus>, Status> {
        let identity = Identity::of(&request)?;
        let tenant = identity.tenant_for(&request.into_inner().tenant)?;
        let trainer = Arc::clone(&self.trainer);
        tokio::task::spawn_blocking(move || trainer.resume(&tenant))
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map(Response::new)
            .map_err(|e| Status::unavailable(format!("training not resumed: {e:#}; retry")))
    }

    async fn submit_traffic(
        &self,
        request: Request<TrafficBatch>,
    ) -> Result<Response<TrafficAck>, Status> {
        let samples = crate::traffic::check(request.into_inner())?;
        let store = self.trainer.store.clone();
        let work = async move {
            let stored = tokio::task::spawn_blocking(move || store.store_traffic(&samples))
                .await
                .map_err(|e| Status::internal(e.to_string()))?
                .map_err(|e| Status::unavailable(format!("traffic not stored: {e:#}")))?;
            Ok(TrafficAck { stored })
        };
        self.metrics
            .track("SubmitTraffic", work)
            .await
            .map(Response::new)
    }

    async fn put_replies(
        &self,
        request: Request<TenantReplies>,
    ) -> Result<Response<TenantReplies>, Status> {
        let mut bank = request.into_inner();
        check_replies(&bank.tenant, bank.templates.len())?;
        bank.updated_unix_ms = now_ms();
        let store = self.trainer.store.clone();
        let work = async move {
            tokio::task::spawn_blocking(move || store.put_replies(&bank).map(|()| bank))
                .await
                .map_err(|e| Status::internal(e.to_string()))?
                .map_err(|e| Status::unavailable(format!("reply templates not stored: {e:#}")))
        };
        self.metrics
            .track("PutReplies", work)
            .await
            .map(Response::new)
    }

    async fn record_affect(
        &self,
        request: Request<SubjectAffect>,
    ) -> Result<Response<AffectAck>, Status> {
        let affect = request.into_inner();
        check_affect_owner(&affect.tenant, &affect.subject_id)?;
        if affect.points.iter().any(|p| p.analysis_id.is_empty()) {
            return Err(Status::invalid_argument(
                "an affect point has no analysis_id",
            ));
        }
        let store = self.trainer.store.clone();
        let work = async move {
            tokio::task::spawn_blocking(move || store.record_affect(&affect))
                .await
                .map_err(|e| Status::internal(e.to_string()))?
                .map(|stored| AffectAck { stored })
                .map_err(|e| Status::unavailable(format!("affect not stored: {e:#}")))
        };
        self.metrics
            .track("RecordAffect", work)
            .await
            .map(Response::new)
    }

    async fn read_affect(
        &self,
        request: Request<ReadAffectRequest>,
    ) -> Result<Response<SubjectAffect>, Status> {
        let r = request.into_inner();
        check_affect_owner(&r.tenant, &r.subject_id)?;
        let store = self.trainer.store.clone();
        let work = async move {
            let (tenant, subject_id) = (r.tenant.clone(), r.subject_id.clone());
            let points = tokio::task::spawn_blocking(move || {
                store.read_affect(&r.tenant, &r.subject_id, r.since_unix_ms)
            })
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(|e| Status::unavailable(format!("affect not read: {e:#}")))?;
            Ok(SubjectAffect {
                tenant,
                subject_id,
                points,
            })
        };
        self.metrics
            .track("ReadAffect", work)
            .await
            .map(Response::new)
    }

    async fn get_replies(
        &self,
        request: Request<GetRepliesRequest>,
    ) -> Result<Response<TenantReplies>, Status> {
        let tenant = request.into_inner().tenant;
        check_tenant(&tenant)?;
        let store = self.trainer.store.clone();
        let work = async move {
            tokio::task::spawn_blocking(move || store.replies(&tenant))
                .await
                .map_err(|e| Status::internal(e.to_string()))?
                .map_err(|e| Status::unavailable(format!("reply templates not read: {e:#}")))
        };
        self.metrics
            .track("GetReplies", work)
            .await
            .map(Response::new)
    }
}

/// Fusion checks the points it records; the store needs a tenant and a subject.
fn check_affect_owner(tenant: &str, subject_id: &str) -> Result<(), Status> {
    check_tenant(tenant)?;
    if subject_id.is_empty() {
        return Err(Status::invalid_argument("subject_id is empty"));
    }
    check_subject(subject_id)
}

/// Fusion checks each template; the store only refuses a bank it could not keep.
fn check_replies(tenant: &str, templates: usize) -> Result<(), Status> {
    check_tenant(tenant)?;
    if templates > empathy_proto::MAX_REPLY_TEMPLATES {
        return Err(Status::invalid_argument(format!(
            "{templates} reply templates; a bank holds at most {}",
            empathy_proto::MAX_REPLY_TEMPLATES
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
