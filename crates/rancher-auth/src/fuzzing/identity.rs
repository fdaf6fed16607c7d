//! The identity sent downstream is the proxy's alone: no header a client sends can add, remove or
//! change an `Impersonate-*` header or a credential in what the proxy forwards.
//!
//! Input: the first line is the authenticated user as the server knows it,
//! `username|uid|group,group|key=value,value;key=value`; every further line is a client header
//! `Name: value` (lines hyper would refuse are dropped, as hyper would refuse the request).

use std::collections::BTreeMap;

use http::{HeaderMap, HeaderName, HeaderValue, header};

use super::first_line;
use crate::proxy::{ProxyError, UserInfo, WEBSOCKET_BEARER_PROTOCOL_PREFIX, downstream_request_headers};

/// The headers the proxy sends downstream for a client's `headers` and the authenticated `user`.
///
/// This is the function under test: the proxy's [`downstream_request_headers`] (the allow-list,
/// `Connection` handling and upgrades, with the identity set last), which `Forward` sends as they are.
///
/// # Errors
/// When the proxy refuses the request (e.g. an identity that is not a valid header value).
pub fn downstream_headers(headers: &HeaderMap, user: &UserInfo) -> Result<HeaderMap, ProxyError> {
    downstream_request_headers(headers, user)
}

/// Panics unless the identity headers (`Impersonate-*`, `Authorization`, `Proxy-Authorization`,
/// `Cookie`, a WebSocket bearer protocol) that [`downstream_headers`] sends for the client's headers are
/// exactly those it sends for a client that sent none. Refusing the request is always allowed.
pub fn identity_headers(data: &[u8]) {
    let (user, client) = parse(data);
    check(&user, &client, identity);
}

/// As [`identity_headers`], and the identity also survives the next HTTP/1.1 hop: an intermediary
/// (or the API server's own proxy) drops every header the forwarded `Connection` header names, so the
/// proxy must never forward a `Connection` that names an identity header.
pub fn identity_headers_next_hop(data: &[u8]) {
    let (user, client) = parse(data);
    check(&user, &client, identity);
    check(&user, &client, |h| identity(&after_next_hop(h)));
}

fn check(user: &UserInfo, client: &HeaderMap, view: impl Fn(&HeaderMap) -> Identity) {
    let Ok(got) = downstream_headers(client, user) else { return };
    let Ok(own) = downstream_headers(&HeaderMap::new(), user) else {
        panic!(
            "the client's headers made an identity the proxy refuses acceptable: {user:?} with {client:?}"
        );
    };
    let (got, own) = (view(&got), view(&own));
    assert_eq!(
        got, own,
        "the client's headers changed the identity sent downstream\nuser: {user:?}\nclient: {client:?}"
    );
}

/// Header name → its values in order, for every header that says who the request is.
type Identity = BTreeMap<String, Vec<HeaderValue>>;

fn identity(headers: &HeaderMap) -> Identity {
    let mut out = Identity::new();
    for (name, value) in headers {
        let n = name.as_str();
        let credential = [header::AUTHORIZATION, header::PROXY_AUTHORIZATION, header::COOKIE].contains(name);
        if n.starts_with("impersonate-") || credential {
            out.entry(n.to_owned()).or_default().push(value.clone());
        }
    }
    let bearer: Vec<HeaderValue> = headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .map(<[u8]>::trim_ascii)
        .filter(|p| p.starts_with(WEBSOCKET_BEARER_PROTOCOL_PREFIX.as_bytes()))
        .filter_map(|p| HeaderValue::from_bytes(p).ok())
        .collect();
    if !bearer.is_empty() {
        out.insert("sec-websocket-protocol (bearer)".into(), bearer);
    }
    out
}

/// What the next HTTP/1.1 hop passes on (RFC 9110 §7.6.1): without the headers `Connection` names and
/// the standard hop-by-hop ones.
fn after_next_hop(headers: &HeaderMap) -> HeaderMap {
    let mut out = headers.clone();
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .filter_map(|t| HeaderName::from_bytes(t.trim_ascii()).ok())
        .collect();
    for name in named {
        out.remove(name);
    }
    for name in
        ["connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade"]
    {
        out.remove(name);
    }
    out
}

fn parse(data: &[u8]) -> (UserInfo, HeaderMap) {
    let (first, rest) = first_line(data);
    let first = String::from_utf8_lossy(first);
    let mut fields = first.splitn(4, '|');
    let mut next = || fields.next().unwrap_or_default().to_owned();
    let (username, uid, groups, extra) = (next(), next(), next(), next());
    let list = |s: &str| s.split(',').filter(|v| !v.is_empty()).map(str::to_owned).collect::<Vec<_>>();
    let extra =
        extra.split(';').filter_map(|kv| kv.split_once('=')).map(|(k, v)| (k.to_owned(), list(v))).collect();
    let user = UserInfo { username, uid, groups: list(&groups), extra };

    let mut headers = HeaderMap::new();
    for line in rest.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = line.iter().position(|&b| b == b':') else { continue };
        let (Ok(name), Ok(value)) =
            (HeaderName::from_bytes(&line[..colon]), HeaderValue::from_bytes(line[colon + 1..].trim_ascii()))
        else {
            continue;
        };
        headers.append(name, value);
    }
    (user, headers)
}
