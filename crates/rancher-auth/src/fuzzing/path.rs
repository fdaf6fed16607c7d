//! The request line of a proxied request: `/k8s/clusters/<id>/<rest>` → [`RequestInfo`] of `<rest>` →
//! the audit record. Input: `METHOD SP /target` on the first line, the request body after it.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::uri::PathAndQuery;
use http::{Method, Request, Response};
use http_body_util::{BodyExt as _, Full};
use tower::{Layer as _, ServiceExt as _};

use super::{first_line, request_line};
use crate::proxy::{
    AuditEvent, AuditLayer, AuditLevel, AuditSink, CLUSTER_PATH_PREFIX, ClusterTarget, MAX_AUDITED_BODY,
    ProxyBody, ProxyError, RequestInfo, UserInfo, boxed, split_cluster_path,
};

/// Every verb [`RequestInfo::parse`] may name for a resource request (empty: a method it does not know).
const VERBS: [&str; 11] = [
    "get",
    "list",
    "watch",
    "create",
    "update",
    "patch",
    "delete",
    "deletecollection",
    "connect",
    "proxy",
    "",
];
/// Two credentials a fuzzed request carries in turn; the audit record must not depend on which.
pub(crate) const CREDENTIAL: &str = CREDENTIALS[0];
const CREDENTIALS: [&str; 2] = ["token-fuzz0:never-in-the-audit-log", "token-fuzz1:nor-this-one-either"];

/// Routes, parses and audits one request line; panics when an invariant breaks:
///
/// * a path [`split_cluster_path`] accepts names a DNS-label cluster id and round-trips exactly, and its
///   rest (with the query) is a valid downstream path;
/// * [`RequestInfo::parse`] never panics, names a known verb, and what it reads from a resource path
///   round-trips: rendered back into a canonical path it parses to the same meaning;
/// * the audit layer records exactly one event that agrees with the request info and does not depend on
///   the credential presented, and a body only within [`MAX_AUDITED_BODY`] and never for `secrets`.
pub fn proxy_path(data: &[u8]) {
    let (line, body) = first_line(data);
    let Some((method, uri)) = request_line(line) else { return };
    let path = uri.path();
    let rest = match split_cluster_path(path) {
        Some((id, rest)) => {
            check_cluster_split(path, id, rest, uri.query());
            rest
        }
        None => path,
    };
    let info = RequestInfo::parse(&method, rest, uri.query());
    check_request_info(&method, uri.query(), &info);
    check_audit(&method, rest, uri.query(), body, &info);
}

fn check_cluster_split(path: &str, id: &str, rest: &str, query: Option<&str>) {
    let label = !id.is_empty()
        && id.len() <= 63
        && id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !id.starts_with('-')
        && !id.ends_with('-');
    assert!(label, "{path:?}: cluster id {id:?} is not a DNS-1123 label");
    assert!(rest.starts_with('/'), "{path:?}: downstream path {rest:?} does not start with '/'");
    let joined = format!("{CLUSTER_PATH_PREFIX}{id}{rest}");
    let bare = rest == "/" && path == format!("{CLUSTER_PATH_PREFIX}{id}");
    assert!(joined == path || bare, "{path:?} split into ({id:?}, {rest:?}), which rebuilds {joined:?}");
    let pq = match query {
        Some(q) => format!("{rest}?{q}"),
        None => rest.to_owned(),
    };
    assert!(PathAndQuery::try_from(pq.as_str()).is_ok(), "{path:?}: downstream target {pq:?} is invalid");
}

fn check_request_info(method: &Method, query: Option<&str>, info: &RequestInfo) {
    if !info.is_resource_request {
        assert_eq!(info.verb, method.as_str().to_ascii_lowercase(), "non-resource verb of {info:?}");
        return;
    }
    assert!(VERBS.contains(&info.verb.as_str()), "unknown verb in {info:?}");
    assert!(info.api_prefix == "api" || info.api_prefix == "apis", "prefix of {info:?}");
    assert_eq!(info.api_prefix == "apis", !info.api_group.is_empty(), "group of {info:?}");
    assert!(!info.api_version.is_empty() && !info.resource.is_empty(), "version/resource of {info:?}");
    assert!(info.subresource.is_empty() || !info.name.is_empty(), "subresource without a name: {info:?}");
    if info.verb == "connect" {
        assert!(["exec", "attach", "portforward"].contains(&info.subresource.as_str()), "{info:?}");
    }
    // Some canonical path must mean the same: with the verb in the path (`watch` also yields `connect` on a
    // connect subresource, and is the only way to a bare `watch` or `proxy` resource) or not, and with
    // the name in the path or (for a list or watch) from the query's field selector.
    let path_verbs = [None, Some("watch"), Some("proxy")];
    let mut forms = path_verbs.iter().flat_map(|verb| [(*verb, true), (*verb, false)]);
    let same = forms.any(|(verb_in_path, name_in_path)| {
        let path = render(info, verb_in_path, name_in_path);
        let again = RequestInfo::parse(method, &path, query);
        // Escapes in the rendered path are decoded to the same request; only the flag that says the
        // path was not already in its normal form may differ.
        RequestInfo { path: info.path.clone(), canonical_path: info.canonical_path, ..again } == *info
    });
    assert!(
        same,
        "{info:?} does not round-trip through a canonical path (e.g. {})",
        render(info, None, true)
    );
}

