//! Generates the plain prost messages of empathy.v1 (no tonic), plus serde impls that
//! follow protobuf's canonical JSON mapping (for `empathy analyze --json`). The gRPC
//! stubs are generated apart, in `proto/grpc`, so plugins never compile the gRPC stack.
use std::{env, path::PathBuf};

include!("protos.rs");

/// Messages whose bytes fields carry media, generated as `bytes::Bytes` (cheap to share).
const MEDIA: [&str; 3] = [
    ".empathy.v1.AnalyzeRequest",
    ".empathy.v1.ExtraInput",
    ".empathy.v1.EncodeInput",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = PROTOS;
    for p in protos {
        println!("cargo:rerun-if-changed={p}");
    }
    println!("cargo:rerun-if-changed=protos.rs");
    let out = PathBuf::from(env::var("OUT_DIR")?);
    let descriptors = out.join("empathy_descriptor.bin");

    let mut config = prost_build::Config::new();
    // No system protoc needed: the vendored one ships inside a crate.
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    // Media as `bytes::Bytes`: decoding slices tonic's receive buffer, and handing a
    // clip to an encoder (or keeping it for a retry) shares it instead of copying.
    config.bytes(MEDIA);
    config
        .file_descriptor_set_path(&descriptors)
        .compile_protos(&protos, &["."])?;

    let descriptor_bytes = std::fs::read(&descriptors)?;
    pbjson_build::Builder::new()
        .register_descriptors(&descriptor_bytes)?
        .build(&[".empathy.v1"])?;
    Ok(())
}
