//! The learning loop end to end: feedback survives SIGKILL, bad input gets a clear
//! answer, and corrections sent through fusion become a new model version that fusion
//! swaps in without failing a request.
//!
//! Needs the binaries (cargo build -p empathy-encoder -p empathy-plugin-text
//! -p empathy-fusion -p empathy-trainer), a trained model under assets/models and the
//! corpus embedding cache that `empathy train` leaves behind.

mod support;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use empathy_common::launch::{self, Service, sibling_binary};
use empathy_grpc::v1::{
    AnalyzeRequest, CancelJobRequest, FeedbackRequest, JobState, ListModelsRequest,
    ListModelsResponse, StartTrainingRequest, WatchModelsRequest,
};
use support::{
    analyze_text, assets, client, feedback_record, registry_copy, start_learning_system,
    start_trainer_on, stream_feedback_then_kill, temp_dir, train_and_wait, trainer_client,
    wait_job,
};
use tonic::Code;
use tonic::transport::Channel;

const READY: Duration = Duration::from_secs(120);

async fn start_trainer(models: &Path, database: &Path, extra: &[&str]) -> anyhow::Result<Service> {
    start_trainer_on(models, &database.display().to_string(), extra).await
}

fn stored_ids(database: &Path) -> anyhow::Result<std::collections::HashSet<String>> {
    let conn = rusqlite::Connection::open_with_flags(
        database,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )?;
    let mut stmt = conn.prepare("SELECT id FROM feedback")?;
    let ids = stmt
        .query_map([], |r| r.get::<_, String>(0))?
        .collect::<Result<_, _>>()?;
    Ok(ids)
}

fn stored_version(database: &Path, feedback_id: &str) -> anyhow::Result<String> {
    let conn = rusqlite::Connection::open_with_flags(
        database,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )?;
    Ok(conn.query_row(
        "SELECT model_version FROM feedback WHERE id = ?1",
        [feedback_id],
        |r| r.get(0),
    )?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_feedback_survives_sigkill() -> anyhow::Result<()> {
    let dir = temp_dir("sigkill");
    let models = registry_copy(&dir)?;
    let database = dir.join("feedback.sqlite");
    let mut trainer = start_trainer(&models, &database, &[]).await?;
    let acked = stream_feedback_then_kill(&mut trainer, 8, 300).await?;
    assert!(
        acked.len() >= 50,
        "only {} acknowledged before the kill",
        acked.len()
    );

    // Restart on the same file: it opens (recovering the WAL) and serves again.
    let restarted = start_trainer(&models, &database, &[]).await?;
    let mut client = trainer_client(&restarted).await?;
    client
        .submit_feedback(feedback_record("after-restart", "neutral", 1))
        .await?;
    let stored = stored_ids(&database)?;
    let lost: Vec<&String> = acked.iter().filter(|id| !stored.contains(*id)).collect();
    println!(
        "SIGKILL durability: {} acknowledged before the kill, {} stored after restart, {} lost",
        acked.len(),
        stored.len(),
        lost.len()
    );
    assert!(lost.is_empty(), "acknowledged but lost: {lost:?}");
    drop(restarted);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn trainer_refuses_bad_feedback_floods_and_a_second_job() -> anyhow::Result<()> {
    let dir = temp_dir("bad");
    let models = registry_copy(&dir)?;
    let database = dir.join("feedback.sqlite");
    let trainer = start_trainer(&models, &database, &["--max-queue", "2"]).await?;
    let mut client = trainer_client(&trainer).await?;

    let err = client
        .submit_feedback(feedback_record("x", "happy", 1))
        .await
        .expect_err("a label outside the set");
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message().contains("negative, neutral, positive"),
        "{}",
        err.message()
    );
    let err = client
        .submit_feedback(feedback_record("x", "", 1))
        .await
        .expect_err("no correction");
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message().contains("both corrections are empty"),
        "{}",
        err.message()
    );

    // An analysis made by a version this registry does not have: its features cannot be
    // checked, so the trainer refuses it and says what to do.
    let mut foreign = feedback_record("foreign", "positive", 1);
    foreign.model_version = "v0999".into();
    let err = client
        .submit_feedback(foreign)
        .await
        .expect_err("a version the registry does not have");
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(
        err.message().contains("v0999") && err.message().contains("resending the original"),
        "{}",
        err.message()
    );
    let mut narrow = feedback_record("narrow", "positive", 1);
    if let Some(text) = narrow.features.get_mut("text") {
        text.values.truncate(100);
    }
    let err = client
        .submit_feedback(narrow)
        .await
        .expect_err("features of the wrong width for their version");
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("100 values"), "{}", err.message());

    // A flood on a queue of two: some refused with RESOURCE_EXHAUSTED, none lost.
    let results = futures::future::join_all((0..400).map(|i| {
        let mut c = client.clone();
        async move {
            c.submit_feedback(feedback_record(&format!("flood-{i}"), "positive", i))
                .await
        }
    }))
    .await;
    let mut acked = Vec::new();
    let (mut refused, mut other) = (0, Vec::new());
    for r in results {
        match r {
            Ok(ack) => acked.push(ack.into_inner().feedback_id),
            Err(s) if s.code() == Code::ResourceExhausted => refused += 1,
            Err(s) => other.push(s),
        }
    }
    println!("flood: {} stored, {refused} refused", acked.len());
    assert!(other.is_empty(), "unexpected errors: {other:?}");
    assert!(refused > 0, "a queue of 2 took 400 concurrent records");
    let stored = stored_ids(&database)?;
    assert!(
        acked.iter().all(|id| stored.contains(id)),
        "an acknowledged record is missing"
    );

    // One job at a time; the running one can be cancelled.
    let first = client
        .start_training(StartTrainingRequest {
            reason: "test".into(),
            ..Default::default()
        })
        .await?
        .into_inner();
    let err = client
        .start_training(StartTrainingRequest::default())
        .await
        .expect_err("a second job while one runs");
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.message().contains(&first.job_id), "{}", err.message());
    let _ = client
        .cancel_job(CancelJobRequest {
            job_id: first.job_id.clone(),
        })
        .await;
    let end = wait_job(&mut client, &first.job_id).await?;
    println!("first job ended {:?}: {}", end.state(), end.message);
    assert!(
        matches!(
            end.state(),
            JobState::Cancelled | JobState::Rejected | JobState::Published
        ),
        "{end:?}"
    );
    drop(trainer);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// Good news from medical tests: the tweet-trained model reads "negative" as bad.
