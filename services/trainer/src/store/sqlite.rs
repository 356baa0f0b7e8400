//! The SQLite backend: one file in WAL mode, the default.
//!
//! Durability: the connections run `journal_mode=WAL` with `synchronous=FULL`, so
//! every commit fsyncs the WAL before it returns: an acknowledged record survives the
//! process being killed (SIGKILL) *and* the machine losing power. (`NORMAL` with WAL
//! would survive SIGKILL too, since the commit is in the OS page cache, but not a
//! power cut; FULL's cost is paid once per group commit, not per record.)
//!
//! Privacy: the file (and its -wal and -shm, which SQLite creates with the file's
//! mode) is owner-only (0600), and an existing one is narrowed on open; connections run
//! `secure_delete`, and every delete ends with a WAL checkpoint that truncates it, so a
//! deleted record's text is overwritten rather than left in free pages or the WAL.
//!
//! Readers open their own connection per call: WAL lets them run beside the writer.
//! No training lock: one file belongs to one trainer (the trainer's one-job rule is
//! enough); teams that run several trainers use PostgreSQL.

use std::path::{Path, PathBuf};

use anyhow::Context;
use rusqlite::{Connection, params};

use empathy_proto::v1::FeedbackFilter;

use super::affect::{INSERT_AFFECT, READ_AFFECT};
use super::keys::{self, KeyRow};
use super::replies::{CLEAR_REPLIES, GET_REPLIES, SET_REPLIES};
use super::schema::{ADDED_COLUMNS, Dialect};
use super::tenants::{
    CLEAR_PAUSE, GET_PAUSE, INSERT_TRAFFIC, READ_TRAFFIC, SET_PAUSE, TRIM_TRAFFIC,
    trained_through_key,
};
use super::{
    AnalysisRow, Backend, Columns, DiskFull, FILTER, Forgotten, JobRow, LockError, NewRecord,
    PENDING, Pause, Pending, Stored, TRAINED_INTO, TrainingLock, Writer, decode,
};

/// The database file's mode, and so its -wal's and -shm's: owner only.
const FILE_MODE: u32 = 0o600;

pub(super) struct Sqlite {
    path: PathBuf,
}

impl Sqlite {
    pub(super) fn new(path: &Path) -> anyhow::Result<Sqlite> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        owner_only(path)?;
        Ok(Sqlite {
            path: path.to_path_buf(),
        })
    }

    fn open(&self) -> anyhow::Result<Connection> {
        let path = &self.path;
        let conn = Connection::open(path)
            .with_context(|| format!("cannot open the feedback database {}", path.display()))?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
        anyhow::ensure!(
            mode.eq_ignore_ascii_case("wal"),
            "{} cannot use WAL mode (got {mode})",
            path.display()
        );
        conn.execute_batch(
            "PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON; PRAGMA secure_delete=ON;",
        )?;
        Ok(conn)
    }

    /// Runs `f` in one transaction, then checkpoints and truncates the WAL so that what
    /// `f` deleted is gone from it too (best effort: a reader in the middle of a read
    /// can hold the checkpoint back; the next delete's checkpoint finishes it).
    fn deleting<R>(
        &self,
        f: impl FnOnce(&rusqlite::Transaction) -> rusqlite::Result<R>,
    ) -> anyhow::Result<R> {
        let mut conn = self.open()?;
        let tx = conn.transaction()?;
        let out = f(&tx)?;
        tx.commit()?;
        if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(())) {
            tracing::warn!("cannot checkpoint the feedback database after a delete: {e}");
        }
        Ok(out)
    }
}

/// Creates the database file owner-only if it is missing, and narrows an existing one
/// (and its -wal and -shm) to owner-only: feedback holds people's words.
fn owner_only(path: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(FILE_MODE)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    for suffix in ["", "-wal", "-shm"] {
        let file = PathBuf::from(format!("{}{suffix}", path.display()));
        match std::fs::metadata(&file) {
            Ok(m) if m.permissions().mode() & 0o777 != FILE_MODE => {
                std::fs::set_permissions(&file, std::fs::Permissions::from_mode(FILE_MODE))
                    .with_context(|| format!("cannot make {} owner-only", file.display()))?;
            }
            _ => {}
        }
    }
    Ok(())
}

