//! The feedback store: SQLite (default, one file) or PostgreSQL (`--database
//! postgres://…`, for teams that run several trainers on one database).
//!
//! Durability, the same for both: a record is acknowledged only after the transaction
//! that holds it has committed. SQLite runs WAL with `synchronous=FULL` (every commit
//! fsyncs the WAL; see `sqlite.rs`); PostgreSQL commits with `synchronous_commit=on`,
//! its default (the commit returns once the WAL is flushed to disk; the writer sets it
//! for its session if the server is configured `off`; see `postgres.rs`). Either way
//! an acknowledged record survives the trainer being killed (SIGKILL).
//!
//! Intake is a bounded queue in front of one writer thread: callers `submit` and wait
//! for their commit; the writer takes everything queued (up to `GROUP`) into one
//! transaction, so many concurrent submissions share one flush. When the queue is
//! full, `submit` answers at once with `QueueFull` (RESOURCE_EXHAUSTED upstream)
//! instead of queueing without bound; nothing that was acknowledged is affected. The
//! queue and the writer loop live here, once; a backend only commits a group.
//!
//! Deletion (issue 12): `purge` quarantines or deletes what a filter matches, `forget`
//! deletes one subject's records, `delete_older_than` is the retention. Quarantined
//! records stay in the table but are never read for training nor counted as pending.
//! SQLite runs `secure_delete` and truncates its WAL after a delete, so deleted text
//! does not linger in the file's free pages or the WAL; PostgreSQL keeps dead row
//! versions until its (auto)vacuum reclaims them.
//!
//! Training lock: one job at a time per database. SQLite needs no lock beyond the
//! trainer's own one-job rule (one file, one trainer); PostgreSQL takes a session
//! advisory lock for the whole job, so a second trainer on the same database is
//! refused (`LockError::Busy`) while the first one trains.

pub mod affect;
pub mod keys;
mod postgres;
mod postgres_tls;
mod postgres_url;
mod privacy;
mod replies;
mod schema;
mod sqlite;
mod tenants;

use privacy::{FILTER, TRAINED_INTO};
pub use privacy::{Forgotten, Pause, filter_is_empty};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
pub use tenants::Pending;
use tenants::{AnalysisRow, PENDING};

use anyhow::{Context, bail};
use empathy_proto::v1::{FeedbackFilter, FeedbackRecord, FloatVector};
use prost::Message;
use tokio::sync::{mpsc, oneshot, watch};

/// Most records committed in one transaction.
const GROUP: usize = 256;

#[derive(Debug)]
pub enum SubmitError {
    /// The intake queue is full: retry later.
    QueueFull(usize),
    /// The database's disk is full: the record is NOT stored, and retrying will not
    /// help until someone frees space.
    DiskFull(String),
    /// The database refused the write: the record is NOT stored.
    NotStored(String),
}

impl std::fmt::Display for SubmitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SubmitError::QueueFull(n) => write!(
                f,
                "the feedback queue is full ({n} records waiting to be stored); retry shortly"
            ),
            SubmitError::DiskFull(e) => write!(
                f,
                "feedback not stored: the feedback database's disk is full ({e}); records \
                 acknowledged before are kept, and storing resumes once space is freed"
            ),
            SubmitError::NotStored(e) => write!(f, "feedback not stored: {e}"),
        }
    }
}

impl std::error::Error for SubmitError {}

/// A backend's write error that says the disk is full (SQLITE_FULL, PostgreSQL's 53100).
#[derive(Debug)]
struct DiskFull(String);

impl std::fmt::Display for DiskFull {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DiskFull {}

/// Why a training job may not start on this database.
#[derive(Debug)]
pub enum LockError {
    /// Another trainer holds the training lock (FAILED_PRECONDITION upstream).
    Busy,
    /// The lock could not be asked for (UNAVAILABLE upstream).
    Unavailable(String),
}

impl std::fmt::Display for LockError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LockError::Busy => write!(
                f,
                "another trainer is training on this feedback database (it holds the training \
                 lock); watch or cancel that job on the trainer that runs it, or start one when \
                 it has ended"
            ),
            LockError::Unavailable(e) => write!(f, "cannot take the training lock: {e}"),
        }
    }
}

impl std::error::Error for LockError {}

