//! Browser sessions. A request authenticated by the `R_SESS` cookie may have been sent by a browser on
//! another site's behalf — a form post, a `fetch`, a WebSocket opened by a page elsewhere (Rancher's
//! CVE-2019-13209) — because browsers attach cookies by themselves. [`BrowserPolicy::check`] holds
//! such requests to two rules:
//!
//! 1. an `Origin`, when there is one, must be the server's own (the request's host, or an origin the
//!    policy trusts such as the server's external URL);
//! 2. a request that changes state (any method but GET, HEAD, OPTIONS) or opens a stream must echo the
//!    `CSRF` cookie of the login in the `X-API-CSRF` header — a page elsewhere can neither read that
//!    cookie nor send a custom header cross-origin without a CORS preflight the server never grants.
//!    A WebSocket handshake, to which browsers cannot add headers, proves itself by its same-origin
//!    `Origin` instead (browsers always send one there).
//!
//! Requests authenticated by a header (Bearer, Basic, a WebSocket bearer protocol) are not affected:
//! no browser attaches those on its own. [`BrowserSessionLayer`] applies the policy in the proxy;
//! the management API calls [`BrowserPolicy::check`] itself.

use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::Either;
use http::{HeaderMap, Method, Request, Uri, header};
use tower::{Layer, Service};

use super::error::ProxyError;
use super::headers::wants_upgrade;
use crate::token::{CSRF_COOKIE, CSRF_HEADER, cookie, uses_session_cookie};

/// The longest `Origin` quoted back in a refusal.
const MAX_QUOTED_ORIGIN: usize = 100;

/// Why a cookie-authenticated request was refused (answered 403).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BrowserRefusal {
    /// The `Origin` is another site's (or unreadable, or sent twice).
    #[error(
        "cross-origin request refused: Origin {0} is not this server's; a browser session (the R_SESS \
         cookie) works only from the server's own pages"
    )]
    CrossOrigin(String),
    /// A state-changing or streaming request without the `X-API-CSRF` header, or without the cookie.
    #[error(
        "CSRF token missing: a request that changes state with the R_SESS cookie must echo the CSRF \
         cookie in the X-API-CSRF header"
    )]
    MissingCsrfToken,
    /// The `X-API-CSRF` header does not match the `CSRF` cookie.
    #[error("CSRF token mismatch: the X-API-CSRF header does not match the CSRF cookie")]
    CsrfTokenMismatch,
}

/// A `--server-url` or trusted origin that is not `scheme://host[:port]`.
#[derive(Debug, thiserror::Error)]
#[error("{0:?} is not an origin (scheme://host[:port])")]
pub struct InvalidOrigin(pub String);

/// Which origins a browser session may come from. The default: the request's own host, over https.
#[derive(Clone, Debug)]
pub struct BrowserPolicy {
    /// Whether the server is reached over TLS (the scheme of its own origin).
    secure: bool,
    /// Further origins in ASCII serialisation (`https://rancher.example.com`).
    trusted: Vec<String>,
}

impl Default for BrowserPolicy {
    fn default() -> Self {
        BrowserPolicy { secure: true, trusted: Vec::new() }
    }
}

impl BrowserPolicy {
    /// The request's own host, over https (`secure`) or http.
    pub fn new(secure: bool) -> Self {
        BrowserPolicy { secure, trusted: Vec::new() }
    }

    /// The policy of a server whose external URL is `url`: its scheme, and its origin trusted besides
    /// the request's host (browsers may reach it through a load balancer under that name).
    ///
    /// # Errors
    /// [`InvalidOrigin`] when `url` has no `http(s)://host`.
    pub fn for_server_url(url: &str) -> Result<Self, InvalidOrigin> {
        BrowserPolicy::new(!url.starts_with("http://")).trust(url)
    }

    /// Also accepts browser sessions from `origin` (a URL; only its scheme, host and port count).
    ///
    /// # Errors
    /// [`InvalidOrigin`] when `origin` has no `http(s)://host`.
    pub fn trust(mut self, origin: &str) -> Result<Self, InvalidOrigin> {
        let normal = normal_origin(origin).ok_or_else(|| InvalidOrigin(origin.to_owned()))?;
        self.trusted.push(normal);
        Ok(self)
    }

