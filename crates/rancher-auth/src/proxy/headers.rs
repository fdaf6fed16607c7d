//! Which headers cross the proxy. A downstream request's headers are built afresh
//! ([`downstream_request_headers`]): the end-to-end headers a Kubernetes client legitimately sends
//! ([`FORWARDED_REQUEST_HEADERS`], by name, whatever `Connection` says), the upgrade pair when the
//! client asked for an upgrade, and — set last, from the authenticated user only — the identity.
//! Responses lose their hop-by-hop headers ([`strip_hop_by_hop`]).
//!
//! Nothing the client sends can remove or add an identity header: the client's headers are read, never
//! copied wholesale, and `Connection` tokens only ever name headers to drop from the client's side.

use http::{HeaderMap, HeaderName, HeaderValue, header};

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

/// The end-to-end request headers forwarded downstream, as kubectl, client-go, helm and kube-rs send
/// them: content negotiation and compression, the client's name and kubectl's command headers, an
/// audit id, conditional requests, and the stream negotiation of exec/attach/port-forward (SPDY's
/// `X-Stream-Protocol-Version`, the WebSocket handshake). Every other header is dropped — credentials,
/// cookies, `Impersonate-*`, front-proxy `X-Remote-*`, `Forwarded`, hop-by-hop headers — and
/// `Content-Length` too: the body states its own length.
pub const FORWARDED_REQUEST_HEADERS: &[&str] = &[
    "accept",
    "accept-encoding",
    "audit-id",
    "content-encoding",
    "content-type",
    "if-match",
    "if-modified-since",
    "if-none-match",
    "if-unmodified-since",
    "kubectl-command",
    "kubectl-session",
    "sec-websocket-extensions",
    "sec-websocket-key",
    "sec-websocket-protocol",
    "sec-websocket-version",
    "user-agent",
    "x-stream-protocol-version",
];

/// Whether the client asked to switch protocols (SPDY or WebSocket): an `Upgrade` header and
/// `upgrade` among the `Connection` tokens, as HTTP/1.1 requires.
pub fn wants_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE)
        && connection_tokens(headers).any(|t| t.eq_ignore_ascii_case("upgrade"))
}

/// The headers of the request sent downstream for a client request with `client` headers, made by
/// `user`:
///
/// 1. the [`FORWARDED_REQUEST_HEADERS`] the client sent (every value, in order), except any its
///    `Connection` header names; a browser's WebSocket bearer token is removed from
///    `Sec-WebSocket-Protocol`;
/// 2. on an upgrade ([`wants_upgrade`]), `Connection: Upgrade` and the client's `Upgrade`;
/// 3. last, the identity: `Impersonate-User`, `Impersonate-Uid`, `Impersonate-Group` (always with
///    `system:authenticated`) and `Impersonate-Extra-*`, from `user` alone.
///
/// The caller adds its own credential (`Authorization`) for the API server.
///
/// ```
/// use http::HeaderMap;
/// use rancher_auth::proxy::{UserInfo, downstream_request_headers};
///
/// let mut client = HeaderMap::new();
/// client.insert("connection", "Impersonate-User".parse().unwrap());
/// client.insert("impersonate-user", "admin".parse().unwrap());
/// client.insert("accept", "application/json".parse().unwrap());
/// let alice = UserInfo { username: "u-alice".into(), ..Default::default() };
/// let out = downstream_request_headers(&client, &alice).unwrap();
/// assert_eq!(out["impersonate-user"], "u-alice");
/// assert_eq!(out["accept"], "application/json");
/// assert!(!out.contains_key("connection"));
/// ```
///
/// # Errors
/// [`ProxyError::Impersonation`] when `user` cannot be stated as headers (an empty name, a value
/// that is not a valid header value).
pub fn downstream_request_headers(client: &HeaderMap, user: &UserInfo) -> Result<HeaderMap, ProxyError> {
    Ok(downstream_request_headers_as(client, &identity_headers(user)?))
}

/// [`downstream_request_headers`] with the identity already stated as headers
/// ([`identity_headers`]): the proxy builds those once per caller, not once per request.
pub(crate) fn downstream_request_headers_as(
    client: &HeaderMap,
    identity: &[(HeaderName, HeaderValue)],
) -> HeaderMap {
    let named_by_connection: Vec<String> = connection_tokens(client).map(str::to_ascii_lowercase).collect();
    let mut out = HeaderMap::new();
    for &name in FORWARDED_REQUEST_HEADERS {
        if named_by_connection.iter().any(|t| t == name) {
            continue;
        }
        let name = HeaderName::from_static(name);
        for value in client.get_all(&name) {
            out.append(name.clone(), value.clone());
        }
    }
    strip_websocket_bearer(&mut out);
    if wants_upgrade(client) {
        out.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        for value in client.get_all(header::UPGRADE) {
            out.append(header::UPGRADE, value.clone());
        }
    }
    set_identity(&mut out, identity);
    out
}

