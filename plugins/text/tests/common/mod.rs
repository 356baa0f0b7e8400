//! Locating the real model for tests.

use std::path::PathBuf;

/// `$EMPATHY_ASSETS`, else `<workspace>/assets`.
pub fn assets_dir() -> PathBuf {
    std::env::var_os("EMPATHY_ASSETS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../assets"))
}

/// The MiniLM directory; panics (failing the test) when it is missing.
pub fn model_dir() -> PathBuf {
    model_dir_of("all-MiniLM-L6-v2")
}

/// `<assets>/text/<name>`; panics (failing the test) when it is missing.
pub fn model_dir_of(name: &str) -> PathBuf {
    let dir = assets_dir().join("text").join(name);
    assert!(
        dir.join("model.safetensors").is_file(),
        "text model not found at {}: run `empathy assets fetch` (or set EMPATHY_ASSETS)",
        dir.display()
    );
    dir
}