    /// Checks a request against the rules of this module; `Ok` for every request that is not
    /// authenticated by the session cookie.
    ///
    /// ```
    /// use http::{HeaderMap, Method, Uri};
    /// use rancher_auth::proxy::{BrowserPolicy, BrowserRefusal};
    ///
    /// let mut h = HeaderMap::new();
    /// h.insert("host", "rancher.example".parse().unwrap());
    /// h.insert("cookie", "R_SESS=token-abcde:s; CSRF=c5rf".parse().unwrap());
    /// h.insert("origin", "https://evil.example".parse().unwrap());
    /// let uri = Uri::from_static("/v3/tokens?action=logout");
    /// let policy = BrowserPolicy::default();
    /// assert!(matches!(policy.check(&Method::POST, &uri, &h), Err(BrowserRefusal::CrossOrigin(_))));
    /// h.insert("origin", "https://rancher.example".parse().unwrap());
    /// assert_eq!(policy.check(&Method::POST, &uri, &h), Err(BrowserRefusal::MissingCsrfToken));
    /// h.insert("x-api-csrf", "c5rf".parse().unwrap());
    /// assert_eq!(policy.check(&Method::POST, &uri, &h), Ok(()));
    /// ```
    ///
    /// # Errors
    /// A [`BrowserRefusal`] saying which rule the request broke.
    pub fn check(&self, method: &Method, uri: &Uri, headers: &HeaderMap) -> Result<(), BrowserRefusal> {
        if !uses_session_cookie(headers) {
            return Ok(());
        }
        let mut origins = headers.get_all(header::ORIGIN).iter();
        let origin = match (origins.next(), origins.next()) {
            (None, _) => None,
            (Some(one), None) => Some(one),
            (Some(_), Some(_)) => return Err(BrowserRefusal::CrossOrigin("(sent twice)".into())),
        };
        if let Some(origin) = origin {
            let text = origin.to_str().unwrap_or("(unreadable)");
            if !self.is_own_origin(text, uri, headers) {
                return Err(BrowserRefusal::CrossOrigin(quote(text)));
            }
        }
        let upgrade = wants_upgrade(headers);
        let safe = matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS);
        if (safe && !upgrade) || (upgrade && origin.is_some()) {
            return Ok(());
        }
        check_csrf(headers)
    }

    /// Whether `origin` is the request's own (scheme of the server, its `Host` or HTTP/2 authority) or
    /// a trusted one.
    fn is_own_origin(&self, origin: &str, uri: &Uri, headers: &HeaderMap) -> bool {
        let Some(origin) = normal_origin(origin) else { return false };
        if self.trusted.contains(&origin) {
            return true;
        }
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| uri.authority().map(|a| a.as_str()));
        let scheme = if self.secure { "https" } else { "http" };
        host.and_then(|h| normal_origin(&format!("{scheme}://{h}"))).is_some_and(|own| own == origin)
    }
}

/// `scheme://host[:port]` of an http(s) URL, lower-cased, the default port left out; `None` for
/// anything else (`null`, other schemes, user info, a path).
fn normal_origin(s: &str) -> Option<String> {
    let url = url::Url::parse(s).ok()?;
    let plain = matches!(url.scheme(), "http" | "https")
        && url.username().is_empty()
        && url.password().is_none()
        && matches!(url.path(), "" | "/")
        && url.query().is_none()
        && url.fragment().is_none();
    if !plain || url.host_str().is_none() {
        return None;
    }
    Some(url.origin().ascii_serialization())
}

fn quote(origin: &str) -> String {
    let cut: String = origin.chars().take(MAX_QUOTED_ORIGIN).collect();
    format!("{cut:?}")
}

