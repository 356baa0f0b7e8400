//! TrainerService on a scratch store: what it keeps of the inputs, what it logs, what
//! it refuses.

use empathy_grpc::v1::{AnalyzeRequest, ExtraInput, FeedbackFilter, FeedbackRequest, FloatVector};

use super::*;
use crate::test_registry::Scratch;

/// A correction of an analysis by v0001 that resends its inputs, media included.
fn resent() -> FeedbackRecord {
    let mut r = with("negative", "", 0);
    r.model_version = "v0001".into();
    r.features = [(
        "text".to_string(),
        FloatVector {
            values: vec![0.1; 8],
        },
    )]
    .into();
    r.subject_id = "p-1".into();
    if let Some(fb) = r.feedback.as_mut() {
        fb.original = Some(AnalyzeRequest {
            text: "I cannot sleep".into(),
            audio: vec![7; 64].into(),
            image: vec![8; 64].into(),
            extra: vec![ExtraInput {
                modality: "heart_rate".into(),
                data: vec![9; 16].into(),
                mime_type: "application/octet-stream".into(),
            }],
            ..AnalyzeRequest::default()
        });
    }
    r
}

/// The original inputs as stored after `SubmitFeedback` with `keep_media`.
async fn stored_original(keep_media: bool) -> anyhow::Result<AnalyzeRequest> {
    let dir = Scratch::new("media");
    dir.registry(1)?;
    let trainer = dir.trainer()?;
    let api = TrainerApi::new(Arc::clone(&trainer), Metrics::new("trainer")?, keep_media);
    api.submit_feedback(Request::new(resent())).await?;
    let stored = trainer.store.read_all("default", i64::MAX)?;
    let record = stored
        .into_iter()
        .next()
        .map(|s| s.record)
        .unwrap_or_default();
    // Insecure mode: the local tenant, no key.
    assert_eq!(
        (record.tenant.as_str(), record.key_id.as_str()),
        ("default", "")
    );
    assert_eq!(record.subject_id, "p-1");
    Ok(record.feedback.and_then(|f| f.original).unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn original_media_is_not_stored_unless_asked() -> anyhow::Result<()> {
    let dropped = stored_original(false).await?;
    assert_eq!(dropped.text, "I cannot sleep");
    assert!(dropped.audio.is_empty() && dropped.image.is_empty());
    assert_eq!(dropped.extra.len(), 1);
    assert!(dropped.extra[0].data.is_empty());
    let kept = stored_original(true).await?;
    assert_eq!((kept.audio.len(), kept.image.len()), (64, 64));
    assert_eq!(kept.extra[0].data.len(), 16);
    Ok(())
}

/// Everything logged on this thread while `f` runs, at every level.
async fn logged<F: std::future::Future<Output = ()>>(f: F) -> String {
    let buffer = Arc::new(std::sync::Mutex::new(Vec::<u8>::new()));
    let sink = Arc::clone(&buffer);
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || Sink(Arc::clone(&sink)))
        .finish();
    {
        let _guard = tracing::subscriber::set_default(subscriber);
        f.await;
    }
    let bytes = buffer.lock().map(|b| b.clone()).unwrap_or_default();
    String::from_utf8_lossy(&bytes).into_owned()
}

struct Sink(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut b) = self.0.lock() {
            b.extend_from_slice(buf);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Stored, refused, purged and forgotten: the logs hold counts, never the words,
/// the note or the subject.
// Multi-threaded for block_in_place; the test's own future, and so its logs, stay
// on this thread (block_on).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_feedback_paths_never_log_what_people_said() -> anyhow::Result<()> {
    let dir = Scratch::new("logs");
    dir.registry(1)?;
    let api = TrainerApi::new(dir.trainer()?, Metrics::new("trainer")?, false);
    let mut record = resent();
    record.text = "my-secret-words".into();
    if let Some(fb) = record.feedback.as_mut() {
        fb.note = "my-secret-note".into();
    }
    let mut refused = record.clone();
    refused.model_version = "v0999".into();
    let logs = logged(async {
        let stored = api.submit_feedback(Request::new(record)).await;
        assert!(stored.is_ok(), "{stored:?}");
        assert!(api.submit_feedback(Request::new(refused)).await.is_err());
        let filter = FeedbackFilter {
            subject_id: "p-1".into(),
            ..FeedbackFilter::default()
        };
        let purged = api
            .purge_feedback(Request::new(PurgeFeedbackRequest {
                filter: Some(filter),
                delete: false,
            }))
            .await;
        assert!(purged.is_ok(), "{purged:?}");
        let forgot = api
            .forget(Request::new(ForgetRequest {
                subject_id: "p-1".into(),
            }))
            .await;
        assert!(forgot.is_ok(), "{forgot:?}");
    })
    .await;
    assert!(logs.contains("forgot a subject's feedback"), "{logs}");
    for secret in ["my-secret-words", "my-secret-note", "p-1", "I cannot sleep"] {
        assert!(!logs.contains(secret), "{secret} logged: {logs}");
    }
    Ok(())
}

#[tokio::test]
async fn purge_and_forget_refuse_what_would_match_everything() {
    let dir = Scratch::new("refuse");
    let trainer = dir.trainer().ok();
    let Some(trainer) = trainer else {
        panic!("no trainer");
    };
    let Ok(metrics) = Metrics::new("trainer") else {
        panic!("no metrics");
    };
    let api = TrainerApi::new(trainer, metrics, false);
    let purge = |filter: Option<FeedbackFilter>| {
        api.purge_feedback(Request::new(PurgeFeedbackRequest {
            filter,
            delete: true,
        }))
    };
    for filter in [
        None,
        Some(FeedbackFilter::default()),
        Some(FeedbackFilter {
            from_unix_ms: 5,
            to_unix_ms: 5,
            ..FeedbackFilter::default()
        }),
    ] {
        let err = purge(filter).await.err();
        assert_eq!(err.map(|e| e.code()), Some(tonic::Code::InvalidArgument));
    }
    let err = api
        .forget(Request::new(ForgetRequest {
            subject_id: String::new(),
        }))
        .await
        .err();
    assert_eq!(err.map(|e| e.code()), Some(tonic::Code::InvalidArgument));
}

fn with(sentiment: &str, emotion: &str, rating: i32) -> FeedbackRecord {
    FeedbackRecord {
        feedback: Some(FeedbackRequest {
            analysis_id: "a".into(),
            sentiment: sentiment.into(),
            emotion: emotion.into(),
            rating,
            ..FeedbackRequest::default()
        }),
        ..FeedbackRecord::default()
    }
}

#[test]
fn bad_feedback_is_refused_with_a_reason() {
    let err = validate(with("happy", "", 0)).err();
    assert!(
        err.as_ref()
            .is_some_and(|e| e.code() == tonic::Code::InvalidArgument
                && e.message().contains("negative, neutral, positive")),
        "{err:?}"
    );
    let err = validate(with("", "", 3)).err();
    assert!(err.is_some_and(|e| e.message().contains("both corrections are empty")));
    assert!(validate(with("", "joyful", 0)).is_err());
    assert!(validate(with("positive", "", 9)).is_err());
    let ok = validate(with(" Positive ", "JOY", 5)).ok();
    let fb = ok.and_then(|r| r.feedback).unwrap_or_default();
    assert_eq!(
        (fb.sentiment.as_str(), fb.emotion.as_str()),
        ("positive", "joy")
    );
}
