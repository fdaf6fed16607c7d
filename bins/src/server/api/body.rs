//! Reading request bodies: JSON only, size-limited, decoded into a JSON object.

use axum::body::Body;
use http::HeaderMap;
use serde_json::{Map, Value};

use crate::server::error::{ApiError, ApiResult};

/// True for `application/json` and `application/<x>+json`, with any parameters.
fn is_json(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// Reads a JSON object body of at most `limit` bytes.
///
/// # Errors
/// 415 for a content type other than JSON, 413 over the limit, 400 for malformed JSON or a body that
/// is not an object.
pub(crate) async fn json_object(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
) -> ApiResult<Map<String, Value>> {
    let content_type = headers.get(http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if !is_json(content_type) {
        return Err(ApiError::UnsupportedMediaType(if content_type.is_empty() {
            "the request has no Content-Type: send application/json".into()
        } else {
            format!("unsupported media type {content_type:?}: send application/json")
        }));
    }
    let declared = headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(ApiError::TooLarge { limit });
    }
    let bytes = axum::body::to_bytes(body, limit).await.map_err(|e| {
        // `to_bytes` reports an over-long body as a length-limit error somewhere in its source chain.
        let mut source: Option<&dyn std::error::Error> = Some(&e);
        while let Some(s) = source {
            if s.is::<http_body_util::LengthLimitError>() {
                return ApiError::TooLarge { limit };
            }
            source = s.source();
        }
        ApiError::BadRequest(format!("reading the request body: {e}"))
    })?;
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ApiError::BadRequest("the request body must be a JSON object".into())),
        Err(e) => Err(ApiError::BadRequest(format!("the request body is not valid JSON: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(ct: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        if !ct.is_empty() {
            h.insert("content-type", ct.parse().unwrap());
        }
        h
    }

    #[tokio::test]
    async fn accepts_json_objects_only() {
        let ok =
            json_object(&headers("application/json; charset=utf-8"), Body::from(r#"{"a":1}"#), 100).await;
        assert_eq!(ok.unwrap()["a"], 1);
        let code = |r: ApiResult<_>| r.unwrap_err().to_status().code;
        assert_eq!(code(json_object(&headers("text/plain"), Body::from("{}"), 100).await), 415);
        assert_eq!(code(json_object(&headers(""), Body::from("{}"), 100).await), 415);
        assert_eq!(code(json_object(&headers("application/json"), Body::from("{"), 100).await), 400);
        assert_eq!(code(json_object(&headers("application/json"), Body::from("[1]"), 100).await), 400);
        let big = format!(r#"{{"a":"{}"}}"#, "x".repeat(200));
        assert_eq!(code(json_object(&headers("application/json"), Body::from(big), 100).await), 413);
    }
}
