//! Privacy end to end: `empathy forget` against the real trainer on SQLite and a real
//! fusion removes what it says it removed: from the table, from the bytes of the
//! database file, and from fusion's memory of recent analyses.
//!
//! Needs the binaries (cargo build --workspace) and a model under assets/models (the
//! trainer checks which version made each analysis).

mod support;

use std::path::Path;
use std::process::Command;

use empathy_common::launch::sibling_binary;
use empathy_grpc::v1::{AnalyzeRequest, FeedbackRequest, ForgetRequest};
use support::{
    client as fusion_client, feedback_record, registry_copy, start_encoder, start_fusion,
    start_trainer_on, temp_dir, trainer_client,
};

const SUBJECT: &str = "subject-e2e-7";

/// Whether the database file or its WAL holds `needle` anywhere (live or free pages).
fn file_holds(database: &Path, needle: &str) -> anyhow::Result<bool> {
    let mut bytes = std::fs::read(database)?;
    bytes.extend(std::fs::read(format!("{}-wal", database.display())).unwrap_or_default());
    Ok(bytes.windows(needle.len()).any(|w| w == needle.as_bytes()))
}

fn rows(database: &Path, subject: &str) -> anyhow::Result<i64> {
    let conn = rusqlite::Connection::open_with_flags(
        database,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )?;
    Ok(conn.query_row(
        "SELECT COUNT(*) FROM feedback WHERE subject_id = ?1",
        [subject],
        |r| r.get(0),
    )?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn forget_removes_a_subjects_feedback_from_the_database_file() -> anyhow::Result<()> {
    let dir = temp_dir("forget");
    let models = registry_copy(&dir)?;
    let database = dir.join("feedback.sqlite");
    let trainer = start_trainer_on(&models, &database.display().to_string(), &[]).await?;
    let mut client = trainer_client(&trainer).await?;
    // Three records of the subject (text "sentence private-N", note "private-N"), one
    // of someone else.
    for i in 0..3 {
        let mut record = feedback_record(&format!("private-{i}"), "negative", i);
        record.subject_id = SUBJECT.into();
        client.submit_feedback(record).await?;
    }
    client
        .submit_feedback(feedback_record("someone-else", "positive", 9))
        .await?;
    assert_eq!(rows(&database, SUBJECT)?, 3);
    assert!(file_holds(&database, "private-1")?);
    // Two analyses of the subject that fusion keeps in memory for feedback.
    let encoder = start_encoder(&[]).await?;
    let fusion = start_fusion(&[encoder.url()], &["--trainer", &trainer.url()]).await?;
    let mut analyses = fusion_client(&fusion).await?;
    let mut ids = Vec::new();
    for text in ["I could not sleep again.", "The pain is worse at night."] {
        let request = AnalyzeRequest {
            text: text.into(),
            subject_id: SUBJECT.into(),
            ..AnalyzeRequest::default()
        };
        ids.push(analyses.analyze(request).await?.into_inner().analysis_id);
    }

    // The command a data-protection officer runs, and what it says it did.
    let out = Command::new(sibling_binary("empathy")?)
        .args(["forget", "--subject", SUBJECT, "--trainer", &trainer.url()])
        .args(["--fusion", &fusion.url()])
        .output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.starts_with(&format!(
            "deleted 3 stored feedback record(s) of subject {SUBJECT}"
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "dropped 2 recent analysis(es) of subject {SUBJECT}"
        )),
        "{stdout}"
    );
    // Fusion no longer knows them: feedback on one finds nothing.
    let late = FeedbackRequest {
        analysis_id: ids[0].clone(),
        sentiment: "negative".into(),
        ..FeedbackRequest::default()
    };
    let refused = analyses.feedback(late).await.err().map(|s| s.code());
    assert_eq!(refused, Some(tonic::Code::NotFound));

    // Measured: gone from the table and from the file's bytes, the other record kept.
    assert_eq!(rows(&database, SUBJECT)?, 0);
    assert_eq!(rows(&database, "")?, 1);
    assert!(
        !file_holds(&database, "private-")?,
        "the text is still in the file"
    );
    assert!(file_holds(&database, "someone-else")?);
    // The database is the owner's alone.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&database)?.permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);

    let again = client
        .forget(ForgetRequest {
            subject_id: SUBJECT.into(),
        })
        .await?
        .into_inner();
    assert_eq!((again.feedback_deleted, again.trained_into.len()), (0, 0));
    drop(trainer);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
