//! What the examples read from the environment and the command line.

// Each example uses a part of this module.
#![allow(dead_code)]

use std::path::PathBuf;

use empathy_situation::llama::WeightFormat;

/// `EMPATHY_ASSETS`, or `assets` in the working directory.
pub fn assets_dir() -> PathBuf {
    PathBuf::from(std::env::var("EMPATHY_ASSETS").unwrap_or_else(|_| "assets".into()))
}

/// `WEIGHTS=gguf|f32|q4` as the service's `--weights`; the service's default otherwise.
pub fn weights_arg() -> WeightFormat {
    match std::env::var("WEIGHTS").as_deref() {
        Ok("gguf") => WeightFormat::Gguf,
        Ok("f32") => WeightFormat::F32,
        Ok("q4") => WeightFormat::Q4,
        _ => WeightFormat::Q4Amx,
    }
}

/// The CPU's model and the SIMD flags that decide matmul speed, from /proc/cpuinfo
/// (benchmarks print it beside their numbers: the same machine kind comes with
/// different CPUs).
pub fn cpu_model() -> String {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let field = |name: &str| {
        info.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_default()
    };
    let flags = field("flags");
    let simd: Vec<&str> = flags
        .split_whitespace()
        .filter(|f| {
            [
                "avx2",
                "fma",
                "avx512f",
                "avx512_bf16",
                "avx512_vnni",
                "amx_bf16",
            ]
            .contains(f)
        })
        .collect();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!(
        "{} ({cores} threads available; {})",
        field("model name"),
        simd.join(" ")
    )
}

/// The number after `name` on the command line, or `default`.
pub fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}
