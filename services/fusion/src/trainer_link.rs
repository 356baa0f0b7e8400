//! The connection to the trainer that fusion forwards feedback to (and keeps tenants'
//! reply templates in). Its own module so
//! `analyze` (which holds one) and `feedback` (which uses the analyzer) do not import
//! each other.

use std::time::Duration;

use empathy_common::auth::KeyLookup;
use empathy_common::trace_context::{TracedChannel, propagate};
use empathy_grpc::v1::key_service_client::KeyServiceClient;
use empathy_grpc::v1::trainer_service_client::TrainerServiceClient;
use empathy_grpc::v1::{
    AffectPoint, ApiKey, AuthenticateRequest, FeedbackAck, FeedbackRecord, GetRepliesRequest,
    ReadAffectRequest, SubjectAffect, TenantReplies, TrafficBatch,
};
use tonic::{Code, Status};

/// The trainer fusion forwards feedback to.
#[derive(Clone)]
pub struct TrainerLink {
    url: String,
    client: TrainerServiceClient<TracedChannel>,
    /// The key store, for fusion's door (`--api-keys`).
    keys: KeyServiceClient<TracedChannel>,
}

impl TrainerLink {
    /// Connects lazily: fusion starts (and serves analyses) with the trainer down.
    pub fn new(url: &str, max_message_bytes: usize) -> anyhow::Result<TrainerLink> {
        let channel = propagate(
            empathy_common::tls::endpoint(url, None)?
                .connect_timeout(Duration::from_secs(2))
                .timeout(Duration::from_secs(30))
                .connect_lazy(),
        );
        Ok(TrainerLink {
            url: url.to_string(),
            keys: KeyServiceClient::new(channel.clone()),
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

    /// Hands a batch of fusion's traffic sample to the trainer; how many were new.
    pub async fn submit_traffic(&self, batch: TrafficBatch) -> Result<u64, Status> {
        let ack = self.client.clone().submit_traffic(batch).await?;
        Ok(ack.into_inner().stored)
    }

    /// Stores `bank` as its tenant's reply templates.
    pub async fn put_replies(&self, bank: TenantReplies) -> Result<TenantReplies, Status> {
        self.client
            .clone()
            .put_replies(bank)
            .await
            .map(tonic::Response::into_inner)
            .map_err(|s| self.unreachable("reply templates not stored", s))
    }

    /// `tenant`'s reply templates (none: an empty bank).
    pub async fn replies(&self, tenant: &str) -> Result<TenantReplies, Status> {
        let request = GetRepliesRequest {
            tenant: tenant.to_string(),
        };
        self.client
            .clone()
            .get_replies(request)
            .await
            .map(tonic::Response::into_inner)
            .map_err(|s| self.unreachable("reply templates not read", s))
    }

    /// Keeps a subject's affect points.
    pub async fn record_affect(&self, affect: SubjectAffect) -> Result<(), Status> {
        self.client
            .clone()
            .record_affect(affect)
            .await
            .map(|_| ())
            .map_err(|s| self.unreachable("affect not stored", s))
    }

    /// A subject's affect points since a time, oldest first.
    pub async fn read_affect(
        &self,
        request: ReadAffectRequest,
    ) -> Result<Vec<AffectPoint>, Status> {
        self.client
            .clone()
            .read_affect(request)
            .await
            .map(|r| r.into_inner().points)
            .map_err(|s| self.unreachable("the trajectory could not be read", s))
    }

    fn unreachable(&self, what: &str, s: Status) -> Status {
        Status::unavailable(format!(
            "{what}: the trainer at {} answered {}: {}; retry",
            self.url(),
            s.code(),
            s.message()
        ))
    }
}

#[tonic::async_trait]
impl KeyLookup for TrainerLink {
    async fn lookup(&self, key_sha256: &str) -> Result<Option<ApiKey>, Status> {
        let request = AuthenticateRequest {
            key_sha256: key_sha256.to_string(),
        };
        match self.keys.clone().authenticate(request).await {
            Ok(key) => Ok(Some(key.into_inner())),
            Err(s) if s.code() == Code::NotFound => Ok(None),
            Err(s) => Err(s),
        }
    }
}
