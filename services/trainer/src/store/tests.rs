//! The store against SQLite (and PostgreSQL when `EMPATHY_TEST_POSTGRES_URL` is set).

use empathy_proto::v1::FeedbackRequest;

use super::*;
use crate::store::privacy::tests::{forgets, pauses, purges};

pub(super) fn record(i: usize) -> FeedbackRecord {
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
    let all = store.read_all("default", i64::MAX)?;
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
    assert_eq!(store.pending().borrow().get("default"), Some(&40));
    adds_readings(&store)?;
    let through = all[29].seq;
    store.record_job(
        &JobRow {
            id: "j".into(),
            state: "PUBLISHED".into(),
            started_unix_ms: 1,
            ..JobRow::default()
        },
        Some(("default", through)),
    )?;
    assert_eq!(store.refresh_pending()?.get("default"), Some(&10));
    // trained_through only grows; a job recorded twice is one row.
    for state in ["RUNNING", "REJECTED"] {
        store.record_job(
            &JobRow {
                id: "k".into(),
                state: state.into(),
                started_unix_ms: 2,
                ..JobRow::default()
            },
            Some(("default", 1)),
        )?;
    }
    assert_eq!(store.refresh_pending()?.get("default"), Some(&10));
    // Another tenant's mark moves nothing of the default's.
    let k = JobRow {
        id: "k".into(),
        state: "REJECTED".into(),
        started_unix_ms: 2,
        ..JobRow::default()
    };
    store.record_job(&k, Some(("acme", i64::MAX)))?;
    assert_eq!(store.refresh_pending()?.get("default"), Some(&10));
    let jobs = store.jobs(5)?;
    assert_eq!(
        jobs.iter()
            .map(|j| (j.id.as_str(), j.state.as_str()))
            .collect::<Vec<_>>(),
        [("k", "REJECTED"), ("j", "PUBLISHED")]
    );
    Ok(store)
}

/// A reading added later lands in the named records only, with its reader, beside what
/// they held; asked for another tenant, it changes nothing.
fn adds_readings(store: &FeedbackStore) -> anyhow::Result<()> {
    let values: HashMap<String, Vec<f32>> = [("id5", 0.5), ("id9", -1.0), ("gone", 2.0)]
        .into_iter()
        .map(|(id, x)| (id.to_string(), vec![x, 0.0, 1.0]))
        .collect();
    let reader = "qwen2.5-coder-1.5b";
    assert_eq!(store.add_readings("acme", reader, &values)?, 0);
    assert_eq!(store.add_readings("default", reader, &values)?, 2);
    let all = store.read_all("default", i64::MAX)?;
    for s in &all {
        let got = s.record.features.get("meaning").map(|v| v.values.clone());
        assert_eq!(got.as_ref(), values.get(&s.id), "{}", s.id);
        let by = if got.is_some() { reader } else { "" };
        assert_eq!(s.record.meaning_reader, by, "{}", s.id);
        assert_eq!(s.record.text, format!("text {}", &s.id[2..]));
    }
    assert_eq!(store.count()?, 40);
    Ok(())
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
    reply_banks(&database)?;
    affect_trajectories(&database)?;
    Ok(())
}

const DROP_ALL: &str =
    "DROP TABLE IF EXISTS feedback, jobs, meta, training_pause, reply_banks, affect";

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traffic_is_kept_per_tenant_bounded_and_forgotten() -> anyhow::Result<()> {
    use empathy_proto::v1::{FloatVector, TrafficSample};
    let dir = crate::test_registry::Scratch::new("traffic");
    let store = FeedbackStore::open_database(&Database::Sqlite(dir.database()), 8)?;
    let sample = |i: i64, tenant: &str| TrafficSample {
        analysis_id: format!("{tenant}-{i}"),
        tenant: tenant.into(),
        subject_id: if i == 0 { "p1".into() } else { String::new() },
        received_unix_ms: super::now_ms() - 1_000 + i,
        features: [(
            "text".to_string(),
            FloatVector {
                values: vec![i as f32],
            },
        )]
        .into(),
        ..TrafficSample::default()
    };
    let keep = super::tenants::TRAFFIC_KEEP;
    let acme: Vec<TrafficSample> = (0..keep + 5).map(|i| sample(i, "acme")).collect();
    assert_eq!(store.store_traffic(&acme)?, (keep + 5) as u64);
    // Sent twice (a retry), stored once.
    assert_eq!(store.store_traffic(&acme[acme.len() - 10..])?, 0);
    store.store_traffic(&[sample(1, "globex")])?;
    let kept = store.traffic("acme", usize::MAX)?;
    assert_eq!(kept.len() as i64, keep, "not bounded");
    assert_eq!(
        kept[0].analysis_id,
        format!("acme-{}", keep + 4),
        "not newest first"
    );
    assert_eq!(store.traffic("globex", 10)?.len(), 1);
    // Forgetting a subject removes its samples; keeping only the newest dropped acme-0.
    store.store_traffic(&[sample(0, "globex")])?;
    store.forget("p1")?;
    assert_eq!(store.traffic("globex", 10)?.len(), 1);
    Ok(())
}

