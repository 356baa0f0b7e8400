//! Jobs against a tiny real registry: rollbacks hold, the pause, retention.

use super::*;
use crate::test_registry::Scratch;
use std::time::Duration;

fn job() -> Job {
    Job {
        id: "test-job".into(),
        tenant: "default".into(),
        state: watch::channel(TrainingJob::default()).0,
        cancel: AtomicBool::new(false),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_while_a_job_runs_holds() -> anyhow::Result<()> {
    let dir = Scratch::new("rollback-holds");
    dir.registry(2)?;
    let trainer = dir.trainer()?;
    let lock = trainer.store.training_lock().map_err(anyhow::Error::msg)?;
    // A job tuned v0002; while it trained, an admin rolled back to v0001.
    let tuned = dir.tuned("v0002")?;
    trainer.rollback("default", "v0001")?;
    let outcome = match trainer.publish_tuned(&job(), &lock, tuned, 7) {
        Ok(o) | Err(o) => o,
    };
    assert_eq!(outcome.state, JobState::Rejected, "{}", outcome.message);
    assert_eq!(
        outcome.message,
        "the serving version changed to v0001 while training (from v0002); not published"
    );
    assert_eq!(outcome.trained_through, None);
    let serving = |tenant| {
        registry::serving_for(&dir.models(), tenant)
            .map(|(_, id)| id)
            .ok()
    };
    assert_eq!(serving("default").as_deref(), Some("v0001"));
    assert!(
        registry::list_versions(&registry::line_dir(&dir.models(), "default")?)?
            .0
            .is_empty(),
        "published anyway"
    );

    // Tuned from what serves, the same job publishes into the tenant's line only.
    let outcome = match trainer.publish_tuned(&job(), &lock, dir.tuned("v0001")?, 7) {
        Ok(o) | Err(o) => o,
    };
    assert_eq!(outcome.state, JobState::Published, "{}", outcome.message);
    assert_eq!(serving("default").as_deref(), Some("default/v0001"));
    assert_eq!(serving("globex").as_deref(), Some("v0002"));
    assert_eq!(
        registry::serving_pointer(&dir.models())?.as_deref(),
        Some("v0002")
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_pauses_automatic_training_across_restarts() -> anyhow::Result<()> {
    let dir = Scratch::new("pause");
    dir.registry(2)?;
    let trainer = dir.trainer()?;
    assert!(!trainer.status("acme")?.paused);
    trainer.rollback("acme", "v0001")?;
    assert!(!trainer.status("globex")?.paused, "another tenant paused");
    let status = trainer.status("acme")?;
    assert!(status.paused);
    assert!(
        status.reason.starts_with("rolled back from v0002 to v0001"),
        "{}",
        status.reason
    );
    let refused = trainer
        .start_automatic("acme", "10 new feedback records")
        .err();
    assert!(
        refused
            .as_ref()
            .is_some_and(|s| s.code() == tonic::Code::FailedPrecondition
                && s.message()
                    .starts_with("automatic training of tenant acme is paused: rolled back")),
        "{refused:?}"
    );
    drop(trainer);

    // Stored: a restarted trainer is still paused, until resumed.
    let trainer = dir.trainer()?;
    assert!(trainer.status("acme")?.paused);
    assert!(trainer.start_automatic("acme", "timer").is_err());
    // An admin's explicit start is not an automatic trigger: it runs.
    let job = trainer.start("acme", "requested")?;
    assert!(!job.job_id.is_empty());
    let status = trainer.resume("acme")?;
    assert!(!status.paused && status.reason.is_empty());
    assert!(!dir.trainer()?.status("acme")?.paused);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_deletes_old_feedback_in_the_background() -> anyhow::Result<()> {
    let dir = Scratch::new("retention");
    let trainer = dir.trainer()?;
    let record = |received_unix_ms| empathy_proto::v1::FeedbackRecord {
        text: "old words".into(),
        received_unix_ms,
        ..Default::default()
    };
    trainer
        .store
        .submit("old".into(), record(now_ms() - 60_000))
        .await?;
    trainer.store.submit("new".into(), record(now_ms())).await?;
    trainer.spawn_retention(Duration::from_secs(30));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while trainer.store.count()? != 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "old feedback not deleted"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let left = trainer.store.read_all("default", i64::MAX)?;
    assert_eq!(
        left.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(),
        ["new"]
    );
    Ok(())
}
