//! The connection to the trainer that fusion forwards feedback to. Its own module so
//! `analyze` (which holds one) and `feedback` (which uses the analyzer) do not import
//! each other.

use std::time::Duration;

use empathy_grpc::v1::trainer_service_client::TrainerServiceClient;
use empathy_grpc::v1::{FeedbackAck, FeedbackRecord};
use tonic::transport::Channel;
use tonic::{Code, Status};

/// The trainer fusion forwards feedback to.
#[derive(Clone)]
pub struct TrainerLink {
    url: String,
    client: TrainerServiceClient<Channel>,
}

impl TrainerLink {
    /// Connects lazily: fusion starts (and serves analyses) with the trainer down.
    pub fn new(url: &str, max_message_bytes: usize) -> anyhow::Result<TrainerLink> {
        let channel = tonic::transport::Endpoint::from_shared(url.to_string())?
            .connect_timeout(Duration::from_secs(2))
            .timeout(Duration::from_secs(30))
            .connect_lazy();
        Ok(TrainerLink {
            url: url.to_string(),
            client: TrainerServiceClient::new(channel)
                .max_decoding_message_size(max_message_bytes)
                .max_encoding_message_size(max_message_bytes),
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Hands `record` to the trainer, which stores it durably before it answers. The
    /// client's own mistakes come back as the trainer said them; anything else is
    /// UNAVAILABLE (retry).
    pub async fn submit_feedback(&self, record: FeedbackRecord) -> Result<FeedbackAck, Status> {
        self.client
            .clone()
            .submit_feedback(record)
            .await
            .map_err(|s| match s.code() {
                Code::InvalidArgument | Code::ResourceExhausted | Code::FailedPrecondition => s,
                _ => Status::unavailable(format!(
                    "feedback not stored: the trainer at {} did not take it ({}: {}); retry",
                    self.url(),
                    s.code(),
                    s.message()
                )),
            })
            .map(tonic::Response::into_inner)
    }
}
