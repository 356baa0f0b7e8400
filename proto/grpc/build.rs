//! Generates only the tonic stubs of empathy.v1: every message is declared external and
//! resolves to `empathy_proto::v1`, so the two crates share one set of types.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = [
        "../empathy/v1/common.proto",
        "../empathy/v1/encoder.proto",
        "../empathy/v1/situation.proto",
        "../empathy/v1/empathy.proto",
        "../empathy/v1/trainer.proto",
    ];
    for p in protos {
        println!("cargo:rerun-if-changed={p}");
    }
    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    tonic_prost_build::configure()
        .extern_path(".empathy.v1", "::empathy_proto::v1")
        .compile_with_config(config, &protos, &[".."])?;
    Ok(())
}
