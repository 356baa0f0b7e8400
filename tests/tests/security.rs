//! The secure path end to end: `empathy up --secure` (real processes, TLS everywhere,
//! mTLS between them, API keys at the doors), and the status each door gives each
//! caller.

mod support;

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use anyhow::Context;
use empathy_common::launch::sibling_binary;
use empathy_grpc::v1::{
    AnalyzeRequest, CreateKeyRequest, EncoderInfoRequest, FeedbackRequest, RevokeKeyRequest, Role,
    RollbackRequest, StartTrainingRequest, empathy_service_client::EmpathyServiceClient,
    encoder_service_client::EncoderServiceClient, key_service_client::KeyServiceClient,
    trainer_service_client::TrainerServiceClient,
};
use tokio::io::{AsyncBufReadExt, BufReader};
use tonic::{
    Code, Request,
    transport::{Certificate, Channel, ClientTlsConfig, Endpoint},
};

/// A private assets folder: links to the real one's entries, so `up --secure` writes
/// its CA and keys here, not into the shared assets.
fn private_assets(dir: &Path) -> anyhow::Result<PathBuf> {
    let assets = dir.join("assets");
    std::fs::create_dir_all(&assets)?;
    for entry in std::fs::read_dir(support::assets())? {
        let entry = entry?;
        if entry.file_name() != "secure" {
            std::os::unix::fs::symlink(entry.path(), assets.join(entry.file_name()))?;
        }
    }
    Ok(assets)
}

/// `empathy up --secure` on free ports; returns the process and the URLs it printed.
async fn up_secure(
    assets: &Path,
    database: &Path,
) -> anyhow::Result<(tokio::process::Child, [String; 4])> {
    let mut args = vec![
        "up".to_string(),
        "--secure".into(),
        "--plugin".into(),
        "text".into(),
        "--assets".into(),
        assets.display().to_string(),
        "--database".into(),
        database.display().to_string(),
    ];
    for flag in [
        "listen",
        "encoder-listen",
        "metrics-listen",
        "encoder-metrics-listen",
        "trainer-listen",
        "trainer-metrics-listen",
        "situation-listen",
        "situation-metrics-listen",
        "http-listen",
    ] {
        args.extend([format!("--{flag}"), "127.0.0.1:0".into()]);
    }
    let mut child = tokio::process::Command::new(sibling_binary("empathy-admin")?)
        .args(&args)
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let mut lines = BufReader::new(child.stdout.take().context("stdout")?).lines();
    let mut urls = [String::new(), String::new(), String::new(), String::new()];
    let read = async {
        while let Some(line) = lines.next_line().await? {
            let url = || {
                line.split_whitespace()
                    .nth(1)
                    .unwrap_or_default()
                    .to_string()
            };
            match line.split_whitespace().next() {
                Some("EmpathyService") => urls[0] = url(),
                Some("EncoderService") => urls[1] = url(),
                Some("TrainerService") => urls[2] = url(),
                Some("HTTP/JSON") => urls[3] = url(),
                Some("secure:") => return Ok(()),
                _ => {}
            }
        }
        anyhow::bail!("empathy up --secure ended before it was up")
    };
    tokio::time::timeout(Duration::from_secs(300), read).await??;
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok((child, urls))
}

async fn channel(url: &str, ca: &Path) -> anyhow::Result<Channel> {
    let tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(std::fs::read(ca)?));
    Ok(Endpoint::from_shared(url.to_string())?
        .tls_config(tls)?
        .connect()
        .await?)
}

fn with_key<T>(message: T, key: Option<&str>) -> Request<T> {
    let mut request = Request::new(message);
    if let Some(key) = key {
        let value = format!("Bearer {key}").parse().expect("a header value");
        request.metadata_mut().insert("authorization", value);
    }
    request
}

fn code<T>(result: Result<T, tonic::Status>) -> Code {
    result.map_or_else(|s| s.code(), |_| Code::Ok)
}

