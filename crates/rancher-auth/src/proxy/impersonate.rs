//! As whom downstream: [`ImpersonateLayer`] drops every identity the client sent (its `Impersonate-*`
//! headers, `Authorization`, cookies, a WebSocket bearer protocol) and states the authenticated
//! [`UserInfo`] as `Impersonate-User`, `Impersonate-Group`, `Impersonate-Uid` and `Impersonate-Extra-*`.

use std::task::{Context, Poll};

use http::{HeaderMap, HeaderName, HeaderValue, Request, header};
use tower::{Layer, Service};

use super::authenticate::{UserInfo, WEBSOCKET_BEARER_PROTOCOL_PREFIX};
use super::error::ProxyError;

/// `Impersonate-User`.
pub const IMPERSONATE_USER: &str = "impersonate-user";
/// `Impersonate-Group`, once per group.
pub const IMPERSONATE_GROUP: &str = "impersonate-group";
/// `Impersonate-Uid`.
pub const IMPERSONATE_UID: &str = "impersonate-uid";
/// `Impersonate-Extra-<key>`, once per value.
pub const IMPERSONATE_EXTRA_PREFIX: &str = "impersonate-extra-";
/// The group every authenticated user is in.
pub const SYSTEM_AUTHENTICATED: &str = "system:authenticated";

/// Rewrites the request's identity headers from the [`UserInfo`] extension.
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
        let Some(user) = req.extensions().get::<UserInfo>().cloned() else {
            return Either::Right(std::future::ready(Err(ProxyError::Internal("no UserInfo"))));
        };
        match impersonate(req.headers_mut(), &user) {
            Ok(()) => Either::Left(self.inner.call(req)),
            Err(e) => Either::Right(std::future::ready(Err(e))),
        }
    }
}

/// Removes the client's identity headers from `headers` and sets those of `user`.
pub fn impersonate(headers: &mut HeaderMap, user: &UserInfo) -> Result<(), ProxyError> {
    strip_client_identity(headers);
    let bad = |what: &str| ProxyError::Impersonation { user: user.username.clone(), reason: what.to_owned() };
    let value = |v: &str, what: &str| HeaderValue::from_str(v).map_err(|_| bad(what));

    if user.username.is_empty() {
        return Err(bad("empty user name"));
    }
    headers.insert(IMPERSONATE_USER, value(&user.username, "user name")?);
    if !user.uid.is_empty() {
        headers.insert(IMPERSONATE_UID, value(&user.uid, "uid")?);
    }
    let groups = user.groups.iter().map(String::as_str);
    let system = (!user.groups.iter().any(|g| g == SYSTEM_AUTHENTICATED)).then_some(SYSTEM_AUTHENTICATED);
    for group in groups.chain(system) {
        headers.append(IMPERSONATE_GROUP, value(group, "group")?);
    }
    for (key, values) in &user.extra {
        let name = HeaderName::try_from(format!("{IMPERSONATE_EXTRA_PREFIX}{}", escape_extra_key(key)))
            .map_err(|_| bad("extra key"))?;
        for v in values {
            headers.append(name.clone(), value(v, "extra value")?);
        }
    }
    Ok(())
}

/// Drops every header by which a client could claim an identity downstream.
fn strip_client_identity(headers: &mut HeaderMap) {
    // Header names are stored lower-case, so this catches any spelling of `Impersonate-*`.
    let forged: Vec<HeaderName> =
        headers.keys().filter(|name| name.as_str().starts_with("impersonate-")).cloned().collect();
    for name in forged {
        headers.remove(name);
    }
    headers.remove(header::AUTHORIZATION);
    headers.remove(header::PROXY_AUTHORIZATION);
    headers.remove(header::COOKIE);

    // A browser's WebSocket carries its token as a subprotocol; keep the other protocols.
    let protocols: Vec<String> = headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|p| !p.is_empty() && !p.starts_with(WEBSOCKET_BEARER_PROTOCOL_PREFIX))
        .map(str::to_owned)
        .collect();
    if headers.contains_key(header::SEC_WEBSOCKET_PROTOCOL) {
        headers.remove(header::SEC_WEBSOCKET_PROTOCOL);
        if let Ok(v) = HeaderValue::from_str(&protocols.join(", "))
            && !protocols.is_empty()
        {
            headers.insert(header::SEC_WEBSOCKET_PROTOCOL, v);
        }
    }
}