const DOMAIN: [&str; 12] = [
    "The biopsy came back negative.",
    "My test results were negative, no cancer at all.",
    "The scan came back clear, the tumour is gone.",
    "Covid test negative, I can finally visit grandma.",
    "The doctor said the lump is benign.",
    "My bloodwork came back negative for everything.",
    "The mammogram results were negative.",
    "The MRI showed no sign of the tumour.",
    "Tested negative for the virus today.",
    "Pathology report came back benign.",
    "My HIV test came back negative.",
    "The CT scan was clear, no cancer.",
];
/// Never corrected: do the corrections generalise?
const SIMILAR: [&str; 6] = [
    "Her biopsy results came back negative.",
    "My covid test came back negative this morning.",
    "His blood test results were negative.",
    "The scan showed the tumour is completely gone.",
    "The lab said my results were all negative.",
    "Good news, the growth turned out to be benign.",
];

/// How `texts` come back: the share read as positive, the share whose top emotion
/// is joy, and the versions (and emotion sources) that answered.
struct Reading {
    positive: f64,
    joy: f64,
    versions: Vec<String>,
    sources: Vec<String>,
}

async fn read_all(
    fusion: &mut empathy_grpc::v1::empathy_service_client::EmpathyServiceClient<Channel>,
    texts: &[&str],
) -> anyhow::Result<Reading> {
    let (mut positive, mut joy) = (0, 0);
    let (mut versions, mut sources) = (Vec::new(), Vec::new());
    for t in texts {
        let r = analyze_text(fusion, t).await?;
        if r.sentiment.as_ref().map(|s| s.label.as_str()) == Some("positive") {
            positive += 1;
        }
        let emotions = r.emotions.unwrap_or_default();
        if emotions.top == "joy" {
            joy += 1;
        }
        println!(
            "  {:<9} {:<8} {t}",
            r.sentiment.as_ref().map_or("", |s| s.label.as_str()),
            emotions.top
        );
        sources.push(emotions.source);
        versions.push(r.model_version);
    }
    let n = texts.len() as f64;
    Ok(Reading {
        positive: positive as f64 / n,
        joy: joy as f64 / n,
        versions,
        sources,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn corrections_become_a_new_version_served_without_a_failed_request() -> anyhow::Result<()> {
    let dir = temp_dir("loop");
    let system = start_learning_system(&dir, &[], &["--model-poll-s", "1"]).await?;
    let (fusion, trainer) = (&system.fusion, &system.trainer);
    let (models, database) = (&system.models, &system.database);
    let mut api = client(fusion).await?;
    let mut tc = trainer_client(trainer).await?;

    // Bad feedback at the front door.
    let err = api
        .feedback(FeedbackRequest {
            analysis_id: "no-such-analysis".into(),
            sentiment: "positive".into(),
            ..FeedbackRequest::default()
        })
        .await
        .expect_err("unknown id");
    assert_eq!(err.code(), Code::NotFound);
    assert!(
        err.message().contains("resend the original"),
        "{}",
        err.message()
    );
    let err = api
        .feedback(FeedbackRequest {
            analysis_id: "x".into(),
            emotion: "happiness".into(),
            ..FeedbackRequest::default()
        })
        .await
        .expect_err("emotion outside the set");
    assert_eq!(err.code(), Code::InvalidArgument);

    // Before: the domain is read wrongly.
    let same_before = read_all(&mut api, &DOMAIN).await?;
    let similar_before = read_all(&mut api, &SIMILAR).await?;
    let old_version = same_before.versions[0].clone();
    // An analysis by this version, corrected only after the next one serves.
    let late = analyze_text(&mut api, SIMILAR[5]).await?;
    assert_eq!(late.model_version, old_version);

    // Corrections through Feedback (sentiment and emotion); one as an expired id with
    // the original resent.
    for (i, t) in DOMAIN.iter().enumerate() {
        let (analysis_id, original) = if i == 0 {
            (
                "expired-id".to_string(),
                Some(AnalyzeRequest {
                    text: t.to_string(),
                    ..AnalyzeRequest::default()
                }),
            )
        } else {
            (analyze_text(&mut api, t).await?.analysis_id, None)
        };
        let r = api
            .feedback(FeedbackRequest {
                analysis_id,
                sentiment: "positive".into(),
                emotion: "joy".into(),
                rating: 1,
                original,
                ..FeedbackRequest::default()
            })
            .await?
            .into_inner();
        assert!(r.stored && !r.feedback_id.is_empty());
    }

    // Analyses keep running through the training and the swap.
    let mut models_stream = tc.watch_models(WatchModelsRequest {}).await?.into_inner();
    let current = models_stream.message().await?.expect("the serving version");
    assert_eq!(current.version, old_version);
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let seen = Arc::new(Mutex::new(std::collections::BTreeSet::new()));
    let load = {
        let (stop, ok, failed, seen) = (stop.clone(), ok.clone(), failed.clone(), seen.clone());
        let mut api = api.clone();
        tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                match analyze_text(&mut api, SIMILAR[0]).await {
                    Ok(r) => {
                        ok.fetch_add(1, Ordering::SeqCst);
                        seen.lock().expect("lock").insert(r.model_version);
                    }
                    Err(e) => {
                        eprintln!("request failed during the swap: {e}");
                        if failed.fetch_add(1, Ordering::SeqCst) > 3 {
                            return;
                        }
                    }
                }
            }
        })
    };

    let job = tc
        .start_training(StartTrainingRequest {
            reason: "e2e".into(),
            ..Default::default()
        })
        .await?
        .into_inner();
    let end = wait_job(&mut tc, &job.job_id).await?;
    println!("job: {:?} {}", end.state(), end.message);
    assert_eq!(end.state(), JobState::Published, "{}", end.message);
    let announced = tokio::time::timeout(Duration::from_secs(30), models_stream.message())
        .await??
        .expect("a new version on the stream");
    assert_eq!(announced.version, end.published_version);
    assert_eq!(announced.parent, old_version);
    // Fusion swaps it in (stream or registry poll).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = analyze_text(&mut api, DOMAIN[0]).await?;
        if r.model_version == announced.version {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "fusion still serves {}",
            r.model_version
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::SeqCst);
    load.await?;
    let seen = seen.lock().expect("lock").clone();
    println!(
        "during the swap: {} requests ok, {} failed, versions seen {seen:?}",
        ok.load(Ordering::SeqCst),
        failed.load(Ordering::SeqCst)
    );
    assert_eq!(
        failed.load(Ordering::SeqCst),
        0,
        "a request failed during the swap"
    );
    assert!(seen.contains(&announced.version));

    // After: the same and similar sentences, and the base test split.
    let same_after = read_all(&mut api, &DOMAIN).await?;
    let similar_after = read_all(&mut api, &SIMILAR).await?;
    assert!(same_after.versions.iter().all(|v| *v == announced.version));
    assert!(
        same_after.sources.iter().all(|s| s.contains("model")),
        "emotions should now come from the trained head: {:?}",
        same_after.sources
    );
    let m = |k: &str| f64::from(*end.metrics.get(k).unwrap_or(&f32::NAN));
    let pct = |x: f64| x * 100.0;
    println!(
        "adaptation gain: corrected sentences {:.0}% -> {:.0}% positive and {:.0}% -> {:.0}% \
         joy; similar unseen sentences {:.0}% -> {:.0}% positive and {:.0}% -> {:.0}% joy; \
         feedback hold-out {:.3} -> {:.3}; base test macro-F1 {:.4} -> {:.4}; top emotion \
         kept on {:.1}% of the base test split ({} -> {})",
        pct(same_before.positive),
        pct(same_after.positive),
        pct(same_before.joy),
        pct(same_after.joy),
        pct(similar_before.positive),
        pct(similar_after.positive),
        pct(similar_before.joy),
        pct(similar_after.joy),
        m("parent_feedback_holdout_accuracy"),
        m("feedback_holdout_accuracy"),
        m("parent_test_macro_f1"),
        m("test_macro_f1"),
        pct(m("test_emotion_agreement_with_parent")),
        old_version,
        announced.version
    );
    assert!(
        same_after.positive >= 0.9,
        "corrected sentences: {}",
        same_after.positive
    );
    assert!(
        similar_after.positive > similar_before.positive && similar_after.positive >= 0.5,
        "similar: {} -> {}",
        similar_before.positive,
        similar_after.positive
    );
    assert!(
        same_after.joy >= 0.9,
        "corrected emotions: {} -> {}",
        same_before.joy,
        same_after.joy
    );
    assert!(
        similar_after.joy > similar_before.joy && similar_after.joy >= 0.5,
        "similar emotions: {} -> {}",
        similar_before.joy,
        similar_after.joy
    );
    assert!(
        m("check_set_accuracy") >= m("parent_check_set_accuracy") - 0.03,
        "the check set got worse beyond the default tolerance"
    );
    assert!(m("test_emotion_agreement_with_parent") >= 0.9);

    // Feedback on an analysis the previous version made: stored under that version
    // (same encoder, so it can train the next one).
    let r = api
        .feedback(FeedbackRequest {
            analysis_id: late.analysis_id.clone(),
            sentiment: "positive".into(),
            ..FeedbackRequest::default()
        })
        .await?
        .into_inner();
    assert!(r.stored);
    assert_eq!(
        stored_version(database, &r.feedback_id)?,
        old_version,
        "the record should name the version that made the analysis"
    );

    // A read-only registry: the job fails cleanly and fusion keeps serving.
    let ro_dir = temp_dir("readonly");
    let ro_models = ro_dir.join("models");
    std::fs::create_dir_all(&ro_models)?;
    // The base version only: the job must create the tenant's line, and cannot.
    std::fs::create_dir_all(ro_models.join(&old_version))?;
    for f in std::fs::read_dir(models.join(&old_version))? {
        let f = f?;
        std::fs::copy(f.path(), ro_models.join(&old_version).join(f.file_name()))?;
    }
    let ro_trainer = start_read_only_trainer(&ro_dir, &ro_models).await?;
    let mut ro = trainer_client(&ro_trainer).await?;
    let end = train_and_wait(&mut ro).await?;
    println!("read-only registry: {:?} {}", end.state(), end.message);
    assert_eq!(end.state(), JobState::Failed);
    assert!(end.message.contains("not writable"), "{}", end.message);
    let r = analyze_text(&mut api, DOMAIN[1]).await?;
    assert_eq!(r.model_version, announced.version);
    drop(ro_trainer);
    let _ = std::fs::remove_dir_all(&ro_dir);
    drop(system);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// A trainer that cannot write its registry: as root (permissions do not bind root)
/// it runs as `nobody` through setpriv; otherwise the registry is made read-only.
async fn start_read_only_trainer(dir: &Path, models: &Path) -> anyhow::Result<Service> {
    use std::os::unix::fs::PermissionsExt;
    let data = dir.join("data");
    std::fs::create_dir_all(&data)?;
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o777))?;
    let database = data.join("feedback.sqlite").display().to_string();
    let root = std::process::Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false);
    let mut args: Vec<String> = Vec::new();
    let program = if root {
        args.extend(
            ["--reuid=65534", "--regid=65534", "--clear-groups"]
                .iter()
                .map(|s| s.to_string()),
        );
        args.push(sibling_binary("empathy-trainer")?.display().to_string());
        PathBuf::from("setpriv")
    } else {
        std::fs::set_permissions(models, std::fs::Permissions::from_mode(0o555))?;
        sibling_binary("empathy-trainer")?
    };
    args.extend([
        "--assets".into(),
        assets().display().to_string(),
        "--models".into(),
        models.display().to_string(),
        "--database".into(),
        database,
    ]);
    let program = if root {
        which("setpriv").unwrap_or(program)
    } else {
        program
    };
    launch::spawn(&program, &args, READY).await
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(name))
            .find(|p| p.is_file())
    })
}

