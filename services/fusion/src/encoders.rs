//! Which encoder serves which modality. Fusion is given encoder endpoints; each
//! one's `Info` says what it serves. The table is refreshed in the background, so an
//! encoder that starts late (or restarts) is picked up without restarting fusion.

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant},
};

use empathy_proto::v1::{
    EncodeRequest, EncodeResponse, EncoderInfoRequest, encoder_service_client::EncoderServiceClient,
};
use tokio::sync::RwLock;
use tonic::transport::{Channel, Endpoint};

#[derive(Clone)]
struct Route {
    endpoint: String,
    client: EncoderServiceClient<Channel>,
}

#[derive(Clone)]
pub struct EncoderPool {
    endpoints: Vec<(String, EncoderServiceClient<Channel>)>,
    routes: Arc<RwLock<HashMap<String, Route>>>,
    last_refresh: Arc<std::sync::Mutex<Option<Instant>>>,
}

/// A request for an unrouted modality refreshes the table at most this often, so a
/// stream of requests for a modality nobody serves does not probe every encoder.
const MISS_REFRESH_INTERVAL: Duration = Duration::from_secs(2);

/// Why a modality could not be encoded.
#[derive(Debug)]
pub enum EncodeError {
    /// The client's input was refused (e.g. undecodable audio): the client's fault,
    /// reported as INVALID_ARGUMENT.
    BadInput(String),
    /// The encoder is absent, down or slow: becomes `modalities_missing[].reason`.
    Missing(String),
}

impl EncoderPool {
    pub fn new(endpoints: &[String], max_message_bytes: usize) -> anyhow::Result<Self> {
        let endpoints = endpoints
            .iter()
            .map(|url| {
                // Lazy: fusion starts (and degrades) even while an encoder is down.
                let channel = Endpoint::from_shared(url.clone())
                    .map_err(|e| anyhow::anyhow!("--encoder {url:?} is not a valid URL: {e}"))?
                    .connect_timeout(Duration::from_secs(1))
                    .connect_lazy();
                let client = EncoderServiceClient::new(channel)
                    .max_decoding_message_size(max_message_bytes)
                    .max_encoding_message_size(max_message_bytes);
                Ok((url.clone(), client))
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(Self {
            endpoints,
            routes: Arc::default(),
            last_refresh: Arc::default(),
        })
    }

    /// Asks every endpoint what it serves and rebuilds the table.
    pub async fn refresh(&self) {
        if let Ok(mut last) = self.last_refresh.lock() {
            *last = Some(Instant::now());
        }
        let mut table = HashMap::new();
        for (url, client) in &self.endpoints {
            let mut client = client.clone();
            let mut req = tonic::Request::new(EncoderInfoRequest {});
            req.set_timeout(Duration::from_secs(2));
            match client.info(req).await {
                Ok(info) => {
                    for m in info.into_inner().modalities {
                        table.entry(m.modality).or_insert_with(|| Route {
                            endpoint: url.clone(),
                            client: client.clone(),
                        });
                    }
                }
                Err(status) => tracing::warn!(endpoint = %url, %status, "encoder not reachable"),
            }
        }
        *self.routes.write().await = table;
    }

    /// Refreshes every `period` until the process ends.
    pub fn spawn_refresh(&self, period: Duration) {
        let pool = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(period).await;
                pool.refresh().await;
            }
        });
    }

    /// (modality, endpoint) for every modality currently routed.
    pub async fn routes(&self) -> Vec<(String, String)> {
        let mut r: Vec<_> = self
            .routes
            .read()
            .await
            .iter()
            .map(|(m, r)| (m.clone(), r.endpoint.clone()))
            .collect();
        r.sort();
        r
    }

    pub fn endpoints(&self) -> impl Iterator<Item = &str> {
        self.endpoints.iter().map(|(u, _)| u.as_str())
    }

    /// Encodes with the modality's encoder within `deadline`; any failure is a reason
    /// for `modalities_missing`, never an error of the whole analysis.
    pub async fn encode(
        &self,
        request: EncodeRequest,
        deadline: Duration,
    ) -> Result<EncodeResponse, EncodeError> {
        let modality = request.modality.clone();
        let route = self.routes.read().await.get(&modality).cloned();
        let route = match route {
            Some(r) => r,
            None => {
                // The encoder may have come up since the last refresh.
                let stale = self
                    .last_refresh
                    .lock()
                    .map(|last| last.is_none_or(|t| t.elapsed() > MISS_REFRESH_INTERVAL))
                    .unwrap_or(true);
                if stale {
                    self.refresh().await;
                }
                self.routes
                    .read()
                    .await
                    .get(&modality)
                    .cloned()
                    .ok_or_else(|| {
                        EncodeError::Missing(format!("no reachable encoder serves {modality}"))
                    })?
            }
        };
        let mut req = tonic::Request::new(request);
        req.set_timeout(deadline);
        let mut client = route.client;
        match tokio::time::timeout(deadline, client.encode(req)).await {
            Ok(Ok(resp)) => Ok(resp.into_inner()),
            Ok(Err(status)) if status.code() == tonic::Code::InvalidArgument => {
                Err(EncodeError::BadInput(status.message().to_string()))
            }
            Ok(Err(status)) => Err(EncodeError::Missing(describe(&route.endpoint, &status))),
            Err(_) => Err(EncodeError::Missing(format!(
                "encoder at {} did not answer within {} ms",
                route.endpoint,
                deadline.as_millis()
            ))),
        }
    }
}

fn describe(endpoint: &str, status: &tonic::Status) -> String {
    match status.code() {
        tonic::Code::Unavailable => {
            format!("encoder at {endpoint} is unavailable: {}", status.message())
        }
        tonic::Code::DeadlineExceeded => format!("encoder at {endpoint} missed the deadline"),
        code => format!(
            "encoder at {endpoint} answered {code:?}: {}",
            status.message()
        ),
    }
}
