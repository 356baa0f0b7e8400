//! Training jobs and the registry they publish to.
//!
//! One job at a time: `start` while a job runs answers FAILED_PRECONDITION naming the
//! running job (watch it or cancel it), so a script never starts two fine-tunes of the
//! same serving version that would race to publish. With PostgreSQL that holds across
//! trainers: a job holds the database's training lock (`FeedbackStore::training_lock`)
//! and another trainer's `start` answers FAILED_PRECONDITION; a job whose lock went with
//! a broken connection fails before it records or publishes anything. A job: check the
//! registry is writable, read the stored feedback, fine-tune the serving version
//! (`empathy_training::finetune`), and publish only if accepted; then point
//! `serving` at the new version and announce it. Every end state is recorded in the
//! store with its reason; a failure leaves the serving version as it was.
//!
//! Poisoning defences (issue 12): a job publishes only if the serving pointer still
//! names the version it was tuned from, checked under the pointer lock that rollback
//! takes too, so a rollback while a job runs holds (the job ends REJECTED). A rollback
//! also pauses the automatic triggers, durably in the store, until an admin resumes
//! them: what was rolled back was likely learnt from bad feedback, which should be
//! purged first. An explicit StartTraining is an admin's act and still runs.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::Context;
use empathy_model::registry;
use empathy_proto::v1::{JobState, ModelVersion, TrainingJob, TrainingStatus};
use empathy_training::finetune::{
    Cancelled, FeedbackExample, FinetuneConfig, Finetuned, finetune, publish,
};
use tokio::sync::{broadcast, watch};
use tonic::Status;

use crate::examples;
use crate::unread;

mod gate_inputs;
mod lines;
mod triggers;
use crate::store::{FeedbackStore, JobRow, LockError, TrainingLock, now_ms};
use crate::versions::Versions;
pub use gate_inputs::parse_tenant_tolerance;
pub use lines::model_version;

/// Finished jobs kept in memory for WatchJob.
const RECENT_JOBS: usize = 64;

pub struct Settings {
    pub assets: PathBuf,
    pub models: PathBuf,
    pub finetune: FinetuneConfig,
    /// Tenants with another check tolerance than `finetune`'s.
    pub tenant_check_tolerance: HashMap<String, f64>,
    /// Read corrections stored without the reading of the deployment's reader
    /// (`finetune.reader`) with it (`unread`), in this precision (fusion's, so the
    /// shift learnt is the one it serves); None: not.
    pub read_corrections: Option<empathy_reader::Precision>,
}

pub struct Job {
    pub id: String,
    /// Whose line it trains, on whose feedback.
    pub tenant: String,
    state: watch::Sender<TrainingJob>,
    cancel: AtomicBool,
}

impl Job {
    pub fn snapshot(&self) -> TrainingJob {
        self.state.borrow().clone()
    }

    pub fn subscribe(&self) -> watch::Receiver<TrainingJob> {
        self.state.subscribe()
    }

    fn update(&self, f: impl FnOnce(&mut TrainingJob)) {
        self.state.send_modify(f);
    }

    /// Marks the job running at `progress` with `message`, and logs it.
    fn progress(&self, progress: f32, message: &str) {
        tracing::info!(job = %self.id, progress = progress, "{message}");
        self.update(|j| {
            j.state = JobState::Running as i32;
            j.progress = progress;
            j.message = message.to_string();
        });
    }
}

pub fn is_terminal(state: i32) -> bool {
    !matches!(
        JobState::try_from(state),
        Ok(JobState::Queued | JobState::Running | JobState::Unspecified)
    )
}

pub struct Trainer {
    pub store: FeedbackStore,
    pub settings: Settings,
    /// Manifests of the registry's versions (whose feedback can train what).
    pub versions: Versions,
    current: Mutex<Option<Arc<Job>>>,
    recent: Mutex<VecDeque<Arc<Job>>>,
    /// Serialises writes of the serving pointer (publish, rollback).
    pointer: Mutex<()>,
    models_tx: broadcast::Sender<ModelVersion>,
    /// True once the process is stopping: open streams end so shutdown is not held.
    stopping: watch::Sender<bool>,
}

struct Outcome {
    state: JobState,
    message: String,
    published: String,
    metrics: std::collections::BTreeMap<String, f64>,
    /// Feedback up to this seq counts as trained on (published or rejected on it).
    trained_through: Option<i64>,
}

