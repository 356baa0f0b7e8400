//! The PostgreSQL backend (`--database postgres://USER[:PASSWORD]@HOST[:PORT]/DB`), for
//! teams that run several trainers on one database.
//!
//! Durability: a group is acknowledged only after its `COMMIT` returned, with
//! `synchronous_commit=on` (PostgreSQL's default): the commit waits until the WAL
//! record is flushed to disk (and to synchronous standbys, if configured). If the
//! server or database is configured `synchronous_commit=off`, the writer sets `on` for
//! its own session, so the contract holds whatever the server's default; a server
//! running `fsync=off` is logged as a warning (nothing a client can fix).
//!
//! Several trainers on one database:
//! - each group commit first takes a transaction advisory lock (`WRITE_LOCK`), so the
//!   identity column hands out seqs in commit order across trainers: once a seq is
//!   visible, every lower seq is too (what `trained_through` relies on);
//! - a training job holds a session advisory lock (`TRAINING_LOCK`, on a connection of
//!   its own, for the whole job): a second trainer's `StartTraining` is refused while
//!   it is held, and PostgreSQL drops it if the trainer dies. It also goes if that
//!   connection breaks, so the job asks on it (`TrainingLock::check`) before it records
//!   or publishes anything.
//!
//! TLS: libpq's `sslmode` (default `require` for hosts off this machine) and
//! `sslrootcert` in the URL, always verified
//! (`postgres_tls`).
//!
//! The `postgres` client blocks on a runtime of its own and panics if used on a tokio
//! runtime thread (dropping it too). So each connection lives on a thread of its own:
//! the writer thread, a session thread for reads and job records (`Session`), and one
//! thread per held training lock. Callers on async threads only wait on a channel.
//!
//! Text columns cannot hold NUL in PostgreSQL: a NUL in a client's text is stored as
//! U+FFFD in the side columns (the protobuf in `record` keeps it exactly), so one odd
//! record never fails the group it is committed with.

use std::sync::mpsc;

use ::postgres::error::SqlState;
use ::postgres::{Client, Config};
use anyhow::{Context, anyhow};
use tokio_postgres_rustls::MakeRustlsConnect;

use empathy_proto::v1::FeedbackFilter;

use super::keys::{self, KeyRow};
use super::postgres_tls;
pub use super::postgres_url::{check_url, redact};
use super::postgres_url::{parse, scrub};
use super::schema::{ADDED_COLUMNS, Dialect};
use super::tenants::trained_through_key;
use super::{
    AnalysisRow, Backend, Columns, DiskFull, FILTER, Forgotten, JobRow, LOCK_WAIT, LockCheck,
    LockError, NewRecord, Pause, Pending, Stored, TRAINED_INTO, TrainingLock, Writer, decode,
};

mod privacy;
mod tenants;

/// Session advisory lock held by the trainer that runs a job (`b"empathy\x01"`).
pub const TRAINING_LOCK: i64 = 0x656d_7061_7468_7901;
/// Transaction advisory lock around each group commit (`b"empathy\x02"`).
const WRITE_LOCK: i64 = 0x656d_7061_7468_7902;
/// Transaction advisory lock around creating the schema (`b"empathy\x03"`).
const SCHEMA_LOCK: i64 = 0x656d_7061_7468_7903;

/// What to connect to, how (TLS), and how to say so without the password.
#[derive(Clone)]
struct Target {
    config: Config,
    tls: MakeRustlsConnect,
    shown: String,
}

impl Target {
    fn connect(&self) -> anyhow::Result<Client> {
        self.config
            .connect(self.tls.clone())
            .map_err(|e| self.error(e))
    }

    fn error(&self, e: ::postgres::Error) -> anyhow::Error {
        let message = scrub(format!("{:#}", anyhow::Error::new(e)), &self.config);
        anyhow!(
            "cannot connect to the feedback database {}: {message}{}",
            self.shown,
            postgres_tls::hint(&message)
        )
    }

