//! Generated protobuf and gRPC code for package `lms.v1`; the only place it is included.

#![allow(missing_docs, unreachable_pub, clippy::all, clippy::pedantic)]

tonic::include_proto!("lms.v1");

/// Generated servers, whose requests go through [`crate::api::codec::CheckedCodec`].
mod servers {
    include!(concat!(env!("OUT_DIR"), "/server/lms.v1.rs"));
}
pub use servers::*;

/// Encoded file descriptor set of every `lms.v1` proto, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("lms_descriptor");
