//! `empathy load`: a sustained mixed load on a running system — good requests beside
//! bad ones a careless or hostile client sends — to check that the server keeps
//! answering each with its proper status. Every answer must be OK or a status that
//! blames the caller (INVALID_ARGUMENT, NOT_FOUND) or says "too much now"
//! (RESOURCE_EXHAUSTED); anything else (UNAVAILABLE, INTERNAL, a dropped connection)
//! fails the run. Callers back off after RESOURCE_EXHAUSTED, as the status asks.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use empathy_grpc::v1::{AnalyzeRequest, FeedbackRequest};
use tonic::Code;

#[derive(clap::Args)]
pub struct LoadArgs {
    #[command(flatten)]
    fusion: crate::FusionEndpoint,
    /// Requests in flight.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// How long to keep the load up, in seconds.
    #[arg(long, default_value_t = 60)]
    duration: u64,
}

/// The kinds of request sent, in turn.
const KINDS: [&str; 6] = [
    "short text",
    "long text",
    "empty request",
    "oversized text",
    "garbage image",
    "feedback, unknown id",
];

/// Each kind's statuses, and every latency of a good answer.
#[derive(Default)]
struct Tally {
    codes: BTreeMap<(&'static str, i32), usize>,
    /// The first message of each answer that is not acceptable, to say why.
    why: BTreeMap<(&'static str, i32), String>,
    ok_ms: Vec<f64>,
}

impl Tally {
    fn count(&mut self, kind: &'static str, result: &Result<(), tonic::Status>, ms: f64) {
        let code = result.as_ref().map_or_else(|s| s.code(), |()| Code::Ok);
        *self.codes.entry((kind, code as i32)).or_default() += 1;
        if let (Err(status), false) = (result, acceptable(code)) {
            let first = status.message().chars().take(300).collect();
            self.why.entry((kind, code as i32)).or_insert(first);
        }
        if code == Code::Ok {
            self.ok_ms.push(ms);
        }
    }
}

fn acceptable(code: Code) -> bool {
    matches!(
        code,
        Code::Ok | Code::InvalidArgument | Code::NotFound | Code::ResourceExhausted
    )
}

async fn one(client: &mut crate::Client, i: usize) -> Result<(), tonic::Status> {
    let text = |t: String| AnalyzeRequest {
        text: t,
        ..AnalyzeRequest::default()
    };
    match i % KINDS.len() {
        0 => client
            .analyze(text("My flight got cancelled again.".into()))
            .await
            .map(|_| ()),
        1 => client
            .analyze(text(
                "I waited for hours, and then they were kind. ".repeat(40),
            ))
            .await
            .map(|_| ()),
        2 => client.analyze(AnalyzeRequest::default()).await.map(|_| ()),
        3 => client.analyze(text("a".repeat(200_000))).await.map(|_| ()),
        4 => client
            .analyze(AnalyzeRequest {
                image: vec![0x89, b'P', b'N', b'G', 0, 1, 2, 3, 4, 5, 6, 7, 8].into(),
                ..AnalyzeRequest::default()
            })
            .await
            .map(|_| ()),
        _ => client
            .feedback(FeedbackRequest {
                analysis_id: format!("no-such-analysis-{i}"),
                sentiment: "positive".into(),
                ..FeedbackRequest::default()
            })
            .await
            .map(|_| ()),
    }
}

pub async fn run(args: LoadArgs) -> anyhow::Result<()> {
    let client = args.fusion.connect().await?;
    let tally = Arc::new(Mutex::new(Tally::default()));
    let until = Instant::now() + Duration::from_secs(args.duration);
    let workers: Vec<_> = (0..args.concurrency.max(1))
        .map(|w| {
            let (mut client, tally) = (client.clone(), Arc::clone(&tally));
            tokio::spawn(async move {
                let mut i = w;
                // What the refusal asks for: back off (doubling, with jitter), as a
                // well-behaved client does; the load stays at `concurrency` callers.
                let mut backoff = Duration::ZERO;
                while Instant::now() < until {
                    let t = Instant::now();
                    let result = one(&mut client, i).await;
                    let ms = t.elapsed().as_secs_f64() * 1000.0;
                    let code = result.as_ref().map_or_else(|s| s.code(), |()| Code::Ok);
                    tally.lock().unwrap_or_else(|p| p.into_inner()).count(
                        KINDS[i % KINDS.len()],
                        &result,
                        ms,
                    );
                    if code == Code::ResourceExhausted {
                        backoff =
                            (backoff * 2).clamp(Duration::from_millis(50), Duration::from_secs(2));
                        let jitter = Duration::from_millis((i as u64 * 37) % 50);
                        tokio::time::sleep(backoff + jitter).await;
                    } else {
                        backoff = Duration::ZERO;
                    }
                    i += args.concurrency.max(1);
                }
            })
        })
        .collect();
    for w in workers {
        w.await?;
    }
    let tally = tally.lock().unwrap_or_else(|p| p.into_inner());
    report(&tally, &args)
}

fn report(tally: &Tally, args: &LoadArgs) -> anyhow::Result<()> {
    let total: usize = tally.codes.values().sum();
    println!(
        "{total} requests in {} s with {} in flight ({:.1}/s)",
        args.duration,
        args.concurrency,
        total as f64 / args.duration.max(1) as f64
    );
    let mut bad = 0;
    for ((kind, code), n) in &tally.codes {
        let code = Code::from_i32(*code);
        let fine = acceptable(code);
        if !fine {
            bad += n;
        }
        let mark = if fine { "" } else { "  <- not acceptable" };
        println!("  {kind:<22} {:<18} {n:>7}{mark}", format!("{code:?}"));
        if let Some(why) = tally.why.get(&(*kind, code as i32)) {
            println!("      e.g. {why}");
        }
    }
    let mut ms = tally.ok_ms.clone();
    ms.sort_by(f64::total_cmp);
    let at = |p: f64| ms.get(((ms.len() as f64 - 1.0) * p).round() as usize);
    if let (Some(p50), Some(p99)) = (at(0.5), at(0.99)) {
        println!("  OK answers: p50 {p50:.1} ms, p99 {p99:.1} ms");
    }
    anyhow::ensure!(
        bad == 0,
        "{bad} answers were neither OK nor a status that blames the request or the load"
    );
    println!("every answer was OK, INVALID_ARGUMENT, NOT_FOUND or RESOURCE_EXHAUSTED");
    Ok(())
}