/// Held for the whole of a training job; dropping it releases the lock.
pub struct TrainingLock {
    /// PostgreSQL: the thread whose session holds the lock. It answers `check`s, and
    /// releases the lock when this sender is dropped.
    session: Option<std::sync::mpsc::Sender<LockCheck>>,
}

/// Where a lock's session thread answers whether its session still holds the lock.
type LockCheck = std::sync::mpsc::SyncSender<anyhow::Result<bool>>;

/// How long a lock's session may take to answer.
const LOCK_WAIT: Duration = Duration::from_secs(10);

impl TrainingLock {
    /// No database lock (SQLite: one file, one trainer).
    fn local() -> TrainingLock {
        TrainingLock { session: None }
    }

    /// Whether this trainer still holds the lock. A PostgreSQL session lock goes with
    /// its connection: once that broke, another trainer may have started a job, so a
    /// job checks before it records or publishes anything.
    pub fn check(&self) -> anyhow::Result<()> {
        let Some(session) = &self.session else {
            return Ok(());
        };
        let (reply, answer) = std::sync::mpsc::sync_channel(1);
        session
            .send(reply)
            .map_err(|_| anyhow::anyhow!("the training lock's session has ended"))?;
        match answer.recv_timeout(LOCK_WAIT) {
            Ok(Ok(true)) => Ok(()),
            Ok(Ok(false)) => bail!(
                "the database connection that held the training lock was lost, so another \
                 trainer may have started a job"
            ),
            Ok(Err(e)) => Err(e.context("cannot check the training lock")),
            Err(_) => {
                bail!("the training lock's database session did not answer within {LOCK_WAIT:?}")
            }
        }
    }
}

type Reply = oneshot::Sender<Result<Pending, SubmitError>>;

/// A record on its way into the database.
pub struct NewRecord {
    pub id: String,
    pub record: FeedbackRecord,
}

/// A feedback record with its assigned id, stored or being stored.
pub struct Stored {
    pub seq: i64,
    pub id: String,
    pub record: FeedbackRecord,
}

#[derive(Debug, Clone, Default)]
pub struct JobRow {
    pub id: String,
    pub state: String,
    pub reason: String,
    pub message: String,
    pub published: String,
    /// JSON object of metric name to value.
    pub metrics: String,
    pub started_unix_ms: i64,
    pub ended_unix_ms: i64,
    pub through_seq: i64,
}

