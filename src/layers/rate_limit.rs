//! Per-principal request rate limits. Over the limit a call is refused with
//! RESOURCE_EXHAUSTED, a google.rpc RetryInfo and `retry-after` metadata,
//! before its body is decoded. (Message rates for publishing are checked by
//! the publish handlers, where the batch size is known.)

use crate::{
    edge::{CallContext, RateLimits, Refusal},
    error::GatewayError,
    metrics,
};
use std::{
    sync::Arc,
    task::{Context, Poll},
};
use tonic::codegen::http;
use tower::{Layer, Service};

/// Applies the request limits of [`RateLimits`] to identified principals.
#[derive(Debug, Clone)]
pub struct RateLimitLayer {
    limits: Arc<RateLimits>,
}

impl RateLimitLayer {
    /// A layer sharing `limits` with the publish handlers.
    pub fn new(limits: Arc<RateLimits>) -> Self {
        Self { limits }
    }
}

impl<S> Layer<S> for RateLimitLayer {
    type Service = RateLimitService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimitService {
            inner,
            limits: Arc::clone(&self.limits),
        }
    }
}

/// The service [`RateLimitLayer`] wraps around the gateway.
#[derive(Debug, Clone)]
pub struct RateLimitService<S> {
    inner: S,
    limits: Arc<RateLimits>,
}

impl<S, B, R> Service<http::Request<B>> for RateLimitService<S>
where
    S: Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
    R: Default + Send + 'static,
{
    type Response = http::Response<R>;
    type Error = S::Error;
    type Future = futures_util::future::Either<
        S::Future,
        futures_util::future::Ready<Result<Self::Response, Self::Error>>,
    >;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let refusal = CallContext::of(request.extensions())
            .and_then(|context| context.principal())
            .and_then(|principal| self.limits.admit_request(principal).err());
        match refusal {
            None => futures_util::future::Either::Left(self.inner.call(request)),
            Some(refusal) => {
                metrics::count_rate_limited("requests");
                let retry_after = match refusal {
                    Refusal::RetryAfter(wait) => wait,
                    // A single request never exceeds a burst of at least 1.
                    Refusal::LargerThanBurst(_) => std::time::Duration::from_secs(1),
                };
                let status = GatewayError::RateLimited {
                    what: "requests",
                    retry_after,
                }
                .into_status();
                futures_util::future::Either::Right(futures_util::future::ready(Ok(
                    status.into_http()
                )))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::edge::{ApiKeys, Identity, Principal, RateSpec, RequestId};
    use std::convert::Infallible;
    use tonic::{Code, Status};
    use tonic_types::StatusExt;
    use tower::{ServiceExt, service_fn};

    async fn call(limits: &Arc<RateLimits>, principal: Option<&str>) -> Result<(), Status> {
        let service = RateLimitLayer::new(Arc::clone(limits)).layer(service_fn(
            |_request: http::Request<()>| async { Ok::<_, Infallible>(http::Response::new(())) },
        ));
        let mut request = http::Request::new(());
        let context = CallContext::new(std::time::Instant::now(), RequestId::generate(), None);
        if let Some(address) = principal {
            context.set_principal(Arc::new(Principal::unrestricted(Identity::Peer(
                address.into(),
            ))));
        }
        request.extensions_mut().insert(Arc::new(context));
        let response = service.oneshot(request).await.expect("infallible");
        Status::from_header_map(response.headers()).map_or(Ok(()), Err)
    }

    #[tokio::test]
    async fn over_the_limit_comes_back_with_retry_info_and_retry_after() {
        let limits = Arc::new(RateLimits::new(
            RateSpec::new(1, Some(2)),
            None,
            &ApiKeys::default(),
        ));
        assert!(call(&limits, Some("a")).await.is_ok());
        assert!(call(&limits, Some("a")).await.is_ok());
        let refused = call(&limits, Some("a")).await.expect_err("over the limit");
        assert_eq!(refused.code(), Code::ResourceExhausted);
        let retry = refused
            .get_error_details()
            .retry_info()
            .cloned()
            .expect("RetryInfo");
        let delay = retry.retry_delay.expect("a delay");
        assert!(
            delay.as_millis() > 0 && delay.as_millis() <= 1000,
            "{delay:?}"
        );
        assert_eq!(
            refused
                .metadata()
                .get("retry-after")
                .map(|v| v.to_str().ok()),
            Some(Some("1"))
        );
        assert!(
            call(&limits, Some("b")).await.is_ok(),
            "other principals are not affected"
        );
        assert!(
            call(&limits, None).await.is_ok(),
            "open methods are not limited"
        );
    }
}
