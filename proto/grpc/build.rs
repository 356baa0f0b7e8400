//! Generates only the tonic stubs of empathy.v1: every message is declared external and
//! resolves to `empathy_proto::v1`, so the two crates share one set of types.

include!("../protos.rs");

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = PROTOS.map(|p| format!("../{p}"));
    for p in &protos {
        println!("cargo:rerun-if-changed={p}");
    }
    println!("cargo:rerun-if-changed=../protos.rs");
    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    tonic_prost_build::configure()
        .extern_path(".empathy.v1", "::empathy_proto::v1")
        .compile_with_config(config, &protos, &["..".to_string()])?;
    Ok(())
}