    /// A query error, password scrubbed.
    fn query_error(&self, e: ::postgres::Error) -> anyhow::Error {
        let full = e.code() == Some(&SqlState::DISK_FULL);
        let message = scrub(format!("{:#}", anyhow::Error::new(e)), &self.config);
        if full {
            anyhow::Error::new(DiskFull(message))
        } else {
            anyhow!("{message}")
        }
    }
}

/// A connection that reconnects when the server closed it (a restart, say).
struct Conn {
    target: Target,
    client: Option<Client>,
    /// Run on every new connection (the writer's session settings).
    setup: fn(&mut Client, &Target) -> anyhow::Result<()>,
}

impl Conn {
    fn new(target: Target, setup: fn(&mut Client, &Target) -> anyhow::Result<()>) -> Conn {
        Conn {
            target,
            client: None,
            setup,
        }
    }

    fn client(&mut self) -> anyhow::Result<&mut Client> {
        if self.client.as_ref().is_none_or(Client::is_closed) {
            self.client = None;
            let mut client = self.target.connect()?;
            (self.setup)(&mut client, &self.target)?;
            self.client = Some(client);
        }
        self.client
            .as_mut()
            .context("no connection to the feedback database")
    }

    /// Runs `f` on the connection; query errors are scrubbed of the password.
    fn run<R>(
        &mut self,
        f: impl FnOnce(&mut Client) -> Result<R, ::postgres::Error>,
    ) -> anyhow::Result<R> {
        let target = self.target.clone();
        f(self.client()?).map_err(|e| target.query_error(e))
    }
}

fn no_setup(_: &mut Client, _: &Target) -> anyhow::Result<()> {
    Ok(())
}

/// The writer's session: durable commits whatever the server's default.
fn writer_setup(client: &mut Client, target: &Target) -> anyhow::Result<()> {
    let setting = |client: &mut Client, name: &str| -> anyhow::Result<String> {
        let row = client
            .query_one(&format!("SHOW {name}"), &[])
            .map_err(|e| target.query_error(e))?;
        Ok(row.try_get::<_, String>(0)?)
    };
    if setting(client, "synchronous_commit")? == "off" {
        tracing::warn!(
            database = %target.shown,
            "the database runs synchronous_commit=off; the feedback writer sets it on for \
             its session (a record is acknowledged only once its commit is on disk)"
        );
        client
            .batch_execute("SET synchronous_commit = on")
            .map_err(|e| target.query_error(e))?;
    }
    if setting(client, "fsync")? == "off" {
        tracing::warn!(
            database = %target.shown,
            "the PostgreSQL server runs fsync=off: acknowledged feedback survives a trainer \
             crash but not a server crash or power cut"
        );
    }
    Ok(())
}

type Task = Box<dyn FnOnce(&mut Conn) + Send>;

/// A connection on a thread of its own; calls wait on a channel (safe from async
/// code). The connection is dropped on that thread when the session is.
struct Session {
    tasks: mpsc::Sender<Task>,
}

impl Session {
    /// Connects (an error here is a startup error) and starts the thread.
    fn start(target: Target) -> anyhow::Result<Session> {
        let (tasks, rx) = mpsc::channel::<Task>();
        let (ready_tx, ready_rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("feedback-reader".into())
            .spawn(move || {
                let mut conn = Conn::new(target, no_setup);
                let ready = conn.client().map(|_| ());
                let ok = ready.is_ok();
                let _ = ready_tx.send(ready);
                if ok {
                    while let Ok(task) = rx.recv() {
                        task(&mut conn);
                    }
                }
            })?;
        ready_rx
            .recv()
            .context("the feedback database session stopped while connecting")??;
        Ok(Session { tasks })
    }

    fn call<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Client) -> Result<R, ::postgres::Error> + Send + 'static,
    ) -> anyhow::Result<R> {
        let (tx, rx) = mpsc::sync_channel(1);
        self.tasks
            .send(Box::new(move |conn: &mut Conn| {
                let _ = tx.send(conn.run(f));
            }))
            .map_err(|_| anyhow!("the feedback database session has stopped"))?;
        rx.recv()
            .map_err(|_| anyhow!("the feedback database session stopped"))?
    }
}

pub(super) struct Postgres {
    target: Target,
    session: Session,
}

