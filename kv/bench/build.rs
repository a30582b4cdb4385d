//! Compiles the few etcd v3 messages the benchmark sends
//! (`proto/etcd_kv.proto`) into a tonic client, like `tinykv-proto` does
//! for TinyKV's own protocol: protox, no system `protoc`.

use std::env;
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?).join("proto");
    println!("cargo:rerun-if-changed={}", dir.join("etcd_kv.proto").display());
    println!("cargo:rerun-if-changed=build.rs");
    let fds = protox::compile(["etcd_kv.proto"], [&dir])?;
    tonic_prost_build::configure().build_client(true).build_server(false).compile_fds(fds)?;
    Ok(())
}