/// The `Connection` tokens, trimmed, empty ones skipped.
fn connection_tokens(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim_matches([' ', '\t']))
        .filter(|t| !t.is_empty())
}

/// A browser's WebSocket carries its token as a subprotocol; it is a credential for the proxy, not
/// for the API server. The other protocols stay.
fn strip_websocket_bearer(headers: &mut HeaderMap) {
    if !headers.contains_key(header::SEC_WEBSOCKET_PROTOCOL) {
        return;
    }
    let protocols: Vec<String> = headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|p| !p.is_empty() && !p.starts_with(WEBSOCKET_BEARER_PROTOCOL_PREFIX))
        .map(str::to_owned)
        .collect();
    headers.remove(header::SEC_WEBSOCKET_PROTOCOL);
    if !protocols.is_empty()
        && let Ok(v) = HeaderValue::from_str(&protocols.join(", "))
    {
        headers.insert(header::SEC_WEBSOCKET_PROTOCOL, v);
    }
}

/// States an identity ([`identity_headers`]) in `headers`, replacing any `Impersonate-*` already there.
fn set_identity(headers: &mut HeaderMap, identity: &[(HeaderName, HeaderValue)]) {
    let forged: Vec<HeaderName> =
        headers.keys().filter(|name| name.as_str().starts_with("impersonate-")).cloned().collect();
    for name in forged {
        headers.remove(name);
    }
    for (name, value) in identity {
        headers.append(name.clone(), value.clone());
    }
}

