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

pub mod keys;
mod postgres;
mod postgres_tls;
mod postgres_url;
mod schema;
mod sqlite;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use empathy_proto::v1::{FeedbackFilter, FeedbackRecord};
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

type Reply = oneshot::Sender<Result<u64, SubmitError>>;

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

/// What `forget` removed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Forgotten {
    pub deleted: u64,
    /// Versions published by jobs that read at least one of the deleted records.
    pub trained_into: Vec<String>,
}

/// Why automatic training is paused, and since when.
#[derive(Debug, Clone, PartialEq)]
pub struct Pause {
    pub reason: String,
    pub since_unix_ms: i64,
}

/// The WHERE clause of a purge, the same in both dialects: `$1`..`$6` are the filter's
/// tenant, key_id, from, to, model_version and subject_id; an unset field (empty or
/// 0) matches every row. (SQLite reads `$N` as a named parameter numbered by first
/// appearance, which is N here.)
const FILTER: &str = "(CAST($1 AS TEXT) = '' OR tenant = $1) \
     AND (CAST($2 AS TEXT) = '' OR key_id = $2) \
     AND (CAST($3 AS BIGINT) = 0 OR received_unix_ms >= $3) \
     AND (CAST($4 AS BIGINT) = 0 OR received_unix_ms < $4) \
     AND (CAST($5 AS TEXT) = '' OR model_version = $5) \
     AND (CAST($6 AS TEXT) = '' OR subject_id = $6)";

/// Versions that read a record at or above `$1` (the lowest seq being deleted).
const TRAINED_INTO: &str = "SELECT DISTINCT published FROM jobs WHERE state = 'PUBLISHED' \
     AND published <> '' AND through_seq >= $1 ORDER BY published";

/// Whether a filter sets at least one field (an empty one would match everything).
pub fn filter_is_empty(f: &FeedbackFilter) -> bool {
    f.tenant.is_empty()
        && f.key_id.is_empty()
        && f.from_unix_ms == 0
        && f.to_unix_ms == 0
        && f.model_version.is_empty()
        && f.subject_id.is_empty()
}

/// What a feedback database does. Every method but `open_writer` may be called from
/// any thread, async ones included (a backend whose client must not block inside a
/// runtime runs it on its own thread).
trait Backend: Send + Sync {
    /// Connects the writer and creates the schema (called on the writer thread).
    fn open_writer(&self) -> anyhow::Result<Box<dyn Writer>>;
    /// Every stored record with seq <= `through`, in seq order.
    fn read_all(&self, through: i64) -> anyhow::Result<Vec<Stored>>;
    fn last_seq(&self) -> anyhow::Result<i64>;
    fn count(&self) -> anyhow::Result<u64>;
    /// Records not yet trained on (seq above the `trained_through` mark).
    fn pending_count(&self) -> anyhow::Result<u64>;
    /// Upserts the job; raises `trained_through` to `trained_through` (never lowers it).
    fn record_job(&self, job: &JobRow, trained_through: Option<i64>) -> anyhow::Result<()>;
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
    /// Sets (Some) or clears (None) the durable training pause.
    fn set_pause(&self, pause: Option<&Pause>) -> anyhow::Result<()>;
    fn pause(&self) -> anyhow::Result<Option<Pause>>;
}

/// Records stored but not yet trained on (the same SQL in both dialects); quarantined
/// ones never will be.
const PENDING: &str = "SELECT COUNT(*) FROM feedback WHERE quarantined = 0 AND seq > \
     COALESCE((SELECT value FROM meta WHERE key = 'trained_through'), 0)";

