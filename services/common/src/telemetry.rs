//! Logs and traces. Logs are human-readable by default, JSON with
//! `EMPATHY_LOG_FORMAT=json`, filtered by `RUST_LOG` (default `info`), on stderr so that
//! stdout stays free for the one line a service prints when it is ready.
//!
//! Every gRPC call is a span of an OpenTelemetry trace ([`crate::trace_context`]); its
//! trace id is in every log line the call writes. Spans leave the process only when a
//! collector is named (`--otlp-endpoint` or `OTEL_EXPORTER_OTLP_ENDPOINT`, OTLP over
//! gRPC).

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::{Resource, trace::SdkTracerProvider};
use tracing_subscriber::{
    EnvFilter, Layer, filter::LevelFilter, fmt, layer::SubscriberExt, util::SubscriberInitExt,
};

/// Flushes the spans not yet exported when the service ends.
pub struct Telemetry {
    provider: SdkTracerProvider,
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Err(err) = self.provider.shutdown() {
            eprintln!("traces: the last spans could not be exported: {err}");
        }
    }
}

/// Logs, and traces of `service` (exported to `otlp` if given). Call it inside the
/// Tokio runtime when `otlp` is set: the exporter's gRPC client needs one.
pub fn init(service: &str, otlp: Option<&str>) -> anyhow::Result<Telemetry> {
    let resource = Resource::builder()
        .with_service_name(format!("empathy-{service}"))
        .build();
    let mut provider = SdkTracerProvider::builder().with_resource(resource);
    if let Some(endpoint) = otlp {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint)
            .build()
            .map_err(|e| anyhow::anyhow!("--otlp-endpoint {endpoint}: {e}"))?;
        provider = provider.with_batch_exporter(exporter);
    }
    let provider = provider.build();
    opentelemetry::global::set_text_map_propagator(
        opentelemetry_sdk::propagation::TraceContextPropagator::new(),
    );
    let traces = tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("empathy"))
        .with_filter(LevelFilter::INFO);

    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let json = std::env::var("EMPATHY_LOG_FORMAT").is_ok_and(|v| v == "json");
    let logs = match json {
        true => fmt::layer().json().with_writer(std::io::stderr).boxed(),
        false => fmt::layer().with_writer(std::io::stderr).boxed(),
    };
    // A second init (e.g. in tests) is harmless: keep the first subscriber.
    let _ = tracing_subscriber::registry()
        .with(logs.with_filter(filter))
        .with(traces)
        .try_init();
    if let Some(endpoint) = otlp {
        tracing::info!(%endpoint, "exporting traces over OTLP");
    }
    Ok(Telemetry { provider })
}
