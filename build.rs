//! Compiles `proto/` with protox (pure Rust; no system `protoc`) and generates tonic code.

use std::{env, fs, path::PathBuf};

use prost::Message as _;

const PROTO_ROOT: &str = "proto";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed={PROTO_ROOT}");
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);

    let mut files = Vec::new();
    for entry in fs::read_dir("proto/lms/v1")? {
        let path = entry?.path();
        if path
            .extension()
            .is_some_and(|extension| extension == "proto")
        {
            let relative = path
                .strip_prefix(PROTO_ROOT)?
                .to_string_lossy()
                .into_owned();
            files.push(relative);
        }
    }
    files.sort();

    let file_descriptor_set = protox::compile(&files, [PROTO_ROOT])?;
    // Consumed by tonic-reflection through `include_file_descriptor_set!("lms_descriptor")`.
    fs::write(
        out_dir.join("lms_descriptor.bin"),
        file_descriptor_set.encode_to_vec(),
    )?;

    // Messages (each with its proto name, `prost::Name`) and clients, with tonic's prost codec.
    let mut messages = prost_build::Config::new();
    messages.enable_type_names();
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(false)
        .compile_fds_with_config(file_descriptor_set.clone(), messages)?;
    // Servers, apart, over the same messages: their requests are decoded by the checking codec
    // (`src/api/codec.rs`), which refuses control characters in strings before any handler runs.
    let server_dir = out_dir.join("server");
    fs::create_dir_all(&server_dir)?;
    tonic_prost_build::configure()
        .build_client(false)
        .build_server(true)
        .extern_path(".lms.v1", "crate::pb")
        .codec_path("crate::api::codec::CheckedCodec")
        .out_dir(&server_dir)
        .compile_fds(file_descriptor_set)?;
    Ok(())
}
