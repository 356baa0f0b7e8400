//! The situation service end to end: the real binary with the real SmolLM2 GGUF (and
//! the trained critic when assets/situation/critic/ has one) on an ephemeral loopback
//! port, called over gRPC.

use std::{path::PathBuf, time::Duration};

use empathy_common::launch::{Service, spawn};
use empathy_grpc::v1::{
    GenerateRequest, Situation, SituationInfoRequest,
    situation_service_client::SituationServiceClient,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::{Code, transport::Channel};

/// `$EMPATHY_ASSETS`, else `<workspace>/assets`.
fn assets() -> PathBuf {
    std::env::var_os("EMPATHY_ASSETS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../assets"))
}

/// Starts the service (its critic: the trained one if there is one, else the
/// generator's PMI).
async fn start(extra: &[&str]) -> anyhow::Result<Service> {
    let mut args: Vec<String> = [
        "--assets",
        assets().to_str().unwrap_or("assets"),
        "--metrics-listen",
        "127.0.0.1:0",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(extra.iter().map(|s| s.to_string()));
    spawn(
        std::path::Path::new(env!("CARGO_BIN_EXE_empathy-situation")),
        &args,
        Duration::from_secs(120),
    )
    .await
}

async fn client(s: &Service) -> anyhow::Result<SituationServiceClient<Channel>> {
    Ok(SituationServiceClient::connect(s.url()).await?)
}

fn request(utterance: &str, k: u32, seed: u64) -> GenerateRequest {
    GenerateRequest {
        utterance: utterance.into(),
        k,
        seed,
        ..Default::default()
    }
}

async fn collect(
    c: &mut SituationServiceClient<Channel>,
    r: GenerateRequest,
) -> Result<Vec<Situation>, tonic::Status> {
    let mut stream = c.generate(r).await?.into_inner();
    let mut out = Vec::new();
    while let Some(s) = stream.message().await? {
        out.push(s);
    }
    out.sort_by_key(|s| s.index);
    Ok(out)
}

/// A counter from the Prometheus endpoint.
async fn metric(s: &Service, name: &str) -> anyhow::Result<f64> {
    let addr = s.metrics_addr.clone().unwrap_or_default();
    let mut stream = tokio::net::TcpStream::connect(&addr).await?;
    stream
        .write_all(format!("GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await?;
    let mut body = String::new();
    stream.read_to_string(&mut body).await?;
    Ok(body
        .lines()
        .filter(|l| l.starts_with(&format!("empathy_{name}")))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum())
}

#[tokio::test]
async fn situations_for_an_utterance_are_sentences_with_scores_and_reproducible()
-> anyhow::Result<()> {
    let service = start(&[]).await?;
    let mut c = client(&service).await?;

    let info = c.info(SituationInfoRequest {}).await?.into_inner();
    assert_eq!(info.max_k, 8);
    assert!(info.generator.is_some_and(|g| g.id.contains("SmolLM2")));
    assert!(info.critic.is_some(), "every install has a critic");

    let first = collect(&mut c, request("My dog died yesterday", 3, 7)).await?;
    assert!(!first.is_empty(), "no situations at all");
    for s in &first {
        eprintln!("[{}] {:.2} {}", s.index, s.critic_score, s.text);
        assert!(s.index < 3);
        assert!(s.text.split_whitespace().count() >= 4, "{:?}", s.text);
        assert!(
            s.text.ends_with(['.', '!', '?']),
            "one sentence: {:?}",
            s.text
        );
        assert!(!s.text.contains('\n'));
        assert!((0.0..=1.0).contains(&s.critic_score), "{}", s.critic_score);
        assert!(s.tokens > 0 && s.generation_ms > 0.0);
    }
    // Real scores: a critic that says something, not a constant.
    let scores: Vec<f32> = first.iter().map(|s| s.critic_score).collect();
    assert!(scores.iter().any(|s| *s != scores[0]), "{scores:?}");
    let mut indices: Vec<u32> = first.iter().map(|s| s.index).collect();
    indices.dedup();
    assert_eq!(indices.len(), first.len(), "each index once");

    // Same seed, same situations; another seed, other situations.
    let again = collect(&mut c, request("My dog died yesterday", 3, 7)).await?;
    let texts = |v: &[Situation]| v.iter().map(|s| s.text.clone()).collect::<Vec<_>>();
    assert_eq!(texts(&first), texts(&again));
    let other = collect(&mut c, request("My dog died yesterday", 3, 8)).await?;
    assert_ne!(texts(&first), texts(&other));
    Ok(())
}

#[tokio::test]
async fn bad_input_is_refused_clearly_and_the_service_keeps_serving() -> anyhow::Result<()> {
    let service = start(&["--max-utterance-chars", "200"]).await?;
    let mut c = client(&service).await?;
    let ok = request("I lost my keys again", 1, 1);
    let cases = [
        (
            GenerateRequest {
                utterance: "".into(),
                ..ok.clone()
            },
            "utterance is empty",
        ),
        (
            GenerateRequest {
                utterance: "   ".into(),
                ..ok.clone()
            },
            "utterance is empty",
        ),
        (
            GenerateRequest {
                utterance: "a".repeat(201),
                ..ok.clone()
            },
            "the limit is 200",
        ),
        (GenerateRequest { k: 0, ..ok.clone() }, "k is 0"),
        (GenerateRequest { k: 9, ..ok.clone() }, "1 to 8"),
        (
            GenerateRequest {
                temperature: -0.5,
                ..ok.clone()
            },
            "temperature",
        ),
        (
            GenerateRequest {
                temperature: 3.0,
                ..ok.clone()
            },
            "temperature",
        ),
        (
            GenerateRequest {
                temperature: f32::NAN,
                ..ok.clone()
            },
            "temperature",
        ),
        (
            GenerateRequest {
                top_p: 1.5,
                ..ok.clone()
            },
            "top_p",
        ),
        (
            GenerateRequest {
                top_p: -1.0,
                ..ok.clone()
            },
            "top_p",
        ),
        (
            GenerateRequest {
                max_tokens: 10_000,
                ..ok.clone()
            },
            "max_tokens",
        ),
    ];
    for (r, why) in cases {
        let status = collect(&mut c, r)
            .await
            .expect_err("a bad request must be refused");
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert!(
            status.message().contains(why),
            "{:?} lacks {why:?}",
            status.message()
        );
    }
    let good = collect(&mut c, ok).await?;
    assert_eq!(good.len(), 1, "the service still serves");
    Ok(())
}

#[tokio::test]
async fn a_cancelled_stream_stops_generation_and_frees_its_slot() -> anyhow::Result<()> {
    // One request at a time, one sequence at a time: a request that kept generating
    // after its caller left would hold the only slot.
    let service = start(&["--max-requests", "1", "--max-batch", "1"]).await?;
    let mut c = client(&service).await?;

    let long = GenerateRequest {
        max_tokens: 128,
        ..request("My dog died yesterday", 8, 3)
    };
    let mut stream = c.generate(long).await?.into_inner();
    let first = stream.message().await?.expect("a first situation");
    assert!(!first.text.is_empty());

    // While it runs, the only slot is taken.
    let busy = collect(&mut c, request("Hello there", 1, 1)).await;
    assert_eq!(
        busy.map(|_| ()).unwrap_err().code(),
        Code::ResourceExhausted
    );

    drop(stream);
    let started = std::time::Instant::now();
    let next = loop {
        match collect(&mut c, request("I passed my driving test!", 1, 5)).await {
            Err(s) if s.code() == Code::ResourceExhausted => {
                assert!(
                    started.elapsed() < Duration::from_secs(2),
                    "the slot was not freed"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            other => break other?,
        }
    };
    assert_eq!(next.len(), 1);
    // Seven situations were left when the caller went away; they were not generated.
    assert_eq!(metric(&service, "situation_cancelled_total").await?, 1.0);
    Ok(())
}

#[tokio::test]
async fn the_deadline_ends_the_stream_with_what_was_done() -> anyhow::Result<()> {
    let service = start(&["--max-request-ms", "10000", "--max-batch", "1"]).await?;
    let mut c = client(&service).await?;
    // Hot sampling rambles to the token limit and is retried: far more than 10 s.
    let slow = GenerateRequest {
        max_tokens: 128,
        temperature: 2.0,
        top_p: 1.0,
        ..request("My dog died yesterday", 8, 11)
    };
    let started = std::time::Instant::now();
    let mut stream = c.generate(slow).await?.into_inner();
    let mut got = 0;
    let status = loop {
        match stream.message().await {
            Ok(Some(_)) => got += 1,
            Ok(None) => panic!("8 situations in 10 s one at a time: raise the test's work"),
            Err(s) => break s,
        }
    };
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert!(
        status.message().contains(&format!("after {got} of 8")),
        "{}",
        status.message()
    );
    assert!(started.elapsed() < Duration::from_secs(20));
    // The caller's own deadline (grpc-timeout) is honoured the same way.
    let mut r = tonic::Request::new(request("I won the lottery", 8, 12));
    r.set_timeout(Duration::from_millis(300));
    let err = match c.generate(r).await {
        Ok(resp) => {
            let mut s = resp.into_inner();
            loop {
                match s.message().await {
                    Ok(Some(_)) => {}
                    Ok(None) => panic!("8 situations in 300 ms"),
                    Err(e) => break e,
                }
            }
        }
        Err(e) => e,
    };
    assert_eq!(err.code(), Code::DeadlineExceeded, "{err:?}");
    // And it keeps serving.
    let ok = collect(&mut c, request("I lost my keys", 1, 13)).await?;
    assert_eq!(ok.len(), 1);
    Ok(())
}