/// A registry on a full disk: a tmpfs with room for the versions it holds and little
/// more, mounted in a private mount namespace (`unshare`) that only the trainer sees.
/// The job fails cleanly with the reason, nothing half-written is left to serve, and
/// the trainer goes on storing feedback.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_disk_fails_the_job_and_serving_goes_on() -> anyhow::Result<()> {
    let dir = temp_dir("full");
    let source = registry_copy(&dir)?;
    let used: u64 = walk_size(&source)?;
    let mount = dir.join("full-models");
    std::fs::create_dir_all(&mount)?;
    let database = dir.join("feedback.sqlite");
    // Room for the copy plus 64 KiB: the writability probe fits, a new version does not.
    let trainer = start_trainer_on_small_disk(
        &mount,
        used + 64 * 1024,
        &format!("cp -a '{}'/. \"$1\"/", source.display()),
        &mount,
        &database,
    )
    .await?;
    let mut client = trainer_client(&trainer).await?;
    let before = client
        .list_models(ListModelsRequest::default())
        .await?
        .into_inner();
    for i in 0..4 {
        client
            .submit_feedback(feedback_record(&format!("full-{i}"), "positive", i))
            .await?;
    }
    let end = train_and_wait(&mut client).await?;
    println!("full disk: {:?} {}", end.state(), end.message);
    assert_eq!(end.state(), JobState::Failed, "{}", end.message);
    assert!(
        end.message.contains("No space left on device"),
        "{}",
        end.message
    );
    let after = client
        .list_models(ListModelsRequest::default())
        .await?
        .into_inner();
    let names = |r: &ListModelsResponse| -> Vec<(String, bool)> {
        r.versions
            .iter()
            .map(|v| (v.version.clone(), v.serving))
            .collect()
    };
    assert_eq!(
        names(&after),
        names(&before),
        "the versions or the serving one changed on a full disk"
    );
    client
        .submit_feedback(feedback_record("after-full", "neutral", 9))
        .await?;
    drop(trainer);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// Starts a trainer in a private mount namespace (`unshare -rm`) where `mount` is a
