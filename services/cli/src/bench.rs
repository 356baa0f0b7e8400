//! `empathy bench`: Analyze latency and throughput of a running system over loopback,
//! each beside a named baseline measured in the same run (the machines are noisy:
//! ratios and medians, not single absolute times).
//!
//! - latency: Analyze (fusion → encoder → lexicon → model) against Encode on the
//!   encoder alone for the same sentence, requests interleaved one by one;
//! - with --http ADDR: Analyze over fusion's HTTP/JSON door, interleaved with the same
//!   call over gRPC, its baseline;
//! - throughput: Analyze with N requests in flight against one at a time;
//! - with --encoder-batch-file: only the encoder's raw batch throughput, the baseline
//!   `scripts/batch-bench` sets `empathy analyze --input` against.

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
    /// Instead: the encoder's raw batch throughput on this file's texts (JSONL or CSV,
    /// as `analyze --input` reads it), the baseline of batch analysis. Encode requests of
    /// --encoder-batch-size texts, --concurrency in flight.
    #[arg(long, value_name = "FILE")]
    encoder_batch_file: Option<std::path::PathBuf>,
    #[arg(long, default_value_t = 32)]
    encoder_batch_size: usize,
    /// Fusion's HTTP/JSON door (host:port, e.g. 127.0.0.1:8080): also time Analyze
    /// over it.
    #[arg(long, value_name = "ADDR")]
    http: Option<String>,
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
    let mut encoder = EncoderServiceClient::connect(args.encoder_endpoint.clone())
        .await
        .with_context(|| format!("cannot reach the encoder at {}", args.encoder_endpoint))?;
    if let Some(file) = &args.encoder_batch_file {
        return encoder_batch(encoder, file, args.encoder_batch_size, args.concurrency).await;
    }
    let mut fusion = args.fusion.connect().await?;
    let analyze = |text: &str| AnalyzeRequest {
        text: text.into(),
        ..Default::default()
    };
    // Warm both paths (first calls load caches and connections).
    for s in SENTENCES {
        fusion.analyze(analyze(s)).await?;
    }

    let http = args
        .http
        .as_ref()
        .map(|addr| format!("http://{addr}/v1/analyze"));
    let (mut t_analyze, mut t_encode, mut t_http) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..args.requests {
        let text = SENTENCES[i % SENTENCES.len()];
        let t = Instant::now();
        fusion.analyze(analyze(text)).await?;
        t_analyze.push(t.elapsed());
        let t = Instant::now();
        encoder.encode(EncodeRequest::texts("text", [text])).await?;
        t_encode.push(t.elapsed());
        if let Some(url) = &http {
            t_http.push(analyze_over_http(url, text).await?);
        }
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
    if !t_http.is_empty() {
        let h = describe("Analyze over HTTP/JSON (the same fusion)", t_http);
        println!(
            "  HTTP/JSON / gRPC Analyze p50 ratio: {:.2}",
            h / a.max(f64::EPSILON)
        );
    }

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

/// One Analyze of `text` POSTed as JSON to `url`; how long it took.
async fn analyze_over_http(url: &str, text: &str) -> anyhow::Result<Duration> {
    let (url, body) = (
        url.to_string(),
        serde_json::json!({ "text": text }).to_string(),
    );
    tokio::task::spawn_blocking(move || {
        let t = Instant::now();
        let mut answer = ureq::post(&url)
            .header("Content-Type", "application/json")
            .send(&body)
            .with_context(|| format!("POST {url}"))?;
        answer.body_mut().read_to_string()?;
        Ok(t.elapsed())
    })
    .await?
}

/// Encodes every text of `file` in requests of `size`, `concurrency` in flight; prints
/// texts per second.
async fn encoder_batch(
    encoder: EncoderServiceClient<tonic::transport::Channel>,
    file: &std::path::Path,
    size: usize,
    concurrency: usize,
) -> anyhow::Result<()> {
    let texts = crate::batch::texts(file)?;
    anyhow::ensure!(
        !texts.is_empty() && size > 0,
        "no texts in {}",
        file.display()
    );
    let t = Instant::now();
    let results: Vec<_> = futures::stream::iter(texts.chunks(size))
        .map(|chunk| {
            let mut c = encoder.clone();
            let request = EncodeRequest::texts("text", chunk.iter().cloned());
            async move { c.encode(request).await }
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    let seconds = t.elapsed().as_secs_f64();
    if let Some(Err(s)) = results.iter().find(|r| r.is_err()) {
        anyhow::bail!(
            "the encoder refused a batch ({:?}): {}",
            s.code(),
            s.message()
        );
    }
    println!(
        "encoder raw batch throughput: {} texts in {seconds:.1} s, {:.1} texts/s \
         (batches of {size}, {concurrency} in flight)",
        texts.len(),
        texts.len() as f64 / seconds
    );
    Ok(())
}