/// What a feedback database does. Every method but `open_writer` may be called from
/// any thread, async ones included (a backend whose client must not block inside a
/// runtime runs it on its own thread).
trait Backend: Send + Sync {
    /// Connects the writer and creates the schema (called on the writer thread).
    fn open_writer(&self) -> anyhow::Result<Box<dyn Writer>>;
    /// Every stored record of `tenant` with seq <= `through` that may be trained on,
    /// in seq order.
    fn read_all(&self, tenant: &str, through: i64) -> anyhow::Result<Vec<Stored>>;
    /// Replaces the protobuf of the records with these ids, in one transaction (a
    /// record deleted meanwhile stays deleted); how many were replaced.
    fn replace_records(&self, rows: &[(String, Vec<u8>)]) -> anyhow::Result<u64>;
    fn last_seq(&self) -> anyhow::Result<i64>;
    fn count(&self) -> anyhow::Result<u64>;
    /// Records not yet trained on, per tenant (seq above its `trained_through` mark).
    fn pending_count(&self) -> anyhow::Result<Pending>;
    /// Upserts the job; raises the tenant's `trained_through` mark to the seq (never
    /// lowers it).
    fn record_job(&self, job: &JobRow, trained_through: Option<(&str, i64)>) -> anyhow::Result<()>;
    /// The most recent jobs, newest first.
    fn jobs(&self, limit: usize) -> anyhow::Result<Vec<JobRow>>;
    fn training_lock(&self) -> Result<TrainingLock, LockError>;
    /// Inserts a key unless its id or hash is taken; whether it did.
    fn insert_key(&self, key: &keys::KeyRow) -> anyhow::Result<bool>;
    fn revoke_key(&self, key_id: &str, now_ms: i64) -> anyhow::Result<()>;
    /// Keys where `condition` (with one parameter, `$1`) holds, oldest first.
    fn keys_where(&self, condition: &str, value: &str) -> anyhow::Result<Vec<keys::KeyRow>>;
    /// Quarantines (`delete` false) or deletes the records `filter` matches (not
    /// empty); returns how many matched.
    fn purge(&self, filter: &FeedbackFilter, delete: bool) -> anyhow::Result<u64>;
    /// Deletes every record of `subject` (quarantined ones too).
    fn forget(&self, subject: &str) -> anyhow::Result<Forgotten>;
    /// Deletes the records received before `cutoff_unix_ms`.
    fn delete_older_than(&self, cutoff_unix_ms: i64) -> anyhow::Result<u64>;
    /// Sets (Some) or clears (None) a tenant's durable training pause.
    fn set_pause(&self, tenant: &str, pause: Option<&Pause>) -> anyhow::Result<()>;
    fn pause(&self, tenant: &str) -> anyhow::Result<Option<Pause>>;
    /// Inserts the samples (an analysis already stored is kept), then keeps each of
    /// their tenants' newest `keep`; returns how many were inserted.
    fn store_traffic(&self, rows: &[AnalysisRow], keep: i64) -> anyhow::Result<u64>;
    /// A tenant's newest samples (analysis id, protobuf), at most `limit`.
    fn read_traffic(&self, tenant: &str, limit: i64) -> anyhow::Result<Vec<(String, Vec<u8>)>>;
    /// Sets (Some: protobuf and when) or removes (None) a tenant's reply bank.
    fn set_replies(&self, tenant: &str, bank: Option<(&[u8], i64)>) -> anyhow::Result<()>;
    fn replies(&self, tenant: &str) -> anyhow::Result<Option<Vec<u8>>>;
    /// Inserts the points (an analysis already stored is kept); how many were new.
    fn insert_affect(&self, rows: &[AnalysisRow]) -> anyhow::Result<u64>;
    /// A subject's points since a time (analysis id, protobuf), newest first, at most
    /// `limit`.
    fn read_affect(
        &self,
        tenant: &str,
        subject_id: &str,
        since_unix_ms: i64,
        limit: i64,
    ) -> anyhow::Result<Vec<(String, Vec<u8>)>>;
}

/// The writer thread's connection.
trait Writer: Send {
    /// Commits the whole group in one transaction, or nothing; returns the pending
    /// counts as of that transaction, only once it has committed.
    fn commit_group(&mut self, group: &[NewRecord]) -> anyhow::Result<Pending>;
    fn pending_count(&mut self) -> anyhow::Result<Pending>;
}

/// The columns stored beside the protobuf (for people querying the table).
struct Columns {
    analysis_id: String,
    model_version: String,
    sentiment: String,
    emotion: String,
    rating: i32,
    note: String,
    text: String,
    received_unix_ms: i64,
    tenant: String,
    key_id: String,
    subject_id: String,
    /// The whole FeedbackRecord (features included) as protobuf.
    record: Vec<u8>,
}

impl Columns {
    fn of(record: &FeedbackRecord) -> Columns {
        let fb = record.feedback.clone().unwrap_or_default();
        Columns {
            analysis_id: fb.analysis_id,
            model_version: record.model_version.clone(),
            sentiment: fb.sentiment,
            emotion: fb.emotion,
            rating: fb.rating,
            note: fb.note,
            text: record.text.clone(),
            received_unix_ms: record.received_unix_ms,
            // Stored before tenants had lines, or straight into the store: the default's.
            tenant: if record.tenant.is_empty() {
                empathy_proto::DEFAULT_TENANT.to_string()
            } else {
                record.tenant.clone()
            },
            key_id: record.key_id.clone(),
            subject_id: record.subject_id.clone(),
            record: record.encode_to_vec(),
        }
    }
}

fn decode(id: &str, bytes: &[u8]) -> anyhow::Result<FeedbackRecord> {
    FeedbackRecord::decode(bytes).with_context(|| format!("feedback {id}: corrupt record"))
}

/// Where the feedback lives, from `--database`.
#[derive(Clone, PartialEq)]
pub enum Database {
    /// A file path (or `sqlite://PATH`).
    Sqlite(PathBuf),
    /// A `postgres://` or `postgresql://` URL (kept whole: it may hold a password).
    Postgres(String),
}

