//! Fusion's HTTP/JSON door and its page, called as a user would: over HTTP from outside
//! the process (curl, a browser), against real encoder and fusion processes.

mod support;

use serde_json::{Value, json};

/// An agent that hands back 4xx/5xx answers instead of failing on them.
fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into()
}

/// POSTs `body` to `http://addr/path`; the status and the JSON answer.
fn post(addr: &str, path: &str, body: &str) -> anyhow::Result<(u16, Value)> {
    let mut answer = agent()
        .post(format!("http://{addr}{path}"))
        .header("Content-Type", "application/json")
        .send(body)?;
    let status = answer.status().as_u16();
    Ok((
        status,
        serde_json::from_str(&answer.body_mut().read_to_string()?)?,
    ))
}

fn get(addr: &str, path: &str) -> anyhow::Result<(u16, String)> {
    let mut answer = agent().get(format!("http://{addr}{path}")).call()?;
    let status = answer.status().as_u16();
    Ok((status, answer.body_mut().read_to_string()?))
}

/// The error's gRPC code name and message, asserting the body has Google's error shape.
fn error(body: &Value) -> (String, String) {
    let error = &body["error"];
    assert!(error["code"].is_u64(), "{body}");
    (
        error["status"].as_str().unwrap_or_default().to_string(),
        error["message"].as_str().unwrap_or_default().to_string(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn http_json_answers_as_grpc_does_and_errors_come_back_as_json() -> anyhow::Result<()> {
    let encoder = support::start_encoder(&[]).await?;
    let fusion = support::start_fusion(
        &[encoder.url()],
        &[
            "--http-listen",
            "127.0.0.1:0",
            "--max-message-bytes",
            "1048576",
        ],
    )
    .await?;
    let addr = fusion
        .http_addr
        .clone()
        .expect("fusion prints its HTTP address");

    // curl -s localhost:8080/v1/analyze -d '{"text":"I love this"}' (a form content type).
    let mut answer = agent()
        .post(format!("http://{addr}/v1/analyze"))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .send(r#"{"text":"I love this"}"#)?;
    assert_eq!(answer.status().as_u16(), 200);
    let analysis: Value = serde_json::from_str(&answer.body_mut().read_to_string()?)?;
    assert_eq!(analysis["sentiment"]["label"], "positive", "{analysis}");
    assert!(
        analysis["analysisId"]
            .as_str()
            .is_some_and(|id| !id.is_empty())
    );

    // The same call over gRPC gives the same answer.
    let mut grpc = support::client(&fusion).await?;
    let same = support::analyze_text(&mut grpc, "I love this").await?;
    let sentiment = same.sentiment.unwrap_or_default();
    assert_eq!(sentiment.label, "positive");
    let http_scores = analysis["sentiment"]["scores"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for (score, http) in sentiment.scores.iter().zip(&http_scores) {
        let http = http["score"].as_f64().unwrap_or(0.0) as f32;
        assert!((score.score - http).abs() < 1e-4, "{score:?} vs {http}");
    }

    // Options in the proto3 JSON mapping (camelCase), 64-bit integers as strings.
    let (status, turn) = post(
        &addr,
        "/v1/analyze",
        &json!({
            "text": "Perfect.",
            "context": [{"speaker": "agent", "text": "The technician can't come until next month"}],
            "options": {"seed": "7", "skipAttributions": true},
            "requestId": "r-1",
        })
        .to_string(),
    )?;
    assert_eq!(status, 200, "{turn}");
    assert_eq!(turn["requestId"], "r-1");

    // Errors: the gRPC status as HTTP, its message in JSON.
    let (status, body) = post(&addr, "/v1/analyze", "{}")?;
    let (code, message) = error(&body);
    assert_eq!((status, code.as_str()), (400, "INVALID_ARGUMENT"));
    assert!(message.contains("no input"), "{message}");
    let (status, body) = post(&addr, "/v1/analyze", r#"{"texte":"typo"}"#)?;
    let (_, message) = error(&body);
    assert_eq!(status, 400);
    assert!(message.contains("unknown field `texte`"), "{message}");
    let (status, body) = post(&addr, "/v1/analyze", "{not json")?;
    assert_eq!((status, error(&body).0.as_str()), (400, "INVALID_ARGUMENT"));
    // No trainer behind this fusion: feedback cannot be kept, and the message says why.
    let (status, body) = post(
        &addr,
        "/v1/feedback",
        r#"{"analysisId":"a","sentiment":"positive"}"#,
    )?;
    let (code, message) = error(&body);
    assert_eq!(
        (status, code.as_str()),
        (400, "FAILED_PRECONDITION"),
        "{body}"
    );
    assert!(message.contains("--trainer"), "{message}");
    let big = json!({"text": "x".repeat(3 << 20)}).to_string();
    let (status, body) = post(&addr, "/v1/analyze", &big)?;
    assert_eq!(status, 413, "{body}");
    let (status, body) = get(&addr, "/v1/analyze")?;
    assert_eq!(status, 405, "{body}");
    let (status, body) = get(&addr, "/v2/whatever")?;
    assert_eq!(status, 404);
    assert!(body.contains("/openapi.json"), "{body}");

    // Bodies in flight count against --max-in-flight-bytes before they become gRPC
    // messages: beyond it, 429 and a message that says which limit.
    let tight_fusion = support::start_fusion(
        &[encoder.url()],
        &[
            "--http-listen",
            "127.0.0.1:0",
            "--max-in-flight-bytes",
            "100000",
        ],
    )
    .await?;
    let tight = tight_fusion
        .http_addr
        .clone()
        .expect("fusion prints its HTTP address");
    let over = json!({"text": "x".repeat(150_000)}).to_string();
    let (status, body) = post(&tight, "/v1/analyze", &over)?;
    let (code, message) = error(&body);
    assert_eq!(
        (status, code.as_str()),
        (429, "RESOURCE_EXHAUSTED"),
        "{body}"
    );
    assert!(message.contains("--max-in-flight-bytes"), "{message}");
    let (status, _) = post(&tight, "/v1/analyze", r#"{"text":"and now?"}"#)?;
    assert_eq!(status, 200);

    // Still serving; health, info and the API description.
    let (status, _) = post(&addr, "/v1/analyze", r#"{"text":"still here?"}"#)?;
    assert_eq!(status, 200);
    let (status, health) = get(&addr, "/health")?;
    assert_eq!((status, health.as_str()), (200, r#"{"status":"SERVING"}"#));
    let (status, info) = get(&addr, "/v1/info")?;
    let info: Value = serde_json::from_str(&info)?;
    assert_eq!(status, 200);
    assert_eq!(
        info["emotionLabels"].as_array().map(Vec::len),
        Some(7),
        "{info}"
    );
    let (status, openapi) = get(&addr, "/openapi.json")?;
    let openapi: Value = serde_json::from_str(&openapi)?;
    assert_eq!(status, 200);
    assert!(openapi["paths"]["/v1/analyze"]["post"].is_object());
    assert!(openapi["components"]["schemas"]["empathy.v1.AnalyzeResponse"].is_object());
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_page_shows_an_analysis_in_headless_chromium() -> anyhow::Result<()> {
    let encoder = support::start_encoder(&["--plugin", "image"]).await?;
    let fusion = support::start_fusion(&[encoder.url()], &["--http-listen", "127.0.0.1:0"]).await?;
    let addr = fusion
        .http_addr
        .clone()
        .expect("fusion prints its HTTP address");
    let dir = support::temp_dir("page");
    // The DevTools protocol client for the script (websocket-client, from PyPI).
    let python = support::python_venv(&dir, &["websocket-client"])?;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/page/drive_page.py");
    // Chromium reads a file input's file by its canonical path only.
    let photo = std::fs::canonicalize(support::assets().join("photos/astronaut.png"))?;
    let (out, _) = support::run(
        &python,
        &[
            script,
            &format!("http://{addr}/"),
            &photo.display().to_string(),
            &dir.display().to_string(),
        ],
        &dir,
        &[],
    )?;
    let page: Value = serde_json::from_str(&out)?;

    // Typed: the answer as bars, words and attention per modality.
    let text = &page["text"];
    assert_eq!(text["label"], "positive, joy", "{page}");
    assert_eq!(text["error"], "", "{page}");
    assert_eq!(
        text["bars"],
        3 + 7 + 2,
        "sentiment, emotions, text and lexicon: {page}"
    );
    let words = text["words"].to_string();
    assert!(words.contains("love") && words.contains("thank"), "{page}");
    assert_eq!(text["photoShown"], false, "{page}");
    // With a photo: the image is drawn with its face box, and the image weighed.
    let photo = &page["photo"];
    assert_eq!(photo["error"], "", "{page}");
    assert_eq!(photo["photoShown"], true, "{page}");
    assert_eq!(photo["canvas"], json!([512, 512]), "{page}");
    assert!(photo["modalities"].to_string().contains("image"), "{page}");
    for shot in ["page-text.png", "page-photo.png"] {
        let bytes = std::fs::read(dir.join(shot))?;
        assert!(
            bytes.starts_with(b"\x89PNG") && bytes.len() > 10_000,
            "{shot}"
        );
    }
    println!("screenshots in {}", dir.display());
    Ok(())
}