/// `user` as `Impersonate-*` headers, in order: `Impersonate-User`, `Impersonate-Uid` (when known),
/// `Impersonate-Group` (always with `system:authenticated`) and `Impersonate-Extra-*`.
///
/// # Errors
/// [`ProxyError::Impersonation`] when `user` cannot be stated as headers (an empty name, a value
/// that is not a valid header value).
pub(crate) fn identity_headers(user: &UserInfo) -> Result<Vec<(HeaderName, HeaderValue)>, ProxyError> {
    let bad = |what: &str| ProxyError::Impersonation { user: user.username.clone(), reason: what.to_owned() };
    let value = |v: &str, what: &str| HeaderValue::from_str(v).map_err(|_| bad(what));

    if user.username.is_empty() {
        return Err(bad("empty user name"));
    }
    let mut out = vec![(HeaderName::from_static(IMPERSONATE_USER), value(&user.username, "user name")?)];
    if !user.uid.is_empty() {
        out.push((HeaderName::from_static(IMPERSONATE_UID), value(&user.uid, "uid")?));
    }
    let groups = user.groups.iter().map(String::as_str);
    let system = (!user.groups.iter().any(|g| g == SYSTEM_AUTHENTICATED)).then_some(SYSTEM_AUTHENTICATED);
    let group_name = HeaderName::from_static(IMPERSONATE_GROUP);
    for group in groups.chain(system) {
        out.push((group_name.clone(), value(group, "group")?));
    }
    for (key, values) in &user.extra {
        let name = HeaderName::try_from(format!("{IMPERSONATE_EXTRA_PREFIX}{}", escape_extra_key(key)))
            .map_err(|_| bad("extra key"))?;
        for v in values {
            out.push((name.clone(), value(v, "extra value")?));
        }
    }
    Ok(out)
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

/// Removes the headers that describe one hop's connection (RFC 9110 §7.6.1) from a response,
/// including any its `Connection` header names.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> =
        connection_tokens(headers).filter_map(|t| HeaderName::from_bytes(t.as_bytes()).ok()).collect();
    for name in named {
        headers.remove(name);
    }
    for name in [
        header::CONNECTION,
        HeaderName::from_static("keep-alive"),
        HeaderName::from_static("proxy-connection"),
        header::TE,
        header::TRAILER,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
        header::PROXY_AUTHENTICATE,
        header::PROXY_AUTHORIZATION,
    ] {
        headers.remove(name);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

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

    fn client(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(HeaderName::from_bytes(k.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn values(headers: &HeaderMap, name: &str) -> Vec<String> {
        headers.get_all(name).iter().map(|v| v.to_str().unwrap().to_owned()).collect()
    }

    /// The identity headers `alice()` must produce, whatever the client sent.
    fn assert_alice(out: &HeaderMap, context: &str) {
        assert_eq!(values(out, IMPERSONATE_USER), ["u-alice"], "{context}");
        assert_eq!(
            values(out, IMPERSONATE_GROUP),
            ["local://g-dev", "github_team://42", SYSTEM_AUTHENTICATED],
            "{context}"
        );
        assert_eq!(values(out, IMPERSONATE_UID), ["u-alice"], "{context}");
        assert_eq!(values(out, "impersonate-extra-principalid"), ["local://u-alice"], "{context}");
        assert_eq!(
            values(out, "impersonate-extra-authentication.kubernetes.io%2fcredential-id"),
            ["token-a"],
            "{context}"
        );
        let impersonation = out.keys().filter(|k| k.as_str().starts_with("impersonate-")).count();
        assert_eq!(impersonation, 5, "{context}: {out:?}");
        for gone in ["authorization", "proxy-authorization", "cookie", "host"] {
            assert!(!out.contains_key(gone), "{context}: {gone} forwarded");
        }
    }

    #[test]
    fn connection_naming_the_identity_headers_cannot_remove_them() {
        let tricks = [
            "Impersonate-User, Impersonate-Group, Impersonate-Extra-principalid, Impersonate-Uid",
            "impersonate-user,impersonate-group",
            "IMPERSONATE-USER , \tIMPERSONATE-GROUP",
            "close, impersonate-extra-authentication.kubernetes.io%2fcredential-id",
            "Authorization, Impersonate-User",
            "Upgrade, Impersonate-User",
            ",,, impersonate-user ,,",
        ];
        for trick in tricks {
            let out = downstream_request_headers(&client(&[("connection", trick)]), &alice()).unwrap();
            assert_alice(&out, trick);
            assert!(!out.contains_key("connection"), "{trick}");
        }
        // Several Connection headers, and the identity headers forged next to them.
        let out = downstream_request_headers(
            &client(&[
                ("connection", "impersonate-user"),
                ("connection", "impersonate-group"),
                ("impersonate-user", "admin"),
                ("impersonate-group", "system:masters"),
            ]),
            &alice(),
        )
        .unwrap();
        assert_alice(&out, "two Connection headers");
    }

    #[test]
    fn forged_identity_in_any_spelling_is_replaced() {
        let forged = client(&[
            ("Impersonate-User", "admin"),
            ("IMPERSONATE-GROUP", "system:masters"),
            ("impersonate-group", "system:nodes"),
            ("Impersonate-Uid", "0"),
            ("Impersonate-Extra-Scopes", "everything"),
            ("Impersonate-Extra-principalid", "local://admin"),
            ("impersonate_user", "admin"),
            ("x-remote-user", "admin"),
            ("x-remote-group", "system:masters"),
            ("authorization", "Bearer token-a:secret"),
            ("proxy-authorization", "Basic eDp5"),
            ("cookie", "R_SESS=token-a:secret"),
            ("forwarded", "for=1.2.3.4"),
            ("accept", "application/json"),
        ]);
        let out = downstream_request_headers(&forged, &alice()).unwrap();
        assert_alice(&out, "forged");
        assert_eq!(values(&out, "accept"), ["application/json"]);
        let all = format!("{out:?}");
        for leaked in ["admin", "system:masters", "system:nodes", "secret", "everything", "1.2.3.4"] {
            assert!(!all.contains(leaked), "{leaked} reached downstream: {all}");
        }
    }

    #[test]
    fn only_allow_listed_headers_pass_with_every_value_in_order() {
        let out = downstream_request_headers(
            &client(&[
                ("accept", "application/json;as=Table;v=v1;g=meta.k8s.io"),
                ("accept", "application/json"),
                ("user-agent", "kubectl/v1.33.0"),
                ("kubectl-command", "kubectl get"),
                ("x-stream-protocol-version", "v4.channel.k8s.io"),
                ("x-stream-protocol-version", "v3.channel.k8s.io"),
                ("content-type", "application/apply-patch+yaml"),
                ("content-length", "12"),
                ("transfer-encoding", "chunked"),
                ("te", "trailers"),
                ("keep-alive", "timeout=5"),
                ("host", "evil.example"),
                ("x-custom", "1"),
            ]),
            &alice(),
        )
        .unwrap();
        assert_eq!(
            values(&out, "accept"),
            ["application/json;as=Table;v=v1;g=meta.k8s.io", "application/json"]
        );
        assert_eq!(values(&out, "x-stream-protocol-version"), ["v4.channel.k8s.io", "v3.channel.k8s.io"]);
        for kept in ["user-agent", "kubectl-command", "content-type"] {
            assert!(out.contains_key(kept), "{kept}");
        }
        for dropped in ["content-length", "transfer-encoding", "te", "keep-alive", "host", "x-custom"] {
            assert!(!out.contains_key(dropped), "{dropped} was forwarded");
        }
        // A Connection token drops an allow-listed header, as RFC 9110 asks.
        let out = downstream_request_headers(
            &client(&[("connection", "User-Agent"), ("user-agent", "x"), ("accept", "*/*")]),
            &alice(),
        )
        .unwrap();
        assert!(!out.contains_key("user-agent"));
        assert_eq!(values(&out, "accept"), ["*/*"]);
    }

    #[test]
    fn upgrades_send_connection_upgrade_only() {
        let out = downstream_request_headers(
            &client(&[
                ("connection", "Upgrade, Impersonate-User, Impersonate-Group, keep-alive"),
                ("upgrade", "SPDY/3.1"),
                ("x-stream-protocol-version", "v4.channel.k8s.io"),
            ]),
            &alice(),
        )
        .unwrap();
        assert_eq!(values(&out, "connection"), ["Upgrade"]);
        assert_eq!(values(&out, "upgrade"), ["SPDY/3.1"]);
        assert_alice(&out, "SPDY upgrade");

        let out = downstream_request_headers(
            &client(&[
                ("connection", "keep-alive, Upgrade"),
                ("upgrade", "websocket"),
                ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
                ("sec-websocket-version", "13"),
                ("sec-websocket-protocol", "v5.channel.k8s.io, base64url.bearer.authorization.k8s.io.dG9r"),
                ("origin", "https://evil.example"),
            ]),
            &alice(),
        )
        .unwrap();
        assert_eq!(values(&out, "connection"), ["Upgrade"]);
        assert_eq!(values(&out, "upgrade"), ["websocket"]);
        assert_eq!(values(&out, "sec-websocket-protocol"), ["v5.channel.k8s.io"]);
        assert_eq!(values(&out, "sec-websocket-key"), ["dGhlIHNhbXBsZSBub25jZQ=="]);
        assert!(!out.contains_key("origin"));
        assert_alice(&out, "WebSocket upgrade");

        // Upgrade without Connection: upgrade (or the reverse) is no upgrade: neither header goes on.
        for pairs in [&[("upgrade", "websocket")][..], &[("connection", "upgrade")][..]] {
            let out = downstream_request_headers(&client(pairs), &alice()).unwrap();
            assert!(!out.contains_key("upgrade") && !out.contains_key("connection"), "{pairs:?}");
        }
    }

    #[test]
    fn a_bearer_only_websocket_protocol_is_removed_entirely() {
        let out = downstream_request_headers(
            &client(&[("sec-websocket-protocol", "base64url.bearer.authorization.k8s.io.dG9r")]),
            &alice(),
        )
        .unwrap();
        assert!(!out.contains_key("sec-websocket-protocol"));
    }

    #[test]
    fn system_authenticated_is_not_duplicated_and_uid_is_optional() {
        let user = UserInfo {
            username: "u-b".into(),
            groups: vec![SYSTEM_AUTHENTICATED.into()],
            ..Default::default()
        };
        let out = downstream_request_headers(&HeaderMap::new(), &user).unwrap();
        assert_eq!(values(&out, IMPERSONATE_GROUP), [SYSTEM_AUTHENTICATED]);
        assert!(!out.contains_key(IMPERSONATE_UID));
    }

    #[test]
    fn identities_that_are_not_valid_headers_are_refused() {
        let user = UserInfo { username: "u-x\r\nImpersonate-User: admin".into(), ..Default::default() };
        let err = downstream_request_headers(&HeaderMap::new(), &user).unwrap_err();
        assert_eq!(err.status().code, 500);
        assert!(downstream_request_headers(&HeaderMap::new(), &UserInfo::default()).is_err());
    }

    #[test]
    fn extra_keys_are_escaped_like_client_go() {
        assert_eq!(escape_extra_key("scopes"), "scopes");
        assert_eq!(escape_extra_key("example.org/foo"), "example.org%2Ffoo");
        assert_eq!(escape_extra_key("a%b c"), "a%25b%20c");
        assert_eq!(escape_extra_key("Mixed"), "mixed");
    }

    #[test]
    fn response_hop_by_hop_headers_and_connection_named_ones_are_stripped() {
        let mut headers = client(&[
            ("connection", "keep-alive, x-hop"),
            ("keep-alive", "timeout=5"),
            ("x-hop", "1"),
            ("transfer-encoding", "chunked"),
            ("te", "trailers"),
            ("accept", "application/json"),
        ]);
        strip_hop_by_hop(&mut headers);
        assert_eq!(headers.keys().map(|k| k.as_str()).collect::<Vec<_>>(), ["accept"]);
    }

    #[test]
    fn upgrade_needs_both_headers() {
        let mut headers = HeaderMap::new();
        headers.insert("upgrade", "SPDY/3.1".parse().unwrap());
        assert!(!wants_upgrade(&headers));
        headers.insert("connection", "keep-alive, Upgrade".parse().unwrap());
        assert!(wants_upgrade(&headers));
        headers.remove("upgrade");
        assert!(!wants_upgrade(&headers));
    }
}
