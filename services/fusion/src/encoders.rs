//! Which encoder serves which modality. Fusion is given encoder URLs; each name is
//! resolved to every address behind it (a Kubernetes headless service lists one per
//! pod), each address's `Info` says what it serves, and requests for a modality go
//! round robin over the addresses serving it. gRPC keeps connections open for long,
//! so balancing per connection would pin each fusion to one encoder: this balances
//! per request. The table is refreshed in the background, so encoders that start,
//! scale out or restart are picked up without restarting fusion.

use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use empathy_common::trace_context::{TracedChannel, propagate};
use empathy_grpc::v1::{
    EncodeRequest, EncodeResponse, EncoderInfoRequest, encoder_service_client::EncoderServiceClient,
};
use tokio::sync::RwLock;

type Client = EncoderServiceClient<TracedChannel>;

#[derive(Clone)]
struct Route {
    endpoint: String,
    client: Client,
}

#[derive(Default)]
struct Table {
    /// Modality -> every address serving it.
    routes: HashMap<String, Vec<Route>>,
    /// Configured URLs that answered nothing at the last refresh, with the reason.
    unreachable: Vec<(String, String)>,
}

#[derive(Clone)]
pub struct EncoderPool {
    urls: Vec<String>,
    max_message_bytes: usize,
    /// One lazily connected client per resolved address, kept across refreshes.
    clients: Arc<std::sync::Mutex<HashMap<String, Client>>>,
    table: Arc<RwLock<Table>>,
    next: Arc<AtomicUsize>,
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
    /// Every encoder for it is at capacity (RESOURCE_EXHAUSTED): missing too, and if
    /// nothing else could be encoded the request is answered RESOURCE_EXHAUSTED.
    Busy(String),
}

impl EncoderPool {
    pub fn new(urls: &[String], max_message_bytes: usize) -> anyhow::Result<Self> {
        for url in urls {
            host_port(url)?;
        }
        Ok(Self {
            urls: urls.to_vec(),
            max_message_bytes,
            clients: Arc::default(),
            table: Arc::default(),
            next: Arc::default(),
            last_refresh: Arc::default(),
        })
    }

    /// `host`: the name the URL gave, which a TLS certificate names (not the address).
    fn client(&self, endpoint: &str, host: &str) -> anyhow::Result<Client> {
        let mut clients = self
            .clients
            .lock()
            .map_err(|_| anyhow::anyhow!("encoder client cache poisoned"))?;
        if let Some(c) = clients.get(endpoint) {
            return Ok(c.clone());
        }
        // Lazy: fusion starts (and degrades) even while an encoder is down.
        let channel = empathy_common::tls::endpoint(endpoint, Some(host))?
            .connect_timeout(Duration::from_secs(1))
            .tcp_nodelay(true)
            .connect_lazy();
        let client = EncoderServiceClient::new(propagate(channel))
            .max_decoding_message_size(self.max_message_bytes)
            .max_encoding_message_size(self.max_message_bytes);
        clients.insert(endpoint.to_string(), client.clone());
        Ok(client)
    }

    /// Resolves every URL, asks every address what it serves, rebuilds the table.
    pub async fn refresh(&self) {
        if let Ok(mut last) = self.last_refresh.lock() {
            *last = Some(Instant::now());
        }
        let mut table = Table::default();
        for url in &self.urls {
            match self.refresh_url(url, &mut table.routes).await {
                Ok(0) => table
                    .unreachable
                    .push((url.clone(), "no address answered".into())),
                Ok(_) => {}
                Err(reason) => {
                    tracing::warn!(%url, %reason, "encoder not reachable");
                    table.unreachable.push((url.clone(), reason));
                }
            }
        }
        *self.table.write().await = table;
    }

