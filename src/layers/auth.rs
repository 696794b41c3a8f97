//! Authentication and scopes: identifies the caller from its API key
//! (`authorization: Bearer KEY` or `x-api-key: KEY`) or its verified client
//! certificate, refuses locked-out peers, and checks the scope the method
//! needs. The principal is recorded in the call's [`CallContext`], where the
//! layers and handlers after it, and the call log, read it.
//!
//! With no keys configured authentication is off: every caller is an
//! unrestricted principal named by its certificate or its address.

use crate::{
    edge::{
        ApiKeys, CallContext, Identity, Lockout, Principal,
        method::{self, Access},
        peer,
    },
    error::GatewayError,
    metrics,
};
use futures_util::future::BoxFuture;
use std::{
    net::IpAddr,
    sync::Arc,
    task::{Context, Poll},
    time::Instant,
};
use tonic::codegen::http;
use tower::{Layer, Service};

/// Metadata key of the key, when not sent as a bearer token.
pub const API_KEY_HEADER: &str = "x-api-key";

/// What the auth layer knows: the keys, the lockout state and whether
/// reflection is open to anyone.
#[derive(Debug)]
pub struct Authenticator {
    keys: ApiKeys,
    lockout: Lockout,
    reflection_open: bool,
}

impl Authenticator {
    /// Authenticates against `keys`, locking out peers per `lockout`.
    pub fn new(keys: ApiKeys, lockout: Lockout, reflection_open: bool) -> Self {
        Self {
            keys,
            lockout,
            reflection_open,
        }
    }

    /// Whether any key is configured.
    pub fn is_enabled(&self) -> bool {
        !self.keys.is_empty()
    }

    /// The principal of `request`; `Ok(None)` for open methods.
    fn identify<B>(
        &self,
        request: &http::Request<B>,
        now: Instant,
    ) -> Result<Option<Arc<Principal>>, GatewayError> {
        let access = method::access(request.uri().path(), self.reflection_open);
        if access == Access::Open {
            return Ok(None);
        }
        let extensions = request.extensions();
        let common_name = peer::certificate_common_name(extensions);
        let ip = peer::ip(extensions);
        if self.keys.is_empty() {
            let identity = match common_name {
                Some(name) => Identity::Certificate(name),
                None => Identity::Peer(ip.map_or_else(|| "unknown".into(), |ip| ip.to_string())),
            };
            return Ok(Some(Arc::new(Principal::unrestricted(identity))));
        }
        if let Some(ip) = ip
            && let Err(retry_after) = self.lockout.check(ip, now)
        {
            return Err(GatewayError::LockedOut { retry_after });
        }
        let principal = match presented_key(request.headers())? {
            Some(secret) => self.check_secret(secret, ip, now)?,
            None => common_name
                .as_deref()
                .and_then(|name| self.keys.by_common_name(name))
                .map(|key| Arc::clone(&key.principal))
                .ok_or_else(|| GatewayError::Unauthenticated {
                    reason: "API_KEY_MISSING",
                    message: format!(
                        "send an API key as `authorization: Bearer KEY` or `{API_KEY_HEADER}: KEY`"
                    ),
                })?,
        };
        if let Access::Scoped(scope) = access
            && !principal.has_scope(scope)
        {
            return Err(GatewayError::PermissionDenied {
                reason: "SCOPE_MISSING",
                message: format!("{} lacks the `{scope}` scope", principal.label()),
            });
        }
        Ok(Some(principal))
    }

    fn check_secret(
        &self,
        secret: &str,
        ip: Option<IpAddr>,
        now: Instant,
    ) -> Result<Arc<Principal>, GatewayError> {
        if let Some(key) = self.keys.authenticate(secret) {
            if let Some(ip) = ip {
                self.lockout.record_success(ip);
            }
            return Ok(Arc::clone(&key.principal));
        }
        if let Some(ip) = ip
            && let Some(retry_after) = self.lockout.record_failure(ip, now)
        {
            tracing::warn!(peer = %ip, "peer locked out after repeated authentication failures");
            return Err(GatewayError::LockedOut { retry_after });
        }
        Err(GatewayError::Unauthenticated {
            reason: "API_KEY_INVALID",
            message: "the API key is not valid".into(),
        })
    }
}

