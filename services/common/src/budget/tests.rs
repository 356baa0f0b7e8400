//! A real tonic server behind the budget: reflection (a bidirectional stream, so a
//! request can be held open) is counted, health is not.

use std::net::SocketAddr;

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, transport::Channel};
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
use tonic_reflection::pb::v1::{
    ServerReflectionRequest, ServerReflectionResponse,
    server_reflection_client::ServerReflectionClient, server_reflection_request::MessageRequest,
};

use super::*;

async fn serve(layer: BudgetLayer) -> anyhow::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (_, health) = tonic_health::server::health_reporter();
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let server = tonic::transport::Server::builder()
        .layer(layer)
        .add_service(health)
        .add_service(reflection)
        .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener));
    tokio::spawn(server);
    Ok(addr)
}

fn list(host: String) -> ServerReflectionRequest {
    ServerReflectionRequest {
        host,
        message_request: Some(MessageRequest::ListServices(String::new())),
    }
}

/// A reflection stream, in flight while this lives.
struct Open {
    tx: mpsc::Sender<ServerReflectionRequest>,
    answers: tonic::Streaming<ServerReflectionResponse>,
}

impl Open {
    /// Sends one request on the stream and waits for its answer.
    async fn ask(&mut self, host: String) -> Result<(), tonic::Status> {
        self.tx
            .send(list(host))
            .await
            .map_err(|_| tonic::Status::internal("the stream is closed"))?;
        self.answers.message().await?;
        Ok(())
    }
}

/// Opens a reflection stream and asks once.
async fn open_stream(channel: &Channel, host: String) -> Result<Open, tonic::Status> {
    let (tx, rx) = mpsc::channel(4);
    let answers = ServerReflectionClient::new(channel.clone())
        .server_reflection_info(ReceiverStream::new(rx))
        .await?
        .into_inner();
    let mut open = Open { tx, answers };
    open.ask(host).await?;
    Ok(open)
}

async fn healthy(channel: &Channel) -> bool {
    HealthClient::new(channel.clone())
        .check(HealthCheckRequest::default())
        .await
        .is_ok()
}

#[tokio::test]
async fn refuses_requests_beyond_the_budget_then_serves_again() -> anyhow::Result<()> {
    let addr = serve(BudgetLayer::new(1, 1 << 20)).await?;
    let channel = Channel::from_shared(format!("http://{addr}"))?
        .connect()
        .await?;

    let first = open_stream(&channel, String::new()).await?;
    let refused = open_stream(&channel, String::new())
        .await
        .err()
        .expect("a second request is over the budget of one");
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert!(
        refused.message().contains("requests in flight") && refused.message().contains("retry"),
        "{}",
        refused.message()
    );
    assert!(healthy(&channel).await, "health checks are never refused");

    drop(first);
    // The first stream's slot comes back once the server sees it end.
    let mut again = Err(refused);
    for _ in 0..50 {
        again = open_stream(&channel, String::new()).await;
        if again.is_ok() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    again.map(drop)?;
    Ok(())
}

#[tokio::test]
async fn refuses_bytes_beyond_the_budget_then_serves_again() -> anyhow::Result<()> {
    let addr = serve(BudgetLayer::new(100, 4096)).await?;
    let channel = Channel::from_shared(format!("http://{addr}"))?
        .connect()
        .await?;

    let refused = open_stream(&channel, "x".repeat(8192))
        .await
        .err()
        .expect("an 8 KiB message is over a 4 KiB budget");
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert!(
        refused.message().contains("bytes in flight"),
        "{}",
        refused.message()
    );
    // A stream holds its latest message only: many small ones add up to no more.
    let mut open = open_stream(&channel, "y".repeat(1000)).await?;
    for _ in 0..20 {
        open.ask("z".repeat(1000)).await?;
    }
    open_stream(&channel, "y".repeat(1000)).await.map(drop)?;
    assert!(healthy(&channel).await);
    Ok(())
}

#[test]
fn framing_releases_a_message_when_the_next_begins() {
    let message = |len: u32| {
        let mut m = vec![0];
        m.extend(len.to_be_bytes());
        m.extend(vec![7; len as usize]);
        m
    };
    let mut f = Framing::default();
    let first = message(10);
    // Split across frames, inside the prefix.
    assert_eq!(f.feed(&first[..3]), (3, 0));
    assert_eq!(f.feed(&first[3..]), (12, 0));
    // The next message, with an empty one after it, in one frame.
    let mut next = message(4);
    next.extend(message(0));
    // What is held goes from the first message (15 bytes) to the empty one (5).
    assert_eq!(f.feed(&next), (0, 15 - 5));
    assert_eq!(f.current, 5);
}