/// Percent-encodes an extra key the way client-go does (`headerKeyEscape`): bytes that are not legal
/// in a header name, and `%` itself, become `%XX`. Keys are lower-cased, as the API server reads them.
pub fn escape_extra_key(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for b in key.to_ascii_lowercase().bytes() {
        let legal = b.is_ascii_alphanumeric() || b"!#$&'*+-.^_`|~".contains(&b);
        if legal {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::proxy::test_support::recorder;
    use tower::ServiceExt as _;

    fn alice() -> UserInfo {
        UserInfo {
            username: "u-alice".into(),
            uid: "u-alice".into(),
            groups: vec!["local://g-dev".into(), "github_team://42".into()],
            extra: BTreeMap::from([
                ("principalid".into(), vec!["local://u-alice".into()]),
                ("authentication.kubernetes.io/credential-id".into(), vec!["token-a".into()]),
            ]),
        }
    }

    fn values(headers: &HeaderMap, name: &str) -> Vec<String> {
        headers.get_all(name).iter().map(|v| v.to_str().unwrap().to_owned()).collect()
    }

    #[tokio::test]
    async fn forged_identity_headers_never_reach_downstream() {
        let (svc, seen) = recorder();
        let mut req = Request::get("/api/v1/secrets")
            .header("Impersonate-User", "admin")
            .header("IMPERSONATE-GROUP", "system:masters")
            .header("impersonate-group", "system:nodes")
            .header("Impersonate-Uid", "0")
            .header("Impersonate-Extra-Scopes", "everything")
            .header("Authorization", "Bearer token-a:secret")
            .header("Proxy-Authorization", "Basic eDp5")
            .header("Cookie", "R_SESS=token-a:secret")
            .header("Accept", "application/json")
            .body(())
            .unwrap();
        req.extensions_mut().insert(alice());
        ImpersonateLayer::new().layer(svc).oneshot(req).await.unwrap();

        let headers = seen.take().headers;
        assert_eq!(values(&headers, "impersonate-user"), ["u-alice"]);
        assert_eq!(
            values(&headers, "impersonate-group"),
            ["local://g-dev", "github_team://42", SYSTEM_AUTHENTICATED]
        );
        assert_eq!(values(&headers, "impersonate-uid"), ["u-alice"]);
        assert!(values(&headers, "impersonate-extra-scopes").is_empty());
        assert_eq!(values(&headers, "impersonate-extra-principalid"), ["local://u-alice"]);
        assert_eq!(
            values(&headers, "impersonate-extra-authentication.kubernetes.io%2fcredential-id"),
            ["token-a"]
        );
        for gone in ["authorization", "proxy-authorization", "cookie"] {
            assert!(!headers.contains_key(gone), "{gone} was forwarded");
        }
        assert_eq!(values(&headers, "accept"), ["application/json"]);
        let all = format!("{headers:?}");
        assert!(
            !all.contains("admin") && !all.contains("system:masters") && !all.contains("secret"),
            "{all}"
        );
    }

    #[tokio::test]
    async fn websocket_bearer_protocol_is_removed_and_others_kept() {
        let (svc, seen) = recorder();
        let mut req = Request::get("/api/v1/namespaces/a/pods/p/exec")
            .header("sec-websocket-protocol", "v5.channel.k8s.io, base64url.bearer.authorization.k8s.io.dG9r")
            .body(())
            .unwrap();
        req.extensions_mut().insert(alice());
        ImpersonateLayer::new().layer(svc).oneshot(req).await.unwrap();
        assert_eq!(values(&seen.take().headers, "sec-websocket-protocol"), ["v5.channel.k8s.io"]);
    }

    #[tokio::test]
    async fn system_authenticated_is_not_duplicated_and_uid_is_optional() {
        let mut headers = HeaderMap::new();
        let user = UserInfo {
            username: "u-b".into(),
            groups: vec![SYSTEM_AUTHENTICATED.into()],
            ..Default::default()
        };
        impersonate(&mut headers, &user).unwrap();
        assert_eq!(values(&headers, "impersonate-group"), [SYSTEM_AUTHENTICATED]);
        assert!(!headers.contains_key("impersonate-uid"));
    }

    #[test]
    fn identities_that_are_not_valid_headers_are_refused() {
        let mut headers = HeaderMap::new();
        let user = UserInfo { username: "u-x\r\nImpersonate-User: admin".into(), ..Default::default() };
        assert_eq!(impersonate(&mut headers, &user).unwrap_err().status().code, 500);
        let nobody = UserInfo::default();
        assert!(impersonate(&mut headers, &nobody).is_err());
    }

    #[test]
    fn extra_keys_are_escaped_like_client_go() {
        assert_eq!(escape_extra_key("scopes"), "scopes");
        assert_eq!(escape_extra_key("example.org/foo"), "example.org%2Ffoo");
        assert_eq!(escape_extra_key("a%b c"), "a%25b%20c");
        assert_eq!(escape_extra_key("Mixed"), "mixed");
    }
}
