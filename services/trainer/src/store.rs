//! The feedback store: one SQLite file in WAL mode.
//!
//! Durability: a record is acknowledged only after the transaction that holds it has
//! committed. The connection runs `journal_mode=WAL` with `synchronous=FULL`, so every
//! commit fsyncs the WAL before it returns: an acknowledged record survives the
//! process being killed (SIGKILL) *and* the machine losing power. (`NORMAL` with WAL
//! would survive SIGKILL too, since the commit is in the OS page cache, but not a
//! power cut; FULL's cost is paid once per group commit, not per record.)
//!
//! Intake is a bounded queue in front of one writer thread: callers `submit` and wait
//! for their commit; the writer takes everything queued (up to `GROUP`) into one
//! transaction, so many concurrent submissions share one fsync. When the queue is
//! full, `submit` answers at once with `QueueFull` (RESOURCE_EXHAUSTED upstream)
//! instead of queueing without bound; nothing that was acknowledged is affected.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use empathy_proto::v1::FeedbackRecord;
use prost::Message;
use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::{mpsc, oneshot, watch};

/// Most records committed in one transaction.
const GROUP: usize = 256;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS feedback (
    seq              INTEGER PRIMARY KEY AUTOINCREMENT,
    id               TEXT NOT NULL UNIQUE,
    received_unix_ms INTEGER NOT NULL,
    analysis_id      TEXT NOT NULL,
    model_version    TEXT NOT NULL,
    sentiment        TEXT NOT NULL,
    emotion          TEXT NOT NULL,
    rating           INTEGER NOT NULL,
    note             TEXT NOT NULL,
    text             TEXT NOT NULL,
    -- The whole FeedbackRecord (features included) as protobuf.
    record           BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS jobs (
    id               TEXT PRIMARY KEY,
    state            TEXT NOT NULL,
    reason           TEXT NOT NULL,
    message          TEXT NOT NULL,
    published        TEXT NOT NULL,
    metrics          TEXT NOT NULL,
    started_unix_ms  INTEGER NOT NULL,
    ended_unix_ms    INTEGER NOT NULL,
    through_seq      INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
";

#[derive(Debug)]
pub enum SubmitError {
    /// The intake queue is full: retry later.
    QueueFull(usize),
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
            SubmitError::NotStored(e) => write!(f, "feedback not stored: {e}"),
        }
    }
}

impl std::error::Error for SubmitError {}

type Reply = oneshot::Sender<Result<u64, String>>;

/// A feedback record with its assigned id, stored or being stored.
pub struct Stored {
    pub seq: i64,
    pub id: String,
    pub record: FeedbackRecord,
}

#[derive(Clone)]
pub struct FeedbackStore {
    path: Arc<PathBuf>,
    queue: mpsc::Sender<(String, FeedbackRecord, Reply)>,
    capacity: usize,
    /// Records stored but not yet trained on, after each commit.
    pending: watch::Receiver<u64>,
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn open(path: &Path) -> anyhow::Result<Connection> {
    let conn = Connection::open(path)
        .with_context(|| format!("cannot open the feedback database {}", path.display()))?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
    anyhow::ensure!(
        mode.eq_ignore_ascii_case("wal"),
        "{} cannot use WAL mode (got {mode})",
        path.display()
    );
    conn.execute_batch("PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;")?;
    Ok(conn)
}

impl FeedbackStore {
    /// Opens (creating if needed) the database and starts the writer thread.
    pub fn open(path: &Path, capacity: usize) -> anyhow::Result<FeedbackStore> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        let conn = open(path)?;
        conn.execute_batch(SCHEMA)?;
        let pending = pending_count(&conn)?;
        let (pending_tx, pending_rx) = watch::channel(pending);
        let capacity = capacity.max(1);
        let (tx, rx) = mpsc::channel(capacity);
        std::thread::Builder::new()
            .name("feedback-writer".into())
            .spawn(move || writer(conn, rx, pending_tx))?;
        Ok(FeedbackStore {
            path: Arc::new(path.to_path_buf()),
            queue: tx,
            capacity,
            pending: pending_rx,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Stores `record` under `id`; returns once it is committed (durable), with the
    /// number of records not yet trained on.
    pub async fn submit(&self, id: String, record: FeedbackRecord) -> Result<u64, SubmitError> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .try_send((id, record, reply))
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => SubmitError::QueueFull(self.capacity),
                mpsc::error::TrySendError::Closed(_) => {
                    SubmitError::NotStored("the store's writer has stopped".into())
                }
            })?;
        match answer.await {
            Ok(Ok(pending)) => Ok(pending),
            Ok(Err(e)) => Err(SubmitError::NotStored(e)),
            Err(_) => Err(SubmitError::NotStored(
                "the store's writer stopped before committing".into(),
            )),
        }
    }

    /// Watches the count of records not yet trained on.
    pub fn pending(&self) -> watch::Receiver<u64> {
        self.pending.clone()
    }

    /// Every stored record with seq <= `through` (a reader connection: WAL lets it run
    /// beside the writer).
    pub fn read_all(&self, through: i64) -> anyhow::Result<Vec<Stored>> {
        let conn = open(&self.path)?;
        let mut stmt =
            conn.prepare("SELECT seq, id, record FROM feedback WHERE seq <= ?1 ORDER BY seq")?;
        let rows = stmt.query_map([through], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, Vec<u8>>(2)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (seq, id, bytes) = row?;
            let record = FeedbackRecord::decode(bytes.as_slice())
                .with_context(|| format!("feedback {id}: corrupt record"))?;
            out.push(Stored { seq, id, record });
        }
        Ok(out)
    }

