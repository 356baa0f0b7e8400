//! Prometheus metrics: request counts by method and gRPC code, latency histograms,
//! and a gauge of in-flight work, served as text on `/metrics` of its own port.

use std::{net::SocketAddr, time::Duration};

use prometheus::{Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry};

#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    latency: HistogramVec,
    in_flight: IntGauge,
}

impl Metrics {
    /// `service` becomes the `service` label of every series (e.g. "fusion").
    pub fn new(service: &str) -> anyhow::Result<Self> {
        let registry = Registry::new_custom(
            Some("empathy".into()),
            Some([("service".to_string(), service.to_string())].into()),
        )?;
        let requests = IntCounterVec::new(
            Opts::new("requests_total", "gRPC requests by method and status code"),
            &["method", "code"],
        )?;
        let latency = HistogramVec::new(
            HistogramOpts::new("request_seconds", "gRPC request latency")
                .buckets(prometheus::exponential_buckets(0.001, 2.0, 16)?),
            &["method"],
        )?;
        let in_flight = IntGauge::new("in_flight", "requests being processed")?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(latency.clone()))?;
        registry.register(Box::new(in_flight.clone()))?;
        Ok(Self {
            registry,
            requests,
            latency,
            in_flight,
        })
    }

    /// Records one finished request.
    pub fn observe(&self, method: &str, code: tonic::Code, elapsed: Duration) {
        self.requests
            .with_label_values(&[method, &format!("{code:?}")])
            .inc();
        self.latency
            .with_label_values(&[method])
            .observe(elapsed.as_secs_f64());
    }

    /// Runs one request, counting it in flight, then records its code and latency.
    /// Refusals are logged with their message, so operators see why clients fail.
    pub async fn track<T>(
        &self,
        method: &str,
        request: impl Future<Output = Result<T, tonic::Status>>,
    ) -> Result<T, tonic::Status> {
        let started = std::time::Instant::now();
        self.in_flight.inc();
        let result = request.await;
        self.in_flight.dec();
        let code = result
            .as_ref()
            .map_or_else(|s| s.code(), |_| tonic::Code::Ok);
        self.observe(method, code, started.elapsed());
        if let Err(s) = &result {
            tracing::info!(method, code = ?s.code(), message = s.message(), "request refused");
        }
        result
    }

    /// Registers a service-specific collector (e.g. a batch-size histogram).
    pub fn register(&self, c: Box<dyn prometheus::core::Collector>) -> anyhow::Result<()> {
        Ok(self.registry.register(c)?)
    }

    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        // Encoding our own registry into a Vec cannot fail in practice; an empty
        // page is the harmless fallback.
        let _ = prometheus::TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }

    /// Serves `/metrics` until the process ends.
    pub async fn serve(self, addr: SocketAddr) -> anyhow::Result<SocketAddr> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let bound = listener.local_addr()?;
        let app = axum::Router::new().route(
            "/metrics",
            axum::routing::get(move || {
                let m = self.clone();
                async move { m.render() }
            }),
        );
        tokio::spawn(async move {
            if let Err(err) = axum::serve(listener, app).await {
                tracing::error!(%err, "metrics endpoint stopped");
            }
        });
        Ok(bound)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observed_requests_show_up_in_the_text_format() -> anyhow::Result<()> {
        let m = Metrics::new("test")?;
        m.observe("Analyze", tonic::Code::Ok, Duration::from_millis(5));
        m.observe(
            "Analyze",
            tonic::Code::InvalidArgument,
            Duration::from_millis(1),
        );
        let text = m.render();
        assert!(
            text.contains(r#"empathy_requests_total{code="Ok",method="Analyze",service="test"} 1"#),
            "{text}"
        );
        assert!(text.contains(r#"code="InvalidArgument""#), "{text}");
        assert!(text.contains("empathy_request_seconds_bucket"), "{text}");
        Ok(())
    }
}
