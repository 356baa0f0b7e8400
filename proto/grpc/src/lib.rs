//! The empathy.v1 gRPC API for services and clients: the tonic stubs
//! (`empathy_service_client`, `encoder_service_server`, ...) beside every message of
//! `empathy_proto::v1`, so a service imports the whole API from one path.

#[allow(clippy::all, clippy::pedantic)]
pub mod v1 {
    pub use empathy_proto::v1::*;

    tonic::include_proto!("empathy.v1");
}
