//! As whom downstream: [`ImpersonateLayer`] replaces the request's headers with those built by
//! [`downstream_request_headers`] — the allow-listed end-to-end headers the client sent, then the
//! authenticated [`UserInfo`] as `Impersonate-*` — and marks the request as rebuilt, so
//! [`Forward`](super::forward::Forward) never sends a header map the client wrote.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::task::{Context, Poll};

use http::{HeaderName, HeaderValue, Request};
use tower::{Layer, Service};

use super::authenticate::UserInfo;
use super::error::ProxyError;
use super::headers::{downstream_request_headers_as, identity_headers, wants_upgrade};

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

/// Rebuilds the request's headers for downstream from the caller's `Arc<UserInfo>` extension (put
/// there by [`AuthenticateLayer`](super::AuthenticateLayer)).
#[derive(Clone, Debug, Default)]
pub struct ImpersonateLayer {
    identities: Arc<Identities>,
}

impl ImpersonateLayer {
    /// The layer.
    pub fn new() -> Self {
        Self::default()
    }
}

impl<S> Layer<S> for ImpersonateLayer {
    type Service = Impersonate<S>;
    fn layer(&self, inner: S) -> Self::Service {
        Impersonate { inner, identities: self.identities.clone() }
    }
}

/// The service made by [`ImpersonateLayer`].
#[derive(Clone, Debug)]
pub struct Impersonate<S> {
    inner: S,
    identities: Arc<Identities>,
}

/// An identity stated as `Impersonate-*` headers.
type IdentityHeaders = Arc<[(HeaderName, HeaderValue)]>;

/// At most this many callers' identity headers are kept.
const MAX_IDENTITIES: usize = 4096;

/// The identity headers built for each [`UserInfo`] an authenticator handed out, by its address: an
/// authenticator that shares one `Arc<UserInfo>` between a caller's requests has them built once,
/// not once per request. An entry holds its `UserInfo`'s allocation (weakly), so no other identity
/// can take that address while the entry exists.
#[derive(Debug, Default)]
struct Identities {
    built: Mutex<HashMap<usize, (Weak<UserInfo>, IdentityHeaders)>>,
}

impl Identities {
    fn headers_for(&self, user: &Arc<UserInfo>) -> Result<IdentityHeaders, ProxyError> {
        let key = Arc::as_ptr(user) as usize;
        if let Some((_, headers)) = self.built.lock().unwrap_or_else(PoisonError::into_inner).get(&key) {
            return Ok(headers.clone());
        }
        let headers: IdentityHeaders = identity_headers(user)?.into();
        let mut built = self.built.lock().unwrap_or_else(PoisonError::into_inner);
        if built.len() >= MAX_IDENTITIES {
            built.retain(|_, (user, _)| user.strong_count() > 0);
            if built.len() >= MAX_IDENTITIES {
                built.clear();
            }
        }
        built.insert(key, (Arc::downgrade(user), headers.clone()));
        Ok(headers)
    }
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
        let Some(user) = req.extensions().get::<Arc<UserInfo>>() else {
            return Either::Right(std::future::ready(Err(ProxyError::Internal("no UserInfo"))));
        };
        let upgrade = wants_upgrade(req.headers());
        match self.identities.headers_for(user) {
            Ok(identity) => {
                *req.headers_mut() = downstream_request_headers_as(req.headers(), &identity);
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
        req.extensions_mut().insert(Arc::new(UserInfo { username: "u-alice".into(), ..Default::default() }));
        ImpersonateLayer::new().layer(svc).oneshot(req).await.unwrap();
        let seen = seen.take();
        assert_eq!(values(&seen.headers, "impersonate-user"), ["u-alice"]);
        assert_eq!(values(&seen.headers, "impersonate-group"), [SYSTEM_AUTHENTICATED]);
        assert_eq!(values(&seen.headers, "accept"), ["application/json"]);
        assert!(!seen.headers.contains_key("authorization") && !seen.headers.contains_key("connection"));
        assert!(seen.rebuilt.is_some_and(|r| !r.upgrade()));
    }

    /// A caller's identity is stated once for all the requests that share it, and a caller with
    /// another identity gets its own.
    #[tokio::test]
    async fn an_identity_is_stated_once_and_only_for_its_caller() {
        let identities = Identities::default();
        let alice = Arc::new(UserInfo { username: "u-alice".into(), ..Default::default() });
        let bob = Arc::new(UserInfo { username: "u-bob".into(), ..Default::default() });
        let first = identities.headers_for(&alice).unwrap();
        assert!(Arc::ptr_eq(&first, &identities.headers_for(&alice).unwrap()));
        let of_bob = identities.headers_for(&bob).unwrap();
        assert_eq!(of_bob[0].1, "u-bob");
        drop(alice);
        // A new identity, possibly at the freed one's address: it is never given alice's headers.
        let carol = Arc::new(UserInfo { username: "u-carol".into(), ..Default::default() });
        assert_eq!(identities.headers_for(&carol).unwrap()[0].1, "u-carol");
        let empty = Arc::new(UserInfo::default());
        assert!(identities.headers_for(&empty).is_err(), "an identity without a name is refused");
    }

    #[tokio::test]
    async fn no_user_no_request() {
        let (svc, seen) = recorder();
        let err = ImpersonateLayer::new().layer(svc).oneshot(Request::get("/").body(()).unwrap()).await;
        assert_eq!(err.unwrap_err().status().code, 500);
        assert_eq!(seen.take().calls, 0);
    }
}
