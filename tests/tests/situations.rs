//! Situations through the public API: fusion asks the real situation service (SmolLM2)
//! for k situations, returns them with critic scores and the emotion the generator
//! reads off each, and lets those readings speak for the feeling.

mod support;

use std::time::Duration;

use empathy_common::launch::{self, sibling_binary};
use empathy_grpc::v1::{AnalyzeOptions, AnalyzeRequest, AnalyzeResponse};
use support::*;

async fn ask(
    c: &mut empathy_grpc::v1::empathy_service_client::EmpathyServiceClient<
        tonic::transport::Channel,
    >,
    text: &str,
    k: u32,
    seed: u64,
) -> Result<AnalyzeResponse, tonic::Status> {
    c.analyze(AnalyzeRequest {
        text: text.into(),
        options: Some(AnalyzeOptions {
            num_situations: k,
            seed,
            deadline_ms: 60_000,
            ..Default::default()
        }),
        ..Default::default()
    })
    .await
    .map(|r| r.into_inner())
}

#[tokio::test]
async fn imagined_situations_explain_a_loss() -> anyhow::Result<()> {
    let args = vec![
        "--assets".to_string(),
        assets().display().to_string(),
        "--metrics-listen".into(),
        "127.0.0.1:0".into(),
    ];
    let situation = launch::spawn(
        &sibling_binary("empathy-situation")?,
        &args,
        Duration::from_secs(120),
    )
    .await?;
    let encoder = start_encoder(&[]).await?;
    let fusion = start_fusion(&[encoder.url()], &["--situations", &situation.url()]).await?;
    let mut c = client(&fusion).await?;

    let r = ask(&mut c, "My dog died yesterday", 3, 7).await?;
    assert_eq!(r.situations.len(), 3, "{:?}", r.modalities_missing);
    for s in &r.situations {
        assert!(s.text.split_whitespace().count() >= 3, "{:?}", s.text);
        assert!((0.0..=1.0).contains(&s.critic_score), "{s:?}");
        // The generator's reading: the seven labels, summing to 1, its top named.
        assert_eq!(s.emotions.len(), 7, "{s:?}");
        let sum: f32 = s.emotions.iter().map(|e| e.score).sum();
        assert!((sum - 1.0).abs() < 1e-3, "{s:?}");
        let top = s.emotions.iter().max_by(|a, b| a.score.total_cmp(&b.score));
        assert_eq!(Some(&s.emotion), top.map(|e| &e.label), "{s:?}");
    }
    // A real critic: the PMI scores differ from situation to situation.
    assert!(
        r.situations
            .iter()
            .any(|s| (s.critic_score - r.situations[0].critic_score).abs() > 1e-4),
        "{:?}",
        r.situations
    );
    assert_eq!(r.detected_language, "en");
    let emotions = r.emotions.as_ref().expect("emotions");
    assert_eq!(
        emotions.top, "sadness",
        "{emotions:?} from {:?}",
        r.situations
    );
    assert!(
        emotions.source.contains("situations"),
        "{emotions:?} from {:?}",
        r.situations
    );
    // Each situation's attribution carries the emotion read off it.
    for a in r.attributions.iter().filter(|a| a.kind == "situation") {
        let i: usize = a.name.parse()?;
        assert_eq!(a.signal, r.situations[i].emotion, "{a:?}");
    }
    assert!(
        r.attributions.iter().any(|a| a.kind == "situation"),
        "{:?}",
        r.attributions
    );
    assert!(r.timings.iter().any(|t| t.stage == "situations"));

    // The same seed imagines the same situations.
    let again = ask(&mut c, "My dog died yesterday", 3, 7).await?;
    let texts = |r: &AnalyzeResponse| {
        r.situations
            .iter()
            .map(|s| s.text.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(texts(&again), texts(&r));

    // The generator writes English only: for Chinese it imagines nothing and says why.
    let zh = ask(&mut c, "这家店的服务太差了，我再也不来了。", 2, 7).await?;
    assert_eq!(zh.detected_language, "zh");
    assert!(zh.situations.is_empty(), "{:?}", zh.situations);
    assert!(
        zh.modalities_missing
            .iter()
            .any(|m| m.modality == "situation" && m.reason.contains("English only")),
        "{:?}",
        zh.modalities_missing
    );

    // Without a situation service the answer comes without them, and says why.
    let bare = start_fusion(&[encoder.url()], &[]).await?;
    let mut c = client(&bare).await?;
    let r = ask(&mut c, "My dog died yesterday", 2, 7).await?;
    assert!(r.situations.is_empty());
    assert!(
        r.modalities_missing
            .iter()
            .any(|m| m.modality == "situation" && m.reason.contains("--situations")),
        "{:?}",
        r.modalities_missing
    );
    Ok(())
}