/// Adds the columns a database made before them lacks (`ADDED_COLUMNS`).
fn migrate(conn: &Connection) -> anyhow::Result<()> {
    let mut stmt = conn.prepare("SELECT name FROM pragma_table_info('feedback')")?;
    let have: Vec<String> = stmt
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    for (name, definition) in ADDED_COLUMNS {
        if !have.iter().any(|h| h == name) {
            conn.execute_batch(&format!(
                "ALTER TABLE feedback ADD COLUMN {name} {definition}"
            ))?;
            tracing::info!("feedback database migrated: added the column {name}");
        }
    }
    Ok(())
}

fn filter_params(f: &FeedbackFilter) -> impl rusqlite::Params + '_ {
    (
        &f.tenant,
        &f.key_id,
        f.from_unix_ms,
        f.to_unix_ms,
        &f.model_version,
        &f.subject_id,
    )
}

fn pending_count(conn: &Connection) -> anyhow::Result<Pending> {
    let mut stmt = conn.prepare_cached(PENDING)?;
    let rows = stmt.query_map([], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

impl Backend for Sqlite {
    fn open_writer(&self) -> anyhow::Result<Box<dyn Writer>> {
        let conn = self.open()?;
        conn.execute_batch(&Dialect::Sqlite.schema())?;
        migrate(&conn)?;
        conn.execute_batch(&Dialect::Sqlite.migrate_to_tenants())?;
        conn.execute_batch(Dialect::Sqlite.indexes())?;
        Ok(Box::new(SqliteWriter { conn }))
    }

    fn read_all(&self, tenant: &str, through: i64) -> anyhow::Result<Vec<Stored>> {
        let conn = self.open()?;
        let mut stmt = conn.prepare(
            "SELECT seq, id, record FROM feedback WHERE seq <= ?1 AND tenant = ?2 \
                 AND quarantined = 0 ORDER BY seq",
        )?;
        let rows = stmt.query_map(params![through, tenant], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, Vec<u8>>(2)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (seq, id, bytes) = row?;
            let record = decode(&id, &bytes)?;
            out.push(Stored { seq, id, record });
        }
        Ok(out)
    }

    fn replace_records(&self, rows: &[(String, Vec<u8>)]) -> anyhow::Result<u64> {
        let mut conn = self.open()?;
        let tx = conn.transaction()?;
        let mut n = 0;
        for (id, record) in rows {
            n += tx.execute(
                "UPDATE feedback SET record = ?1 WHERE id = ?2",
                params![record, id],
            )? as u64;
        }
        tx.commit()?;
        Ok(n)
    }

    fn last_seq(&self) -> anyhow::Result<i64> {
        let conn = self.open()?;
        Ok(
            conn.query_row("SELECT COALESCE(MAX(seq), 0) FROM feedback", [], |r| {
                r.get(0)
            })?,
        )
    }

    fn count(&self) -> anyhow::Result<u64> {
        let conn = self.open()?;
        Ok(conn.query_row("SELECT COUNT(*) FROM feedback", [], |r| r.get::<_, i64>(0))? as u64)
    }

    fn pending_count(&self) -> anyhow::Result<Pending> {
        pending_count(&self.open()?)
    }

    fn record_job(&self, job: &JobRow, trained_through: Option<(&str, i64)>) -> anyhow::Result<()> {
        let mut conn = self.open()?;
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
        if let Some((tenant, seq)) = trained_through {
            tx.execute(
                "INSERT INTO meta (key, value) VALUES (?1, ?2) \
                 ON CONFLICT(key) DO UPDATE SET value = MAX(value, excluded.value)",
                params![trained_through_key(tenant), seq],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    fn jobs(&self, limit: usize) -> anyhow::Result<Vec<JobRow>> {
        let conn = self.open()?;
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

    fn training_lock(&self) -> Result<TrainingLock, LockError> {
        Ok(TrainingLock::local())
    }

    fn insert_key(&self, key: &KeyRow) -> anyhow::Result<bool> {
        let conn = self.open()?;
        let n = conn.execute(
            &keys::sqlite_spelling(keys::INSERT),
            params![
                key.key_id,
                key.key_sha256,
                key.tenant,
                key.role,
                key.label,
                key.created_unix_ms,
                key.revoked_unix_ms
            ],
        )?;
        Ok(n == 1)
    }

    fn revoke_key(&self, key_id: &str, now_ms: i64) -> anyhow::Result<()> {
        let conn = self.open()?;
        conn.execute(
            &keys::sqlite_spelling(keys::REVOKE),
            params![key_id, now_ms],
        )?;
        Ok(())
    }

    fn keys_where(&self, condition: &str, value: &str) -> anyhow::Result<Vec<KeyRow>> {
        let conn = self.open()?;
        let mut stmt = conn.prepare(&keys::sqlite_spelling(&keys::select_where(condition)))?;
        let rows = stmt.query_map([value], |r| {
            Ok(KeyRow {
                key_id: r.get(0)?,
                key_sha256: r.get(1)?,
                tenant: r.get(2)?,
                role: r.get(3)?,
                label: r.get(4)?,
                created_unix_ms: r.get(5)?,
                revoked_unix_ms: r.get(6)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn purge(&self, filter: &FeedbackFilter, delete: bool) -> anyhow::Result<u64> {
        let sql = if delete {
            format!("DELETE FROM feedback WHERE {FILTER}")
        } else {
            format!("UPDATE feedback SET quarantined = 1 WHERE {FILTER}")
        };
        let n = if delete {
            self.deleting(|tx| tx.execute(&sql, filter_params(filter)))?
        } else {
            self.open()?.execute(&sql, filter_params(filter))?
        };
        Ok(n as u64)
    }

    fn forget(&self, subject: &str) -> anyhow::Result<Forgotten> {
        self.deleting(|tx| {
            tx.execute("DELETE FROM traffic WHERE subject_id = ?1", [subject])?;
            let affect = tx.execute("DELETE FROM affect WHERE subject_id = ?1", [subject])? as u64;
            let lowest: Option<i64> = tx.query_row(
                "SELECT MIN(seq) FROM feedback WHERE subject_id = ?1",
                [subject],
                |r| r.get(0),
            )?;
            let Some(lowest) = lowest else {
                return Ok(Forgotten {
                    affect,
                    ..Forgotten::default()
                });
            };
            let trained_into = tx
                .prepare(TRAINED_INTO)?
                .query_map([lowest], |r| r.get(0))?
                .collect::<Result<_, _>>()?;
            let deleted = tx.execute("DELETE FROM feedback WHERE subject_id = ?1", [subject])?;
            Ok(Forgotten {
                deleted: deleted as u64,
                trained_into,
                affect,
            })
        })
    }

    fn delete_older_than(&self, cutoff_unix_ms: i64) -> anyhow::Result<u64> {
        let n = self.deleting(|tx| {
            tx.execute(
                "DELETE FROM traffic WHERE received_unix_ms < ?1",
                [cutoff_unix_ms],
            )?;
            tx.execute(
                "DELETE FROM affect WHERE analyzed_unix_ms < ?1",
                [cutoff_unix_ms],
            )?;
            tx.execute(
                "DELETE FROM feedback WHERE received_unix_ms < ?1",
                [cutoff_unix_ms],
            )
        })?;
        Ok(n as u64)
    }

    fn set_pause(&self, tenant: &str, pause: Option<&Pause>) -> anyhow::Result<()> {
        let conn = self.open()?;
        match pause {
            Some(p) => conn.execute(SET_PAUSE, params![tenant, p.reason, p.since_unix_ms])?,
            None => conn.execute(CLEAR_PAUSE, [tenant])?,
        };
        Ok(())
    }

    fn pause(&self, tenant: &str) -> anyhow::Result<Option<Pause>> {
        let conn = self.open()?;
        let mut stmt = conn.prepare(GET_PAUSE)?;
        let mut rows = stmt.query_map([tenant], |r| {
            Ok(Pause {
                reason: r.get(0)?,
                since_unix_ms: r.get(1)?,
            })
        })?;
        Ok(rows.next().transpose()?)
    }

    fn set_replies(&self, tenant: &str, bank: Option<(&[u8], i64)>) -> anyhow::Result<()> {
        let conn = self.open()?;
        match bank {
            Some((bytes, at)) => conn.execute(SET_REPLIES, params![tenant, bytes, at])?,
            None => conn.execute(CLEAR_REPLIES, [tenant])?,
        };
        Ok(())
    }

    fn replies(&self, tenant: &str) -> anyhow::Result<Option<Vec<u8>>> {
        let conn = self.open()?;
        let mut stmt = conn.prepare(GET_REPLIES)?;
        let mut rows = stmt.query_map([tenant], |r| r.get(0))?;
        Ok(rows.next().transpose()?)
    }

    fn insert_affect(&self, rows: &[AnalysisRow]) -> anyhow::Result<u64> {
        let mut conn = self.open()?;
        let tx = conn.transaction()?;
        let inserted = insert_all(&tx, INSERT_AFFECT, rows)?;
        tx.commit()?;
        Ok(inserted)
    }

    fn read_affect(
        &self,
        tenant: &str,
        subject_id: &str,
        since_unix_ms: i64,
        limit: i64,
    ) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
        let conn = self.open()?;
        let mut stmt = conn.prepare(READ_AFFECT)?;
        let rows = stmt.query_map(params![tenant, subject_id, since_unix_ms, limit], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn store_traffic(&self, rows: &[AnalysisRow], keep: i64) -> anyhow::Result<u64> {
        let mut conn = self.open()?;
        let tx = conn.transaction()?;
        let inserted = insert_all(&tx, INSERT_TRAFFIC, rows)?;
        {
            let tenants: std::collections::BTreeSet<&str> =
                rows.iter().map(|r| r.tenant.as_str()).collect();
            let mut trim = tx.prepare_cached(TRIM_TRAFFIC)?;
            for tenant in tenants {
                trim.execute(params![tenant, keep])?;
            }
        }
        tx.commit()?;
        Ok(inserted)
    }

    fn read_traffic(&self, tenant: &str, limit: i64) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
        let conn = self.open()?;
        let mut stmt = conn.prepare(READ_TRAFFIC)?;
        let rows = stmt.query_map(params![tenant, limit], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

/// Runs `sql` (an INSERT of a row keyed by analysis that skips rows already there)
/// for each row; how many were new.
fn insert_all(
    tx: &rusqlite::Transaction,
    sql: &str,
    rows: &[AnalysisRow],
) -> rusqlite::Result<u64> {
    let mut insert = tx.prepare_cached(sql)?;
    let mut inserted = 0;
    for r in rows {
        let values = params![r.analysis_id, r.tenant, r.subject_id, r.unix_ms, r.bytes];
        inserted += insert.execute(values)? as u64;
    }
    Ok(inserted)
}

struct SqliteWriter {
    conn: Connection,
}

impl Writer for SqliteWriter {
    fn commit_group(&mut self, group: &[NewRecord]) -> anyhow::Result<Pending> {
        self.commit(group).map_err(|e| {
            let code = e
                .downcast_ref::<rusqlite::Error>()
                .and_then(rusqlite::Error::sqlite_error_code);
            if code == Some(rusqlite::ErrorCode::DiskFull) {
                anyhow::Error::new(DiskFull(format!("{e:#}")))
            } else {
                e
            }
        })
    }

    fn pending_count(&mut self) -> anyhow::Result<Pending> {
        pending_count(&self.conn)
    }
}

impl SqliteWriter {
    fn commit(&mut self, group: &[NewRecord]) -> anyhow::Result<Pending> {
        let tx = self.conn.transaction()?;
        {
            let mut insert = tx.prepare_cached(
                "INSERT INTO feedback (id, received_unix_ms, analysis_id, model_version, \
                 sentiment, emotion, rating, note, text, record, tenant, key_id, subject_id) \
                 VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13)",
            )?;
            for r in group {
                let c = Columns::of(&r.record);
                insert.execute(params![
                    r.id,
                    c.received_unix_ms,
                    c.analysis_id,
                    c.model_version,
                    c.sentiment,
                    c.emotion,
                    c.rating,
                    c.note,
                    c.text,
                    c.record,
                    c.tenant,
                    c.key_id,
                    c.subject_id,
                ])?;
            }
        }
        let pending = pending_count(&tx)?;
        tx.commit()?;
        Ok(pending)
    }
}