impl Outcome {
    fn failed(message: String) -> Outcome {
        Outcome {
            state: JobState::Failed,
            message,
            published: String::new(),
            metrics: Default::default(),
            trained_through: None,
        }
    }

    /// Failed once training ran: its metrics are kept.
    fn failed_after_training(
        message: String,
        metrics: std::collections::BTreeMap<String, f64>,
    ) -> Outcome {
        Outcome {
            metrics,
            ..Outcome::failed(message)
        }
    }

    fn cancelled() -> Outcome {
        Outcome {
            state: JobState::Cancelled,
            message: "cancelled; the serving version is unchanged".into(),
            ..Outcome::failed(String::new())
        }
    }
}

/// The stored feedback a job trains on.
struct Corrections {
    examples: Vec<FeedbackExample>,
    /// Feedback records read.
    total: usize,
    /// The highest seq read.
    through: i64,
    /// Why records were skipped, with how many each (empty if none was).
    skipped: String,
}

impl Corrections {
    /// `; ` and why records were skipped, or nothing.
    fn skipped_suffix(&self) -> String {
        if self.skipped.is_empty() {
            String::new()
        } else {
            format!("; {}", self.skipped)
        }
    }
}

impl Trainer {
    pub fn new(store: FeedbackStore, settings: Settings) -> Arc<Trainer> {
        let (models_tx, _) = broadcast::channel(64);
        Arc::new(Trainer {
            store,
            versions: Versions::new(settings.models.clone()),
            settings,
            current: Mutex::new(None),
            recent: Mutex::new(VecDeque::new()),
            pointer: Mutex::new(()),
            models_tx,
            stopping: watch::channel(false).0,
        })
    }

    /// Ends every open WatchJob/WatchModels stream (graceful shutdown waits for them).
    pub fn stop_streams(&self) {
        self.stopping.send_replace(true);
    }

    /// Resolves once `stop_streams` was called.
    pub fn stopped(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut rx = self.stopping.subscribe();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    }

    /// Whether `tenant`'s automatic training is paused, and why.
    pub fn status(&self, tenant: &str) -> anyhow::Result<TrainingStatus> {
        Ok(match self.store.pause(tenant)? {
            Some(p) => TrainingStatus {
                paused: true,
                reason: p.reason,
            },
            None => TrainingStatus {
                paused: false,
                reason: String::new(),
            },
        })
    }

    /// Lets the automatic triggers start `tenant`'s jobs again.
    pub fn resume(&self, tenant: &str) -> anyhow::Result<TrainingStatus> {
        self.store.resume(tenant)?;
        tracing::info!(tenant, "automatic training resumed");
        self.status(tenant)
    }

    /// Starts a job of `tenant`'s for an automatic trigger, unless its training is
    /// paused (after a rollback) or a job runs.
    pub fn start_automatic(
        self: &Arc<Self>,
        tenant: &str,
        reason: &str,
    ) -> Result<TrainingJob, Status> {
        let pause = tokio::task::block_in_place(|| self.store.pause(tenant)).map_err(|e| {
            Status::unavailable(format!("cannot read whether training is paused: {e:#}"))
        })?;
        if let Some(p) = pause {
            return Err(Status::failed_precondition(format!(
                "automatic training of tenant {tenant} is paused: {}",
                p.reason
            )));
        }
        self.start(tenant, reason)
    }

