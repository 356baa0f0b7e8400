//! The speech path end to end: the encoder hosting the text and speech plugins (the
//! speech plugin loaded at run time, real converted tiny.en) and fusion, over gRPC.
//! Clips are made with espeak-ng at test time.

mod support;

#[path = "../../plugins/speech/src/wer.rs"]
mod wer;

use std::process::Command;
use std::time::Duration;

use futures::StreamExt;

use empathy_grpc::v1::{
    AnalyzeRequest, AnalyzeResponse, EncodeInput, EncodeOutput, EncodeRequest,
    empathy_service_client::EmpathyServiceClient, encode_input::Payload,
    encoder_service_client::EncoderServiceClient,
};
use support::*;
use tonic::{Code, transport::Channel};

const HAPPY: &str = "I am so happy today, everything is wonderful";
const ANGRY: &str = "I am furious, this is the worst day of my life";

/// espeak-ng's `text` as the live-stream format: 16 kHz mono s16le PCM (sox converts).
fn espeak_pcm(text: &str) -> Vec<u8> {
    let dir = temp_dir("e2e-speech");
    let (wav, raw) = (dir.join("clip.wav"), dir.join("clip.raw"));
    std::fs::write(&wav, espeak(text, 160)).expect("write wav");
    let bytes = clip_written_by(
        Command::new("sox")
            .arg(&wav)
            .args([
                "-r",
                "16000",
                "-c",
                "1",
                "-b",
                "16",
                "-e",
                "signed-integer",
                "-t",
                "raw",
            ])
            .arg(&raw),
        &raw,
    );
    let _ = std::fs::remove_dir_all(&dir);
    bytes
}

async fn analyze_audio(
    c: &mut EmpathyServiceClient<Channel>,
    audio: Vec<u8>,
) -> Result<AnalyzeResponse, tonic::Status> {
    c.analyze(AnalyzeRequest {
        audio: audio.into(),
        ..Default::default()
    })
    .await
    .map(|r| r.into_inner())
}

async fn encode_speech(
    c: &mut EncoderServiceClient<Channel>,
    clips: Vec<Vec<u8>>,
) -> Result<Vec<EncodeOutput>, tonic::Status> {
    let request = EncodeRequest {
        modality: "speech".into(),
        inputs: clips
            .into_iter()
            .map(|b| EncodeInput {
                payload: Some(Payload::Data(b.into())),
                mime_type: "audio/wav".into(),
            })
            .collect(),
        language: String::new(),
    };
    c.encode(request).await.map(|r| r.into_inner().outputs)
}

/// Encoder (text + speech) and fusion. The tests of this file run side by side on a
/// small machine: one compute thread per encoder, as ggml's spinning threads collapse
/// when there are more of them than cores, and deadlines for correctness, not latency.
async fn start_speech() -> anyhow::Result<(
    empathy_common::launch::Service,
    empathy_common::launch::Service,
)> {
    let encoder = start_encoder(&["--plugin", "speech", "--threads", "1"]).await?;
    let fusion = start_fusion(&[encoder.url()], &["--default-deadline-ms", "60000"]).await?;
    Ok((encoder, fusion))
}

fn refused<T: std::fmt::Debug>(result: Result<T, tonic::Status>, why: &str) {
    let status = result.expect_err("a bad clip must be refused");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(
        status.message().contains(why),
        "{:?} lacks {why:?}",
        status.message()
    );
}

