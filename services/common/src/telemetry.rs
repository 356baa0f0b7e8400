//! Structured logs: human-readable by default, JSON with `EMPATHY_LOG_FORMAT=json`,
//! filtered by `RUST_LOG` (default `info`). Logs go to stderr so that stdout stays
//! free for the one line a service prints when it is ready.

use tracing_subscriber::{EnvFilter, fmt};

pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let json = std::env::var("EMPATHY_LOG_FORMAT").is_ok_and(|v| v == "json");
    let builder = fmt().with_env_filter(filter).with_writer(std::io::stderr);
    // A second init (e.g. in tests) is harmless: keep the first subscriber.
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}
