//! The audit log never holds the body of a request that the downstream API server may read as one on
//! `secrets` — whichever way a hop between them reads the path.

use super::path::{CREDENTIAL, audit_event};
use super::{first_line, request_line};
use crate::proxy::split_cluster_path;

/// Audits one request (input as for [`super::proxy_path`]) and panics if its body was recorded although
/// the API server, reading the path as Go does (percent-decoded as a whole, then split on `/`), or a
/// hop that also removes dot segments or empty segments, would take it for a request on `secrets`.
pub fn audit_secret_bodies(data: &[u8]) {
    let (line, body) = first_line(data);
    let Some((method, uri)) = request_line(line) else { return };
    let rest = split_cluster_path(uri.path()).map_or(uri.path(), |(_, rest)| rest);
    // Go answers 400 to a malformed escape: such a request creates nothing downstream.
    let Some(decoded) = go_path_unescape(rest) else { return };
    let normalized = remove_dot_segments(&decoded);
    let readings = [decoded.clone(), normalized.clone(), collapse_empty_segments(&normalized)];
    let Some(reading) = readings.iter().find(|p| apiserver_resource(p) == Some("secrets")) else { return };
    let event = audit_event(&method, rest, uri.query(), body, CREDENTIAL);
    assert_eq!(
        event.request_body, None,
        "{method} {rest}: the API server may read this as {reading:?} (a Secret), but its body was audited"
    );
}

/// Go's `url.PathUnescape`: `%XX` decoded, a malformed escape is an error.
fn go_path_unescape(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = |b: u8| (b as char).to_digit(16);
            let h = hex(*bytes.get(i + 1)?)?;
            let l = hex(*bytes.get(i + 2)?)?;
            out.push((h * 16 + l) as u8);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Some(String::from_utf8_lossy(&out).into_owned())
}

/// RFC 3986 §5.2.4, on a path that starts with `/`.
fn remove_dot_segments(path: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for segment in path.split('/').skip(1) {
        match segment {
            "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s),
        }
    }
    format!("/{}", out.join("/"))
}

fn collapse_empty_segments(path: &str) -> String {
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    format!("/{}", segments.join("/"))
}

/// The resource the Kubernetes API server's `RequestInfoFactory` reads from an already decoded path
/// (it splits on `/` and keeps empty segments); `None` for a non-resource path.
fn apiserver_resource(path: &str) -> Option<&str> {
    let trimmed = path.trim_matches('/');
    let parts: Vec<&str> = if trimmed.is_empty() { Vec::new() } else { trimmed.split('/').collect() };
    if parts.len() < 3 || !(parts[0] == "api" || parts[0] == "apis") {
        return None;
    }
    let mut rest = &parts[1..];
    if parts[0] == "apis" {
        if rest.len() < 3 {
            return None;
        }
        rest = &rest[1..];
    }
    rest = &rest[1..];
    if rest[0] == "watch" || rest[0] == "proxy" {
        if rest.len() < 2 {
            return None;
        }
        rest = &rest[1..];
    }
    if rest[0] == "namespaces" && rest.len() > 2 && rest[2] != "status" && rest[2] != "finalize" {
        rest = &rest[2..];
    }
    Some(rest[0])
}
