//! Generates the `faultline.v1` verdict API (messages, tonic server and client) from
//! `proto/faultline/v1/verdicts.proto` without a system `protoc`: `protox` parses the
//! file into a `FileDescriptorSet` in pure Rust, and `tonic-prost-build` generates the
//! code from that set (see the comment in Cargo.toml).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    const PROTO: &str = "proto/faultline/v1/verdicts.proto";
    println!("cargo:rerun-if-changed={PROTO}");
    let fds = protox::compile([PROTO], ["proto"])?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_fds(fds)?;
    Ok(())
}
