//! The meaning reader end to end: fusion started with `--meaning-reader` (Gemma 3 270M
//! from the fetched assets) reads single English texts and, in a conversation, the
//! turns before, and the sentiment, emotions and valence follow; its stage shows in
//! the timings. A request may turn it off; with `--meaning-reader on-request` it reads
//! only the requests that ask; without the flag it stays out, and asking is refused.

mod support;

use empathy_proto::v1::{
    AnalyzeOptions, AnalyzeRequest, AnalyzeResponse, InfoRequest, MeaningReading, Turn,
};
use support::*;

fn turn(speaker: &str, text: &str) -> Turn {
    Turn {
        speaker: speaker.into(),
        text: text.into(),
    }
}

fn stages(r: &AnalyzeResponse) -> Vec<&str> {
    r.timings.iter().map(|t| t.stage.as_str()).collect()
}

fn request(text: &str, context: Vec<Turn>) -> AnalyzeRequest {
    AnalyzeRequest {
        text: text.into(),
        context,
        ..Default::default()
    }
}

/// `text` with the request's own choice of the reader.
fn choosing(text: &str, reading: MeaningReading) -> AnalyzeRequest {
    AnalyzeRequest {
        options: Some(AnalyzeOptions {
            meaning_reading: reading.into(),
            ..Default::default()
        }),
        ..request(text, Vec::new())
    }
}

fn source(r: &AnalyzeResponse) -> Option<&str> {
    r.emotions.as_ref().map(|e| e.source.as_str())
}

#[tokio::test]
async fn the_reader_reads_texts_and_what_the_turns_before_imply() -> anyhow::Result<()> {
    let encoder = start_encoder(&[]).await?;
    let fusion = start_fusion(&[encoder.url()], &["--meaning-reader"]).await?;
    let mut c = client(&fusion).await?;
    let info = c.info(InfoRequest::default()).await?.into_inner();
    assert!(
        info.notes.iter().any(|n| n.starts_with("meaning: ")),
        "{:?}",
        info.notes
    );

    let single = analyze_text(&mut c, "The room was not what the photos promised.").await?;
    assert!(stages(&single).contains(&"meaning"), "{:?}", single.timings);
    let unread = |r: &AnalyzeResponse| {
        r.notes
            .iter()
            .any(|n| n.contains("without the meaning reader"))
    };
    assert!(!unread(&single), "{:?}", single.notes);
    let sum: f32 = single
        .sentiment
        .as_ref()
        .map_or(0.0, |s| s.scores.iter().map(|x| x.score).sum());
    assert!((sum - 1.0).abs() < 1e-4, "{:?}", single.sentiment);
    let emotions = single.emotions.as_ref().expect("emotions");
    assert_eq!(emotions.source, "lexicon+reader");
    // A request may leave the reader out: the model's answer alone.
    let text = "The room was not what the photos promised.";
    let alone = c
        .analyze(choosing(text, MeaningReading::Off))
        .await?
        .into_inner();
    assert!(!stages(&alone).contains(&"meaning"), "{:?}", alone.timings);
    assert_eq!(source(&alone), Some("lexicon"));
    let sum: f32 = emotions.scores.iter().map(|x| x.score).sum();
    assert!((sum - 1.0).abs() < 1e-4, "{emotions:?}");

    // A sentence unlike the training tweets weighs the reader more, and says so; a
    // tweet does not.
    let unusual = |r: &AnalyzeResponse| r.notes.iter().any(|n| n.contains("is unlike those"));
    let clinic = analyze_text(
        &mut c,
        "The consultant explained the biopsy results with great patience.",
    )
    .await?;
    assert!(unusual(&clinic), "{:?}", clinic.notes);
    let tweet = analyze_text(
        &mut c,
        "@united I've been on hold for 2 hours, worst customer service ever",
    )
    .await?;
    assert!(!unusual(&tweet), "{:?}", tweet.notes);

    // The same reaction after a scene of each feeling: the reader reads the scene.
    let bad = vec![
        turn("user", "My flight home was cancelled."),
        turn(
            "agent",
            "The next free seat is in four days, and the hotel until then is at your own cost.",
        ),
    ];
    let good = vec![
        turn("user", "Is my table ready?"),
        turn(
            "agent",
            "Yes, and the chef has sent a free dessert for your anniversary.",
        ),
    ];
    let after_bad = c.analyze(request("Lovely.", bad)).await?.into_inner();
    let after_good = c.analyze(request("Lovely.", good)).await?.into_inner();
    for r in [&after_bad, &after_good] {
        assert!(stages(r).contains(&"meaning"), "{:?}", r.timings);
        assert!(!unread(r), "{:?}", r.notes);
    }
    let label = |r: &AnalyzeResponse| r.sentiment.as_ref().map(|s| s.label.clone());
    assert_eq!(label(&after_bad).as_deref(), Some("negative"));
    assert_eq!(label(&after_good).as_deref(), Some("positive"));
    // The emotions and valence follow: the sarcastic "Lovely." is not joy.
    let top = |r: &AnalyzeResponse| r.emotions.as_ref().map(|e| e.top.clone());
    let bad_top = top(&after_bad).unwrap_or_default();
    assert!(
        ["anger", "disgust", "fear", "sadness"].contains(&bad_top.as_str()),
        "{:?}",
        after_bad.emotions
    );
    assert_eq!(top(&after_good).as_deref(), Some("joy"));
    assert!(after_bad.valence < 0.0 && after_good.valence > 0.0);
    Ok(())
}

#[tokio::test]
async fn on_request_the_reader_reads_only_those_that_ask() -> anyhow::Result<()> {
    let encoder = start_encoder(&[]).await?;
    let fusion = start_fusion(&[encoder.url()], &["--meaning-reader", "on-request"]).await?;
    let mut c = client(&fusion).await?;
    let text = "I can't believe how kind everyone has been to me.";
    let plain = analyze_text(&mut c, text).await?;
    assert!(!stages(&plain).contains(&"meaning"), "{:?}", plain.timings);
    assert_eq!(source(&plain), Some("lexicon"));
    let asked = c
        .analyze(choosing(text, MeaningReading::On))
        .await?
        .into_inner();
    assert!(stages(&asked).contains(&"meaning"), "{:?}", asked.timings);
    assert_eq!(source(&asked), Some("lexicon+reader"));
    let info = c.info(InfoRequest::default()).await?.into_inner();
    assert!(
        info.notes
            .iter()
            .any(|n| n.starts_with("meaning: ") && n.contains("only the requests that ask")),
        "{:?}",
        info.notes
    );
    Ok(())
}

#[tokio::test]
async fn without_the_flag_the_reader_stays_out() -> anyhow::Result<()> {
    let encoder = start_encoder(&[]).await?;
    let fusion = start_fusion(&[encoder.url()], &[]).await?;
    let mut c = client(&fusion).await?;
    let text = "The room was not what the photos promised.";
    let refused = c.analyze(choosing(text, MeaningReading::On)).await.err();
    assert_eq!(
        refused.as_ref().map(tonic::Status::code),
        Some(tonic::Code::FailedPrecondition)
    );
    assert!(
        refused.is_some_and(|e| e.message().contains("--meaning-reader on")),
        "a refusal says how to start the server with the reader"
    );
    // The server keeps serving.
    let r = analyze_text(&mut c, text).await?;
    assert!(!stages(&r).contains(&"meaning"), "{:?}", r.timings);
    assert_eq!(source(&r), Some("lexicon"));
    let info = c.info(InfoRequest::default()).await?.into_inner();
    assert!(!info.notes.iter().any(|n| n.starts_with("meaning: ")));
    Ok(())
}
