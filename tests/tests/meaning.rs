//! The meaning reader end to end: fusion started with `--meaning-reader` (Gemma 3 270M
//! from the fetched assets) reads single English texts and, in a conversation, the
//! turns before, and the sentiment, emotions and valence follow; its stage shows in
//! the timings. Without the flag it stays out.

mod support;

use empathy_proto::v1::{AnalyzeRequest, AnalyzeResponse, InfoRequest, Turn};
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
async fn without_the_flag_the_reader_stays_out() -> anyhow::Result<()> {
    let encoder = start_encoder(&[]).await?;
    let fusion = start_fusion(&[encoder.url()], &[]).await?;
    let mut c = client(&fusion).await?;
    let r = analyze_text(&mut c, "The room was not what the photos promised.").await?;
    assert!(!stages(&r).contains(&"meaning"), "{:?}", r.timings);
    assert_eq!(r.emotions.map(|e| e.source).as_deref(), Some("lexicon"));
    let info = c.info(InfoRequest::default()).await?.into_inner();
    assert!(!info.notes.iter().any(|n| n.starts_with("meaning: ")));
    Ok(())
}
