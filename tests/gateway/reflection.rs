//! The contract as a client discovers it: reflection v1 and v1alpha list and
//! describe the gateway's services.

use crate::support::{Env, TestBody};
use tokio_stream::StreamExt;
use tonic_reflection::pb::{v1, v1alpha};

pub fn tests() -> Vec<(&'static str, TestBody)> {
    vec![
        ("reflection::v1_lists_and_describes_the_services", |env| {
            Box::pin(reflection_v1(env))
        }),
        ("reflection::v1alpha_lists_the_services", |env| {
            Box::pin(reflection_v1alpha(env))
        }),
    ]
}

const EXPECTED: [&str; 5] = [
    "iggy.gateway.v1.MessagingService",
    "iggy.gateway.v1.AdminService",
    "grpc.health.v1.Health",
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
];

async fn reflection_v1(env: Env) {
    let gateway = env.gateway().await;
    let mut client = v1::server_reflection_client::ServerReflectionClient::new(gateway.channel());
    let requests = tokio_stream::iter([
        v1::ServerReflectionRequest {
            host: String::new(),
            message_request: Some(v1::server_reflection_request::MessageRequest::ListServices(
                String::new(),
            )),
        },
        v1::ServerReflectionRequest {
            host: String::new(),
            message_request: Some(
                v1::server_reflection_request::MessageRequest::FileContainingSymbol(
                    "iggy.gateway.v1.MessagingService".into(),
                ),
            ),
        },
    ]);
    let mut responses = client
        .server_reflection_info(requests)
        .await
        .expect("reflection")
        .into_inner();

    let listed = responses.next().await.expect("list answer").expect("ok");
    let Some(v1::server_reflection_response::MessageResponse::ListServicesResponse(list)) =
        listed.message_response
    else {
        panic!("expected a service list, got {listed:?}");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for service in EXPECTED {
        assert!(
            names.iter().any(|name| name == service),
            "{service} missing from {names:?}"
        );
    }

    let described = responses.next().await.expect("file answer").expect("ok");
    let Some(v1::server_reflection_response::MessageResponse::FileDescriptorResponse(files)) =
        described.message_response
    else {
        panic!("expected descriptors, got {described:?}");
    };
    let descriptors: Vec<prost_types::FileDescriptorProto> = files
        .file_descriptor_proto
        .iter()
        .map(|bytes| prost::Message::decode(bytes.as_slice()).expect("descriptor"))
        .collect();
    let messaging = descriptors
        .iter()
        .flat_map(|file| file.service.iter())
        .find(|service| service.name() == "MessagingService")
        .expect("MessagingService descriptor");
    let methods: Vec<&str> = messaging.method.iter().map(|m| m.name()).collect();
    for method in ["Publish", "PublishBatch", "Subscribe", "Poll", "Ack"] {
        assert!(
            methods.contains(&method),
            "{method} missing from {methods:?}"
        );
    }
}

async fn reflection_v1alpha(env: Env) {
    let gateway = env.gateway().await;
    let mut client =
        v1alpha::server_reflection_client::ServerReflectionClient::new(gateway.channel());
    let request = v1alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(
            v1alpha::server_reflection_request::MessageRequest::ListServices(String::new()),
        ),
    };
    let mut responses = client
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .expect("reflection")
        .into_inner();
    let listed = responses.next().await.expect("answer").expect("ok");
    let Some(v1alpha::server_reflection_response::MessageResponse::ListServicesResponse(list)) =
        listed.message_response
    else {
        panic!("expected a service list, got {listed:?}");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for service in EXPECTED {
        assert!(
            names.iter().any(|name| name == service),
            "{service} missing from {names:?}"
        );
    }
}

/// The services reflection v1 lists on `channel` (no credentials sent).
pub async fn list_services_v1(channel: tonic::transport::Channel) -> Vec<String> {
    let mut client = v1::server_reflection_client::ServerReflectionClient::new(channel);
    let requests = tokio_stream::iter([v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(v1::server_reflection_request::MessageRequest::ListServices(
            String::new(),
        )),
    }]);
    let mut responses = client
        .server_reflection_info(requests)
        .await
        .expect("reflection")
        .into_inner();
    let listed = responses.next().await.expect("list answer").expect("ok");
    match listed.message_response {
        Some(v1::server_reflection_response::MessageResponse::ListServicesResponse(list)) => {
            list.service.into_iter().map(|s| s.name).collect()
        }
        other => panic!("expected a service list, got {other:?}"),
    }
}
