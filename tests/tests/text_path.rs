//! The text path end to end: the real encoder (MiniLM plugin) and fusion binaries on
//! ephemeral loopback ports, called over gRPC.

mod support;

use std::time::Duration;

use empathy_proto::v1::{AnalyzeOptions, AnalyzeRequest, InfoRequest, Turn};
use support::*;
use tonic::Code;

/// The request was refused as INVALID_ARGUMENT with a message saying `why`.
fn refused<T: std::fmt::Debug>(result: Result<T, tonic::Status>, why: &str) {
    let status = result.expect_err("a bad request must be refused");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains(why), "{}", status.message());
}

#[tokio::test]
async fn text_path_end_to_end() -> anyhow::Result<()> {
    let encoder = start_encoder(&[]).await?;
    let fusion = start_fusion(&[encoder.url()], &["--max-text-chars", "2000"]).await?;
    let mut c = client(&fusion).await?;

    // The three sentences the issue names, with the real trained model.
    for (text, expected) in [
        ("I absolutely love this, thank you so much!", "positive"),
        ("This is the worst service I have ever had.", "negative"),
        ("The meeting is at 3 pm in room 4.", "neutral"),
    ] {
        let r = analyze_text(&mut c, text).await?;
        let s = r.sentiment.as_ref().expect("sentiment");
        assert_eq!(s.label, expected, "{text:?} -> {s:?}");
        assert_eq!(s.scores.len(), 3);
        let sum: f32 = s.scores.iter().map(|l| l.score).sum();
        assert!((sum - 1.0).abs() < 1e-3, "sentiment is a softmax: {sum}");
        // Sentences this clear are not flagged at the default threshold (0.5).
        assert!(!r.low_confidence, "{text:?} flagged: {s:?}");
        assert!(
            !r.notes.iter().any(|n| n.contains("low confidence")),
            "{:?}",
            r.notes
        );
        assert!(!r.analysis_id.is_empty());
        assert!(!r.model_version.is_empty());
        assert_eq!(r.modalities_used, vec!["text"]);
        assert!(
            r.modalities_missing.is_empty(),
            "{:?}",
            r.modalities_missing
        );
        assert!(r.timings.iter().any(|t| t.stage == "total" && t.ms > 0.0));
        assert!((-1.0..=1.0).contains(&r.valence) && (-1.0..=1.0).contains(&r.arousal));
        let e = r.emotions.as_ref().expect("emotions");
        assert_eq!(e.scores.len(), 7);
        assert!(e.scores.iter().all(|l| (0.0..=1.0).contains(&l.score)));
        assert!(
            r.attributions
                .iter()
                .any(|a| a.kind == "modality" && a.name == "text")
        );
    }

    // Emotions and explanations follow the words.
    let r = analyze_text(&mut c, "I am so happy and delighted today!").await?;
    assert_eq!(
        r.emotions.as_ref().map(|e| e.top.as_str()),
        Some("joy"),
        "{:?}",
        r.emotions
    );
    assert!(
        r.attributions
            .iter()
            .any(|a| a.kind == "lexicon" && a.name.contains("happy")),
        "{:?}",
        r.attributions
    );
    let r = analyze_text(&mut c, "I am not happy at all.").await?;
    assert_ne!(
        r.sentiment.as_ref().map(|s| s.label.as_str()),
        Some("positive"),
        "negation: {:?}",
        r.sentiment
    );

    // Bad input gets a clear status, and the service keeps serving.
    refused(
        c.analyze(AnalyzeRequest::default()).await,
        "text, audio, image",
    );
    refused(
        analyze_text(&mut c, &"word ".repeat(500)).await,
        "limit is 2000",
    );
    refused(
        c.analyze(AnalyzeRequest {
            text: "hello".into(),
            context: vec![Turn {
                speaker: "user".into(),
                text: "".into(),
            }],
            ..Default::default()
        })
        .await,
        "context[0].text",
    );
    refused(
        c.analyze(AnalyzeRequest {
            text: "hello".into(),
            options: Some(AnalyzeOptions {
                disable_modalities: vec!["smell".into()],
                ..Default::default()
            }),
            ..Default::default()
        })
        .await,
        "\"smell\" is not a modality",
    );
    let r = analyze_text(&mut c, "Still here after all that?").await?;
    assert!(r.sentiment.is_some());

    // Concurrent requests are batched by the encoder and all answered.
    let answers = futures::future::try_join_all((0..16).map(|i| {
        let mut c = c.clone();
        async move { analyze_text(&mut c, &format!("Request number {i} is wonderful")).await }
    }))
    .await?;
    assert_eq!(answers.len(), 16);

    // A conversation on one stream: each turn answered, in order.
    let turns = [
        "Hi, my order never arrived.",
        "Now it is a week late and nobody answers!",
    ];
    let requests: Vec<AnalyzeRequest> = turns
        .iter()
        .enumerate()
        .map(|(i, t)| AnalyzeRequest {
            text: t.to_string(),
            request_id: format!("turn-{i}"),
            ..Default::default()
        })
        .collect();
    let mut stream = c
        .analyze_stream(futures::stream::iter(requests))
        .await?
        .into_inner();
    let mut ids = Vec::new();
    while let Some(r) = stream.message().await? {
        assert!(r.sentiment.is_some());
        ids.push(r.request_id);
    }
    assert_eq!(ids, ["turn-0", "turn-1"]);

    // Info tells how each output is produced.
    let info = c.info(InfoRequest {}).await?.into_inner();
    assert_eq!(info.sentiment_labels, ["negative", "neutral", "positive"]);
    assert_eq!(info.emotion_labels.len(), 7);
    assert!(
        info.notes.iter().any(|n| n.contains("lexicon")),
        "{:?}",
        info.notes
    );
    assert!(
        info.modalities
            .iter()
            .any(|m| m.modality == "text" && m.available)
    );

    // Health, as a load balancer sees it.
    let channel = tonic::transport::Endpoint::from_shared(fusion.url())?
        .connect()
        .await?;
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    let h = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "empathy.v1.EmpathyService".into(),
        })
        .await?
        .into_inner();
    assert_eq!(
        h.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );

    fusion.stop(Duration::from_secs(10)).await?;
    low_confidence_follows_the_threshold(&encoder).await?;
    encoder.stop(Duration::from_secs(10)).await?;
    Ok(())
}

