//! Chinese end to end: the encoder hosting the English text, Chinese text (text_zh)
//! and speech (multilingual Whisper base) plugins, and fusion, over gRPC. Chinese
//! text and Mandarin clips (espeak-ng's Mandarin voice) are read by the Chinese plugin.

mod support;

use empathy_grpc::v1::{
    AnalyzeOptions, AnalyzeRequest, AnalyzeResponse, empathy_service_client::EmpathyServiceClient,
};
use support::*;
use tonic::transport::Channel;

fn words(r: &AnalyzeResponse) -> Vec<&str> {
    r.attributions
        .iter()
        .filter(|a| a.kind == "lexicon")
        .map(|a| a.name.as_str())
        .collect()
}

fn has_han(s: &str) -> bool {
    s.chars().any(|c| ('\u{4e00}'..='\u{9fff}').contains(&c))
}

fn labels(r: &AnalyzeResponse) -> (String, String) {
    let sentiment = r
        .sentiment
        .as_ref()
        .map(|s| s.label.clone())
        .unwrap_or_default();
    let emotion = r
        .emotions
        .as_ref()
        .map(|e| e.top.clone())
        .unwrap_or_default();
    (sentiment, emotion)
}

/// Analyses `request` with options.language = "zh".
async fn in_chinese(
    c: &mut EmpathyServiceClient<Channel>,
    mut request: AnalyzeRequest,
) -> Result<AnalyzeResponse, tonic::Status> {
    request.options = Some(AnalyzeOptions {
        language: "zh".into(),
        ..Default::default()
    });
    Ok(c.analyze(request).await?.into_inner())
}

#[tokio::test]
async fn chinese_is_read_in_chinese_typed_or_spoken() -> anyhow::Result<()> {
    let encoder = start_encoder(&[
        "--plugin",
        "text_zh",
        "--plugin",
        "speech",
        "--setting",
        "speech.model=base",
        "--threads",
        "1",
    ])
    .await?;
    let fusion = start_fusion(&[encoder.url()], &["--default-deadline-ms", "60000"]).await?;
    let mut c = client(&fusion).await?;

    let bad = analyze_text(&mut c, "这家店的服务太差了，我再也不来了。").await?;
    let (sentiment, emotion) = labels(&bad);
    assert_eq!(sentiment, "negative", "{bad:?}");
    assert!(["anger", "disgust"].contains(&emotion.as_str()), "{bad:?}");
    assert_eq!(bad.detected_language, "zh");
    assert_eq!(bad.modalities_used, ["text-zh"]);
    assert!(
        words(&bad).iter().any(|w| has_han(w)),
        "{:?}",
        bad.attributions
    );
    assert!(
        bad.notes.iter().any(|n| n.contains("text-zh")),
        "{:?}",
        bad.notes
    );

    let glad = analyze_text(&mut c, "今天天气真好，我们玩得很开心！").await?;
    assert_eq!(labels(&glad), ("positive".into(), "joy".into()), "{glad:?}");

    // Mixed: answered, and the answer says which path read it.
    let mixed = analyze_text(&mut c, "The hotel was 很干净 but far from everything").await?;
    assert!(mixed.sentiment.is_some());
    assert!(!mixed.notes.is_empty(), "{mixed:?}");
    // The caller's language wins: forced to Chinese, the same text is read there.
    let forced = in_chinese(
        &mut c,
        AnalyzeRequest {
            text: "The hotel was 很干净 but far from everything".into(),
            ..Default::default()
        },
    )
    .await?;
    assert_eq!(forced.modalities_used, ["text-zh"], "{forced:?}");

    // Situations: none here (this fusion has no situation service; the situation
    // service refuses Chinese itself, tests/situations.rs), and the answer says why.
    let asked = c
        .analyze(AnalyzeRequest {
            text: "我的狗昨天死了".into(),
            options: Some(AnalyzeOptions {
                num_situations: 2,
                ..Default::default()
            }),
            ..Default::default()
        })
        .await?
        .into_inner();
    assert!(asked.situations.is_empty());
    assert!(
        asked
            .modalities_missing
            .iter()
            .any(|m| m.modality == "situation"),
        "{:?}",
        asked.modalities_missing
    );

    // A Mandarin clip: transcribed in Chinese, then read by the Chinese plugin.
    // Whisper base hears this synthetic Mandarin as English when it detects the
    // language itself, so the caller names it (options.language). Debian's espeak-ng
    // lacks most characters in its Mandarin dictionary (it spells them out in
    // English), so the clip is spoken from pinyin with tone numbers.
    let clip = espeak_voice(
        "cmn-latn-pinyin",
        "zhe4 jia1 dian4 de5 fu2 wu4 tai4 cha4 le5, wo3 zai4 ye3 bu4 lai2 le5.",
        140,
    );
    let spoken = in_chinese(
        &mut c,
        AnalyzeRequest {
            audio: clip.into(),
            ..Default::default()
        },
    )
    .await?;
    assert_eq!(spoken.detected_language, "zh", "{spoken:?}");
    assert!(has_han(&spoken.transcript), "{:?}", spoken.transcript);
    assert!(
        spoken.modalities_used.contains(&"text-zh".to_string()),
        "{spoken:?}"
    );
    assert_eq!(labels(&spoken).0, "negative", "{spoken:?}");
    Ok(())
}