/// A tenant's bank is replaced whole, kept apart from other tenants', and removed by
/// an empty one.
fn reply_banks(database: &Database) -> anyhow::Result<()> {
    use empathy_proto::v1::{ReplyTemplate, TenantReplies};
    let store = FeedbackStore::open_database(database, 8)?;
    let bank = |tenant: &str, ids: &[&str]| TenantReplies {
        tenant: tenant.into(),
        templates: ids
            .iter()
            .map(|id| ReplyTemplate {
                id: id.to_string(),
                text: format!("Reply {id}"),
                ..Default::default()
            })
            .collect(),
        updated_unix_ms: 7,
    };
    store.put_replies(&bank("acme", &["sorry", "thanks"]))?;
    store.put_replies(&bank("globex", &["hello"]))?;
    store.put_replies(&bank("acme", &["welcome"]))?;
    assert_eq!(store.replies("acme")?, bank("acme", &["welcome"]));
    assert_eq!(store.replies("globex")?.templates.len(), 1);
    store.put_replies(&bank("globex", &[]))?;
    assert!(store.replies("globex")?.templates.is_empty());
    assert!(store.replies("initech")?.templates.is_empty());
    Ok(())
}

#[test]
fn reply_banks_on_sqlite() -> anyhow::Result<()> {
    let dir = crate::test_registry::Scratch::new("replies");
    reply_banks(&Database::Sqlite(dir.database()))
}

/// A subject's points come back oldest first, per tenant, once each; forgetting the
/// subject and the retention delete them.
fn affect_trajectories(database: &Database) -> anyhow::Result<()> {
    use empathy_proto::v1::{AffectPoint, SubjectAffect};
    let store = FeedbackStore::open_database(database, 8)?;
    let now = super::now_ms();
    let day = 86_400_000;
    let points = |tenant: &str, subject: &str, ages_days: &[i64]| SubjectAffect {
        tenant: tenant.into(),
        subject_id: subject.into(),
        points: ages_days
            .iter()
            .map(|age| AffectPoint {
                analysis_id: format!("{tenant}-{subject}-{age}"),
                analyzed_unix_ms: now - age * day,
                valence: -0.5,
                arousal: 0.1,
                sentiment: "negative".into(),
            })
            .collect(),
    };
    assert_eq!(
        store.record_affect(&points("care", "p1", &[1, 3, 2, 40]))?,
        4
    );
    // A retry stores nothing twice.
    assert_eq!(store.record_affect(&points("care", "p1", &[1]))?, 0);
    store.record_affect(&points("care", "p2", &[1]))?;
    store.record_affect(&points("other", "p1", &[1]))?;
    let read = store.read_affect("care", "p1", now - 30 * day)?;
    let ids: Vec<&str> = read.iter().map(|p| p.analysis_id.as_str()).collect();
    assert_eq!(ids, ["care-p1-3", "care-p1-2", "care-p1-1"]);
    assert_eq!(read[0].sentiment, "negative");
    // The retention takes the 40-day-old point.
    store.delete_older_than(std::time::Duration::from_secs(30 * 86_400))?;
    assert_eq!(store.read_affect("care", "p1", 0)?.len(), 3);
    assert_eq!(store.forget("p1")?.affect, 4, "both tenants' points of p1");
    assert!(store.read_affect("care", "p1", 0)?.is_empty());
    assert_eq!(store.read_affect("care", "p2", 0)?.len(), 1);
    Ok(())
}

#[test]
fn affect_trajectories_on_sqlite() -> anyhow::Result<()> {
    let dir = crate::test_registry::Scratch::new("affect");
    affect_trajectories(&Database::Sqlite(dir.database()))
}
