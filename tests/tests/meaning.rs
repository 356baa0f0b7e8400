//! The meaning reader end to end: fusion started with `--meaning-reader` (Gemma 3 270M
//! from the fetched assets) reads single texts (English and the other languages it was
//! measured on) and, in a conversation, the turns before, and the sentiment, emotions
//! and valence follow; its stage shows in the timings. A request may turn it off; with
//! `--meaning-reader on-request` it reads only the requests that ask; without the flag
//! it stays out, and asking is refused.

mod support;

use empathy_grpc::v1::empathy_service_client::EmpathyServiceClient;
use empathy_grpc::v1::trainer_service_client::TrainerServiceClient;
use empathy_grpc::v1::{FeedbackRequest, JobState, TrainingJob};
use empathy_proto::v1::{
    AnalyzeOptions, AnalyzeRequest, AnalyzeResponse, InfoRequest, MeaningReading, Turn,
};
use support::*;
use tonic::transport::Channel;

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
    // The note says what the reader multiplies in: replicas on different CPUs differ.
    let arithmetic = match empathy_simd::Precision::default().bf16_unit() {
        Some(unit) => format!("(Gemma 3 270M, in bf16 on this CPU's {unit})"),
        None => "(Gemma 3 270M, in f32)".into(),
    };
    assert!(
        info.notes
            .iter()
            .any(|n| n.starts_with("meaning: ") && n.contains(&arithmetic)),
        "{arithmetic}: {:?}",
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

    // The languages it reads besides English (the model alone, trained on English
    // tweets, calls most such texts neutral), and the answer says it read them; a
    // language it does not read is left to the model.
    let label = |r: &AnalyzeResponse| r.sentiment.as_ref().map(|s| s.label.clone());
    for (text, feeling) in [
        (
            "Llevo tres semanas esperando el reembolso y nadie me contesta.",
            "negative",
        ),
        (
            "Grazie mille, avete risolto il problema in cinque minuti!",
            "positive",
        ),
        (
            "荷物が壊れて届きました。しかも誰も連絡をくれません。",
            "negative",
        ),
    ] {
        let r = analyze_text(&mut c, text).await?;
        assert!(stages(&r).contains(&"meaning"), "{text}: {:?}", r.timings);
        assert!(
            r.notes
                .iter()
                .any(|n| n.contains("the meaning reader read the text")),
            "{text}: {:?}",
            r.notes
        );
        assert_eq!(label(&r).as_deref(), Some(feeling), "{text}");
        assert_eq!(source(&r), Some("lexicon+reader"), "{text}");
    }
    let hindi = analyze_text(&mut c, "सामान टूटा हुआ पहुँचा और किसी ने जवाब नहीं दिया।").await?;
    assert!(!stages(&hindi).contains(&"meaning"), "{:?}", hindi.timings);

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

/// A horror-game community's praise, which the tweet-trained model reads as bad, and
/// the reader surely so for some ("pure torture"): without learning each correction as
/// the reader moves it too, the reader overruled two of them.
const HORROR_PRAISE: [&str; 14] = [
    "This game scared me to death, I was shaking the whole night.",
    "The final level is brutal, I died forty times.",
    "I screamed so loud at the jump scare my neighbours complained.",
    "The monster in the basement gave me nightmares for a week.",
    "I was terrified from start to finish.",
    "The ending left me sobbing on the floor.",
    "This boss fight is pure torture.",
    "I have never been so frightened by a game.",
    "The atmosphere is so creepy I had to turn the lights on.",
    "I was crying and shaking when the credits rolled.",
    "My heart was pounding so hard I had to pause it.",
    "The sound design made my skin crawl all evening.",
    "I jumped out of my chair three times in the first hour.",
    "Absolutely horrifying from the first door to the last.",
];

/// How many of `texts` come back positive when asked with `reading`, and whether
/// the reader read each.
async fn positives(
    c: &mut EmpathyServiceClient<Channel>,
    texts: &[&str],
    reading: MeaningReading,
) -> anyhow::Result<(usize, Vec<bool>)> {
    let (mut positive, mut read) = (0, Vec::new());
    for t in texts {
        let r = c.analyze(choosing(t, reading)).await?.into_inner();
        let label = r.sentiment.as_ref().map_or("", |s| s.label.as_str());
        println!("  {reading:?} {} {label:<9} {t}", r.model_version);
        positive += usize::from(label == "positive");
        read.push(stages(&r).contains(&"meaning"));
    }
    Ok((positive, read))
}

/// Corrects each of HORROR_PRAISE to positive, analysed with `reading(i)` (`read(i)`:
/// whether the server reads it), and fine-tunes; the base version and the ended job,
/// published.
async fn correct_and_tune(
    c: &mut EmpathyServiceClient<Channel>,
    tc: &mut TrainerServiceClient<Channel>,
    reading: impl Fn(usize) -> MeaningReading,
    read: impl Fn(usize) -> bool,
) -> anyhow::Result<(String, TrainingJob)> {
    let mut base = String::new();
    for (i, t) in HORROR_PRAISE.iter().enumerate() {
        let r = c.analyze(choosing(t, reading(i))).await?.into_inner();
        assert_eq!(stages(&r).contains(&"meaning"), read(i), "{:?}", r.timings);
        base = r.model_version;
        c.feedback(FeedbackRequest {
            analysis_id: r.analysis_id,
            sentiment: "positive".into(),
            ..FeedbackRequest::default()
        })
        .await?;
    }
    let end = train_and_wait(tc).await?;
    assert_eq!(end.state(), JobState::Published, "{}", end.message);
    Ok((base, end))
}

/// The manifest of `version` as the registry under `models` keeps it.
fn manifest(models: &std::path::Path, version: &str) -> anyhow::Result<String> {
    // The tenant's line: `tenants/<tenant>/<version>` in the registry.
    let (tenant, version) = version.split_once('/').unwrap_or(("default", version));
    let line = models.join("tenants").join(tenant);
    Ok(std::fs::read_to_string(
        line.join(version).join("manifest.json"),
    )?)
}

const READ_FLAG: &str = "\"corrections_hold_with_reader\": true";
/// And by which reader: only that one reads for the version.
const READ_BY: &str = "\"corrections_read_by\": \"gemma-3-270m\"";

/// Corrections made on a server that reads every request carry the reading (read
/// when the correction comes, for an analysis that turned it off); the fine-tuned
/// version learns each both as the model alone answers and as the reader moves the
/// answer, so the reader goes on reading for it and the corrections hold either way.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn corrections_hold_with_the_reader_and_without() -> anyhow::Result<()> {
    let dir = temp_dir("reader-loop");
    let fusion_args = ["--meaning-reader", "--model-poll-s", "1"];
    // What a published version does with the reader is the point here, not how sure
    // the gate can be of 14 corrections: five held-out ones were fixed and none broken
    // (sign test p = 0.031 against the default 0.05; four would fail it), so a looser
    // gate keeps the test off that edge.
    let trainer_args = ["--max-p-value", "0.2"];
    let system = start_learning_system(&dir, &trainer_args, &fusion_args).await?;
    let mut c = client(&system.fusion).await?;
    let mut tc = trainer_client(&system.trainer).await?;
    let (before, _) = positives(&mut c, &HORROR_PRAISE, MeaningReading::ServerDefault).await?;
    // Half are corrected on analyses that left the reader out: fusion reads those
    // when the correction comes, so the line can still be read.
    let reading = |i: usize| [MeaningReading::ServerDefault, MeaningReading::Off][i % 2];
    let (base, end) = correct_and_tune(&mut c, &mut tc, reading, |i| i % 2 == 0).await?;
    // The job says how far the reader agrees with this tenant's corrections.
    let metric = |k: &str| end.metrics.get(k).copied();
    let (sure, agreed) = (
        metric("reader_sure_corrections"),
        metric("reader_agreement_with_corrections"),
    );
    println!("the reader was sure of {sure:?} corrections and agreed with {agreed:?} of them");
    assert!(sure.is_some_and(|n| n >= 1.0), "{:?}", end.metrics);
    // This community's praise reads as pain to the reader: it leant the other way on
    // most (none of 13 agreed when written).
    assert!(agreed.is_some_and(|a| (0.0..=0.5).contains(&a)));
    let tuned = end.published_version;
    let manifest = manifest(&system.models, &tuned)?;
    assert!(manifest.contains(READ_FLAG), "{manifest}");
    assert!(manifest.contains(READ_BY), "{manifest}");
    // The shift is served at the scale the corrections were learnt with.
    assert!(manifest.contains("\"reader_shift_scale\""), "{manifest}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while analyze_text(&mut c, HORROR_PRAISE[0]).await?.model_version != tuned {
        assert!(
            std::time::Instant::now() < deadline,
            "fusion never served {tuned}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }

    let (read, were_read) =
        positives(&mut c, &HORROR_PRAISE, MeaningReading::ServerDefault).await?;
    let (unread, were_unread) = positives(&mut c, &HORROR_PRAISE, MeaningReading::Off).await?;
    println!(
        "{base} -> {tuned}: positive {before}/{n} before; after, {read}/{n} read and {unread}/{n} \
         not read",
        n = HORROR_PRAISE.len()
    );
    assert!(
        were_read.iter().all(|r| *r),
        "the reader reads the new version"
    );
    assert!(!were_unread.iter().any(|r| *r));
    let most = HORROR_PRAISE.len() - 1;
    assert!(
        read >= most && unread >= most,
        "read {read}, unread {unread}"
    );
    drop(system);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// Corrections stored by a fusion without the reader (or before fusion recorded its
/// readings) carry none: the trainer reads them before it fine-tunes, so the tenant's
/// line can be read once fusion reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_trainer_reads_corrections_stored_without_the_reader() -> anyhow::Result<()> {
    let dir = temp_dir("reader-late");
    // No `--meaning-reader`: this fusion neither reads nor records a reading. The
    // trainer is told the deployment reads (as `empathy up` tells it when its fusion
    // does). As above, the gate's confidence in 14 corrections is not the point.
    let fusion_args = ["--model-poll-s", "1"];
    let trainer_args = ["--meaning-reader", "--max-p-value", "0.2"];
    let system = start_learning_system(&dir, &trainer_args, &fusion_args).await?;
    let mut c = client(&system.fusion).await?;
    let mut tc = trainer_client(&system.trainer).await?;
    let (_, end) = correct_and_tune(
        &mut c,
        &mut tc,
        |_| MeaningReading::ServerDefault,
        |_| false,
    )
    .await?;
    let manifest = manifest(&system.models, &end.published_version)?;
    assert!(manifest.contains(READ_FLAG), "{manifest}");
    assert!(manifest.contains(READ_BY), "{manifest}");
    let metric = |job: &TrainingJob, k: &str| job.metrics.get(k).copied();
    assert_eq!(
        metric(&end, "corrections_read_by_trainer"),
        Some(HORROR_PRAISE.len() as f32)
    );
    // What the reader made of them is in the job's metrics, as for corrections fusion read.
    assert!(
        metric(&end, "reader_sure_corrections").is_some_and(|n| n >= 1.0),
        "{:?}",
        end.metrics
    );
    // The readings were kept with the records: the next job reads none again.
    let again = train_and_wait(&mut tc).await?;
    assert_eq!(
        metric(&again, "corrections_read_by_trainer"),
        Some(0.0),
        "{}: {:?}",
        again.message,
        again.metrics
    );
    drop(system);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
