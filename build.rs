//! Compiles the gateway's protobuf contract without a system `protoc`:
//! protox parses `proto/`, tonic-prost-build generates the Rust code, and the
//! encoded descriptor set is written for gRPC reflection and the HTTP/JSON
//! routes.

use std::{env, fs, io, path::PathBuf};

const PROTOS: &[&str] = &[
    "iggy/gateway/v1/common.proto",
    "iggy/gateway/v1/events.proto",
    "iggy/gateway/v1/messaging.proto",
    "iggy/gateway/v1/admin.proto",
];

fn main() -> io::Result<()> {
    println!("cargo:rerun-if-changed=proto");
    let mut compiler = protox::Compiler::new(["proto"]).map_err(io::Error::other)?;
    compiler
        .include_imports(true)
        .include_source_info(true)
        .open_files(PROTOS)
        .map_err(io::Error::other)?;
    let descriptors = compiler.file_descriptor_set();

    let out_dir = PathBuf::from(env::var("OUT_DIR").map_err(io::Error::other)?);
    // Encoded by protox itself, so the `google.api.http` options (extensions,
    // which prost's descriptor types drop) reach the HTTP/JSON routes.
    fs::write(
        out_dir.join("gateway_descriptor.bin"),
        compiler.encode_file_descriptor_set(),
    )?;

    tonic_prost_build::configure()
        // Payloads, keys and byte headers are `bytes::Bytes`: no copy from the
        // gRPC frame to the Iggy message.
        .bytes(".iggy.gateway.v1")
        // Messages are encoded into buffers reserved at their exact size.
        .codec_path("crate::proto::codec::PresizedCodec")
        .compile_fds(descriptors)
}