    /// Starts a job that trains `tenant`'s line on its feedback now, unless one is
    /// running (one job at a time, whatever the tenant: a job takes seconds and both
    /// cores).
    pub fn start(self: &Arc<Self>, tenant: &str, reason: &str) -> Result<TrainingJob, Status> {
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(job) = current.as_ref() {
            let s = job.snapshot();
            return Err(Status::failed_precondition(format!(
                "training job {} is already running ({:.0}% done: {}); watch it with WatchJob \
                 or stop it with CancelJob, then start another",
                job.id,
                s.progress * 100.0,
                s.message
            )));
        }
        // Several trainers on one PostgreSQL database: one job at a time among them.
        // Asking takes a query, maybe a connect (10 s at most when the server does not
        // answer): let the runtime move other tasks off this worker meanwhile.
        let lock =
            tokio::task::block_in_place(|| self.store.training_lock()).map_err(|e| match e {
                LockError::Busy => Status::failed_precondition(e.to_string()),
                LockError::Unavailable(_) => Status::unavailable(e.to_string()),
            })?;
        let id = uuid::Uuid::new_v4().to_string();
        let (state, _) = watch::channel(TrainingJob {
            job_id: id.clone(),
            state: JobState::Queued as i32,
            progress: 0.0,
            message: format!("queued: {reason}"),
            tenant: tenant.to_string(),
            ..TrainingJob::default()
        });
        let job = Arc::new(Job {
            id: id.clone(),
            tenant: tenant.to_string(),
            state,
            cancel: AtomicBool::new(false),
        });
        *current = Some(Arc::clone(&job));
        drop(current);
        {
            let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
            recent.push_back(Arc::clone(&job));
            while recent.len() > RECENT_JOBS {
                recent.pop_front();
            }
        }
        tracing::info!(job = %id, tenant, reason, "training job started");
        let snapshot = job.snapshot();
        let this = Arc::clone(self);
        let started = now_ms();
        tokio::spawn(async move {
            let worker = Arc::clone(&this);
            let job2 = Arc::clone(&job);
            let ran = tokio::task::spawn_blocking(move || (worker.run(&job2, &lock), lock)).await;
            let (outcome, lock) = match ran {
                Ok((outcome, lock)) => (outcome, Some(lock)),
                Err(e) => (
                    Outcome::failed(format!("the training thread failed: {e}")),
                    None,
                ),
            };
            this.finish(&job, outcome, started);
            drop(lock); // recorded: another trainer may start now
        });
        Ok(snapshot)
    }

    pub fn job(&self, id: &str) -> Option<Arc<Job>> {
        let recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        recent.iter().find(|j| j.id == id).cloned()
    }

    pub fn running(&self) -> bool {
        self.current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
    }

    pub fn cancel(&self, id: &str) -> Result<TrainingJob, Status> {
        let job = self
            .job(id)
            .ok_or_else(|| Status::not_found(format!("no training job {id:?} on this trainer")))?;
        let s = job.snapshot();
        if is_terminal(s.state) {
            return Err(Status::failed_precondition(format!(
                "job {id} already ended ({})",
                state_name(s.state)
            )));
        }
        job.cancel.store(true, Ordering::SeqCst);
        job.update(|j| j.message = "cancelling".into());
        Ok(job.snapshot())
    }

