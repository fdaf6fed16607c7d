//! `POST /v1/authenticate`: Rancher's kube-api-auth contract. The API server posts a TokenReview
//! whose `spec.token` is `<name>:<secret>`; the answer is a TokenReview with
//! `status.authenticated`, and on success `status.user.username` (the Rancher user id) and
//! `groups`. Refusals are HTTP 401 (unknown, wrong, disabled or expired token) or 400 (not a
//! TokenReview), each with a TokenReview body whose `status.error` says why.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use jiff::Timestamp;
use serde_json::{Value, json};

use super::cache::TokenRecords;

const V1: &str = "authentication.k8s.io/v1";
const V1BETA1: &str = "authentication.k8s.io/v1beta1";

fn review(api_version: &str, status: Value) -> Value {
    json!({"apiVersion": api_version, "kind": "TokenReview", "status": status})
}

fn refuse(code: StatusCode, api_version: &str, error: &str) -> Response {
    (code, Json(review(api_version, json!({"authenticated": false, "error": error})))).into_response()
}

/// Checks one TokenReview request body against the records at time `now`.
pub(crate) fn check(records: &TokenRecords, body: &[u8], now: Timestamp) -> Response {
    let Ok(req) = serde_json::from_slice::<Value>(body) else {
        return refuse(StatusCode::BAD_REQUEST, V1, "the body is not JSON");
    };
    let version = match req["apiVersion"].as_str() {
        None | Some("") => V1,
        Some(V1) => V1,
        Some(V1BETA1) => V1BETA1,
        Some(_) => return refuse(StatusCode::BAD_REQUEST, V1, "apiVersion must be authentication.k8s.io/v1"),
    };
    if req["kind"].as_str() != Some("TokenReview") {
        return refuse(StatusCode::BAD_REQUEST, version, "kind must be TokenReview");
    }
    let Some(token) = req["spec"]["token"].as_str().filter(|t| !t.is_empty()) else {
        return refuse(StatusCode::BAD_REQUEST, version, "spec.token is required");
    };
    let Some((name, secret)) = token.split_once(':') else {
        return refuse(StatusCode::UNAUTHORIZED, version, "the token is not <name>:<secret>");
    };
    let name = name.strip_prefix("ext/").unwrap_or(name);
    if !records.is_ready() {
        return refuse(StatusCode::SERVICE_UNAVAILABLE, version, "the token records are not loaded yet");
    }
    // One answer for every refusal below, so a caller learns nothing about which names exist.
    let invalid = || refuse(StatusCode::UNAUTHORIZED, version, "invalid or expired token");
    let Some(rec) = records.get(name) else { return invalid() };
    let fresh = rec.expires_at.is_none_or(|at| at > now);
    if !rec.enabled || !fresh || rancher_auth::token::verify_secret(secret, &rec.hash).is_err() {
        tracing::debug!(token = %name, "refused a token review");
        return invalid();
    }
    let user = json!({"username": rec.user_name, "groups": rec.groups});
    (StatusCode::OK, Json(review(version, json!({"authenticated": true, "user": user})))).into_response()
}

pub(crate) async fn authenticate(State(records): State<TokenRecords>, body: Bytes) -> Response {
    check(&records, &body, Timestamp::now())
}

pub(crate) async fn healthcheck(State(records): State<TokenRecords>) -> Response {
    if records.is_ready() {
        (StatusCode::OK, "ok").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "token records not loaded yet").into_response()
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::Secret;
    use kube::runtime::{reflector, watcher};

    use super::*;
    use crate::protocol::ace::ClusterAuthToken;

    fn records(recs: &[ClusterAuthToken]) -> TokenRecords {
        let (reader, mut writer) = reflector::store::<Secret>();
        writer.apply_watcher_event(&watcher::Event::Init);
        for r in recs {
            let secret: Secret = serde_json::from_value(r.to_secret()).unwrap();
            writer.apply_watcher_event(&watcher::Event::InitApply(secret));
        }
        writer.apply_watcher_event(&watcher::Event::InitDone);
        TokenRecords::from_store(reader)
    }

    fn rec(name: &str, secret: &str, expires: Option<&str>, enabled: bool) -> ClusterAuthToken {
        ClusterAuthToken {
            token_name: name.into(),
            hash: rancher_auth::token::hash_secret(secret),
            user_name: "u-alice".into(),
            groups: vec!["local://devs".into()],
            expires_at: expires.map(|e| e.parse().unwrap()),
            enabled,
        }
    }

    async fn call(records: &TokenRecords, body: Value) -> (u16, Value) {
        let now: Timestamp = "2030-01-01T00:00:00Z".parse().unwrap();
        let resp = check(records, body.to_string().as_bytes(), now);
        let code = resp.status().as_u16();
        let body = axum::body::to_bytes(resp.into_body(), 1 << 20).await.unwrap();
        (code, serde_json::from_slice(&body).unwrap())
    }

    fn tr(token: &str) -> Value {
        json!({"apiVersion": V1, "kind": "TokenReview", "spec": {"token": token}})
    }

    #[tokio::test]
    async fn answers_the_kube_api_auth_contract() {
        let r = records(&[
            rec("token-good", "s3cret", None, true),
            rec("token-late", "s3cret", Some("2029-12-31T00:00:00Z"), true),
            rec("token-soon", "s3cret", Some("2030-01-02T00:00:00Z"), true),
            rec("token-off", "s3cret", None, false),
        ]);
        let (code, body) = call(&r, tr("token-good:s3cret")).await;
        assert_eq!(code, 200, "{body}");
        assert_eq!(body["apiVersion"], V1);
        assert_eq!(body["kind"], "TokenReview");
        assert_eq!(body["status"]["authenticated"], true);
        assert_eq!(body["status"]["user"], json!({"username": "u-alice", "groups": ["local://devs"]}));
        assert_eq!(call(&r, tr("ext/token-good:s3cret")).await.0, 200);
        assert_eq!(call(&r, tr("token-soon:s3cret")).await.0, 200);
        let mut beta = tr("token-good:s3cret");
        beta["apiVersion"] = json!(V1BETA1);
        assert_eq!(call(&r, beta).await.1["apiVersion"], V1BETA1);

        for bad in
            ["token-good:wrong", "token-late:s3cret", "token-off:s3cret", "token-nope:s3cret", "nocolon"]
        {
            let (code, body) = call(&r, tr(bad)).await;
            assert_eq!(code, 401, "{bad}: {body}");
            assert_eq!(body["status"]["authenticated"], false);
            assert!(body["status"]["error"].as_str().is_some_and(|e| !e.is_empty()));
            assert!(!body.to_string().contains("s3cret"));
        }
        let (code, _) = call(&r, json!({"kind": "SubjectAccessReview", "spec": {"token": "a:b"}})).await;
        assert_eq!(code, 400);
        assert_eq!(call(&r, json!({"kind": "TokenReview", "spec": {}})).await.0, 400);
        let resp = check(&r, b"not json", Timestamp::now());
        assert_eq!(resp.status().as_u16(), 400);
    }

    #[tokio::test]
    async fn refuses_until_the_records_are_loaded() {
        let (reader, _writer) = reflector::store::<Secret>();
        let (code, _) = call(&TokenRecords::from_store(reader), tr("token-good:s3cret")).await;
        assert_eq!(code, 503);
    }
}