    /// Adds the routes behind one URL; returns how many addresses answered.
    async fn refresh_url(
        &self,
        url: &str,
        routes: &mut HashMap<String, Vec<Route>>,
    ) -> Result<usize, String> {
        let (scheme, host, port) = host_port(url).map_err(|e| e.to_string())?;
        let lookup = tokio::net::lookup_host((host.as_str(), port));
        let mut addrs: Vec<_> = resolve(&host, lookup).await?.collect();
        addrs.sort();
        addrs.dedup();
        let mut answered = 0;
        for addr in addrs {
            let endpoint = format!("{scheme}://{addr}");
            let mut client = self
                .client(&endpoint, &host)
                .map_err(|e| format!("{e:#}"))?;
            let mut req = tonic::Request::new(EncoderInfoRequest {});
            req.set_timeout(Duration::from_secs(2));
            match client.info(req).await {
                Ok(info) => {
                    answered += 1;
                    for m in info.into_inner().modalities {
                        routes.entry(m.modality).or_default().push(Route {
                            endpoint: endpoint.clone(),
                            client: client.clone(),
                        });
                    }
                }
                Err(status) => tracing::warn!(%endpoint, %status, "encoder not reachable"),
            }
        }
        Ok(answered)
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

    /// (modality, endpoint) for every address currently routed.
    pub async fn routes(&self) -> Vec<(String, String)> {
        let table = self.table.read().await;
        let mut r: Vec<_> = table
            .routes
            .iter()
            .flat_map(|(m, rs)| rs.iter().map(move |r| (m.clone(), r.endpoint.clone())))
            .collect();
        r.sort();
        r
    }

    /// Configured URLs that did not answer at the last refresh, with the reason.
    pub async fn unreachable(&self) -> Vec<(String, String)> {
        self.table.read().await.unreachable.clone()
    }

    /// The next address serving `modality`, round robin.
    async fn pick(&self, modality: &str, skip: Option<&str>) -> Option<Route> {
        let table = self.table.read().await;
        let routes: Vec<&Route> = table
            .routes
            .get(modality)?
            .iter()
            .filter(|r| Some(r.endpoint.as_str()) != skip)
            .collect();
        if routes.is_empty() {
            return None;
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed) % routes.len();
        Some(routes[i].clone())
    }

    /// Encodes with an encoder of the modality within `deadline`; any failure is a
    /// reason for `modalities_missing`, never an error of the whole analysis. An
    /// address that is down is skipped once in favour of another serving the same
    /// modality.
    pub async fn encode(
        &self,
        request: EncodeRequest,
        deadline: Duration,
    ) -> Result<EncodeResponse, EncodeError> {
        let modality = request.modality.clone();
        let started = Instant::now();
        let mut route = self.pick(&modality, None).await;
        if route.is_none() {
            // The encoder may have come up since the last refresh.
            let stale = self
                .last_refresh
                .lock()
                .map(|last| last.is_none_or(|t| t.elapsed() > MISS_REFRESH_INTERVAL))
                .unwrap_or(true);
            if stale {
                self.refresh().await;
                route = self.pick(&modality, None).await;
            }
        }
        let route = route.ok_or_else(|| {
            EncodeError::Missing(format!("no reachable encoder serves {modality}"))
        })?;
        match call(&route, request.clone(), deadline).await {
            Ok(response) => Ok(response),
            Err(Failure::Final(e)) => Err(e),
            Err(Failure::Retryable(e)) => {
                let Some(other) = self.pick(&modality, Some(&route.endpoint)).await else {
                    return Err(e);
                };
                call(&other, request, deadline.saturating_sub(started.elapsed()))
                    .await
                    .map_err(EncodeError::from)
            }
        }
    }
}

/// How one attempt failed: worth another address (the encoder answered with an
/// error, is at capacity or could not be reached), or final (bad input, or the
/// deadline is spent).
enum Failure {
    Retryable(EncodeError),
    Final(EncodeError),
}

impl From<Failure> for EncodeError {
    fn from(f: Failure) -> Self {
        match f {
            Failure::Retryable(e) | Failure::Final(e) => e,
        }
    }
}

async fn call(
    route: &Route,
    request: EncodeRequest,
    deadline: Duration,
) -> Result<EncodeResponse, Failure> {
    let mut req = tonic::Request::new(request);
    req.set_timeout(deadline);
    let mut client = route.client.clone();
    match tokio::time::timeout(deadline, client.encode(req)).await {
        Ok(Ok(resp)) => Ok(resp.into_inner()),
        Ok(Err(status)) if status.code() == tonic::Code::InvalidArgument => Err(Failure::Final(
            EncodeError::BadInput(status.message().to_string()),
        )),
        Ok(Err(status)) if status.code() == tonic::Code::ResourceExhausted => Err(
            Failure::Retryable(EncodeError::Busy(describe(&route.endpoint, &status))),
        ),
        Ok(Err(status)) => Err(Failure::Retryable(EncodeError::Missing(describe(
            &route.endpoint,
            &status,
        )))),
        Err(_) => Err(Failure::Final(EncodeError::Missing(format!(
            "encoder at {} did not answer within {} ms",
            route.endpoint,
            deadline.as_millis()
        )))),
    }
}

/// How long a name may take to resolve: a resolver that hangs must not stall the
/// refresh of every other URL.
const DNS_TIMEOUT: Duration = Duration::from_secs(2);

/// The addresses `lookup` finds for `host`, or why not (an error, or no answer in
/// `DNS_TIMEOUT`).
async fn resolve<I>(
    host: &str,
    lookup: impl std::future::Future<Output = std::io::Result<I>>,
) -> Result<I, String> {
    tokio::time::timeout(DNS_TIMEOUT, lookup)
        .await
        .map_err(|_| format!("resolving {host} took more than {DNS_TIMEOUT:?}"))?
        .map_err(|e| format!("cannot resolve {host}: {e}"))
}

/// ("http", host, port) of an encoder URL; refuses what cannot be an endpoint.
fn host_port(url: &str) -> anyhow::Result<(String, String, u16)> {
    let uri: http::Uri = url
        .parse()
        .map_err(|e| anyhow::anyhow!("--encoder {url:?} is not a valid URL: {e}"))?;
    let scheme = uri.scheme_str().unwrap_or("http").to_string();
    let host = uri
        .host()
        .ok_or_else(|| anyhow::anyhow!("--encoder {url:?} has no host"))?
        .trim_matches(|c| c == '[' || c == ']')
        .to_string();
    let port = uri
        .port_u16()
        .unwrap_or(if scheme == "https" { 443 } else { 80 });
    Ok((scheme, host, port))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_resolver_that_hangs_fails_the_lookup_in_time() {
        let hung = std::future::pending::<std::io::Result<std::vec::IntoIter<u8>>>();
        let answer = tokio::time::timeout(Duration::from_secs(10), resolve("stuck", hung)).await;
        let err = answer.ok().and_then(Result::err);
        assert!(
            err.as_deref()
                .is_some_and(|e| e.contains("resolving stuck took more than")),
            "{err:?}"
        );
    }

    #[test]
    fn encoder_urls_are_checked_at_start() {
        assert_eq!(
            host_port("http://encoder:50061").unwrap(),
            ("http".into(), "encoder".into(), 50061)
        );
        assert_eq!(host_port("http://[::1]:7").unwrap().1, "::1");
        assert!(EncoderPool::new(&["not a url".into()], 1024).is_err());
    }
}
