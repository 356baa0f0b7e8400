//! Server bootstrap shared by every service: bind, health, reflection, metrics,
//! limits, an optional HTTP door, and a graceful shutdown on Ctrl-C or SIGTERM.

use std::{net::SocketAddr, time::Duration};

use tonic::{service::Routes, transport::server::TcpIncoming};
use tonic_health::ServingStatus;

use crate::{
    Metrics,
    auth::AuthLayer,
    budget::BudgetLayer,
    in_process::{self, InProcess},
    tls::TlsOptions,
    trace_context::TraceLayer,
};

/// Flags every service takes.
#[derive(clap::Args, Debug, Clone)]
pub struct ServeOptions {
    /// gRPC address; port 0 picks a free port (the bound one is printed).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
    /// Prometheus `/metrics` address (HTTP); unset = no metrics endpoint.
    #[arg(long)]
    pub metrics_listen: Option<SocketAddr>,
    /// Largest request message accepted, in bytes.
    #[arg(long, default_value_t = 32 * 1024 * 1024)]
    pub max_message_bytes: usize,
    /// Concurrent requests served per connection before callers wait.
    #[arg(long, default_value_t = 256)]
    pub concurrency_per_connection: usize,
    #[command(flatten)]
    pub tls: TlsOptions,
    /// Requests in flight on this service, all connections together, before new ones
    /// get RESOURCE_EXHAUSTED (health checks are always answered).
    #[arg(long, default_value_t = 512)]
    pub max_in_flight: usize,
    /// Request bytes held by the requests in flight before new ones get
    /// RESOURCE_EXHAUSTED.
    #[arg(long, default_value_t = 256 * 1024 * 1024)]
    pub max_in_flight_bytes: usize,
    /// OTLP/gRPC collector the service's trace spans go to, e.g.
    /// http://127.0.0.1:4317; unset = none leave the process (trace ids are still made,
    /// passed on to the services called, and logged).
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,
    /// Serve gRPC server reflection (lists and describes every service and message):
    /// handy with grpcurl, but it maps the API for anyone who can connect.
    #[arg(long)]
    pub reflection: bool,
}

/// An HTTP listener beside gRPC. `app` gets a channel into the server's own gRPC
/// stack, so an HTTP call passes the same key check, budget and handlers.
pub struct HttpDoor {
    pub listen: SocketAddr,
    pub app: Box<dyn FnOnce(InProcess) -> anyhow::Result<axum::Router> + Send>,
}

/// Serves `routes` (plus grpc.health.v1, and reflection if asked) until a shutdown
/// signal, every call passing `auth` first.
///
/// Prints one line to stdout once the port is bound, so a supervisor (`empathy up`,
/// the end-to-end tests) can learn an ephemeral port:
/// `<name> listening grpc=<addr> metrics=<addr|-> tls=<on|off> http=<addr|->`.
pub async fn serve(
    name: &str,
    opts: &ServeOptions,
    routes: Routes,
    service_names: &[&str],
    metrics: Metrics,
    auth: AuthLayer,
) -> anyhow::Result<()> {
    serve_with_http(name, opts, routes, service_names, metrics, auth, None).await
}

/// [`serve`], plus `http` if given.
pub async fn serve_with_http(
    name: &str,
    opts: &ServeOptions,
    mut routes: Routes,
    service_names: &[&str],
    metrics: Metrics,
    auth: AuthLayer,
    http: Option<HttpDoor>,
) -> anyhow::Result<()> {
    let tls = opts.tls.server(opts.listen)?;
    let listener = tokio::net::TcpListener::bind(opts.listen)
        .await
        .map_err(|e| anyhow::anyhow!("{name}: cannot listen on {}: {e}", opts.listen))?;
    let addr = listener.local_addr()?;
    let metrics_addr = match opts.metrics_listen {
        Some(a) => metrics.serve(a).await?.to_string(),
        None => "-".into(),
    };

    let (health, health_service) = tonic_health::server::health_reporter();
    for s in service_names {
        health.set_service_status(*s, ServingStatus::Serving).await;
    }
    // Reflection in both protocol versions: grpcurl speaks v1, while grpcio-reflection's
    // client and several GUI tools still ask v1alpha (and get UNIMPLEMENTED without it).
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(empathy_proto::v1::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    routes = routes.add_service(health_service);
    if opts.reflection {
        routes = routes
            .add_service(reflection().build_v1()?)
            .add_service(reflection().build_v1alpha()?);
    }
    let budget = BudgetLayer::new(opts.max_in_flight, opts.max_in_flight_bytes);

    let http_addr = match http {
        Some(door) => {
            let channel = in_process::channel(routes.clone(), auth.clone(), budget.clone());
            serve_http(name, door, tls.is_some(), channel)
                .await?
                .to_string()
        }
        None => "-".into(),
    };
    let tls_on = if tls.is_some() { "on" } else { "off" };
    println!("{name} listening grpc={addr} metrics={metrics_addr} tls={tls_on} http={http_addr}");
    tracing::info!(%addr, metrics = %metrics_addr, tls = tls_on, http = %http_addr, "{name} serving");

    let names: Vec<String> = service_names.iter().map(|s| s.to_string()).collect();
    let shutdown = async move {
        shutdown_signal().await;
        tracing::info!("shutting down: finishing in-flight requests");
        // Tell load balancers to stop sending before the listener closes.
        for s in &names {
            health
                .set_service_status(s, ServingStatus::NotServing)
                .await;
        }
    };

    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = tls {
        builder = builder.tls_config(tls)?;
    }
    builder
        .concurrency_limit_per_connection(opts.concurrency_per_connection)
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .layer(TraceLayer)
        .layer(auth)
        // Inside auth: callers without a key cannot use up the budget.
        .layer(budget)
        .add_routes(routes)
        // Without TCP_NODELAY, small gRPC replies wait out delayed ACKs (~40 ms each).
        .serve_with_incoming_shutdown(
            TcpIncoming::from(listener).with_nodelay(Some(true)),
            shutdown,
        )
        .await?;
    tracing::info!("{name} stopped");
    Ok(())
}

/// Binds `door` and serves it in the background until a shutdown signal. Without TLS
/// on it, an HTTP door is for this machine only when the gRPC side has TLS: keys must
/// not cross a network in plaintext through the back door.
async fn serve_http(
    name: &str,
    door: HttpDoor,
    grpc_tls: bool,
    channel: InProcess,
) -> anyhow::Result<SocketAddr> {
    if grpc_tls && !door.listen.ip().is_loopback() {
        anyhow::bail!(
            "{name}: the HTTP door has no TLS of its own, so with TLS on it listens on \
             loopback only (got {}); put a TLS-terminating proxy in front of it",
            door.listen
        );
    }
    let listener = tokio::net::TcpListener::bind(door.listen)
        .await
        .map_err(|e| anyhow::anyhow!("{name}: cannot listen for HTTP on {}: {e}", door.listen))?;
    let addr = listener.local_addr()?;
    let app = (door.app)(channel)?.layer(TraceLayer);
    tokio::spawn(async move {
        let server = axum::serve(listener, app).with_graceful_shutdown(shutdown_signal());
        if let Err(err) = server.await {
            tracing::error!(%err, "the HTTP door stopped");
        }
    });
    Ok(addr)
}

/// Resolves on Ctrl-C or, on Unix, SIGTERM (Ctrl-C only if SIGTERM cannot be
/// watched).
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {},
                    _ = term.recv() => {},
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