/// The top score of an answer's sentiment.
fn top_score(r: &empathy_proto::v1::AnalyzeResponse) -> f32 {
    r.sentiment
        .iter()
        .flat_map(|s| &s.scores)
        .map(|l| l.score)
        .fold(0.0, f32::max)
}

/// With --min-confidence 0.99 an answer is flagged exactly when its top score is below
/// it, with a note that says so; a plain statement of fact is not that sure.
async fn low_confidence_follows_the_threshold(
    encoder: &empathy_common::launch::Service,
) -> anyhow::Result<()> {
    let fusion = start_fusion(&[encoder.url()], &["--min-confidence", "0.99"]).await?;
    let mut c = client(&fusion).await?;
    let mut flagged = 0;
    for text in [
        "The meeting is at 3 pm in room 4.",
        "I absolutely love this, thank you so much!",
        "Still here after all that?",
    ] {
        let r = analyze_text(&mut c, text).await?;
        let top = top_score(&r);
        assert_eq!(r.low_confidence, top < 0.99, "{text:?}: top score {top}");
        let noted = r
            .notes
            .iter()
            .any(|n| n.contains("low confidence") && n.contains("0.99"));
        assert_eq!(noted, r.low_confidence, "{text:?}: {:?}", r.notes);
        flagged += usize::from(r.low_confidence);
    }
    assert!(flagged > 0, "no answer below 0.99");
    let info = c.info(InfoRequest {}).await?.into_inner();
    assert!(
        info.notes
            .iter()
            .any(|n| n.contains("calibrated") && n.contains("below 0.99")),
        "{:?}",
        info.notes
    );
    fusion.stop(Duration::from_secs(10)).await
}

#[test]
fn a_min_confidence_outside_0_to_1_stops_fusion_with_a_clear_error() -> anyhow::Result<()> {
    let out = std::process::Command::new(empathy_common::launch::sibling_binary("empathy-fusion")?)
        .args(["--encoder", "http://127.0.0.1:1", "--min-confidence", "1.5"])
        .output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "fusion started: {stderr}");
    assert!(
        stderr.contains("--min-confidence") && stderr.contains("from 0 to 1"),
        "{stderr}"
    );
    Ok(())
}
