//! A missing or down encoder degrades the answer; it fails it only when no modality
//! is left.

mod support;

use std::time::Duration;

use empathy_proto::v1::AnalyzeRequest;
use support::*;
use tonic::Code;

#[tokio::test]
async fn down_encoders_are_reported_not_fatal() -> anyhow::Result<()> {
    let encoder = start_encoder(&[]).await?;
    // A second encoder endpoint that is down from the start.
    let fusion = start_fusion(&[encoder.url(), dead_endpoint()], &[]).await?;
    let mut c = client(&fusion).await?;

    // Text + image: no encoder serves images, so the answer comes from text alone.
    let r = c
        .analyze(AnalyzeRequest {
            text: "Thank you, this is great".into(),
            image: vec![0x89, b'P', b'N', b'G'].into(),
            ..Default::default()
        })
        .await?
        .into_inner();
    assert_eq!(r.modalities_used, vec!["text"]);
    assert_eq!(r.modalities_missing.len(), 1, "{:?}", r.modalities_missing);
    assert_eq!(r.modalities_missing[0].modality, "image");
    assert!(
        r.modalities_missing[0]
            .reason
            .contains("no reachable encoder"),
        "{:?}",
        r.modalities_missing
    );

    // The text encoder goes down: nothing is left, so UNAVAILABLE, with the reason.
    let addr = encoder.addr.clone();
    encoder.stop(Duration::from_secs(10)).await?;
    let status = analyze_text(&mut c, "Is anyone there?")
        .await
        .expect_err("no modality left");
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(status.message().contains("text"), "{}", status.message());

    // It comes back on the same address: fusion reconnects without a restart.
    let encoder = start_encoder(&["--listen", &addr]).await?;
    let mut answered = None;
    for _ in 0..50 {
        match analyze_text(&mut c, "Thank you, this is great").await {
            Ok(r) => {
                answered = Some(r);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
    let r = answered.expect("fusion recovers once the encoder is back");
    assert_eq!(r.modalities_used, vec!["text"]);

    fusion.stop(Duration::from_secs(10)).await?;
    encoder.stop(Duration::from_secs(10)).await?;
    Ok(())
}

/// SIGKILL of the encoder while a batch is in flight: every waiting request ends with
/// UNAVAILABLE (none hangs, fusion does not fall over), and fusion answers again once
/// an encoder is back on that address.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_encoder_killed_mid_batch_degrades_then_recovers() -> anyhow::Result<()> {
    let mut encoder = start_encoder(&[]).await?;
    let fusion = start_fusion(&[encoder.url()], &[]).await?;
    let c = client(&fusion).await?;
    let long = "The wait was long, but the nurse was wonderful to me. ".repeat(20);
    let inflight: Vec<_> = (0..16)
        .map(|_| {
            let (mut c, text) = (c.clone(), long.clone());
            tokio::spawn(async move { analyze_text(&mut c, &text).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(50)).await;
    encoder.child.start_kill()?;
    let addr = encoder.addr.clone();
    encoder.child.wait().await?;
    for call in inflight {
        let answer = tokio::time::timeout(Duration::from_secs(30), call).await??;
        if let Err(status) = answer {
            assert_eq!(status.code(), Code::Unavailable, "{status:?}");
        }
    }
    let encoder = start_encoder(&["--listen", &addr]).await?;
    let mut c = c;
    let mut recovered = false;
    for _ in 0..50 {
        if analyze_text(&mut c, "Thank you, this is great")
            .await
            .is_ok()
        {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(recovered, "fusion answers again once the encoder is back");
    fusion.stop(Duration::from_secs(10)).await?;
    encoder.stop(Duration::from_secs(10)).await?;
    Ok(())
}