/// The secret the client sent, if any.
fn presented_key(headers: &http::HeaderMap) -> Result<Option<&str>, GatewayError> {
    let malformed = || GatewayError::Unauthenticated {
        reason: "API_KEY_INVALID",
        message: "the authorization metadata must be `Bearer KEY`".into(),
    };
    if let Some(value) = headers.get(http::header::AUTHORIZATION) {
        let text = value.to_str().map_err(|_| malformed())?;
        let (scheme, token) = text.split_once(' ').ok_or_else(malformed)?;
        let token = token.trim();
        if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
            return Err(malformed());
        }
        return Ok(Some(token));
    }
    match headers.get(API_KEY_HEADER) {
        Some(value) => value
            .to_str()
            .map(|text| Some(text.trim()))
            .map_err(|_| malformed()),
        None => Ok(None),
    }
}

/// Identifies callers with an [`Authenticator`].
#[derive(Debug, Clone)]
pub struct AuthLayer {
    authenticator: Arc<Authenticator>,
}

impl AuthLayer {
    /// A layer sharing `authenticator`.
    pub fn new(authenticator: Arc<Authenticator>) -> Self {
        Self { authenticator }
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = AuthService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AuthService {
            inner,
            authenticator: Arc::clone(&self.authenticator),
        }
    }
}

/// The service [`AuthLayer`] wraps around the gateway.
#[derive(Debug, Clone)]
pub struct AuthService<S> {
    inner: S,
    authenticator: Arc<Authenticator>,
}

