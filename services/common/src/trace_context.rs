//! W3C trace context across our gRPC calls, so one Analyze is one trace through fusion,
//! the encoders, the situation service and the trainer. A server span per call, child
//! of the caller's `traceparent` ([`TraceLayer`], stacked by `serve`), and a client span
//! per outgoing call that sends its own `traceparent` ([`propagate`]).

use std::task::{Context, Poll};

use opentelemetry::{
    global,
    propagation::{Extractor, Injector},
    trace::TraceContextExt,
};
use tracing::{Instrument, instrument::Instrumented};
use tracing_opentelemetry::OpenTelemetrySpanExt;

struct Headers<'a>(&'a http::HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

struct HeadersMut<'a>(&'a mut http::HeaderMap);

impl Injector for HeadersMut<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(key.as_bytes()),
            http::HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}

/// Which end of a call a [`Traced`] service is.
#[derive(Clone, Copy, Debug)]
enum Side {
    /// A span per served call (health probes aside), child of the caller's trace; its
    /// `trace_id` field puts the id in every log line the call writes.
    Server,
    /// A span per outgoing call, whose context goes out as `traceparent`.
    Client,
}

/// Puts every call served in a span of the caller's trace ([`Side::Server`]).
#[derive(Clone, Copy, Debug, Default)]
pub struct TraceLayer;

impl<S> tower::Layer<S> for TraceLayer {
    type Service = Traced<S>;

    fn layer(&self, inner: S) -> Traced<S> {
        Traced {
            inner,
            side: Side::Server,
        }
    }
}

/// The channel our services call each other on.
pub type TracedChannel = Traced<tonic::transport::Channel>;

/// A channel whose calls carry the current trace ([`Side::Client`]).
pub fn propagate(channel: tonic::transport::Channel) -> TracedChannel {
    Traced {
        inner: channel,
        side: Side::Client,
    }
}

#[derive(Clone, Debug)]
pub struct Traced<S> {
    inner: S,
    side: Side,
}

impl<S, B> tower::Service<http::Request<B>> for Traced<S>
where
    S: tower::Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Instrumented<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        let span = match self.side {
            Side::Server => server_span(&request),
            Side::Client => client_span(&mut request),
        };
        self.inner.call(request).instrument(span)
    }
}

fn server_span<B>(request: &http::Request<B>) -> tracing::Span {
    let path = request.uri().path();
    if path == "/health" || path.starts_with("/grpc.health.v1.") {
        return tracing::Span::none();
    }
    let span = tracing::info_span!(
        "request",
        otel.name = %path,
        otel.kind = "server",
        trace_id = tracing::field::Empty,
    );
    let parent = global::get_text_map_propagator(|p| p.extract(&Headers(request.headers())));
    // Fails only when no OpenTelemetry layer is installed: the span is then a log span.
    let _ = span.set_parent(parent);
    let trace_id = span.context().span().span_context().trace_id();
    span.record("trace_id", tracing::field::display(trace_id));
    span
}

fn client_span<B>(request: &mut http::Request<B>) -> tracing::Span {
    let span = tracing::info_span!(
        "call",
        otel.name = %request.uri().path(),
        otel.kind = "client",
    );
    let context = span.context();
    global::get_text_map_propagator(|p| {
        p.inject_context(&context, &mut HeadersMut(request.headers_mut()));
    });
    span
}
