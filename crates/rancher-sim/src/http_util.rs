//! HTTP plumbing shared by the handlers: the response body type, JSON/Status responses, query
//! strings, content negotiation and bounded body reading.

use std::convert::Infallible;

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, Limited};
use serde_json::Value;

use crate::status::ApiError;

/// The response body of every handler.
pub(crate) type Body = BoxBody<Bytes, Infallible>;

/// Largest request body accepted (the API server's limit).
pub(crate) const MAX_BODY: usize = 3 * 1024 * 1024;

pub(crate) fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into()).boxed()
}

pub(crate) fn json_response(code: u16, v: &Value) -> Response<Body> {
    let mut r = Response::new(full(serde_json::to_vec(v).unwrap_or_default()));
    *r.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::OK);
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

pub(crate) fn error_response(e: &ApiError) -> Response<Body> {
    let mut r = json_response(e.code, &e.to_status());
    if e.code == 401 {
        r.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"kubernetes\""));
    }
    r
}

pub(crate) fn text_response(code: u16, s: impl Into<Bytes>) -> Response<Body> {
    let mut r = Response::new(full(s));
    *r.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::OK);
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    r
}

/// Decoded query parameters, in order (repeated keys like `command=` kept).
#[derive(Debug, Clone, Default)]
pub(crate) struct Query(pub(crate) Vec<(String, String)>);

fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => match u8::from_str_radix(&s[i + 1..i + 3], 16) {
                Ok(v) => {
                    out.push(v);
                    i += 2;
                }
                Err(_) => out.push(b'%'),
            },
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl Query {
    pub(crate) fn parse(q: Option<&str>) -> Self {
        Query(
            q.unwrap_or("")
                .split('&')
                .filter(|p| !p.is_empty())
                .map(|p| {
                    let (k, v) = p.split_once('=').unwrap_or((p, ""));
                    (decode(k), decode(v))
                })
                .collect(),
        )
    }
    pub(crate) fn get(&self, k: &str) -> Option<&str> {
        self.0.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str())
    }
    pub(crate) fn all(&self, k: &str) -> Vec<String> {
        self.0.iter().filter(|(key, _)| key == k).map(|(_, v)| v.clone()).collect()
    }
    pub(crate) fn flag(&self, k: &str) -> bool {
        matches!(self.get(k), Some("true" | "1" | ""))
    }
    pub(crate) fn int(&self, k: &str) -> Result<Option<i64>, ApiError> {
        match self.get(k) {
            None | Some("") => Ok(None),
            Some(v) => v
                .parse()
                .map(Some)
                .map_err(|_| ApiError::bad_request(format!("invalid value for {k}: {v:?}"))),
        }
    }
}

/// What the client asked for in `Accept`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wants {
    Json,
    Table,
}

/// Negotiates JSON or Table; protobuf-only (or other unservable) Accept headers get 406.
pub(crate) fn negotiate(accept: Option<&str>) -> Result<Wants, ApiError> {
    let Some(accept) = accept.filter(|a| !a.trim().is_empty()) else {
        return Ok(Wants::Json);
    };
    let mut json_ok = false;
    for part in accept.split(',') {
        let p = part.trim();
        let media = p.split(';').next().unwrap_or("").trim();
        let is_json = matches!(media, "application/json" | "*/*" | "application/*" | "application/yaml");
        if is_json && p.contains("as=Table") && p.contains("g=meta.k8s.io") {
            return Ok(Wants::Table);
        }
        if is_json && !p.contains("as=") {
            json_ok = true;
        }
    }
    if json_ok { Ok(Wants::Json) } else { Err(ApiError::not_acceptable(accept)) }
}

/// Reads a request body of at most [`MAX_BODY`] bytes.
pub(crate) async fn read_body(body: hyper::body::Incoming) -> Result<Bytes, ApiError> {
    match Limited::new(body, MAX_BODY).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() => {
            Err(ApiError::too_large())
        }
        Err(e) => Err(ApiError::bad_request(format!("reading request body: {e}"))),
    }
}

/// Parses a JSON (or YAML, for `application/yaml` and apply patches) request body into an object.
pub(crate) fn parse_object(bytes: &[u8], content_type: &str) -> Result<Value, ApiError> {
    let media = content_type.split(';').next().unwrap_or("").trim();
    let v: Value = match media {
        "" | "application/json" | "*/*" => serde_json::from_slice(bytes)
            .map_err(|e| ApiError::bad_request(format!("error decoding request body as JSON: {e}")))?,
        "application/yaml" | "application/apply-patch+yaml" => match serde_json::from_slice(bytes) {
            Ok(v) => v,
            Err(_) => serde_saphyr::from_slice(bytes)
                .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))?,
        },
        "application/vnd.kubernetes.protobuf" => crate::protobuf::decode(bytes)?,
        other => {
            return Err(ApiError::unsupported_media_type(
                other,
                &["application/json", "application/yaml", "application/vnd.kubernetes.protobuf"],
            ));
        }
    };
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_negotiation() {
        assert_eq!(negotiate(None).unwrap(), Wants::Json);
        assert_eq!(
            negotiate(Some("application/json;as=Table;v=v1;g=meta.k8s.io,application/json")).unwrap(),
            Wants::Table
        );
        assert_eq!(negotiate(Some("application/vnd.kubernetes.protobuf")).unwrap_err().code, 406);
        assert_eq!(
            negotiate(Some(
                "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json"
            ))
            .unwrap(),
            Wants::Json
        );
    }

    #[test]
    fn query_decoding() {
        let q = Query::parse(Some("command=echo&command=hi%20there&labelSelector=app%3Dweb&watch=1"));
        assert_eq!(q.all("command"), vec!["echo", "hi there"]);
        assert_eq!(q.get("labelSelector"), Some("app=web"));
        assert!(q.flag("watch"));
    }
}
