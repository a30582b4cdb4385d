//! Compiles `proto/*.proto` with `protox` (pure Rust, no system `protoc`)
//! and generates Rust code with `tonic-prost-build`. gRPC clients and
//! servers are generated only when the `grpc` feature is enabled.

use std::env;
use std::path::PathBuf;

const PROTOS: &[&str] = &[
    "eraftpb.proto",
    "metapb.proto",
    "errorpb.proto",
    "kvrpcpb.proto",
    "raft_cmdpb.proto",
    "raft_serverpb.proto",
    "coprocessor.proto",
    "schedulerpb.proto",
    "tinykvpb.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?).join("proto");
    println!("cargo:rerun-if-changed={}", proto_dir.display());
    for file in PROTOS {
        println!("cargo:rerun-if-changed={}", proto_dir.join(file).display());
    }
    println!("cargo:rerun-if-changed=build.rs");

    let grpc = env::var_os("CARGO_FEATURE_GRPC").is_some();

    let fds = protox::compile(PROTOS, [&proto_dir])?;
    tonic_prost_build::configure().build_client(grpc).build_server(grpc).compile_fds(fds)?;

    // `tinykvpb` holds only a service, so without `grpc` nothing is generated
    // for it; leave an empty file so the module still exists.
    if !grpc {
        let out = PathBuf::from(env::var("OUT_DIR")?).join("tinykvpb.rs");
        std::fs::write(out, "// The TinyKv service is generated with the `grpc` feature.\n")?;
    }
    Ok(())
}