    pub fn last_seq(&self) -> anyhow::Result<i64> {
        let conn = open(&self.path)?;
        Ok(
            conn.query_row("SELECT COALESCE(MAX(seq), 0) FROM feedback", [], |r| {
                r.get(0)
            })?,
        )
    }

    pub fn count(&self) -> anyhow::Result<u64> {
        let conn = open(&self.path)?;
        Ok(conn.query_row("SELECT COUNT(*) FROM feedback", [], |r| r.get::<_, i64>(0))? as u64)
    }

    /// Records a finished job; `trained_through` (Some) marks feedback up to that seq
    /// as trained on, so it no longer counts as pending.
    pub fn record_job(&self, job: &JobRow, trained_through: Option<i64>) -> anyhow::Result<()> {
        let mut conn = open(&self.path)?;
        let tx = conn.transaction()?;
        tx.execute(
            "INSERT OR REPLACE INTO jobs (id, state, reason, message, published, metrics, \
             started_unix_ms, ended_unix_ms, through_seq) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9)",
            params![
                job.id,
                job.state,
                job.reason,
                job.message,
                job.published,
                job.metrics,
                job.started_unix_ms,
                job.ended_unix_ms,
                job.through_seq
            ],
        )?;
        if let Some(seq) = trained_through {
            tx.execute(
                "INSERT INTO meta (key, value) VALUES ('trained_through', ?1) \
                 ON CONFLICT(key) DO UPDATE SET value = MAX(value, excluded.value)",
                [seq],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// The most recent recorded jobs, newest first.
    pub fn jobs(&self, limit: usize) -> anyhow::Result<Vec<JobRow>> {
        let conn = open(&self.path)?;
        let mut stmt = conn.prepare(
            "SELECT id, state, reason, message, published, metrics, started_unix_ms, \
             ended_unix_ms, through_seq FROM jobs ORDER BY started_unix_ms DESC LIMIT ?1",
        )?;
        let rows = stmt.query_map([limit as i64], |r| {
            Ok(JobRow {
                id: r.get(0)?,
                state: r.get(1)?,
                reason: r.get(2)?,
                message: r.get(3)?,
                published: r.get(4)?,
                metrics: r.get(5)?,
                started_unix_ms: r.get(6)?,
                ended_unix_ms: r.get(7)?,
                through_seq: r.get(8)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Recomputes the pending count (after a job marked feedback as trained).
    pub fn refresh_pending(&self) -> anyhow::Result<u64> {
        let conn = open(&self.path)?;
        pending_count(&conn)
    }
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

fn pending_count(conn: &Connection) -> anyhow::Result<u64> {
    let through: i64 = conn
        .query_row(
            "SELECT value FROM meta WHERE key = 'trained_through'",
            [],
            |r| r.get(0),
        )
        .optional()?
        .unwrap_or(0);
    let n: i64 = conn.query_row(
        "SELECT COUNT(*) FROM feedback WHERE seq > ?1",
        [through],
        |r| r.get(0),
    )?;
    Ok(n as u64)
}

/// The writer: group commits until every sender is gone.
fn writer(
    mut conn: Connection,
    mut rx: mpsc::Receiver<(String, FeedbackRecord, Reply)>,
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
        let result = commit(&mut conn, &group);
        match result {
            Ok(count) => {
                pending.send_replace(count);
                for (_, _, reply) in group {
                    let _ = reply.send(Ok(count));
                }
            }
            Err(e) => {
                let message = format!("{e:#}");
                tracing::error!(records = group.len(), "feedback not stored: {message}");
                for (_, _, reply) in group {
                    let _ = reply.send(Err(message.clone()));
                }
            }
        }
    }
}

fn commit(conn: &mut Connection, group: &[(String, FeedbackRecord, Reply)]) -> anyhow::Result<u64> {
    let tx = conn.transaction()?;
    {
        let mut insert = tx.prepare_cached(
            "INSERT INTO feedback (id, received_unix_ms, analysis_id, model_version, sentiment, \
             emotion, rating, note, text, record) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10)",
        )?;
        for (id, record, _) in group {
            let fb = record.feedback.clone().unwrap_or_default();
            insert.execute(params![
                id,
                record.received_unix_ms,
                fb.analysis_id,
                record.model_version,
                fb.sentiment,
                fb.emotion,
                fb.rating,
                fb.note,
                record.text,
                record.encode_to_vec(),
            ])?;
        }
    }
    tx.commit()?;
    pending_count(conn)
}

#[cfg(test)]
mod tests {
    use empathy_proto::v1::FeedbackRequest;

    use super::*;

    fn record(i: usize) -> FeedbackRecord {
        FeedbackRecord {
            feedback: Some(FeedbackRequest {
                analysis_id: format!("a{i}"),
                sentiment: "positive".into(),
                ..FeedbackRequest::default()
            }),
            text: format!("text {i}"),
            ..FeedbackRecord::default()
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn stores_reopens_and_counts_pending() -> anyhow::Result<()> {
        let dir = std::env::temp_dir().join(format!("empathy-store-{}", uuid::Uuid::new_v4()));
        let path = dir.join("feedback.sqlite");
        {
            let store = FeedbackStore::open(&path, 64)?;
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
        let store = FeedbackStore::open(&path, 64)?;
        let all = store.read_all(i64::MAX)?;
        assert_eq!(all.len(), 40);
        assert_eq!(*store.pending().borrow(), 40);
        let through = all[29].seq;
        store.record_job(
            &JobRow {
                id: "j".into(),
                state: "PUBLISHED".into(),
                ..JobRow::default()
            },
            Some(through),
        )?;
        assert_eq!(store.refresh_pending()?, 10);
        assert_eq!(store.jobs(5)?.len(), 1);
        std::fs::remove_dir_all(&dir)?;
        Ok(())
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
}
