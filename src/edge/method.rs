//! What each gRPC method requires of its caller, decided from the request
//! path alone (before the body is decoded).

use super::principal::Scope;
use prost::Message;
use prost_types::FileDescriptorSet;
use std::collections::HashSet;

use crate::proto::{admin_service_server, messaging_service_server};
use tonic_health::pb::health_server;
use tonic_reflection::pb::{v1, v1alpha};

/// The method `path` (`/package.Service/Method`) names on `service`.
fn method_of<'a>(path: &'a str, service: &str) -> Option<&'a str> {
    path.strip_prefix('/')?
        .strip_prefix(service)?
        .strip_prefix('/')
}

fn is_reflection(path: &str) -> bool {
    method_of(path, v1::server_reflection_server::SERVICE_NAME).is_some()
        || method_of(path, v1alpha::server_reflection_server::SERVICE_NAME).is_some()
}

/// What a method requires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone may call it (health; reflection unless closed).
    Open,
    /// Any valid key (reflection when closed; unknown methods, which then
    /// answer UNIMPLEMENTED only to authenticated callers).
    Authenticated,
    /// A key with this scope.
    Scoped(Scope),
}

/// The access `path` requires; `reflection_open` says whether reflection
/// is open to anyone.
pub fn access(path: &str, reflection_open: bool) -> Access {
    if is_health(path) {
        return Access::Open;
    }
    if is_reflection(path) {
        return if reflection_open {
            Access::Open
        } else {
            Access::Authenticated
        };
    }
    if method_of(path, admin_service_server::SERVICE_NAME).is_some() {
        return Access::Scoped(Scope::Admin);
    }
    match method_of(path, messaging_service_server::SERVICE_NAME) {
        Some("Publish" | "PublishBatch" | "PublishEvent" | "PublishEventBatch") => {
            Access::Scoped(Scope::Publish)
        }
        Some("Subscribe" | "Poll" | "Ack" | "Nack" | "ExtendAckDeadline" | "Consume") => {
            Access::Scoped(Scope::Subscribe)
        }
        _ => Access::Authenticated,
    }
}

/// Whether `path` is a health check, which load shedding never refuses.
pub fn is_health(path: &str) -> bool {
    method_of(path, health_server::SERVICE_NAME).is_some()
}

/// Every method the gateway serves, as `package.Service/Method`, read from
/// the descriptors it serves (its own, health and both reflections).
pub fn known_methods() -> HashSet<String> {
    let sets: [&[u8]; 4] = [
        crate::proto::FILE_DESCRIPTOR_SET,
        tonic_health::pb::FILE_DESCRIPTOR_SET,
        tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
        tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
    ];
    let mut methods = HashSet::new();
    for bytes in sets {
        let Ok(set) = FileDescriptorSet::decode(bytes) else {
            continue;
        };
        for file in set.file {
            let package = file.package();
            for service in &file.service {
                for method in &service.method {
                    methods.insert(format!("{package}.{}/{}", service.name(), method.name()));
                }
            }
        }
    }
    methods
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_service_area_needs_its_scope() {
        let cases = [
            ("/grpc.health.v1.Health/Check", Access::Open),
            (
                "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
                Access::Open,
            ),
            (
                "/iggy.gateway.v1.AdminService/CreateStream",
                Access::Scoped(Scope::Admin),
            ),
            (
                "/iggy.gateway.v1.MessagingService/PublishBatch",
                Access::Scoped(Scope::Publish),
            ),
            (
                "/iggy.gateway.v1.MessagingService/Ack",
                Access::Scoped(Scope::Subscribe),
            ),
            (
                "/iggy.gateway.v1.MessagingService/Nope",
                Access::Authenticated,
            ),
            ("/other.Service/Call", Access::Authenticated),
        ];
        for (path, expected) in cases {
            assert_eq!(access(path, true), expected, "{path}");
        }
        assert_eq!(
            access(
                "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
                false
            ),
            Access::Authenticated
        );
        assert!(is_health("/grpc.health.v1.Health/Watch"));
        assert!(!is_health("/iggy.gateway.v1.AdminService/Ping"));
    }

    #[test]
    fn every_served_method_is_known() {
        let known = known_methods();
        for method in [
            "iggy.gateway.v1.AdminService/CreateStream",
            "iggy.gateway.v1.MessagingService/Subscribe",
            "grpc.health.v1.Health/Watch",
            "grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
            "grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
        ] {
            assert!(known.contains(method), "{method}");
        }
        assert!(!known.contains("iggy.gateway.v1.MessagingService/Nope"));
    }
}