impl Database {
    pub fn parse(database: &str) -> anyhow::Result<Database> {
        let lower = database.to_ascii_lowercase();
        for scheme in ["postgres://", "postgresql://"] {
            if lower.starts_with(scheme) {
                // The client wants the scheme in lower case.
                let url = format!("{scheme}{}", &database[scheme.len()..]);
                postgres::check_url(&url)?;
                return Ok(Database::Postgres(url));
            }
        }
        if let Some(rest) = database.strip_prefix("sqlite://") {
            return Ok(Database::Sqlite(PathBuf::from(rest)));
        }
        if database.contains("://") {
            bail!(
                "--database {:?}: give a SQLite file path or a postgres://USER@HOST:PORT/DB URL",
                postgres::redact(database)
            );
        }
        Ok(Database::Sqlite(PathBuf::from(database)))
    }
}

/// Never the password, even in debug output.
impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Database::Sqlite(path) => f.debug_tuple("Sqlite").field(path).finish(),
            Database::Postgres(url) => f
                .debug_tuple("Postgres")
                .field(&postgres::redact(url))
                .finish(),
        }
    }
}

/// The path, or the URL with its password replaced by `***`: safe to log.
impl std::fmt::Display for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Database::Sqlite(path) => write!(f, "{}", path.display()),
            Database::Postgres(url) => write!(f, "{}", postgres::redact(url)),
        }
    }
}

#[derive(Clone)]
pub struct FeedbackStore {
    backend: Arc<dyn Backend>,
    /// What the store is, for logs (no password).
    describe: Arc<str>,
    queue: mpsc::Sender<(NewRecord, Reply)>,
    capacity: usize,
    /// Records stored but not yet trained on, per tenant, after each commit.
    pending: watch::Receiver<Pending>,
}

pub use empathy_proto::now_unix_ms as now_ms;

impl FeedbackStore {
    /// Opens (creating if needed) a SQLite database file and starts the writer thread.
    #[cfg(test)]
    pub fn open(path: &std::path::Path, capacity: usize) -> anyhow::Result<FeedbackStore> {
        FeedbackStore::open_database(&Database::Sqlite(path.to_path_buf()), capacity)
    }

    /// Opens (creating the schema if needed) the database and starts the writer
    /// thread. A database that cannot be reached is an error here, at startup.
    pub fn open_database(database: &Database, capacity: usize) -> anyhow::Result<FeedbackStore> {
        let (backend, describe): (Arc<dyn Backend>, String) = match database {
            Database::Sqlite(path) => (
                Arc::new(sqlite::Sqlite::new(path)?),
                format!("SQLite {} (WAL, synchronous=FULL)", path.display()),
            ),
            Database::Postgres(url) => (
                Arc::new(postgres::Postgres::connect(url)?),
                format!(
                    "PostgreSQL {} (synchronous_commit on)",
                    postgres::redact(url)
                ),
            ),
        };
        let capacity = capacity.max(1);
        let (tx, rx) = mpsc::channel(capacity);
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let opening = Arc::clone(&backend);
        std::thread::Builder::new()
            .name("feedback-writer".into())
            .spawn(move || {
                let opened = opening.open_writer().and_then(|mut w| {
                    let pending = w.pending_count()?;
                    Ok((w, pending))
                });
                drop(opening);
                match opened {
                    Ok((w, pending)) => {
                        let (pending_tx, pending_rx) = watch::channel(pending);
                        let _ = ready_tx.send(Ok(pending_rx));
                        writer(w, rx, pending_tx);
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                    }
                }
            })?;
        let pending = ready_rx
            .recv()
            .context("the feedback writer stopped while opening the database")??;
        Ok(FeedbackStore {
            backend,
            describe: describe.into(),
            queue: tx,
            capacity,
            pending,
        })
    }

    /// The database, for logs (a URL's password is redacted).
    pub fn describe(&self) -> &str {
        &self.describe
    }