/// The writer thread's connection.
trait Writer: Send {
    /// Commits the whole group in one transaction, or nothing; returns the pending
    /// count as of that transaction, only once it has committed.
    fn commit_group(&mut self, group: &[NewRecord]) -> anyhow::Result<u64>;
    fn pending_count(&mut self) -> anyhow::Result<u64>;
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
            tenant: record.tenant.clone(),
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
    /// Records stored but not yet trained on, after each commit.
    pending: watch::Receiver<u64>,
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

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
    /// number of records not yet trained on.
    pub async fn submit(&self, id: String, record: FeedbackRecord) -> Result<u64, SubmitError> {
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
            Ok(Ok(pending)) => Ok(pending),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(SubmitError::NotStored(
                "the store's writer stopped before committing".into(),
            )),
        }
    }

    /// Watches the count of records not yet trained on.
    pub fn pending(&self) -> watch::Receiver<u64> {
        self.pending.clone()
    }

    /// Every stored record with seq <= `through` that may be trained on (not
    /// quarantined), in seq order (on a reader connection, beside the writer).
    pub fn read_all(&self, through: i64) -> anyhow::Result<Vec<Stored>> {
        self.backend.read_all(through)
    }

    pub fn last_seq(&self) -> anyhow::Result<i64> {
        self.backend.last_seq()
    }

    pub fn count(&self) -> anyhow::Result<u64> {
        self.backend.count()
    }

    /// Records a finished job; `trained_through` (Some) marks feedback up to that seq
    /// as trained on, so it no longer counts as pending.
    pub fn record_job(&self, job: &JobRow, trained_through: Option<i64>) -> anyhow::Result<()> {
        self.backend.record_job(job, trained_through)
    }

    /// The most recent recorded jobs, newest first.
    pub fn jobs(&self, limit: usize) -> anyhow::Result<Vec<JobRow>> {
        self.backend.jobs(limit)
    }

    /// Recomputes the pending count (after a job marked feedback as trained).
    pub fn refresh_pending(&self) -> anyhow::Result<u64> {
        self.backend.pending_count()
    }

    /// Quarantines (`delete` false: kept, never trained on) or deletes the records
    /// `filter` matches; returns how many matched. An empty filter is an error.
    pub fn purge(&self, filter: &FeedbackFilter, delete: bool) -> anyhow::Result<u64> {
        if filter_is_empty(filter) {
            bail!("an empty filter would match every record; set at least one field");
        }
        self.backend.purge(filter, delete)
    }

    /// Deletes every stored record of `subject`.
    pub fn forget(&self, subject: &str) -> anyhow::Result<Forgotten> {
        if subject.is_empty() {
            bail!("no subject id");
        }
        self.backend.forget(subject)
    }

    /// Deletes the records received more than `age` ago (the retention).
    pub fn delete_older_than(&self, age: Duration) -> anyhow::Result<u64> {
        let age_ms = i64::try_from(age.as_millis()).unwrap_or(i64::MAX);
        self.backend
            .delete_older_than(now_ms().saturating_sub(age_ms))
    }

    /// Pauses automatic training until `resume`, durably.
    pub fn set_pause(&self, reason: &str) -> anyhow::Result<()> {
        self.backend.set_pause(Some(&Pause {
            reason: reason.to_string(),
            since_unix_ms: now_ms(),
        }))
    }

    pub fn resume(&self) -> anyhow::Result<()> {
        self.backend.set_pause(None)
    }

    /// Why automatic training is paused, or None.
    pub fn pause(&self) -> anyhow::Result<Option<Pause>> {
        self.backend.pause()
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
    pending: watch::Sender<u64>,
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
                pending.send_replace(count);
                for reply in replies {
                    let _ = reply.send(Ok(count));
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
mod tests {
    use empathy_proto::v1::FeedbackRequest;

    use super::*;

    fn record(i: usize) -> FeedbackRecord {
        let mut r = FeedbackRecord {
            feedback: Some(FeedbackRequest {
                analysis_id: format!("a{i}"),
                sentiment: "positive".into(),
                ..FeedbackRequest::default()
            }),
            text: format!("text {i}"),
            ..FeedbackRecord::default()
        };
        if i == 3 {
            r.feedback.get_or_insert_default().note = "a\0b".into();
        }
        r
    }

    /// The whole API on one backend, from async code (as the trainer calls it): 40
    /// concurrent submissions, reopen, read back, jobs and the trained_through mark.
    async fn exercise(database: &Database) -> anyhow::Result<FeedbackStore> {
        {
            let store = FeedbackStore::open_database(database, 64)?;
            let mut tasks = Vec::new();
            for i in 0..40 {
                let store = store.clone();
                tasks.push(tokio::spawn(async move {
                    store.submit(format!("id{i}"), record(i)).await
                }));
            }
            for t in tasks {
                t.await??;
            }
            assert_eq!(store.count()?, 40);
        }
        let store = FeedbackStore::open_database(database, 64)?;
        let all = store.read_all(i64::MAX)?;
        assert_eq!(all.len(), 40);
        assert!(
            all.windows(2).all(|w| w[0].seq < w[1].seq),
            "not in seq order"
        );
        assert_eq!(
            all[7].record.text,
            format!("text {}", all[7].id[2..].parse::<usize>()?)
        );
        assert_eq!(store.last_seq()?, all[39].seq);
        // A NUL in a client's text is kept exactly in the record (PostgreSQL's side
        // columns cannot hold it; the group it came with was stored all the same).
        let odd = all.iter().find(|s| s.id == "id3").map(|s| s.record.clone());
        assert_eq!(
            odd.and_then(|r| r.feedback).map(|f| f.note),
            Some("a\0b".into())
        );
        assert_eq!(*store.pending().borrow(), 40);
        let through = all[29].seq;
        store.record_job(
            &JobRow {
                id: "j".into(),
                state: "PUBLISHED".into(),
                started_unix_ms: 1,
                ..JobRow::default()
            },
            Some(through),
        )?;
        assert_eq!(store.refresh_pending()?, 10);
        // trained_through only grows; a job recorded twice is one row.
        for state in ["RUNNING", "REJECTED"] {
            store.record_job(
                &JobRow {
                    id: "k".into(),
                    state: state.into(),
                    started_unix_ms: 2,
                    ..JobRow::default()
                },
                Some(1),
            )?;
        }
        assert_eq!(store.refresh_pending()?, 10);
        let jobs = store.jobs(5)?;
        assert_eq!(
            jobs.iter()
                .map(|j| (j.id.as_str(), j.state.as_str()))
                .collect::<Vec<_>>(),
            [("k", "REJECTED"), ("j", "PUBLISHED")]
        );
        Ok(store)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn stores_reopens_and_counts_pending() -> anyhow::Result<()> {
        let dir = std::env::temp_dir().join(format!("empathy-store-{}", uuid::Uuid::new_v4()));
        let store = exercise(&Database::Sqlite(dir.join("feedback.sqlite"))).await?;
        // SQLite: no database lock, so two at once are both granted (the trainer's own
        // one-job rule is what refuses the second).
        let (a, b) = (store.training_lock(), store.training_lock());
        assert!(a.is_ok() && b.is_ok());
        std::fs::remove_dir_all(&dir)?;
        Ok(())
    }

    /// The same on PostgreSQL, when `EMPATHY_TEST_POSTGRES_URL` names a database this
    /// test may empty (its feedback, jobs and meta tables are dropped first). The
    /// end-to-end test tests/tests/postgres.rs always runs against a real server.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn stores_reopens_and_counts_pending_on_postgres() -> anyhow::Result<()> {
        let Ok(url) = std::env::var("EMPATHY_TEST_POSTGRES_URL") else {
            eprintln!("not run: set EMPATHY_TEST_POSTGRES_URL to a scratch PostgreSQL database");
            return Ok(());
        };
        // A feedback table from before the added columns: opening migrates it.
        postgres_batch(&url, &format!("{DROP_ALL}; {OLD_FEEDBACK_TABLE}"))?;
        let database = Database::parse(&url)?;
        let store = exercise(&database).await?;
        // One job at a time across the database; released when dropped.
        let lock = store.training_lock();
        assert!(lock.is_ok(), "{:?}", lock.err());
        assert!(matches!(store.training_lock(), Err(LockError::Busy)));
        drop(lock);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while store.training_lock().is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "the lock was not released"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        drop(store);
        postgres_batch(&url, DROP_ALL)?;
        purges(&database).await?;
        postgres_batch(&url, DROP_ALL)?;
        forgets(&database).await?;
        postgres_batch(&url, DROP_ALL)?;
        pauses(&database)?;
        Ok(())
    }

    const DROP_ALL: &str = "DROP TABLE IF EXISTS feedback, jobs, meta, training_pause";

    /// The feedback table as databases made before issue 12 have it.
    const OLD_FEEDBACK_TABLE: &str = "CREATE TABLE feedback (\
         seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, id TEXT NOT NULL UNIQUE, \
         received_unix_ms BIGINT NOT NULL, analysis_id TEXT NOT NULL, \
         model_version TEXT NOT NULL, sentiment TEXT NOT NULL, emotion TEXT NOT NULL, \
         rating INTEGER NOT NULL, note TEXT NOT NULL, text TEXT NOT NULL, \
         record BYTEA NOT NULL)";

    /// Runs `sql` on the PostgreSQL database at `url` (on a thread of its own: the
    /// client must not run inside the test's runtime).
    fn postgres_batch(url: &str, sql: &str) -> anyhow::Result<()> {
        let (url, sql) = (url.to_string(), sql.to_string());
        std::thread::spawn(move || -> anyhow::Result<()> {
            let mut c = ::postgres::Client::connect(&url, ::postgres::NoTls)?;
            c.batch_execute(&sql)?;
            Ok(())
        })
        .join()
        .map_err(|_| anyhow::anyhow!("the cleanup thread panicked"))?
    }

    #[tokio::test]
    async fn a_full_queue_is_refused_not_grown() -> anyhow::Result<()> {
        let dir = std::env::temp_dir().join(format!("empathy-store-{}", uuid::Uuid::new_v4()));
        let store = FeedbackStore::open(&dir.join("f.sqlite"), 1)?;
        // Many at once on a queue of one: some are refused, every accepted one is stored.
        let results =
            futures::future::join_all((0..200).map(|i| store.submit(format!("id{i}"), record(i))))
                .await;
        let stored = results.iter().filter(|r| r.is_ok()).count();
        let refused = results
            .iter()
            .filter(|r| matches!(r, Err(SubmitError::QueueFull(_))))
            .count();
        assert_eq!(stored + refused, 200);
        assert!(refused > 0, "nothing refused");
        assert_eq!(store.count()? as usize, stored);
        std::fs::remove_dir_all(&dir)?;
        Ok(())
    }

    /// A record of `tenant`/`key`/`subject` on `version`, received at `at`.
    fn owned(
        tag: &str,
        tenant: &str,
        key: &str,
        subject: &str,
        version: &str,
        at: i64,
    ) -> NewRecord {
        let mut record = record(0);
        record.text = format!("words of {tag}");
        record.tenant = tenant.into();
        record.key_id = key.into();
        record.subject_id = subject.into();
        record.model_version = version.into();
        record.received_unix_ms = at;
        NewRecord {
            id: tag.into(),
            record,
        }
    }

    async fn store_with(
        database: &Database,
        records: Vec<NewRecord>,
    ) -> anyhow::Result<FeedbackStore> {
        let store = FeedbackStore::open_database(database, 64)?;
        for r in records {
            store.submit(r.id, r.record).await?;
        }
        Ok(store)
    }

    fn ids(store: &FeedbackStore) -> anyhow::Result<Vec<String>> {
        Ok(store
            .read_all(i64::MAX)?
            .into_iter()
            .map(|s| s.id)
            .collect())
    }

    fn filter() -> FeedbackFilter {
        FeedbackFilter::default()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn quarantined_and_purged_feedback_is_never_read_for_training() -> anyhow::Result<()> {
        let dir = crate::test_registry::Scratch::new("purge");
        purges(&Database::Sqlite(dir.database())).await
    }

    /// Quarantine and delete by each filter field (PostgreSQL too, see above).
    async fn purges(database: &Database) -> anyhow::Result<()> {
        let store = store_with(
            database,
            vec![
                owned("a", "clinic", "k1", "p1", "v0001", 1_000),
                owned("b", "clinic", "k2", "p2", "v0001", 2_000),
                owned("c", "spam", "k3", "", "v0002", 3_000),
                owned("d", "spam", "k3", "", "v0002", 4_000),
                owned("e", "clinic", "k1", "", "v0002", 5_000),
            ],
        )
        .await?;
        assert_eq!(*store.pending().borrow(), 5);
        // An empty filter would take everything.
        assert!(store.purge(&filter(), true).is_err());
        // Quarantined: kept, but neither read for training nor pending.
        let spam = FeedbackFilter {
            tenant: "spam".into(),
            ..filter()
        };
        assert_eq!(store.purge(&spam, false)?, 2);
        assert_eq!(ids(&store)?, ["a", "b", "e"]);
        assert_eq!(store.count()?, 5);
        assert_eq!(store.refresh_pending()?, 3);
        // Fields AND: key k1 received in [1000, 5000) is only "a"; deleted.
        let k1_early = FeedbackFilter {
            key_id: "k1".into(),
            from_unix_ms: 1_000,
            to_unix_ms: 5_000,
            ..filter()
        };
        assert_eq!(store.purge(&k1_early, true)?, 1);
        assert_eq!(ids(&store)?, ["b", "e"]);
        assert_eq!(store.count()?, 4);
        // By model version and by subject.
        let v2 = FeedbackFilter {
            model_version: "v0002".into(),
            ..filter()
        };
        assert_eq!(store.purge(&v2, false)?, 3, "quarantined ones match too");
        assert_eq!(ids(&store)?, ["b"]);
        let p2 = FeedbackFilter {
            subject_id: "p2".into(),
            ..filter()
        };
        assert_eq!(store.purge(&p2, true)?, 1);
        assert!(ids(&store)?.is_empty());
        Ok(())
    }

    /// The bytes of the database file and its WAL.
    fn file_bytes(path: &std::path::Path) -> Vec<u8> {
        let mut bytes = std::fs::read(path).unwrap_or_default();
        bytes.extend(std::fs::read(format!("{}-wal", path.display())).unwrap_or_default());
        bytes
    }

    fn contains(haystack: &[u8], needle: &str) -> bool {
        haystack
            .windows(needle.len())
            .any(|w| w == needle.as_bytes())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn forget_deletes_a_subjects_records_from_the_file() -> anyhow::Result<()> {
        let dir = crate::test_registry::Scratch::new("forget");
        let path = dir.database();
        let bytes_before = |store: &FeedbackStore| -> anyhow::Result<()> {
            anyhow::ensure!(store.count()? == 3);
            anyhow::ensure!(contains(&file_bytes(&path), "words of s1"));
            Ok(())
        };
        let store = forgets_with(&Database::Sqlite(path.clone()), bytes_before).await?;
        // Gone from the file's pages and the WAL, not only from the table.
        let bytes = file_bytes(&path);
        assert!(!contains(&bytes, "words of s1") && !contains(&bytes, "words of s2"));
        assert!(contains(&bytes, "words of before"));
        assert_eq!(store.forget("subject-9")?, Forgotten::default());
        Ok(())
    }

    async fn forgets(database: &Database) -> anyhow::Result<FeedbackStore> {
        forgets_with(database, |_| Ok(())).await
    }

    /// Two records of a subject (one quarantined) and one of another; `before` looks
    /// at the store before the forget.
    async fn forgets_with(
        database: &Database,
        before: impl Fn(&FeedbackStore) -> anyhow::Result<()>,
    ) -> anyhow::Result<FeedbackStore> {
        let store = store_with(
            database,
            vec![
                owned("before", "t", "k", "other", "v0001", 1),
                owned("s1", "t", "k", "subject-9", "v0001", 2),
                owned("s2", "t", "k", "subject-9", "v0001", 3),
            ],
        )
        .await?;
        let all = store.read_all(i64::MAX)?;
        let seq = |id: &str| all.iter().find(|s| s.id == id).map_or(0, |s| s.seq);
        // v0002 was trained on everything up to s1; v0001's job read only "before".
        for (job, published, through) in
            [("j1", "v0001", seq("before")), ("j2", "v0002", seq("s1"))]
        {
            store.record_job(
                &JobRow {
                    id: job.into(),
                    state: "PUBLISHED".into(),
                    published: published.into(),
                    through_seq: through,
                    ..JobRow::default()
                },
                Some(through),
            )?;
        }
        // Quarantined records are the subject's too.
        let s2 = FeedbackFilter {
            key_id: "k".into(),
            from_unix_ms: 3,
            ..filter()
        };
        store.purge(&s2, false)?;
        before(&store)?;

        let done = store.forget("subject-9")?;
        assert_eq!(done.deleted, 2);
        assert_eq!(done.trained_into, ["v0002"]);
        assert_eq!(ids(&store)?, ["before"]);
        assert_eq!(store.count()?, 1);
        assert_eq!(store.forget("subject-9")?, Forgotten::default());
        Ok(store)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn retention_deletes_by_age() -> anyhow::Result<()> {
        let dir = crate::test_registry::Scratch::new("age");
        let now = now_ms();
        let store = store_with(
            &Database::Sqlite(dir.database()),
            vec![
                owned("old", "t", "k", "", "v0001", now - 5_000),
                owned("new", "t", "k", "", "v0001", now),
            ],
        )
        .await?;
        assert_eq!(store.delete_older_than(Duration::from_secs(60))?, 0);
        assert_eq!(store.delete_older_than(Duration::from_secs(2))?, 1);
        assert_eq!(ids(&store)?, ["new"]);
        Ok(())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_pause_is_stored() -> anyhow::Result<()> {
        let dir = crate::test_registry::Scratch::new("pause-store");
        pauses(&Database::Sqlite(dir.database()))
    }

    fn pauses(database: &Database) -> anyhow::Result<()> {
        let store = FeedbackStore::open_database(database, 4)?;
        assert_eq!(store.pause()?, None);
        store.set_pause("rolled back")?;
        drop(store);
        let store = FeedbackStore::open_database(database, 4)?;
        assert_eq!(store.pause()?.map(|p| p.reason), Some("rolled back".into()));
        store.set_pause("rolled back again")?;
        assert_eq!(
            store.pause()?.map(|p| p.reason),
            Some("rolled back again".into())
        );
        store.resume()?;
        assert_eq!(store.pause()?, None);
        Ok(())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn data_files_are_owner_only() -> anyhow::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let dir = crate::test_registry::Scratch::new("mode");
        let mode = |p: &std::path::Path| {
            std::fs::metadata(p)
                .map(|m| m.permissions().mode() & 0o777)
                .ok()
        };
        let path = dir.database();
        let store = store_with(
            &Database::Sqlite(path.clone()),
            vec![owned("a", "t", "k", "", "v0001", 1)],
        )
        .await?;
        for suffix in ["", "-wal", "-shm"] {
            let file = PathBuf::from(format!("{}{suffix}", path.display()));
            assert_eq!(mode(&file), Some(0o600), "{}", file.display());
        }
        drop(store);
        // A file from before: narrowed when opened.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644))?;
        FeedbackStore::open(&path, 4)?;
        assert_eq!(mode(&path), Some(0o600));
        Ok(())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_database_from_before_the_new_columns_is_migrated() -> anyhow::Result<()> {
        let dir = crate::test_registry::Scratch::new("migrate");
        let path = dir.database();
        {
            // The feedback table as it was, with one record in it.
            let conn = rusqlite::Connection::open(&path)?;
            conn.execute_batch(
                "CREATE TABLE feedback (seq INTEGER PRIMARY KEY AUTOINCREMENT, \
                 id TEXT NOT NULL UNIQUE, received_unix_ms INTEGER NOT NULL, \
                 analysis_id TEXT NOT NULL, model_version TEXT NOT NULL, \
                 sentiment TEXT NOT NULL, emotion TEXT NOT NULL, rating INTEGER NOT NULL, \
                 note TEXT NOT NULL, text TEXT NOT NULL, record BLOB NOT NULL)",
            )?;
            conn.execute(
                "INSERT INTO feedback (id, received_unix_ms, analysis_id, model_version, \
                 sentiment, emotion, rating, note, text, record) \
                 VALUES ('old', 1, 'a', 'v0001', 'positive', '', 0, '', 't', ?1)",
                [record(0).encode_to_vec()],
            )?;
        }
        let store = store_with(
            &Database::Sqlite(path.clone()),
            vec![owned("new", "t", "k", "p", "v0001", 2)],
        )
        .await?;
        assert_eq!(ids(&store)?, ["old", "new"]);
        let p = FeedbackFilter {
            subject_id: "p".into(),
            ..filter()
        };
        assert_eq!(store.purge(&p, false)?, 1);
        assert_eq!(ids(&store)?, ["old"]);
        Ok(())
    }

    #[test]
    fn databases_from_the_flag() {
        assert_eq!(
            Database::parse("f.db").ok(),
            Some(Database::Sqlite(PathBuf::from("f.db")))
        );
        assert_eq!(
            Database::parse("sqlite:///tmp/f.db").ok(),
            Some(Database::Sqlite(PathBuf::from("/tmp/f.db")))
        );
        assert_eq!(
            Database::parse("postgres://u@h:5433/db").ok(),
            Some(Database::Postgres("postgres://u@h:5433/db".into()))
        );
        assert_eq!(
            Database::parse("PostgreSQL://u:pw@h/db").ok(),
            Some(Database::Postgres("postgresql://u:pw@h/db".into()))
        );
        let shown = Database::parse("postgres://u:s3cret@h/db")
            .map(|d| d.to_string())
            .ok();
        assert_eq!(shown.as_deref(), Some("postgres://u:***@h/db"));
        // Refused, and the refusal does not print the password.
        for bad in [
            "mysql://u:s3cret@h/db",
            "postgres://u:s3cret@h:notaport/db",
            "postgres://h/db",
        ] {
            let err = Database::parse(bad).err().map(|e| format!("{e:#}"));
            assert!(
                err.as_ref().is_some_and(|e| !e.contains("s3cret")),
                "{bad}: {err:?}"
            );
        }
    }
}
