//! The gRPC face of the encoder: validates requests, routes them to the modality's
//! batcher and maps plugin errors to gRPC statuses.

use std::{collections::HashMap, pin::Pin, sync::Arc, time::Duration};

use empathy_common::Metrics;
use empathy_grpc::v1::{
    EncodeRequest, EncodeResponse, EncoderInfo, EncoderInfoRequest, ModalityInfo,
    encoder_service_server::EncoderService,
};
use empathy_plugin_api::{ErrorKind, PluginError};
use futures::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};
use tracing::Instrument;

use crate::batcher::{Batcher, SubmitError};

#[derive(Clone)]
pub struct Encoder {
    inner: Arc<Inner>,
}

struct Inner {
    batchers: HashMap<String, Batcher>,
    infos: Vec<ModalityInfo>,
    metrics: Metrics,
}

impl Encoder {
    pub fn new(
        batchers: HashMap<String, Batcher>,
        infos: Vec<ModalityInfo>,
        metrics: Metrics,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                batchers,
                infos,
                metrics,
            }),
        }
    }
}

impl Inner {
    /// `deadline`: how long the caller will wait (its grpc-timeout), if it said.
    async fn encode(
        &self,
        request: EncodeRequest,
        deadline: Option<Duration>,
    ) -> Result<EncodeResponse, Status> {
        let Some(batcher) = self.batchers.get(&request.modality) else {
            let served: Vec<&str> = self.infos.iter().map(|i| i.modality.as_str()).collect();
            return Err(Status::invalid_argument(format!(
                "modality {} is not served here; this encoder serves {served:?}",
                empathy_common::status::quote(&request.modality)
            )));
        };
        if request.inputs.is_empty() {
            return Err(Status::invalid_argument(
                "inputs is empty: send at least one input",
            ));
        }
        if let Some(info) = self.infos.iter().find(|i| i.modality == request.modality) {
            let max = info.max_batch as usize;
            if max > 0 && request.inputs.len() > max {
                return Err(Status::invalid_argument(format!(
                    "{} inputs in one request; the limit for {} is {max}",
                    request.inputs.len(),
                    request.modality
                )));
            }
        }
        // In the call's trace: the wait in the batch queue and the plugin's work.
        let span = tracing::info_span!(
            "plugin",
            otel.name = %format!("plugin {}", request.modality),
            inputs = request.inputs.len(),
        );
        match batcher.submit(request, deadline).instrument(span).await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(err)) => Err(plugin_status(err)),
            Err(SubmitError::QueueFull(n)) => Err(Status::resource_exhausted(format!(
                "the encoder is saturated ({n} requests queued); retry with backoff"
            ))),
            Err(SubmitError::TooBusy { wait, limit }) => Err(Status::resource_exhausted(format!(
                "the encoder is at capacity: the work queued ahead would take about {:.1} s, \
                 longer than a request may wait here ({:.1} s); retry with backoff",
                wait.as_secs_f64(),
                limit.as_secs_f64()
            ))),
            Err(SubmitError::Stopped) => Err(Status::unavailable("the encoder is shutting down")),
        }
    }
}

fn plugin_status(err: PluginError) -> Status {
    match err.kind {
        ErrorKind::InvalidInput => Status::invalid_argument(err.message),
        ErrorKind::ResourceExhausted => Status::resource_exhausted(err.message),
        ErrorKind::Unavailable => Status::unavailable(err.message),
        ErrorKind::Internal => empathy_common::status::internal("plugin failed", err.message),
    }
}

type EncodeStream = Pin<Box<dyn Stream<Item = Result<EncodeResponse, Status>> + Send>>;

#[tonic::async_trait]
impl EncoderService for Encoder {
    async fn info(&self, _: Request<EncoderInfoRequest>) -> Result<Response<EncoderInfo>, Status> {
        Ok(Response::new(EncoderInfo {
            modalities: self.inner.infos.clone(),
            server_version: env!("CARGO_PKG_VERSION").to_string(),
        }))
    }

    async fn encode(
        &self,
        request: Request<EncodeRequest>,
    ) -> Result<Response<EncodeResponse>, Status> {
        let inner = &self.inner;
        let deadline = empathy_common::deadline::grpc_timeout(request.metadata());
        inner
            .metrics
            .track("Encode", inner.encode(request.into_inner(), deadline))
            .await
            .map(Response::new)
    }

    type EncodeStreamStream = EncodeStream;

    async fn encode_stream(
        &self,
        request: Request<Streaming<EncodeRequest>>,
    ) -> Result<Response<Self::EncodeStreamStream>, Status> {
        let inner = Arc::clone(&self.inner);
        // The stream's deadline covers it all; each request is judged against it.
        let deadline = empathy_common::deadline::grpc_timeout(request.metadata());
        // Answers keep the order of the requests on the stream.
        let out = request.into_inner().then(move |item| {
            let inner = Arc::clone(&inner);
            async move {
                let request = item?;
                inner
                    .metrics
                    .track("EncodeStream", inner.encode(request, deadline))
                    .await
            }
        });
        Ok(Response::new(Box::pin(out)))
    }
}
