//! Server reflection answers in both protocol versions, as stock clients ask: v1
//! (grpcurl) and v1alpha (grpcio-reflection's client and several GUI tools). Each lists
//! the services and describes them, so a client can be made without our proto files.
//! Only when asked for (`--reflection`): it maps the API for anyone who can connect.

mod support;

use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::Channel;

/// An async fn asking reflection protocol `$v` (a module of `tonic_reflection::pb`) to
/// list the services and for the file that defines `symbol`: (service names, files).
macro_rules! reflection_client {
    ($name:ident, $v:ident) => {
        async fn $name(channel: Channel, symbol: &str) -> anyhow::Result<(Vec<String>, usize)> {
            use tonic_reflection::pb::$v::server_reflection_request::MessageRequest;
            use tonic_reflection::pb::$v::server_reflection_response::MessageResponse;
            use tonic_reflection::pb::$v::{ServerReflectionRequest, ServerReflectionResponse};
            let path = concat!(
                "/grpc.reflection.",
                stringify!($v),
                ".ServerReflection/ServerReflectionInfo"
            );
            let requests = [
                MessageRequest::ListServices(String::new()),
                MessageRequest::FileContainingSymbol(symbol.to_string()),
            ]
            .map(|m| ServerReflectionRequest {
                host: String::new(),
                message_request: Some(m),
            });
            let mut grpc = tonic::client::Grpc::new(channel);
            grpc.ready().await?;
            let codec =
                tonic_prost::ProstCodec::<ServerReflectionRequest, ServerReflectionResponse>::default();
            let mut answers = grpc
                .streaming(
                    tonic::Request::new(tokio_stream::iter(requests)),
                    PathAndQuery::from_static(path),
                    codec,
                )
                .await?
                .into_inner();
            let (mut services, mut files) = (Vec::new(), 0);
            while let Some(answer) = answers.message().await? {
                match answer.message_response {
                    Some(MessageResponse::ListServicesResponse(list)) => {
                        services.extend(list.service.into_iter().map(|s| s.name))
                    }
                    Some(MessageResponse::FileDescriptorResponse(found)) => {
                        files += found.file_descriptor_proto.len()
                    }
                    other => anyhow::bail!("unexpected reflection answer: {other:?}"),
                }
            }
            Ok((services, files))
        }
    };
}

reflection_client!(reflect_v1, v1);
reflection_client!(reflect_v1alpha, v1alpha);

#[tokio::test]
async fn reflection_lists_and_describes_the_services_in_v1_and_v1alpha() -> anyhow::Result<()> {
    let encoder = support::start_encoder(&["--reflection"]).await?;
    let channel = Channel::from_shared(encoder.url())?.connect().await?;
    for (version, (services, files)) in [
        (
            "v1",
            reflect_v1(channel.clone(), "empathy.v1.EncoderService").await?,
        ),
        (
            "v1alpha",
            reflect_v1alpha(channel.clone(), "empathy.v1.EncoderService").await?,
        ),
    ] {
        for service in ["empathy.v1.EncoderService", "grpc.health.v1.Health"] {
            assert!(
                services.iter().any(|s| s == service),
                "{version}: {service} not listed in {services:?}"
            );
        }
        assert!(
            files > 0,
            "{version}: no file describes empathy.v1.EncoderService"
        );
    }
    Ok(())
}

#[tokio::test]
async fn reflection_is_off_unless_asked_for() -> anyhow::Result<()> {
    let encoder = support::start_encoder(&[]).await?;
    let channel = Channel::from_shared(encoder.url())?.connect().await?;
    for result in [
        reflect_v1(channel.clone(), "empathy.v1.EncoderService").await,
        reflect_v1alpha(channel, "empathy.v1.EncoderService").await,
    ] {
        let code = result
            .err()
            .and_then(|e| e.downcast_ref::<tonic::Status>().map(tonic::Status::code));
        assert_eq!(code, Some(tonic::Code::Unimplemented));
    }
    Ok(())
}