/// The `X-API-CSRF` header equals the `CSRF` cookie, both present and not empty.
fn check_csrf(headers: &HeaderMap) -> Result<(), BrowserRefusal> {
    let sent = headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok()).filter(|v| !v.is_empty());
    let expected = cookie(headers, CSRF_COOKIE).filter(|v| !v.is_empty());
    let (Some(sent), Some(expected)) = (sent, expected) else {
        return Err(BrowserRefusal::MissingCsrfToken);
    };
    use subtle::ConstantTimeEq as _;
    if bool::from(sent.as_bytes().ct_eq(expected.as_bytes())) {
        Ok(())
    } else {
        Err(BrowserRefusal::CsrfTokenMismatch)
    }
}

/// A fresh value for the `CSRF` cookie: 32 random lower-case alphanumerics.
pub fn new_csrf_token() -> String {
    crate::token::random_id(32)
}

// === impl BrowserSessionLayer ===

/// Applies a [`BrowserPolicy`] to every proxied request, before authentication.
#[derive(Clone, Debug, Default)]
pub struct BrowserSessionLayer {
    policy: Arc<BrowserPolicy>,
}

impl BrowserSessionLayer {
    /// Uses `policy`.
    pub fn new(policy: BrowserPolicy) -> Self {
        BrowserSessionLayer { policy: Arc::new(policy) }
    }
}

impl<S> Layer<S> for BrowserSessionLayer {
    type Service = BrowserSession<S>;
    fn layer(&self, inner: S) -> Self::Service {
        BrowserSession { policy: self.policy.clone(), inner }
    }
}

/// The service made by [`BrowserSessionLayer`].
#[derive(Clone, Debug)]
pub struct BrowserSession<S> {
    policy: Arc<BrowserPolicy>,
    inner: S,
}

