//! The client side of the situation service: ask for k imagined situations within
//! the deadline and keep what arrived. Situations enrich an answer; they never fail it.

use std::time::Duration;

use empathy_common::trace_context::{TracedChannel, propagate};
use empathy_grpc::v1::{
    GenerateRequest, Situation, Turn, situation_service_client::SituationServiceClient,
};
use futures::StreamExt;
use tokio::time::{Instant, timeout_at};

pub struct SituationSource {
    client: Option<SituationServiceClient<TracedChannel>>,
}

/// What one request asks for.
pub struct Ask<'a> {
    pub utterance: &'a str,
    pub context: &'a [Turn],
    pub k: u32,
    pub seed: u64,
    pub language: &'a str,
    pub deadline: Duration,
}

impl SituationSource {
    /// `url` of a SituationService; connects lazily, so fusion starts without it.
    pub fn new(url: Option<&str>, max_message_bytes: usize) -> anyhow::Result<Self> {
        let client = url
            .map(|u| -> anyhow::Result<_> {
                let channel = empathy_common::tls::endpoint(u, None)
                    .map_err(|e| anyhow::anyhow!("--situations: {e:#}"))?
                    .tcp_nodelay(true)
                    .connect_lazy();
                Ok(SituationServiceClient::new(propagate(channel))
                    .max_decoding_message_size(max_message_bytes))
            })
            .transpose()?;
        Ok(Self { client })
    }

    pub fn configured(&self) -> bool {
        self.client.is_some()
    }

    /// The situations that arrived in time, in the order the service sent them, or
    /// why there are none.
    pub async fn generate(&self, ask: Ask<'_>) -> Result<Vec<Situation>, String> {
        let Some(client) = &self.client else {
            return Err(
                "this server has no situation service (start fusion with --situations URL)".into(),
            );
        };
        let mut client = client.clone();
        let mut request = tonic::Request::new(GenerateRequest {
            utterance: ask.utterance.to_string(),
            context: ask.context.iter().map(|t| t.text.clone()).collect(),
            k: ask.k,
            seed: ask.seed,
            language: ask.language.to_string(),
            ..Default::default()
        });
        request.set_timeout(ask.deadline);
        let deadline = Instant::now() + ask.deadline;
        let late = || {
            format!(
                "the situation service sent nothing within {} ms",
                ask.deadline.as_millis()
            )
        };
        let mut stream = timeout_at(deadline, client.generate(request))
            .await
            .map_err(|_| late())?
            .map_err(|s| format!("the situation service refused: {}", s.message()))?
            .into_inner();
        let mut got = Vec::new();
        // Keep what arrived before the deadline or a late failure.
        loop {
            match timeout_at(deadline, stream.next()).await {
                Ok(Some(Ok(situation))) => got.push(situation),
                Ok(None) => break,
                Ok(Some(Err(s))) if got.is_empty() => {
                    return Err(format!("the situation service failed: {}", s.message()));
                }
                Err(_) if got.is_empty() => return Err(late()),
                Ok(Some(Err(_))) | Err(_) => break,
            }
        }
        Ok(got)
    }
}
