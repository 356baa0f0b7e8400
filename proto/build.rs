//! Generates the Rust types and tonic stubs for empathy.v1, plus serde impls that follow
//! protobuf's canonical JSON mapping (for `empathy analyze --json`).
use std::{env, path::PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = [
        "empathy/v1/common.proto",
        "empathy/v1/encoder.proto",
        "empathy/v1/situation.proto",
        "empathy/v1/empathy.proto",
        "empathy/v1/trainer.proto",
    ];
    for p in protos {
        println!("cargo:rerun-if-changed={p}");
    }
    // No system protoc needed: the vendored one ships inside a crate.
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    let out = PathBuf::from(env::var("OUT_DIR")?);
    let descriptors = out.join("empathy_descriptor.bin");

    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc);
    tonic_prost_build::configure()
        .file_descriptor_set_path(&descriptors)
        .compile_with_config(config, &protos, &["."])?;

    let descriptor_bytes = std::fs::read(&descriptors)?;
    pbjson_build::Builder::new()
        .register_descriptors(&descriptor_bytes)?
        .build(&[".empathy.v1"])?;
    Ok(())
}
