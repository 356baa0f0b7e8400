//! Starting the real services for end-to-end tests.

#![allow(dead_code)] // each test binary uses its own part of this module

use std::{path::PathBuf, time::Duration};

use empathy_common::launch::{self, Service, sibling_binary};
use empathy_proto::v1::{
    AnalyzeRequest, AnalyzeResponse, empathy_service_client::EmpathyServiceClient,
};
use tonic::transport::Channel;

/// The assets directory: `EMPATHY_ASSETS`, else `<workspace>/assets`.
pub fn assets() -> PathBuf {
    let dir = std::env::var_os("EMPATHY_ASSETS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../assets"));
    assert!(
        dir.join("models").is_dir(),
        "no trained model under {}: run `empathy assets fetch` and `empathy train` (the README's test command does)",
        dir.display()
    );
    dir
}

const READY: Duration = Duration::from_secs(120);

pub async fn start_encoder(extra: &[&str]) -> anyhow::Result<Service> {
    let mut args: Vec<String> = vec![
        "--plugin".into(),
        "text".into(),
        "--assets".into(),
        assets().display().to_string(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    launch::spawn(&sibling_binary("empathy-encoder")?, &args, READY).await
}

pub async fn start_fusion(encoders: &[String], extra: &[&str]) -> anyhow::Result<Service> {
    let mut args: Vec<String> = vec!["--assets".into(), assets().display().to_string()];
    for e in encoders {
        args.extend(["--encoder".into(), e.clone()]);
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    launch::spawn(&sibling_binary("empathy-fusion")?, &args, READY).await
}

pub async fn client(service: &Service) -> anyhow::Result<EmpathyServiceClient<Channel>> {
    Ok(EmpathyServiceClient::connect(service.url()).await?)
}

pub async fn analyze_text(
    client: &mut EmpathyServiceClient<Channel>,
    text: &str,
) -> Result<AnalyzeResponse, tonic::Status> {
    client
        .analyze(AnalyzeRequest {
            text: text.into(),
            ..Default::default()
        })
        .await
        .map(|r| r.into_inner())
}

/// An address nothing listens on (bound, then released).
pub fn dead_endpoint() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    let addr = l.local_addr().expect("local addr");
    drop(l);
    format!("http://{addr}")
}