impl Postgres {
    /// Connects a reader session: an unreachable database fails here, at startup.
    pub(super) fn connect(url: &str) -> anyhow::Result<Postgres> {
        let shown = redact(url);
        let (config, root) = parse(url)?;
        let tls = postgres_tls::connector(root.as_deref())
            .map_err(|e| anyhow!("--database {shown}: {e:#}"))?;
        let target = Target { config, tls, shown };
        let session = Session::start(target.clone())?;
        Ok(Postgres { target, session })
    }
}

fn get<'a, T: ::postgres::types::FromSql<'a>>(
    row: &'a ::postgres::Row,
    i: usize,
) -> Result<T, ::postgres::Error> {
    row.try_get(i)
}

impl Backend for Postgres {
    fn open_writer(&self) -> anyhow::Result<Box<dyn Writer>> {
        let mut conn = Conn::new(self.target.clone(), writer_setup);
        conn.run(|c| {
            let mut tx = c.transaction()?;
            // Two trainers starting at once would race on CREATE TABLE IF NOT EXISTS.
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK])?;
            // Not a NOTICE per table at every start ("already exists, skipping").
            tx.batch_execute("SET LOCAL client_min_messages = warning")?;
            tx.batch_execute(&Dialect::Postgres.schema())?;
            for (name, definition) in ADDED_COLUMNS {
                tx.batch_execute(&format!(
                    "ALTER TABLE feedback ADD COLUMN IF NOT EXISTS {name} {definition}"
                ))?;
            }
            tx.batch_execute(&Dialect::Postgres.migrate_to_tenants())?;
            tx.batch_execute(Dialect::Postgres.indexes())?;
            tx.commit()
        })?;
        Ok(Box::new(PgWriter { conn }))
    }

    fn read_all(&self, tenant: &str, through: i64) -> anyhow::Result<Vec<Stored>> {
        let tenant = no_nul(tenant.to_string());
        let rows = self.session.call(move |c| {
            let rows = c.query(
                "SELECT seq, id, record FROM feedback WHERE seq <= $1 AND tenant = $2 \
                 AND quarantined = 0 ORDER BY seq",
                &[&through, &tenant],
            )?;
            rows.iter()
                .map(|r| {
                    Ok((
                        get::<i64>(r, 0)?,
                        get::<String>(r, 1)?,
                        get::<Vec<u8>>(r, 2)?,
                    ))
                })
                .collect::<Result<Vec<_>, ::postgres::Error>>()
        })?;
        rows.into_iter()
            .map(|(seq, id, bytes)| {
                let record = decode(&id, &bytes)?;
                Ok(Stored { seq, id, record })
            })
            .collect()
    }

    fn replace_records(&self, rows: &[(String, Vec<u8>)]) -> anyhow::Result<u64> {
        let rows = rows.to_vec();
        self.session.call(move |c| {
            let mut tx = c.transaction()?;
            let mut n = 0;
            for (id, record) in &rows {
                n += tx.execute(
                    "UPDATE feedback SET record = $1 WHERE id = $2",
                    &[record, id],
                )?;
            }
            tx.commit()?;
            Ok(n)
        })
    }

    fn last_seq(&self) -> anyhow::Result<i64> {
        self.session.call(|c| {
            get(
                &c.query_one("SELECT COALESCE(MAX(seq), 0)::BIGINT FROM feedback", &[])?,
                0,
            )
        })
    }

    fn count(&self) -> anyhow::Result<u64> {
        let n: i64 = self
            .session
            .call(|c| get(&c.query_one("SELECT COUNT(*) FROM feedback", &[])?, 0))?;
        Ok(n as u64)
    }

    fn pending_count(&self) -> anyhow::Result<Pending> {
        self.session.call(tenants::pending)
    }

    fn record_job(&self, job: &JobRow, trained_through: Option<(&str, i64)>) -> anyhow::Result<()> {
        let job = job.clone();
        let trained_through = trained_through.map(|(t, seq)| (trained_through_key(t), seq));
        self.session.call(move |c| {
            let mut tx = c.transaction()?;
            tx.execute(
                "INSERT INTO jobs (id, state, reason, message, published, metrics, \
                 started_unix_ms, ended_unix_ms, through_seq) \
                 VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9) \
                 ON CONFLICT (id) DO UPDATE SET state = EXCLUDED.state, \
                 reason = EXCLUDED.reason, message = EXCLUDED.message, \
                 published = EXCLUDED.published, metrics = EXCLUDED.metrics, \
                 started_unix_ms = EXCLUDED.started_unix_ms, \
                 ended_unix_ms = EXCLUDED.ended_unix_ms, through_seq = EXCLUDED.through_seq",
                &[
                    &no_nul(job.id),
                    &no_nul(job.state),
                    &no_nul(job.reason),
                    &no_nul(job.message),
                    &no_nul(job.published),
                    &no_nul(job.metrics),
                    &job.started_unix_ms,
                    &job.ended_unix_ms,
                    &job.through_seq,
                ],
            )?;
            if let Some((key, seq)) = trained_through {
                tx.execute(
                    "INSERT INTO meta (key, value) VALUES ($1, $2) \
                     ON CONFLICT (key) DO UPDATE SET value = GREATEST(meta.value, EXCLUDED.value)",
                    &[&no_nul(key), &seq],
                )?;
            }
            tx.commit()
        })
    }

    fn jobs(&self, limit: usize) -> anyhow::Result<Vec<JobRow>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.session.call(move |c| {
            c.query(
                "SELECT id, state, reason, message, published, metrics, started_unix_ms, \
                 ended_unix_ms, through_seq FROM jobs ORDER BY started_unix_ms DESC LIMIT $1",
                &[&limit],
            )?
            .iter()
            .map(|r| {
                Ok(JobRow {
                    id: get(r, 0)?,
                    state: get(r, 1)?,
                    reason: get(r, 2)?,
                    message: get(r, 3)?,
                    published: get(r, 4)?,
                    metrics: get(r, 5)?,
                    started_unix_ms: get(r, 6)?,
                    ended_unix_ms: get(r, 7)?,
                    through_seq: get(r, 8)?,
                })
            })
            .collect()
        })
    }

    fn training_lock(&self) -> Result<TrainingLock, LockError> {
        // Cheap look first (no new connection while another trainer trains: the
        // --train-after trigger asks after every commit).
        let held = self
            .session
            .call(|c| training_lock_held(c, "TRUE"))
            .map_err(|e| LockError::Unavailable(format!("{e:#}")))?;
        if held {
            return Err(LockError::Busy);
        }
        let (answer_tx, answer_rx) = mpsc::sync_channel::<anyhow::Result<bool>>(1);
        let (session, checks) = mpsc::channel::<LockCheck>();
        let target = self.target.clone();
        std::thread::Builder::new()
            .name("training-lock".into())
            .spawn(move || {
                let mut conn = Conn::new(target, no_setup);
                let got = conn.run(|c| {
                    get::<bool>(
                        &c.query_one("SELECT pg_try_advisory_lock($1)", &[&TRAINING_LOCK])?,
                        0,
                    )
                });
                let granted = matches!(got, Ok(true));
                if answer_tx.send(got).is_err() || !granted {
                    return; // closing the connection releases a lock nobody waits for
                }
                // Held until the job ends (its TrainingLock is dropped) or we die. A
                // check that finds the connection broken asks again on a new session,
                // which holds nothing: the lock went with the old one.
                let ours = |c: &mut Client| training_lock_held(c, "pid = pg_backend_pid()");
                while let Ok(reply) = checks.recv() {
                    let _ = reply.send(conn.run(ours).or_else(|_| conn.run(ours)));
                }
                let _ = conn.run(|c| c.execute("SELECT pg_advisory_unlock($1)", &[&TRAINING_LOCK]));
            })
            .map_err(|e| LockError::Unavailable(format!("cannot start a thread: {e}")))?;
        match answer_rx.recv_timeout(LOCK_WAIT) {
            Ok(Ok(true)) => Ok(TrainingLock {
                session: Some(session),
            }),
            Ok(Ok(false)) => Err(LockError::Busy),
            Ok(Err(e)) => Err(LockError::Unavailable(format!("{e:#}"))),
            Err(_) => Err(LockError::Unavailable(format!(
                "{} did not answer within {LOCK_WAIT:?}",
                self.target.shown
            ))),
        }
    }

    fn insert_key(&self, key: &KeyRow) -> anyhow::Result<bool> {
        let key = key.clone();
        let n = self.session.call(move |c| {
            c.execute(
                keys::INSERT,
                &[
                    &key.key_id,
                    &key.key_sha256,
                    &key.tenant,
                    &key.role,
                    &key.label,
                    &key.created_unix_ms,
                    &key.revoked_unix_ms,
                ],
            )
        })?;
        Ok(n == 1)
    }

    fn revoke_key(&self, key_id: &str, now_ms: i64) -> anyhow::Result<()> {
        let key_id = key_id.to_string();
        self.session
            .call(move |c| c.execute(keys::REVOKE, &[&key_id, &now_ms]))?;
        Ok(())
    }

    fn keys_where(&self, condition: &str, value: &str) -> anyhow::Result<Vec<KeyRow>> {
        let (sql, value) = (keys::select_where(condition), value.to_string());
        let rows = self.session.call(move |c| c.query(&sql, &[&value]))?;
        rows.iter()
            .map(|r| {
                Ok(KeyRow {
                    key_id: get(r, 0)?,
                    key_sha256: get(r, 1)?,
                    tenant: get(r, 2)?,
                    role: get(r, 3)?,
                    label: get(r, 4)?,
                    created_unix_ms: get(r, 5)?,
                    revoked_unix_ms: get(r, 6)?,
                })
            })
            .collect::<Result<_, ::postgres::Error>>()
            .map_err(anyhow::Error::from)
    }

    fn purge(&self, filter: &FeedbackFilter, delete: bool) -> anyhow::Result<u64> {
        self.purge_rows(filter, delete)
    }

    fn forget(&self, subject: &str) -> anyhow::Result<Forgotten> {
        self.forget_subject(subject)
    }

    fn delete_older_than(&self, cutoff_unix_ms: i64) -> anyhow::Result<u64> {
        self.session.call(move |c| {
            c.execute(
                "DELETE FROM traffic WHERE received_unix_ms < $1",
                &[&cutoff_unix_ms],
            )?;
            c.execute(
                "DELETE FROM affect WHERE analyzed_unix_ms < $1",
                &[&cutoff_unix_ms],
            )?;
            c.execute(
                "DELETE FROM feedback WHERE received_unix_ms < $1",
                &[&cutoff_unix_ms],
            )
        })
    }

    fn set_pause(&self, tenant: &str, pause: Option<&Pause>) -> anyhow::Result<()> {
        self.set_tenant_pause(tenant, pause)
    }

    fn pause(&self, tenant: &str) -> anyhow::Result<Option<Pause>> {
        self.tenant_pause(tenant)
    }

    fn store_traffic(&self, rows: &[AnalysisRow], keep: i64) -> anyhow::Result<u64> {
        self.insert_traffic(rows, keep)
    }

    fn insert_affect(&self, rows: &[AnalysisRow]) -> anyhow::Result<u64> {
        self.insert_affect_rows(rows)
    }

    fn read_affect(
        &self,
        tenant: &str,
        subject_id: &str,
        since_unix_ms: i64,
        limit: i64,
    ) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
        self.affect_rows(tenant, subject_id, since_unix_ms, limit)
    }

    fn set_replies(&self, tenant: &str, bank: Option<(&[u8], i64)>) -> anyhow::Result<()> {
        self.set_tenant_replies(tenant, bank)
    }

    fn replies(&self, tenant: &str) -> anyhow::Result<Option<Vec<u8>>> {
        self.tenant_replies(tenant)
    }

    fn read_traffic(&self, tenant: &str, limit: i64) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
        self.traffic_rows(tenant, limit)
    }
}