    fn finish(&self, job: &Job, outcome: Outcome, started: i64) {
        let metrics_json = serde_json::to_string(&outcome.metrics).unwrap_or_default();
        tracing::info!(
            job = %job.id,
            tenant = %job.tenant,
            state = state_name(outcome.state as i32),
            published = %outcome.published,
            "training job ended: {}",
            outcome.message
        );
        let row = JobRow {
            id: job.id.clone(),
            state: state_name(outcome.state as i32).into(),
            reason: String::new(),
            message: outcome.message.clone(),
            published: outcome.published.clone(),
            metrics: metrics_json,
            started_unix_ms: started,
            ended_unix_ms: now_ms(),
            through_seq: outcome.trained_through.unwrap_or(0),
        };
        let trained_through = outcome
            .trained_through
            .map(|seq| (job.tenant.as_str(), seq));
        if let Err(e) = self.store.record_job(&row, trained_through) {
            tracing::error!(job = %job.id, "cannot record the job: {e:#}");
        }
        if let Err(e) = self.store.refresh_pending() {
            tracing::warn!("cannot recount pending feedback: {e:#}");
        }
        job.update(|j| {
            j.state = outcome.state as i32;
            j.progress = 1.0;
            j.message = outcome.message.clone();
            j.published_version = outcome.published.clone();
            j.metrics = outcome
                .metrics
                .iter()
                .map(|(k, v)| (k.clone(), *v as f32))
                .collect();
        });
        *self.current.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// The job itself (blocking).
    fn run(&self, job: &Job, lock: &TrainingLock) -> Outcome {
        match self.try_run(job, lock) {
            Ok(outcome) | Err(outcome) => outcome,
        }
    }

    /// `run`'s steps; a job that ends early (failed, rejected, cancelled) is the `Err`.
    fn try_run(&self, job: &Job, lock: &TrainingLock) -> Result<Outcome, Outcome> {
        job.progress(0.0, "checking the registry");
        let (serving_dir, serving_id) = self.check_registry(&job.tenant)?;
        let mut corrections = self.read_corrections(job, &serving_id)?;
        let cancelled = || job.cancel.load(Ordering::SeqCst);
        let reader = self.settings.finetune.reader;
        let read = if let Some(precision) = self.settings.read_corrections {
            unread::read(
                &self.settings.assets,
                (reader, precision),
                &mut corrections.examples,
                &cancelled,
                &mut |done, of| job.progress(0.0, &format!("reading correction {done} of {of}")),
            )
        } else {
            unread::Read::default()
        };
        // Kept with the records (those of a cancelled job too), so the next job need
        // not read them again.
        if let Err(e) = self
            .store
            .add_readings(&job.tenant, reader.name(), &read.readings)
        {
            tracing::warn!(job = %job.id, "cannot keep the readings with the feedback: {e:#}");
        }
        if cancelled() {
            return Err(Outcome::cancelled());
        }
        job.progress(
            0.01,
            &format!(
                "fine-tuning {serving_id} for tenant {} on {} corrections ({} feedback records{}{})",
                job.tenant,
                corrections.examples.len(),
                corrections.total,
                corrections.skipped_suffix(),
                read.summary()
            ),
        );
        let mut tuned = self.tune(job, &serving_dir, &corrections.examples)?;
        tuned.metrics.insert(
            "corrections_read_by_trainer".into(),
            read.readings.len() as f64,
        );
        self.publish_tuned(job, lock, tuned, corrections.through)
    }

    /// The directory and id of the version serving `tenant`, once its line has room
    /// for a new version.
    fn check_registry(&self, tenant: &str) -> Result<(PathBuf, String), Outcome> {
        let models = &self.settings.models;
        let (serving_dir, serving_id) = registry::serving_for(models, tenant)
            .map_err(|e| Outcome::failed(format!("no serving version: {e:#}")))?;
        // The new version will be about the size of the one it is tuned from.
        let room = registry::line_dir(models, tenant).and_then(|line| {
            std::fs::create_dir_all(&line)
                .with_context(|| format!("the registry {} is not writable", line.display()))?;
            registry::check_writable(&line, registry::version_bytes(&serving_dir)?)
        });
        if let Err(e) = room {
            return Err(Outcome::failed(format!(
                "{e:#}: nothing was trained; the serving version is unchanged"
            )));
        }
        Ok((serving_dir, serving_id))
    }

    /// The job's tenant's stored feedback that can train the version serving it;
    /// fewer than two examples end the job REJECTED.
    fn read_corrections(&self, job: &Job, serving_id: &str) -> Result<Corrections, Outcome> {
        let unreadable =
            |e: anyhow::Error| Outcome::failed(format!("cannot read the feedback store: {e:#}"));
        let through = self.store.last_seq().map_err(unreadable)?;
        let stored = self
            .store
            .read_all(&job.tenant, through)
            .map_err(unreadable)?;
        let total = stored.len();
        let through = stored.iter().map(|s| s.seq).max().unwrap_or(through);
        let serving = self
            .versions
            .get(serving_id)
            .map_err(|e| Outcome::failed(format!("the serving version does not read: {e:#}")))?;
        let reader = self.settings.finetune.reader;
        let found = examples::examples(stored, &self.versions, (&serving, reader));
        let skipped = found.skipped_summary();
        if !skipped.is_empty() {
            tracing::warn!(job = %job.id, "feedback {skipped}");
        }
        let corrections = Corrections {
            examples: found.examples,
            total,
            through,
            skipped,
        };
        if corrections.examples.len() < 2 {
            return Err(Outcome {
                state: JobState::Rejected,
                message: format!(
                    "not trained: {} of tenant {}'s {total} stored feedback records can train \
                     {} (a sentiment or emotion correction of an analysis with text); at least \
                     2 are needed{}",
                    corrections.examples.len(),
                    job.tenant,
                    serving.version,
                    corrections.skipped_suffix()
                ),
                published: String::new(),
                metrics: Default::default(),
                trained_through: None,
            });
        }
        Ok(corrections)
    }

    /// Fine-tunes the serving version on `examples`, reporting progress; a cancel
    /// (during or right after) ends the job CANCELLED.
    fn tune(
        &self,
        job: &Job,
        serving_dir: &Path,
        examples: &[FeedbackExample],
    ) -> Result<Finetuned, Outcome> {
        let mut report = |p: f32, m: &str| job.progress(p, m);
        let cancelled = || job.cancel.load(Ordering::SeqCst);
        let traffic = self.traffic(&job.tenant);
        let tuned = match finetune(
            &self.settings.assets,
            serving_dir,
            examples,
            &traffic,
            &self.settings.finetune_for(&job.tenant),
            &mut report,
            &cancelled,
        ) {
            Ok(t) => t,
            Err(e) if e.is::<Cancelled>() => return Err(Outcome::cancelled()),
            Err(e) => return Err(Outcome::failed(format!("training failed: {e:#}"))),
        };
        if cancelled() {
            return Err(Outcome::cancelled());
        }
        Ok(tuned)
    }

    /// Publishes `tuned` if it was accepted and this job still holds the training lock,
    /// points `serving` at it and announces it. Feedback through `through` counts as
    /// trained on once published or rejected.
    fn publish_tuned(
        &self,
        job: &Job,
        lock: &TrainingLock,
        tuned: Finetuned,
        through: i64,
    ) -> Result<Outcome, Outcome> {
        let models = &self.settings.models;
        let parent = tuned.serving.version.clone();
        // Lost with its database connection, the lock may be another trainer's now.
        if let Err(e) = lock.check() {
            return Err(Outcome::failed_after_training(
                format!(
                    "{e:#}: nothing was published or marked as trained; {parent} keeps serving"
                ),
                tuned.metrics,
            ));
        }
        if !tuned.accepted {
            return Ok(Outcome {
                state: JobState::Rejected,
                message: format!("not published, {parent} keeps serving: {}", tuned.reason),
                published: String::new(),
                metrics: tuned.metrics,
                trained_through: Some(through),
            });
        }
        job.progress(0.97, "publishing");
        let tenant = job.tenant.as_str();
        let _pointer = self.pointer.lock().unwrap_or_else(|e| e.into_inner());
        // A rollback while this job trained must hold: publish only onto the parent.
        let serving = registry::serving_for(models, tenant)
            .map(|(_, id)| id)
            .unwrap_or_else(|_| "no readable version".into());
        if serving != parent {
            return Ok(Outcome {
                state: JobState::Rejected,
                message: format!(
                    "the serving version changed to {serving} while training (from {parent}); \
                     not published"
                ),
                published: String::new(),
                metrics: tuned.metrics,
                trained_through: None,
            });
        }
        let line = registry::line_dir(models, tenant)
            .map_err(|e| Outcome::failed_after_training(format!("{e:#}"), tuned.metrics.clone()))?;
        let (_, manifest) = match publish(&line, &tuned, Some(tenant)) {
            Ok(p) => p,
            Err(e) => {
                return Err(Outcome::failed_after_training(
                    format!("could not publish ({e:#}); {parent} keeps serving"),
                    tuned.metrics,
                ));
            }
        };
        if let Err(e) = registry::set_line_serving(models, tenant, &manifest.version) {
            return Err(Outcome::failed_after_training(
                format!(
                    "wrote {} but could not point serving at it ({e:#}); {parent} keeps serving",
                    manifest.version
                ),
                tuned.metrics,
            ));
        }
        let _ = self.models_tx.send(model_version(&manifest, true, tenant));
        Ok(Outcome {
            state: JobState::Published,
            message: format!(
                "published {} for tenant {tenant} (parent {parent}): {}",
                manifest.version, tuned.reason
            ),
            published: manifest.version.clone(),
            metrics: tuned.metrics,
            trained_through: Some(through),
        })
    }

    pub fn subscribe_models(&self) -> broadcast::Receiver<ModelVersion> {
        self.models_tx.subscribe()
    }
}

pub fn state_name(state: i32) -> &'static str {
    match JobState::try_from(state) {
        Ok(JobState::Queued) => "QUEUED",
        Ok(JobState::Running) => "RUNNING",
        Ok(JobState::Published) => "PUBLISHED",
        Ok(JobState::Rejected) => "REJECTED",
        Ok(JobState::Failed) => "FAILED",
        Ok(JobState::Cancelled) => "CANCELLED",
        _ => "UNSPECIFIED",
    }
}

#[cfg(test)]
mod tests;
