//! Purge, quarantine, forget, retention, the pause, owner-only files and the added
//! columns, on SQLite (PostgreSQL through `store::tests`).

use super::*;
use prost::Message;

use crate::store::tests::record;
use crate::store::{Database, JobRow, NewRecord};

/// A record of `tenant`/`key`/`subject` on `version`, received at `at`.
pub(in crate::store) fn owned(
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

pub(in crate::store) async fn store_with(
    database: &Database,
    records: Vec<NewRecord>,
) -> anyhow::Result<FeedbackStore> {
    let store = FeedbackStore::open_database(database, 64)?;
    for r in records {
        store.submit(r.id, r.record).await?;
    }
    Ok(store)
}

/// The ids of every tenant's trainable records, in seq order.
fn ids(store: &FeedbackStore) -> anyhow::Result<Vec<String>> {
    let mut all = Vec::new();
    for tenant in ["clinic", "spam", "t", "default"] {
        all.extend(store.read_all(tenant, i64::MAX)?);
    }
    all.sort_by_key(|s| s.seq);
    Ok(all.into_iter().map(|s| s.id).collect())
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
pub(in crate::store) async fn purges(database: &Database) -> anyhow::Result<()> {
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
    assert_eq!(store.pending().borrow().values().sum::<u64>(), 5);
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
    assert_eq!(store.refresh_pending()?, [("clinic".to_string(), 3)].into());
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

pub(in crate::store) async fn forgets(database: &Database) -> anyhow::Result<FeedbackStore> {
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
    let all = store.read_all("t", i64::MAX)?;
    let seq = |id: &str| all.iter().find(|s| s.id == id).map_or(0, |s| s.seq);
    // v0002 was trained on everything up to s1; v0001's job read only "before".
    for (job, published, through) in [("j1", "v0001", seq("before")), ("j2", "v0002", seq("s1"))] {
        store.record_job(
            &JobRow {
                id: job.into(),
                state: "PUBLISHED".into(),
                published: published.into(),
                through_seq: through,
                ..JobRow::default()
            },
            Some(("t", through)),
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

pub(in crate::store) fn pauses(database: &Database) -> anyhow::Result<()> {
    let store = FeedbackStore::open_database(database, 4)?;
    assert_eq!(store.pause("acme")?, None);
    store.set_pause("acme", "rolled back")?;
    drop(store);
    let store = FeedbackStore::open_database(database, 4)?;
    assert_eq!(
        store.pause("acme")?.map(|p| p.reason),
        Some("rolled back".into())
    );
    // One tenant's pause is its own.
    assert_eq!(store.pause("globex")?, None);
    store.set_pause("acme", "rolled back again")?;
    assert_eq!(
        store.pause("acme")?.map(|p| p.reason),
        Some("rolled back again".into())
    );
    store.resume("acme")?;
    assert_eq!(store.pause("acme")?, None);
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
        let file = std::path::PathBuf::from(format!("{}{suffix}", path.display()));
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
