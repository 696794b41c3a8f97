//! A client as a service mesh or an L7 balancer makes one: every call goes
//! to any of the replicas, addressed by a service name.

use std::net::SocketAddr;
use tonic::transport::{Channel, Endpoint, Uri};

/// The name the balanced channel sends as `:authority`, as a mesh does.
pub const SERVICE_NAME: &str = "http://iggy-grpc.messaging.svc.cluster.local:50051";

/// A channel that balances each call across `replicas` (tonic's balancer:
/// the less loaded of two picked at random, so consecutive calls spread
/// over all of them), sending [`SERVICE_NAME`] as the authority.
pub fn balanced(replicas: &[SocketAddr]) -> Channel {
    let origin: Uri = SERVICE_NAME.parse().expect("service name");
    Channel::balance_list(replicas.iter().map(|address| {
        Endpoint::from_shared(format!("http://{address}"))
            .expect("uri")
            .origin(origin.clone())
    }))
}
