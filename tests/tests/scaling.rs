//! Encoders scale out: fusion spreads requests over every encoder serving a modality,
//! and keeps answering in full when one of them goes away.

mod support;

use std::time::Duration;

use support::*;

/// Successful Encode calls an encoder has served, from its Prometheus endpoint.
async fn encodes_served(metrics_addr: &str) -> anyhow::Result<u64> {
    let page = metrics_page(metrics_addr).await?;
    Ok(page
        .lines()
        .find(|l| {
            l.starts_with("empathy_requests_total")
                && l.contains(r#"code="Ok""#)
                && l.contains(r#"method="Encode""#)
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0))
}

#[tokio::test]
async fn requests_spread_over_encoders_and_survive_losing_one() -> anyhow::Result<()> {
    let metrics = ["--metrics-listen", "127.0.0.1:0"];
    let a = start_encoder(&metrics).await?;
    let b = start_encoder(&metrics).await?;
    let fusion = start_fusion(&[a.url(), b.url()], &[]).await?;
    let mut c = client(&fusion).await?;

    for i in 0..20 {
        analyze_text(&mut c, &format!("Sentence {i} is fine by me")).await?;
    }
    let (served_a, served_b) = (
        encodes_served(a.metrics_addr.as_deref().expect("metrics")).await?,
        encodes_served(b.metrics_addr.as_deref().expect("metrics")).await?,
    );
    assert_eq!(served_a + served_b, 20);
    assert!(
        served_a >= 5 && served_b >= 5,
        "round robin: {served_a} vs {served_b}"
    );

    // One encoder goes away: every answer is still complete, from the other.
    a.stop(Duration::from_secs(10)).await?;
    for i in 0..10 {
        let r = analyze_text(&mut c, &format!("Sentence {i} after the loss")).await?;
        assert_eq!(
            r.modalities_used,
            vec!["text"],
            "{:?}",
            r.modalities_missing
        );
    }

    fusion.stop(Duration::from_secs(10)).await?;
    b.stop(Duration::from_secs(10)).await?;
    Ok(())
}