#[tokio::test]
async fn speech_path_end_to_end() -> anyhow::Result<()> {
    let (encoder, fusion) = start_speech().await?;
    let mut c = client(&fusion).await?;

    // What was said, and how it felt, through the transcript's text path.
    for (text, expected) in [(HAPPY, "positive"), (ANGRY, "negative")] {
        let r = analyze_audio(&mut c, espeak(text, 160)).await?;
        let error_rate = wer::word_error_rate(text, &r.transcript);
        assert!(error_rate <= 0.2, "WER {error_rate:.2}: {:?}", r.transcript);
        let s = r.sentiment.as_ref().expect("sentiment");
        assert_eq!(s.label, expected, "{:?} -> {s:?}", r.transcript);
        assert!(
            r.modalities_used.iter().any(|m| m == "speech"),
            "{:?}",
            r.modalities_used
        );
    }

    // The encoder's own answer: prosody by name; a faster voice speaks faster.
    let mut enc = EncoderServiceClient::connect(encoder.url()).await?;
    let sentence = "The quick brown fox jumps over the lazy dog near the river bank";
    let outputs =
        encode_speech(&mut enc, vec![espeak(sentence, 110), espeak(sentence, 260)]).await?;
    let rate = |o: &EncodeOutput| o.features["speaking_rate_wps"];
    assert!(
        rate(&outputs[1]) > rate(&outputs[0]) * 1.5,
        "rates {} and {}",
        rate(&outputs[0]),
        rate(&outputs[1])
    );
    assert_eq!(outputs[0].detected_language, "en");

    // Bad clips get INVALID_ARGUMENT with a reason, from fusion and from the encoder.
    let wav = espeak(HAPPY, 160);
    refused(
        analyze_audio(&mut c, b"this is not audio at all".to_vec()).await,
        "not a recognised audio file",
    );
    refused(
        analyze_audio(&mut c, wav[..wav.len() / 2].to_vec()).await,
        "truncated",
    );
    let mut slow = wav.clone();
    slow[24..28].copy_from_slice(&1_000u32.to_le_bytes()); // sample rate field of the WAV header
    refused(
        analyze_audio(&mut c, slow).await,
        "1000 Hz is not supported",
    );
    refused(encode_speech(&mut enc, vec![Vec::new()]).await, "empty");

    // Silence is an answer without words, not an error.
    let mut silence = wav[..44].to_vec();
    silence.extend(vec![0u8; 22_050 * 2]);
    silence[40..44].copy_from_slice(&(22_050u32 * 2).to_le_bytes()); // data chunk size
    silence[4..8].copy_from_slice(&(36 + 22_050u32 * 2).to_le_bytes());
    let outputs = encode_speech(&mut enc, vec![silence]).await?;
    assert_eq!(outputs[0].transcript, "");

    // And the service keeps serving.
    let r = analyze_audio(&mut c, wav).await?;
    assert!(
        wer::word_error_rate(HAPPY, &r.transcript) <= 0.2,
        "{:?}",
        r.transcript
    );
    Ok(())
}

#[tokio::test]
async fn live_audio_on_a_stream_is_answered_per_utterance() -> anyhow::Result<()> {
    let (_encoder, fusion) = start_speech().await?;
    let mut c = client(&fusion).await?;

    // A voice assistant's stream: 100 ms chunks, a sentence, a second of silence, and
    // the next sentence only once the first was answered.
    let chunks = |pcm: Vec<u8>, id: &str| -> Vec<AnalyzeRequest> {
        pcm.chunks(3200)
            .map(|c| AnalyzeRequest {
                audio_pcm: c.to_vec().into(),
                request_id: id.into(),
                ..Default::default()
            })
            .collect()
    };
    let (tx, rx) = futures::channel::mpsc::unbounded();
    let mut answers = c.analyze_stream(rx).await?.into_inner();
    let mut first = espeak_pcm(HAPPY);
    first.extend(vec![0u8; 32_000]);
    for chunk in chunks(first, "one") {
        tx.unbounded_send(chunk)?;
    }
    let one = tokio::time::timeout(Duration::from_secs(60), answers.next())
        .await?
        .expect("an answer to the first utterance")?;
    assert_eq!(one.request_id, "one");
    assert!(
        wer::word_error_rate(HAPPY, &one.transcript) <= 0.2,
        "{:?}",
        one.transcript
    );
    assert_eq!(
        one.sentiment.as_ref().map(|s| s.label.as_str()),
        Some("positive")
    );

    for chunk in chunks(espeak_pcm(ANGRY), "two") {
        tx.unbounded_send(chunk)?;
    }
    drop(tx); // the end of the stream flushes the last utterance
    let two = answers
        .next()
        .await
        .expect("an answer to the second utterance")?;
    assert_eq!(two.request_id, "two");
    assert!(
        wer::word_error_rate(ANGRY, &two.transcript) <= 0.2,
        "{:?}",
        two.transcript
    );
    assert_eq!(
        two.sentiment.as_ref().map(|s| s.label.as_str()),
        Some("negative")
    );
    assert!(
        answers.next().await.is_none(),
        "two utterances, two answers"
    );

    // A live chunk outside a stream is refused with the reason.
    refused(
        c.analyze(AnalyzeRequest {
            audio_pcm: vec![0; 3200].into(),
            ..Default::default()
        })
        .await,
        "only read by AnalyzeStream",
    );
    Ok(())
}