impl<S, B, R> Service<http::Request<B>> for AuthService<S>
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
        match self.authenticator.identify(&request, Instant::now()) {
            Err(error) => {
                metrics::count_auth_failure(error.reason().as_str());
                let response = error.into_status().into_http();
                Box::pin(async move { Ok(response) })
            }
            Ok(None) => Box::pin(self.inner.call(request)),
            Ok(Some(principal)) => {
                tracing::Span::current().record("principal", principal.label());
                // Without a context (the layer is missing) no principal is
                // recorded, and every method that needs one refuses.
                if let Some(context) = CallContext::of(request.extensions()) {
                    context.set_principal(principal);
                }
                Box::pin(self.inner.call(request))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::edge::{RequestId, Scope, keys::key_with_secret};
    use std::{convert::Infallible, time::Duration};
    use tonic::{Code, Status, transport::server::TcpConnectInfo};
    use tower::{ServiceExt, service_fn};

    const SECRET: &str = "publisher-secret-0123456789";

    fn authenticator(max_failures: u32) -> Arc<Authenticator> {
        let keys = ApiKeys::from_keys(vec![key_with_secret(
            "writer",
            SECRET,
            vec![Scope::Publish],
            None,
        )])
        .expect("keys");
        Arc::new(Authenticator::new(
            keys,
            Lockout::new(max_failures, Duration::from_secs(60)),
            true,
        ))
    }

    /// Calls `path` with `headers` from 10.1.1.1; the handler answers with
    /// the principal's label.
    async fn call(
        authenticator: &Arc<Authenticator>,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Result<String, Status> {
        let service = AuthLayer::new(Arc::clone(authenticator)).layer(service_fn(
            |request: http::Request<()>| async move {
                let label = CallContext::of(request.extensions())
                    .and_then(|context| context.principal())
                    .map_or_else(|| "open".to_owned(), |p| p.label().to_owned());
                Ok::<_, Infallible>(http::Response::new(label))
            },
        ));
        let mut builder = http::Request::builder().uri(path);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let mut request = builder.body(()).expect("request");
        request.extensions_mut().insert(Arc::new(CallContext::new(
            std::time::Instant::now(),
            RequestId::generate(),
            None,
        )));
        request.extensions_mut().insert(TcpConnectInfo {
            local_addr: None,
            remote_addr: Some(([10, 1, 1, 1], 4000).into()),
        });
        let response = service.oneshot(request).await.expect("infallible");
        match Status::from_header_map(response.headers()) {
            Some(status) => Err(status),
            None => Ok(response.into_body()),
        }
    }

    const PUBLISH: &str = "/iggy.gateway.v1.MessagingService/Publish";
    const ADMIN: &str = "/iggy.gateway.v1.AdminService/CreateStream";

    #[tokio::test]
    async fn a_valid_key_in_either_header_names_the_principal() {
        let auth = authenticator(5);
        let bearer = format!("Bearer {SECRET}");
        assert_eq!(
            call(&auth, PUBLISH, &[("authorization", &bearer)])
                .await
                .ok(),
            Some("key:writer".into())
        );
        assert_eq!(
            call(&auth, PUBLISH, &[("x-api-key", SECRET)]).await.ok(),
            Some("key:writer".into())
        );
    }

    #[tokio::test]
    async fn missing_wrong_and_unscoped_keys_get_their_codes() {
        let auth = authenticator(5);
        let missing = call(&auth, PUBLISH, &[]).await.expect_err("no key");
        assert_eq!(missing.code(), Code::Unauthenticated);
        let wrong = call(&auth, PUBLISH, &[("x-api-key", "nope")])
            .await
            .expect_err("wrong");
        assert_eq!(wrong.code(), Code::Unauthenticated);
        let basic = call(&auth, PUBLISH, &[("authorization", "Basic abc")])
            .await
            .expect_err("not bearer");
        assert_eq!(basic.code(), Code::Unauthenticated);
        let denied = call(&auth, ADMIN, &[("x-api-key", SECRET)])
            .await
            .expect_err("scope");
        assert_eq!(denied.code(), Code::PermissionDenied);
        assert!(denied.message().contains("`admin`"), "{}", denied.message());
    }

    #[tokio::test]
    async fn health_is_open_and_reflection_can_be_closed() {
        let auth = authenticator(5);
        assert_eq!(
            call(&auth, "/grpc.health.v1.Health/Check", &[]).await.ok(),
            Some("open".into())
        );
        let closed = Arc::new(Authenticator::new(
            ApiKeys::from_keys(vec![key_with_secret("r", SECRET, vec![Scope::Admin], None)])
                .expect("keys"),
            Lockout::new(5, Duration::from_secs(60)),
            false,
        ));
        let reflection = "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo";
        assert_eq!(
            call(&closed, reflection, &[])
                .await
                .expect_err("closed")
                .code(),
            Code::Unauthenticated
        );
        assert_eq!(
            call(&closed, reflection, &[("x-api-key", SECRET)])
                .await
                .ok(),
            Some("key:r".into())
        );
    }

    #[tokio::test]
    async fn repeated_failures_lock_out_even_the_right_key() {
        let auth = authenticator(3);
        for _ in 0..2 {
            let refused = call(&auth, PUBLISH, &[("x-api-key", "guess")]).await;
            assert_eq!(refused.expect_err("wrong").code(), Code::Unauthenticated);
        }
        let locked = call(&auth, PUBLISH, &[("x-api-key", "guess")])
            .await
            .expect_err("third failure locks");
        assert!(
            locked.message().contains("too many failed"),
            "{}",
            locked.message()
        );
        let still = call(&auth, PUBLISH, &[("x-api-key", SECRET)])
            .await
            .expect_err("locked out");
        assert_eq!(still.code(), Code::Unauthenticated);
        assert!(still.metadata().get("retry-after").is_some());
    }

    #[tokio::test]
    async fn without_keys_every_caller_is_an_unrestricted_peer() {
        let open = Arc::new(Authenticator::new(
            ApiKeys::default(),
            Lockout::new(5, Duration::from_secs(60)),
            true,
        ));
        assert_eq!(
            call(&open, ADMIN, &[]).await.ok(),
            Some("peer:10.1.1.1".into())
        );
        assert!(!open.is_enabled());
    }
}