/// A canonical path for `info`, each segment percent-encoded.
fn render(info: &RequestInfo, verb_in_path: Option<&str>, name_in_path: bool) -> String {
    let mut segments: Vec<&str> = vec![&info.api_prefix];
    if info.api_prefix == "apis" {
        segments.push(&info.api_group);
    }
    segments.push(&info.api_version);
    segments.extend(verb_in_path);
    if !info.namespace.is_empty() {
        segments.extend(["namespaces", info.namespace.as_str()]);
    }
    segments.push(&info.resource);
    if name_in_path && !info.name.is_empty() {
        segments.push(&info.name);
        if !info.subresource.is_empty() {
            segments.push(&info.subresource);
        }
    }
    segments.iter().map(|s| format!("/{}", encode_segment(s))).collect()
}

/// Percent-encodes everything but letters, digits, `-`, `_` and `~` (so `/`, `%`, dot segments and
/// non-ASCII survive a round trip).
pub(crate) fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[derive(Default)]
struct Recorded(Mutex<Vec<AuditEvent>>);

impl AuditSink for Recorded {
    fn record(&self, event: &AuditEvent) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).push(event.clone());
    }
}

/// Sends the request, with `credential` as its bearer token, through an [`AuditLayer`] at
/// [`AuditLevel::RequestBody`] to a downstream that reads the whole body; returns the one event recorded.
pub(crate) fn audit_event(
    method: &Method,
    rest: &str,
    query: Option<&str>,
    body: &[u8],
    credential: &str,
) -> AuditEvent {
    let sink = Arc::new(Recorded::default());
    let downstream = tower::service_fn(|req: Request<ProxyBody>| async move {
        let _ = req.into_body().collect().await;
        Ok::<_, ProxyError>(Response::new(ProxyBody::empty()))
    });
    let svc = AuditLayer::new(sink.clone(), AuditLevel::RequestBody).layer(downstream);
    let target = match query {
        Some(q) => format!("{rest}?{q}"),
        None => rest.to_owned(),
    };
    let mut req = Request::builder()
        .method(method.clone())
        .uri(target)
        .header(http::header::AUTHORIZATION, format!("Bearer {credential}"))
        .body(boxed(Full::new(Bytes::copy_from_slice(body))))
        .expect("a target hyper accepted builds a request");
    req.extensions_mut()
        .insert(std::sync::Arc::new(UserInfo { username: "u-fuzz".into(), ..Default::default() }));
    req.extensions_mut().insert(ClusterTarget { id: "c-fuzz".into() });
    let outcome = futures::executor::block_on(svc.oneshot(req));
    assert!(outcome.is_ok(), "the audit layer failed a request the downstream answered");
    let mut events = std::mem::take(&mut *sink.0.lock().unwrap_or_else(|p| p.into_inner()));
    assert_eq!(events.len(), 1, "one request, one audit event");
    events.remove(0)
}

fn check_audit(method: &Method, rest: &str, query: Option<&str>, body: &[u8], info: &RequestInfo) {
    let event = audit_event(method, rest, query, body, CREDENTIALS[0]);
    assert_eq!(event.path, rest);
    let recorded = (&event.verb, &event.api_group, &event.namespace, &event.resource);
    assert_eq!(recorded, (&info.verb, &info.api_group, &info.namespace, &info.resource));
    assert_eq!((&event.name, &event.subresource), (&info.name, &info.subresource));
    let other = audit_event(method, rest, query, body, CREDENTIALS[1]);
    assert_eq!(without_timing(&event), without_timing(&other), "the audit record depends on the credential");
    match &event.request_body {
        Some(recorded) => {
            // Only what redaction allows, whole, within the bound; never a Secret's or a token's.
            assert!(crate::proxy::may_record_body(info).is_ok(), "a sensitive body was recorded");
            assert!(info.resource != "secrets", "a Secret's body was recorded");
            assert!(body.len() <= MAX_AUDITED_BODY, "a body over the bound was recorded");
            assert_eq!(recorded.as_str(), String::from_utf8_lossy(body).as_ref());
            assert_eq!(event.request_body_omitted, None);
        }
        None => assert!(event.request_body_omitted.is_some(), "a body left out without a reason"),
    }
}

/// The event as JSON without its time and latency, which differ between two runs.
fn without_timing(event: &AuditEvent) -> serde_json::Value {
    let mut v = serde_json::to_value(event).expect("an audit event encodes");
    if let Some(map) = v.as_object_mut() {
        map.remove("time");
        map.remove("latencyMs");
    }
    v
}