/// tmpfs of `size` bytes, after `prepare` (sh, the mount as "$1") has run there.
async fn start_trainer_on_small_disk(
    mount: &Path,
    size: u64,
    prepare: &str,
    models: &Path,
    database: &Path,
) -> anyhow::Result<Service> {
    let script =
        format!("mount -t tmpfs -o size={size} tmpfs \"$1\" && {prepare} && shift && exec \"$@\"");
    let mut args: Vec<String> = ["-rm", "--", "sh", "-c", &script, "sh"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    args.extend([
        mount.display().to_string(),
        sibling_binary("empathy-trainer")?.display().to_string(),
        "--assets".into(),
        assets().display().to_string(),
        "--models".into(),
        models.display().to_string(),
        "--database".into(),
        database.display().to_string(),
        "--replay".into(),
        "2000".into(),
        "--epochs".into(),
        "1".into(),
    ]);
    let unshare = which("unshare").ok_or_else(|| {
        anyhow::anyhow!("`unshare` (util-linux) is needed to mount a small disk for this test")
    })?;
    launch::spawn(&unshare, &args, READY).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_feedback_disk_refuses_records_clearly_and_recovers() -> anyhow::Result<()> {
    let dir = temp_dir("full-db");
    let models = registry_copy(&dir)?;
    let mount = dir.join("db");
    std::fs::create_dir_all(&mount)?;
    let database = mount.join("feedback.sqlite");
    // 4 MiB, 3 MiB of it a filler: room for the schema and a few dozen group commits
    // (each appends several 4 KiB pages to the WAL).
    let trainer = start_trainer_on_small_disk(
        &mount,
        4 << 20,
        "head -c 3145728 /dev/zero > \"$1/filler\"",
        &models,
        &database,
    )
    .await?;
    let mut client = trainer_client(&trainer).await?;
    let mut acked = Vec::new();
    let refused = loop {
        let record = feedback_record(&format!("fill-{}", acked.len()), "positive", acked.len());
        match client.submit_feedback(record).await {
            Ok(ack) => acked.push(ack.into_inner().feedback_id),
            Err(e) => break e,
        }
        anyhow::ensure!(acked.len() < 5000, "5000 records and the disk is not full");
    };
    println!(
        "full feedback disk after {} records: {:?} {}",
        acked.len(),
        refused.code(),
        refused.message()
    );
    assert_eq!(
        refused.code(),
        Code::ResourceExhausted,
        "{}",
        refused.message()
    );
    assert!(
        refused.message().contains("disk is full"),
        "{}",
        refused.message()
    );
    // Still serving, and still refusing while the disk is full.
    client.list_models(ListModelsRequest::default()).await?;
    let again = client
        .submit_feedback(feedback_record("still-full", "neutral", 1))
        .await
        .expect_err("stored on a full disk");
    assert_eq!(again.code(), Code::ResourceExhausted, "{}", again.message());

    // Space is freed (the filler, reached through the trainer's mount namespace).
    let pid = trainer.child.id().context("the trainer has no pid")?;
    let inside = |p: &Path| PathBuf::from(format!("/proc/{pid}/root{}", p.display()));
    std::fs::remove_file(inside(&mount.join("filler")))?;
    let after = client
        .submit_feedback(feedback_record("after-space-freed", "neutral", 2))
        .await?
        .into_inner();
    // SQLite resolves the /proc/PID/root link back into our own namespace: read a copy.
    let copy = dir.join("copy");
    std::fs::create_dir_all(&copy)?;
    for name in ["feedback.sqlite", "feedback.sqlite-wal"] {
        std::fs::copy(inside(&mount.join(name)), copy.join(name))?;
    }
    let stored = stored_ids(&copy.join("feedback.sqlite"))?;
    let lost: Vec<&String> = acked.iter().filter(|id| !stored.contains(*id)).collect();
    assert!(lost.is_empty(), "acknowledged but lost: {lost:?}");
    assert!(stored.contains(&after.feedback_id));
    drop(trainer);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

fn walk_size(dir: &Path) -> anyhow::Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        total += if meta.is_dir() {
            walk_size(&entry.path())? + 4096
        } else {
            meta.len().div_ceil(4096) * 4096
        };
    }
    Ok(total)
}
