//! Stamps each request with the instant it arrived, so handlers measure the
//! client's deadline (`grpc-timeout`) from the same moment the transport
//! does, not from when the body finished decoding.

use std::{
    task::{Context, Poll},
    time::Instant,
};
use tonic::codegen::http;
use tower::{Layer, Service};

/// When the request arrived; read from the request's extensions.
#[derive(Debug, Clone, Copy)]
pub struct Arrival(pub Instant);

/// Adds [`Arrival`] to every request.
#[derive(Debug, Clone, Copy, Default)]
pub struct ArrivalLayer;

impl<S> Layer<S> for ArrivalLayer {
    type Service = ArrivalService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ArrivalService { inner }
    }
}

/// The service [`ArrivalLayer`] wraps around the gateway.
#[derive(Debug, Clone)]
pub struct ArrivalService<S> {
    inner: S,
}

impl<S, B> Service<http::Request<B>> for ArrivalService<S>
where
    S: Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        request.extensions_mut().insert(Arrival(Instant::now()));
        self.inner.call(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;
    use tower::{ServiceExt, service_fn};

    #[tokio::test]
    async fn every_request_carries_its_arrival() {
        let before = Instant::now();
        let service = ArrivalLayer.layer(service_fn(|request: http::Request<()>| async move {
            Ok::<_, Infallible>(request.extensions().get::<Arrival>().copied())
        }));
        let arrival = service
            .oneshot(http::Request::new(()))
            .await
            .expect("infallible")
            .expect("stamped");
        assert!(arrival.0 >= before);
    }
}
