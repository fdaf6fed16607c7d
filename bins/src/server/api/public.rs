//! Endpoints without authentication: liveness, readiness, metrics and the published CA.

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::{StatusCode, header};
use rancher_core::store::ListOptions;
use serde_json::json;

use crate::server::error::ApiError;
use crate::server::state::AppState;

/// `GET /ping` → `pong`.
pub(crate) async fn ping() -> &'static str {
    "pong"
}

/// `GET /healthz`: the process serves requests.
pub(crate) async fn healthz() -> &'static str {
    "ok"
}

/// `GET /readyz`: the store answers.
pub(crate) async fn readyz(State(state): State<AppState>) -> Response {
    let probe = ListOptions { limit: Some(1), ..Default::default() };
    match state.store.list("globalroles", &probe).await {
        Ok(_) => "ok".into_response(),
        Err(e) => ApiError::Unavailable(format!("the store is not reachable: {e}")).into_response(),
    }
}

/// `GET /metrics` in the OpenMetrics text format.
pub(crate) async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")],
        state.metrics.render(),
    )
        .into_response()
}

/// `GET /v3/settings/cacerts`: the CA that signed the serving certificate (agents pin its SHA-256).
pub(crate) async fn cacerts_setting(State(state): State<AppState>) -> Json<serde_json::Value> {
    Json(json!({
        "id": "cacerts",
        "name": "cacerts",
        "type": "setting",
        "value": state.ca_pem.as_ref(),
    }))
}

/// `GET /cacerts`: the same CA as plain PEM.
pub(crate) async fn cacerts_pem(State(state): State<AppState>) -> Response {
    (StatusCode::OK, [(header::CONTENT_TYPE, "application/x-pem-file")], state.ca_pem.to_string())
        .into_response()
}