    /// Stores `record` under `id`; returns once it is committed (durable), with the
    /// number of its tenant's records not yet trained on.
    pub async fn submit(&self, id: String, record: FeedbackRecord) -> Result<u64, SubmitError> {
        let tenant = record.tenant.clone();
        let (reply, answer) = oneshot::channel();
        self.queue
            .try_send((NewRecord { id, record }, reply))
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => SubmitError::QueueFull(self.capacity),
                mpsc::error::TrySendError::Closed(_) => {
                    SubmitError::NotStored("the store's writer has stopped".into())
                }
            })?;
        match answer.await {
            Ok(Ok(pending)) => Ok(pending.get(&tenant).copied().unwrap_or(0)),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(SubmitError::NotStored(
                "the store's writer stopped before committing".into(),
            )),
        }
    }

    /// Watches the counts of records not yet trained on, per tenant.
    pub fn pending(&self) -> watch::Receiver<Pending> {
        self.pending.clone()
    }

    /// Every stored record of `tenant` with seq <= `through` that may be trained on
    /// (not quarantined), in seq order (on a reader connection, beside the writer).
    pub fn read_all(&self, tenant: &str, through: i64) -> anyhow::Result<Vec<Stored>> {
        self.backend.read_all(tenant, through)
    }

    /// Gives `tenant`'s stored records that `values` names (by id) the meaning
    /// `reader`'s shift, as if fusion had sent it with them: what the trainer worked
    /// out once (the reading of an old correction) is not worked out again by every
    /// job. Returns how many records took it.
    pub fn add_readings(
        &self,
        tenant: &str,
        reader: &str,
        values: &HashMap<String, Vec<f32>>,
    ) -> anyhow::Result<u64> {
        if values.is_empty() {
            return Ok(0);
        }
        let through = self.backend.last_seq()?;
        let rows: Vec<(String, Vec<u8>)> = self
            .backend
            .read_all(tenant, through)?
            .into_iter()
            .filter_map(|mut s| {
                let v = values.get(&s.id)?;
                s.record.features.insert(
                    empathy_model::MEANING_SHIFT.to_string(),
                    FloatVector { values: v.clone() },
                );
                s.record.meaning_reader = reader.to_string();
                Some((s.id, s.record.encode_to_vec()))
            })
            .collect();
        self.backend.replace_records(&rows)
    }

    pub fn last_seq(&self) -> anyhow::Result<i64> {
        self.backend.last_seq()
    }

    pub fn count(&self) -> anyhow::Result<u64> {
        self.backend.count()
    }

    /// Records a finished job; `trained_through` (Some) marks the tenant's feedback up
    /// to that seq as trained on, so it no longer counts as pending.
    pub fn record_job(
        &self,
        job: &JobRow,
        trained_through: Option<(&str, i64)>,
    ) -> anyhow::Result<()> {
        self.backend.record_job(job, trained_through)
    }

    /// The most recent recorded jobs, newest first.
    pub fn jobs(&self, limit: usize) -> anyhow::Result<Vec<JobRow>> {
        self.backend.jobs(limit)
    }

    /// Recomputes the pending counts (after a job marked feedback as trained).
    pub fn refresh_pending(&self) -> anyhow::Result<Pending> {
        self.backend.pending_count()
    }

    /// The right to run a training job on this database, held until dropped.
    /// PostgreSQL: `Busy` while another trainer on the same database runs a job.
    pub fn training_lock(&self) -> Result<TrainingLock, LockError> {
        self.backend.training_lock()
    }
}

/// The writer: group commits until every sender is gone.
fn writer(
    mut w: Box<dyn Writer>,
    mut rx: mpsc::Receiver<(NewRecord, Reply)>,
    pending: watch::Sender<Pending>,
) {
    while let Some(first) = rx.blocking_recv() {
        let mut group = vec![first];
        while group.len() < GROUP {
            match rx.try_recv() {
                Ok(item) => group.push(item),
                Err(_) => break,
            }
        }
        let (records, replies): (Vec<NewRecord>, Vec<Reply>) = group.into_iter().unzip();
        match w.commit_group(&records) {
            Ok(count) => {
                pending.send_replace(count.clone());
                for reply in replies {
                    let _ = reply.send(Ok(count.clone()));
                }
            }
            Err(e) => {
                let full = e.is::<DiskFull>();
                let message = format!("{e:#}");
                tracing::error!(records = records.len(), "feedback not stored: {message}");
                for reply in replies {
                    let _ = reply.send(Err(if full {
                        SubmitError::DiskFull(message.clone())
                    } else {
                        SubmitError::NotStored(message.clone())
                    }));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
