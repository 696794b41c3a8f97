//! A global limit on calls in progress, with load shedding: past the limit a
//! call is refused at once with RESOURCE_EXHAUSTED (and RetryInfo) instead of
//! queueing without bound. Health checks are never shed, so an overloaded
//! gateway is not mistaken for a dead one.
//!
//! A call holds its slot until its response starts: a Subscribe stream frees
//! it once the stream is open (streams are bounded by `--max-subscriptions`).

use crate::{edge::method, error::GatewayError, metrics};
use futures_util::future::BoxFuture;
use std::{
    sync::Arc,
    task::{Context, Poll},
};
use tokio::sync::Semaphore;
use tonic::codegen::http;
use tower::{Layer, Service};

/// Sheds calls beyond `limit` in progress across all connections.
#[derive(Debug, Clone)]
pub struct LoadShedLayer {
    slots: Arc<Semaphore>,
    limit: usize,
}

impl LoadShedLayer {
    /// At most `limit` calls in progress at once.
    pub fn new(limit: usize) -> Self {
        let limit = limit.clamp(1, Semaphore::MAX_PERMITS);
        Self {
            slots: Arc::new(Semaphore::new(limit)),
            limit,
        }
    }
}

impl<S> Layer<S> for LoadShedLayer {
    type Service = LoadShedService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        LoadShedService {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service [`LoadShedLayer`] wraps around the gateway.
#[derive(Debug, Clone)]
pub struct LoadShedService<S> {
    inner: S,
    layer: LoadShedLayer,
}

impl<S, B, R> Service<http::Request<B>> for LoadShedService<S>
where
    S: Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    R: Default + Send + 'static,
{
    type Response = http::Response<R>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        if method::is_health(request.uri().path()) {
            return Box::pin(self.inner.call(request));
        }
        match Arc::clone(&self.layer.slots).try_acquire_owned() {
            Ok(slot) => {
                let call = self.inner.call(request);
                Box::pin(async move {
                    let response = call.await;
                    drop(slot);
                    response
                })
            }
            Err(_) => {
                metrics::count_load_shed();
                let status = GatewayError::Overloaded {
                    limit: self.layer.limit,
                }
                .into_status();
                Box::pin(async move { Ok(status.into_http()) })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;
    use tokio::sync::oneshot;
    use tonic::{Code, Status};
    use tower::{ServiceExt, service_fn};

    #[tokio::test]
    async fn calls_past_the_limit_are_shed_until_a_slot_frees() {
        let (release, released) = oneshot::channel::<()>();
        let released = Arc::new(tokio::sync::Mutex::new(Some(released)));
        let layer = LoadShedLayer::new(1);
        let service = layer.layer(service_fn(move |_request: http::Request<()>| {
            let released = Arc::clone(&released);
            async move {
                // The first call waits for the test's signal; later ones answer at once.
                let first = released.lock().await.take();
                if let Some(wait) = first {
                    let _ = wait.await;
                }
                Ok::<_, Infallible>(http::Response::new(()))
            }
        }));
        let request = |path: &str| {
            http::Request::builder()
                .uri(path)
                .body(())
                .expect("request")
        };
        let busy = tokio::spawn(
            service
                .clone()
                .oneshot(request("/iggy.gateway.v1.AdminService/Ping")),
        );
        // Wait until the first call holds the only slot.
        while layer.slots.available_permits() > 0 {
            tokio::task::yield_now().await;
        }
        let shed = service
            .clone()
            .oneshot(request("/iggy.gateway.v1.AdminService/Ping"))
            .await
            .expect("infallible");
        let status = Status::from_header_map(shed.headers()).expect("shed");
        assert_eq!(status.code(), Code::ResourceExhausted);
        let health = service
            .clone()
            .oneshot(request("/grpc.health.v1.Health/Check"))
            .await
            .expect("infallible");
        assert!(
            Status::from_header_map(health.headers()).is_none(),
            "health is never shed"
        );
        let _ = release.send(());
        let first = busy.await.expect("joined").expect("infallible");
        assert!(Status::from_header_map(first.headers()).is_none());
        let after = service
            .oneshot(request("/iggy.gateway.v1.AdminService/Ping"))
            .await
            .expect("infallible");
        assert!(
            Status::from_header_map(after.headers()).is_none(),
            "the slot is free again"
        );
    }
}