fn analyze(key: Option<&str>) -> Request<AnalyzeRequest> {
    let request = AnalyzeRequest {
        text: "The nurse was so kind to me today.".into(),
        ..AnalyzeRequest::default()
    };
    with_key(request, key)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn up_secure_gives_each_door_the_right_status() -> anyhow::Result<()> {
    let dir = support::temp_dir("secure-up");
    let assets = private_assets(&dir)?;
    let (_up, [fusion_url, encoder_url, trainer_url, http_url]) =
        up_secure(&assets, &dir.join("feedback.sqlite")).await?;
    for url in [&fusion_url, &encoder_url, &trainer_url] {
        assert!(url.starts_with("https://127.0.0.1:"), "{url}");
    }
    let ca = assets.join("secure/ca.pem");
    let admin_key = std::fs::read_to_string(assets.join("secure/admin.key"))?;
    let admin = Some(admin_key.trim());

    let fusion_channel = channel(&fusion_url, &ca).await?;
    let mut fusion = EmpathyServiceClient::new(fusion_channel.clone());
    let trainer_channel = channel(&trainer_url, &ca).await?;
    let mut keys = KeyServiceClient::new(trainer_channel.clone());
    let mut trainer = TrainerServiceClient::new(trainer_channel);

    // No key, a made-up key: UNAUTHENTICATED, saying what to do.
    let none = fusion.analyze(analyze(None)).await.err();
    assert!(
        none.as_ref().is_some_and(
            |s| s.code() == Code::Unauthenticated && s.message().contains("EMPATHY_API_KEY")
        ),
        "{none:?}"
    );
    let made_up = format!("emp_0000000000000000_{}", "0".repeat(64));
    assert_eq!(
        code(fusion.analyze(analyze(Some(&made_up))).await),
        Code::Unauthenticated
    );

    // The admin key that `up` wrote creates a key per role.
    let create = |role: Role, tenant: &str| {
        let request = CreateKeyRequest {
            tenant: tenant.into(),
            role: role as i32,
            label: "e2e".into(),
        };
        let mut keys = keys.clone();
        async move {
            anyhow::Ok(
                keys.create_key(with_key(request, admin))
                    .await?
                    .into_inner()
                    .secret,
            )
        }
    };
    let analyst = create(Role::Analyze, "acme").await?;
    let corrector = create(Role::Feedback, "acme").await?;
    let revoked = create(Role::Analyze, "acme").await?;
    let stranger = create(Role::Feedback, "other").await?;

    // analyze: Analyze yes, Feedback no.
    let answer = fusion.analyze(analyze(Some(&analyst))).await?.into_inner();
    // `empathy up` runs the meaning reader unless told otherwise.
    assert!(
        answer.timings.iter().any(|t| t.stage == "meaning"),
        "{:?}",
        answer.timings
    );
    let feedback = |key: &str| {
        let request = FeedbackRequest {
            analysis_id: answer.analysis_id.clone(),
            sentiment: "positive".into(),
            ..FeedbackRequest::default()
        };
        with_key(request, Some(key))
    };
    let denied = fusion.feedback(feedback(&analyst)).await.err();
    assert!(
        denied.as_ref().is_some_and(
            |s| s.code() == Code::PermissionDenied && s.message().contains("feedback role")
        ),
        "{denied:?}"
    );
    // Another tenant cannot correct (or learn of) acme's analysis.
    let foreign = fusion.feedback(feedback(&stranger)).await.err();
    assert!(
        foreign.as_ref().is_some_and(|s| s.code() == Code::NotFound),
        "{foreign:?}"
    );
    // The HTTP door (loopback only beside TLS) asks the same keys the same way.
    let http = http_url.trim_start_matches("http://");
    let body = r#"{"text":"What a day."}"#;
    let (status, none) = support::http_post(http, "/v1/analyze", body, None)?;
    assert_eq!(
        (status, &none["error"]["status"]),
        (401, &"UNAUTHENTICATED".into())
    );
    let (status, _) = support::http_post(http, "/v1/analyze", body, Some(&analyst))?;
    assert_eq!(status, 200);
    let correction = serde_json::json!({"analysisId": answer.analysis_id, "sentiment": "positive"});
    let (status, denied) = support::http_post(
        http,
        "/v1/feedback",
        &correction.to_string(),
        Some(&analyst),
    )?;
    assert_eq!(status, 403, "{denied}");

    // feedback: Feedback yes, stored by the trainer over mTLS.
    let stored = fusion.feedback(feedback(&corrector)).await?.into_inner();
    assert!(stored.stored, "{stored:?}");

    // The trainer's admin doors: no key, a lesser role, the admin.
    let train = || StartTrainingRequest {
        reason: "e2e".into(),
        ..Default::default()
    };
    assert_eq!(
        code(trainer.start_training(with_key(train(), None)).await),
        Code::Unauthenticated
    );
    let rollback = RollbackRequest {
        version: "v0001".into(),
        ..Default::default()
    };
    assert_eq!(
        code(trainer.rollback(with_key(rollback, Some(&corrector))).await),
        Code::PermissionDenied
    );
    // Feedback reaches the store only through fusion, never straight from a key.
    let record = support::feedback_record("direct", "negative", 1);
    assert_eq!(
        code(trainer.submit_feedback(with_key(record, admin)).await),
        Code::PermissionDenied
    );

    // A revoked key stops working.
    let revoked_id = empathy_common::auth::key_id(&revoked)
        .context("key id")?
        .to_string();
    keys.revoke_key(with_key(RevokeKeyRequest { key_id: revoked_id }, admin))
        .await?;
    assert_eq!(
        code(fusion.analyze(analyze(Some(&revoked))).await),
        Code::Unauthenticated
    );

    // Internal services take only our certificates; plaintext is not served.
    let mut encoder = EncoderServiceClient::new(channel(&encoder_url, &ca).await?);
    assert_ne!(code(encoder.info(EncoderInfoRequest {}).await), Code::Ok);
    let plain = fusion_url.replace("https://", "http://");
    let mut plain = EmpathyServiceClient::new(Endpoint::from_shared(plain)?.connect_lazy());
    assert_ne!(code(plain.analyze(analyze(Some(&analyst))).await), Code::Ok);

    // The empathy command finds the local CA and the admin key by itself.
    let empathy = |key: Option<&str>, args: &[&str]| -> anyhow::Result<std::process::Output> {
        let mut command = std::process::Command::new(sibling_binary("empathy")?);
        command
            .args(args)
            .env("EMPATHY_ASSETS", &assets)
            .env("EMPATHY_ENDPOINT", &fusion_url)
            .env("EMPATHY_TRAINER", &trainer_url)
            .env_remove("EMPATHY_API_KEY")
            .env_remove("EMPATHY_CA");
        if let Some(key) = key {
            command.env("EMPATHY_API_KEY", key);
        }
        Ok(command.output()?)
    };
    let made = empathy(
        None,
        &["keys", "create", "--tenant", "cli", "--role", "analyze"],
    )?;
    assert!(made.status.success(), "{made:?}");
    let cli_key = String::from_utf8(made.stdout)?.trim().to_string();
    let analysed = empathy(Some(&cli_key), &["analyze", "--text", "What a relief."])?;
    assert!(analysed.status.success(), "{analysed:?}");
    assert!(String::from_utf8_lossy(&analysed.stdout).contains("sentiment"));
    let retrain = empathy(Some(&cli_key), &["retrain"])?;
    let said = String::from_utf8_lossy(&retrain.stderr);
    assert!(
        !retrain.status.success() && said.contains("admin role"),
        "{said}"
    );

    // Health stays open for probes.
    let mut health = tonic_health::pb::health_client::HealthClient::new(fusion_channel);
    let check = tonic_health::pb::HealthCheckRequest {
        service: "empathy.v1.EmpathyService".into(),
    };
    assert_eq!(code(health.check(check).await), Code::Ok);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
