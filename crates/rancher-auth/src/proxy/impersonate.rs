//! As whom downstream: [`ImpersonateLayer`] replaces the request's headers with those built by
//! [`downstream_request_headers`] — the allow-listed end-to-end headers the client sent, then the
//! authenticated [`UserInfo`] as `Impersonate-*` — and marks the request as rebuilt, so
//! [`Forward`](super::forward::Forward) never sends a header map the client wrote.

use std::task::{Context, Poll};

use http::Request;
use tower::{Layer, Service};

use super::authenticate::UserInfo;
use super::error::ProxyError;
use super::headers::{downstream_request_headers, wants_upgrade};

/// Put in a request's extensions by [`ImpersonateLayer`] once its headers were rebuilt. Only this
/// module can make one, so the forward layer can tell a rebuilt request from a raw one.
#[derive(Clone, Copy, Debug)]
pub struct HeadersRebuilt {
    upgrade: bool,
}

impl HeadersRebuilt {
    /// Whether the client asked to switch protocols (decided from its own headers).
    pub fn upgrade(&self) -> bool {
        self.upgrade
    }
}

/// Rebuilds the request's headers for downstream from the [`UserInfo`] extension.
#[derive(Clone, Copy, Debug, Default)]
pub struct ImpersonateLayer;

impl ImpersonateLayer {
    /// The layer.
    pub fn new() -> Self {
        ImpersonateLayer
    }
}

impl<S> Layer<S> for ImpersonateLayer {
    type Service = Impersonate<S>;
    fn layer(&self, inner: S) -> Self::Service {
        Impersonate { inner }
    }
}

/// The service made by [`ImpersonateLayer`].
#[derive(Clone, Debug)]
pub struct Impersonate<S> {
    inner: S,
}

impl<S, B> Service<Request<B>> for Impersonate<S>
where
    S: Service<Request<B>, Error = ProxyError>,
    S::Future: Send + 'static,
    S::Response: 'static,
{
    type Response = S::Response;
    type Error = ProxyError;
    type Future = futures::future::Either<S::Future, std::future::Ready<Result<S::Response, ProxyError>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ProxyError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        use futures::future::Either;
        let Some(user) = req.extensions().get::<UserInfo>() else {
            return Either::Right(std::future::ready(Err(ProxyError::Internal("no UserInfo"))));
        };
        let upgrade = wants_upgrade(req.headers());
        match downstream_request_headers(req.headers(), user) {
            Ok(headers) => {
                *req.headers_mut() = headers;
                req.extensions_mut().insert(HeadersRebuilt { upgrade });
                Either::Left(self.inner.call(req))
            }
            Err(e) => Either::Right(std::future::ready(Err(e))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::headers::SYSTEM_AUTHENTICATED;
    use crate::proxy::test_support::recorder;
    use tower::ServiceExt as _;

    fn values(headers: &http::HeaderMap, name: &str) -> Vec<String> {
        headers.get_all(name).iter().map(|v| v.to_str().unwrap().to_owned()).collect()
    }

    #[tokio::test]
    async fn the_inner_service_sees_only_rebuilt_headers_and_the_mark() {
        let (svc, seen) = recorder();
        let mut req = Request::get("/api/v1/secrets")
            .header("Connection", "Impersonate-User, Impersonate-Group")
            .header("Impersonate-User", "admin")
            .header("Authorization", "Bearer token-a:secret")
            .header("Accept", "application/json")
            .body(())
            .unwrap();
        req.extensions_mut().insert(UserInfo { username: "u-alice".into(), ..Default::default() });
        ImpersonateLayer::new().layer(svc).oneshot(req).await.unwrap();
        let seen = seen.take();
        assert_eq!(values(&seen.headers, "impersonate-user"), ["u-alice"]);
        assert_eq!(values(&seen.headers, "impersonate-group"), [SYSTEM_AUTHENTICATED]);
        assert_eq!(values(&seen.headers, "accept"), ["application/json"]);
        assert!(!seen.headers.contains_key("authorization") && !seen.headers.contains_key("connection"));
        assert!(seen.rebuilt.is_some_and(|r| !r.upgrade()));
    }

    #[tokio::test]
    async fn no_user_no_request() {
        let (svc, seen) = recorder();
        let err = ImpersonateLayer::new().layer(svc).oneshot(Request::get("/").body(()).unwrap()).await;
        assert_eq!(err.unwrap_err().status().code, 500);
        assert_eq!(seen.take().calls, 0);
    }
}
