//! The generated protobuf types and service stubs of `iggy.gateway.v1`, and
//! the codec they use (with its hand-written encoding of batch answers).

pub mod batch_answer;
pub mod batch_request;
pub mod codec;
mod scratch;
pub mod subscribe_batch;

pub use generated::*;

#[allow(missing_docs, clippy::all, clippy::pedantic)]
mod generated {
    tonic::include_proto!("iggy.gateway.v1");
}

/// The encoded descriptors of every gateway proto file, for reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/gateway_descriptor.bin"));
