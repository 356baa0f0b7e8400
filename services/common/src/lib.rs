//! What every empathy service shares: the server bootstrap (health, reflection,
//! limits, an HTTP door, graceful shutdown), logs, Prometheus metrics, error-to-status mapping, and
//! which language a text is in.

pub mod auth;
pub mod budget;
pub mod compute;
pub mod deadline;
pub mod feedback;
pub mod identity;
pub mod in_process;
pub mod language;
pub mod launch;
pub mod metrics;
pub mod server;
pub mod status;
pub mod telemetry;
pub mod tls;
pub mod trace_context;

pub use compute::{compute_threads, configure_compute, keep_freed_memory, run_with_compute};
pub use identity::Identity;
pub use metrics::Metrics;
pub use prometheus;
pub use server::{HttpDoor, ServeOptions, serve, serve_with_http};
