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

    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(file_descriptor_set)?;
    Ok(())
}
