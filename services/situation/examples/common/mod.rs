//! What the examples read from the environment.

use std::path::PathBuf;

use empathy_situation::llama::WeightFormat;

/// `EMPATHY_ASSETS`, or `assets` in the working directory.
pub fn assets_dir() -> PathBuf {
    PathBuf::from(std::env::var("EMPATHY_ASSETS").unwrap_or_else(|_| "assets".into()))
}

/// `WEIGHTS=gguf` keeps the Q4_1 blocks; the default dequantizes to f32.
pub fn weights_arg() -> WeightFormat {
    match std::env::var("WEIGHTS").as_deref() {
        Ok("gguf") => WeightFormat::Gguf,
        _ => WeightFormat::F32,
    }
}
