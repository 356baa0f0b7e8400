//! `empathy bench`: Analyze latency and throughput of a running system over loopback,
//! each beside a named baseline measured in the same run (the machines are noisy:
//! ratios and medians, not single absolute times).
//!
//! - latency: Analyze (fusion → encoder → lexicon → model) against Encode on the
//!   encoder alone for the same sentence, requests interleaved one by one;
//! - throughput: Analyze with N requests in flight against one at a time.

use std::time::{Duration, Instant};

use anyhow::Context;
use empathy_grpc::v1::{
    AnalyzeRequest, EncodeRequest, encoder_service_client::EncoderServiceClient,
};
use futures::StreamExt;

#[derive(clap::Args)]
pub struct BenchArgs {
    #[command(flatten)]
    fusion: crate::FusionEndpoint,
    /// The encoder behind it, for the baseline.
    #[arg(long, default_value = "http://127.0.0.1:50061")]
    encoder_endpoint: String,
    /// Requests per measurement.
    #[arg(long, default_value_t = 200)]
    requests: usize,
    /// Requests in flight for the throughput measurement.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
}

const SENTENCES: [&str; 8] = [
    "I absolutely love this, thank you so much!",
    "This is the worst service I have ever had.",
    "The meeting is at 3 pm in room 4.",
    "I'm not sure how I feel about the new policy, honestly.",
    "My flight got cancelled again and nobody at the desk could tell me why.",
    "Wow, I did not expect that at all!",
    "Please send me the invoice for last month.",
    "I miss my grandmother so much since she passed away last winter.",
];

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

fn describe(name: &str, mut times: Vec<Duration>) -> f64 {
    times.sort();
    let p50 = percentile(&times, 0.5);
    println!(
        "  {name:<44} p50 {p50:>7.2} ms   p95 {:>7.2} ms",
        percentile(&times, 0.95)
    );
    p50
}

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let mut fusion = args.fusion.connect().await?;
    let mut encoder = EncoderServiceClient::connect(args.encoder_endpoint.clone())
        .await
        .with_context(|| format!("cannot reach the encoder at {}", args.encoder_endpoint))?;
    let analyze = |text: &str| AnalyzeRequest {
        text: text.into(),
        ..Default::default()
    };
    // Warm both paths (first calls load caches and connections).
    for s in SENTENCES {
        fusion.analyze(analyze(s)).await?;
    }

    let (mut t_analyze, mut t_encode) = (Vec::new(), Vec::new());
    for i in 0..args.requests {
        let text = SENTENCES[i % SENTENCES.len()];
        let t = Instant::now();
        fusion.analyze(analyze(text)).await?;
        t_analyze.push(t.elapsed());
        let t = Instant::now();
        encoder.encode(EncodeRequest::texts("text", [text])).await?;
        t_encode.push(t.elapsed());
    }
    println!(
        "latency over loopback, one request at a time ({} requests each):",
        args.requests
    );
    let a = describe("Analyze (fusion + encoder + lexicon + model)", t_analyze);
    let e = describe("baseline: Encode on the encoder alone", t_encode);
    println!(
        "  Analyze / Encode p50 ratio: {:.2}",
        a / e.max(f64::EPSILON)
    );

    let run_at = |concurrency: usize| {
        let fusion = fusion.clone();
        async move {
            let t = Instant::now();
            let results: Vec<_> = futures::stream::iter(0..args.requests)
                .map(|i| {
                    let mut c = fusion.clone();
                    async move { c.analyze(analyze(SENTENCES[i % SENTENCES.len()])).await }
                })
                .buffer_unordered(concurrency)
                .collect()
                .await;
            let failed = results.iter().filter(|r| r.is_err()).count();
            (args.requests as f64 / t.elapsed().as_secs_f64(), failed)
        }
    };
    let (one, f1) = run_at(1).await;
    let (many, fm) = run_at(args.concurrency).await;
    println!("throughput ({} requests each):", args.requests);
    println!("  baseline: 1 in flight                        {one:>7.1} analyses/s");
    println!(
        "  {:>2} in flight (encoder batches them)         {many:>7.1} analyses/s",
        args.concurrency
    );
    println!(
        "  ratio: {:.2}   failed requests: {}",
        many / one.max(f64::EPSILON),
        f1 + fm
    );
    Ok(())
}