/// Whether a session matching `holder` (SQL on `pg_locks`) holds the training lock.
fn training_lock_held(c: &mut Client, holder: &str) -> Result<bool, ::postgres::Error> {
    let sql = format!(
        "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted \
         AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
         AND classid = $1 AND objid = $2 AND objsubid = 1 AND {holder})"
    );
    get(
        &c.query_one(
            &sql,
            &[&((TRAINING_LOCK >> 32) as u32), &(TRAINING_LOCK as u32)],
        )?,
        0,
    )
}

/// PostgreSQL text cannot hold NUL.
fn no_nul(s: String) -> String {
    if s.contains('\0') {
        s.replace('\0', "\u{FFFD}")
    } else {
        s
    }
}

struct PgWriter {
    conn: Conn,
}

impl Writer for PgWriter {
    fn commit_group(&mut self, group: &[NewRecord]) -> anyhow::Result<Pending> {
        let n = group.len();
        let mut ids = Vec::with_capacity(n);
        let mut received = Vec::with_capacity(n);
        let mut analysis = Vec::with_capacity(n);
        let mut models = Vec::with_capacity(n);
        let mut sentiments = Vec::with_capacity(n);
        let mut emotions = Vec::with_capacity(n);
        let mut ratings = Vec::with_capacity(n);
        let mut notes = Vec::with_capacity(n);
        let mut texts = Vec::with_capacity(n);
        let mut records = Vec::with_capacity(n);
        let mut tenants = Vec::with_capacity(n);
        let mut key_ids = Vec::with_capacity(n);
        let mut subjects = Vec::with_capacity(n);
        for r in group {
            let c = Columns::of(&r.record);
            ids.push(no_nul(r.id.clone()));
            received.push(c.received_unix_ms);
            analysis.push(no_nul(c.analysis_id));
            models.push(no_nul(c.model_version));
            sentiments.push(no_nul(c.sentiment));
            emotions.push(no_nul(c.emotion));
            ratings.push(c.rating);
            notes.push(no_nul(c.note));
            texts.push(no_nul(c.text));
            records.push(c.record);
            tenants.push(no_nul(c.tenant));
            key_ids.push(no_nul(c.key_id));
            subjects.push(no_nul(c.subject_id));
        }
        self.conn.run(move |c| {
            let mut tx = c.transaction()?;
            // Seqs in commit order across trainers (see the module comment).
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&WRITE_LOCK])?;
            tx.execute(
                "INSERT INTO feedback (id, received_unix_ms, analysis_id, model_version, \
                 sentiment, emotion, rating, note, text, record, tenant, key_id, subject_id) \
                 SELECT * FROM UNNEST($1::text[], $2::bigint[], $3::text[], $4::text[], \
                 $5::text[], $6::text[], $7::int[], $8::text[], $9::text[], $10::bytea[], \
                 $11::text[], $12::text[], $13::text[])",
                &[
                    &ids,
                    &received,
                    &analysis,
                    &models,
                    &sentiments,
                    &emotions,
                    &ratings,
                    &notes,
                    &texts,
                    &records,
                    &tenants,
                    &key_ids,
                    &subjects,
                ],
            )?;
            let pending = tenants::pending(&mut tx)?;
            tx.commit()?;
            Ok(pending)
        })
    }

    fn pending_count(&mut self) -> anyhow::Result<Pending> {
        self.conn.run(tenants::pending)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_messages_never_quote_the_password() {
        let Ok((config, _)) = parse("postgres://u:s3cret@h/db") else {
            panic!("parse");
        };
        assert_eq!(
            scrub("auth failed for s3cret!".into(), &config),
            "auth failed for ***!"
        );
        assert_eq!(no_nul("a\0b".into()), "a\u{FFFD}b");
    }

    #[test]
    fn an_unreachable_database_is_a_clear_startup_error() {
        // A port nothing listens on (bound, then released).
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap_or(1);
        let url = format!("postgres://u:s3cret@127.0.0.1:{port}/db?connect_timeout=5");
        let err = Postgres::connect(&url).err().map(|e| format!("{e:#}"));
        let expected =
            format!("cannot connect to the feedback database postgres://u:***@127.0.0.1:{port}/db");
        assert!(
            err.as_ref()
                .is_some_and(|e| e.starts_with(&expected) && !e.contains("s3cret")),
            "{err:?}"
        );
    }
}