impl<S, B> Service<Request<B>> for BrowserSession<S>
where
    S: Service<Request<B>, Error = ProxyError>,
{
    type Response = S::Response;
    type Error = ProxyError;
    type Future = Either<S::Future, std::future::Ready<Result<S::Response, ProxyError>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ProxyError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        match self.policy.check(req.method(), req.uri(), req.headers()) {
            Ok(()) => Either::Left(self.inner.call(req)),
            Err(refusal) => Either::Right(std::future::ready(Err(ProxyError::BrowserRefused(refusal)))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::test_support::{recorder, status_of};
    use tower::ServiceExt as _;

    const HOST: &str = "rancher.example:8443";

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("host", HOST.parse().unwrap());
        for (k, v) in pairs {
            h.append(http::HeaderName::from_bytes(k.as_bytes()).unwrap(), v.parse().unwrap());
        }
        h
    }

    fn check(method: Method, pairs: &[(&str, &str)]) -> Result<(), BrowserRefusal> {
        BrowserPolicy::default().check(&method, &Uri::from_static("/k8s/clusters/c1/api"), &headers(pairs))
    }

    const SESSION: (&str, &str) = ("cookie", "R_SESS=token-abcde:secret; CSRF=c5rf");
    const WEBSOCKET: [(&str, &str); 2] = [("connection", "Upgrade"), ("upgrade", "websocket")];

    #[test]
    fn a_cookie_session_from_another_origin_is_refused_websocket_included() {
        for origin in [
            "https://evil.example",
            "http://rancher.example:8443",
            "https://rancher.example",
            "https://rancher.example:8443.evil.example",
            "null",
            "https://user@rancher.example:8443",
        ] {
            let mut pairs = vec![SESSION, ("origin", origin)];
            assert!(matches!(check(Method::GET, &pairs), Err(BrowserRefusal::CrossOrigin(_))), "{origin}");
            pairs.extend(WEBSOCKET);
            pairs.push(("x-api-csrf", "c5rf"));
            assert!(matches!(check(Method::GET, &pairs), Err(BrowserRefusal::CrossOrigin(_))), "{origin}");
        }
        let twice = [SESSION, ("origin", "https://rancher.example:8443"), ("origin", "https://evil.example")];
        assert!(matches!(check(Method::GET, &twice), Err(BrowserRefusal::CrossOrigin(_))));
    }

    #[test]
    fn same_origin_reads_pass_and_writes_need_the_csrf_header() {
        let own = ("origin", "https://RANCHER.example:8443");
        assert_eq!(check(Method::GET, &[SESSION, own]), Ok(()));
        assert_eq!(check(Method::GET, &[SESSION]), Ok(()));
        for method in [Method::POST, Method::PUT, Method::PATCH, Method::DELETE] {
            assert_eq!(check(method.clone(), &[SESSION, own]), Err(BrowserRefusal::MissingCsrfToken));
            assert_eq!(check(method.clone(), &[SESSION]), Err(BrowserRefusal::MissingCsrfToken));
            let wrong = ("x-api-csrf", "guess");
            assert_eq!(check(method.clone(), &[SESSION, wrong]), Err(BrowserRefusal::CsrfTokenMismatch));
            assert_eq!(check(method.clone(), &[SESSION, own, ("x-api-csrf", "c5rf")]), Ok(()));
        }
        let no_cookie = [("cookie", "R_SESS=token-abcde:secret"), ("x-api-csrf", "")];
        assert_eq!(check(Method::POST, &no_cookie), Err(BrowserRefusal::MissingCsrfToken));
    }

    #[test]
    fn upgrades_need_a_same_origin_or_the_csrf_header() {
        let mut ws = vec![SESSION];
        ws.extend(WEBSOCKET);
        assert_eq!(check(Method::GET, &ws), Err(BrowserRefusal::MissingCsrfToken));
        let mut own = ws.clone();
        own.push(("origin", "https://rancher.example:8443"));
        assert_eq!(check(Method::GET, &own), Ok(()));
        ws.push(("x-api-csrf", "c5rf"));
        assert_eq!(check(Method::GET, &ws), Ok(()));
    }

    #[test]
    fn header_credentials_are_not_browser_sessions() {
        let evil = ("origin", "https://evil.example");
        assert_eq!(check(Method::POST, &[("authorization", "Bearer token-abcde:s"), SESSION, evil]), Ok(()));
        assert_eq!(check(Method::POST, &[evil]), Ok(()));
    }

    #[test]
    fn trusted_origins_and_http2_authorities_count_as_own() {
        let policy = BrowserPolicy::for_server_url("https://rancher.example.com").unwrap();
        let mut h = HeaderMap::new();
        h.insert("cookie", "R_SESS=token-abcde:s".parse().unwrap());
        h.insert("origin", "https://rancher.example.com".parse().unwrap());
        let uri = Uri::from_static("https://10.0.0.1:8443/v3/clusters");
        assert_eq!(policy.check(&Method::GET, &uri, &h), Ok(()));
        h.insert("origin", "https://10.0.0.1:8443".parse().unwrap());
        assert_eq!(policy.check(&Method::GET, &uri, &h), Ok(()));
        h.insert("origin", "https://10.0.0.2:8443".parse().unwrap());
        assert!(policy.check(&Method::GET, &uri, &h).is_err());
        assert!(BrowserPolicy::default().trust("not a url").is_err());
        let plain = BrowserPolicy::for_server_url("http://127.0.0.1:8080").unwrap();
        h.insert("origin", "http://127.0.0.1:8080".parse().unwrap());
        assert_eq!(plain.check(&Method::GET, &uri, &h), Ok(()));
    }

    #[tokio::test]
    async fn the_layer_answers_403_status_and_never_calls_inner() {
        let (svc, seen) = recorder();
        let req = Request::get("/k8s/clusters/c1/api/v1/namespaces/a/pods/p/exec")
            .header("host", HOST)
            .header("origin", "https://evil.example")
            .header("connection", "Upgrade")
            .header("upgrade", "websocket")
            .header("cookie", "R_SESS=token-abcde:secret")
            .body(())
            .unwrap();
        let err = BrowserSessionLayer::default().layer(svc).oneshot(req).await.unwrap_err();
        let status = status_of(err.into_response()).await;
        assert_eq!((status.code, status.reason.as_str()), (403, "Forbidden"));
        assert!(status.message.contains("evil.example") && !status.message.contains("secret"));
        assert_eq!(seen.take().calls, 0);
    }

    #[test]
    fn csrf_tokens_are_fresh() {
        let (a, b) = (new_csrf_token(), new_csrf_token());
        assert_eq!(a.len(), 32);
        assert_ne!(a, b);
    }
}
