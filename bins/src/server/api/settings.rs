//! `/v3/settings`: the server's settings, as Rancher's API lists them (`{id, name, value, default,
//! customized}`), to every logged-in user. They are read-only here: Rancher keeps settings as objects
//! an admin edits, this server takes them from its flags at start (`--server-url`,
//! `--kubeconfig-token-ttl`, …), so a change is a `405` that says which flag to set. `cacerts` is also
//! public at `/v3/settings/cacerts` (agents fetch it before they hold a token).

use axum::Json;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use http::Method;
use serde_json::{Value, json};

use crate::server::auth::Caller;
use crate::server::error::{ApiError, ApiResult};
use crate::server::state::AppState;

/// One setting: its name, the value in force, the default, and the flag that sets it.
struct Setting {
    name: &'static str,
    value: String,
    default: String,
    flag: &'static str,
}

fn minutes(ms: i64) -> String {
    (ms / 60_000).to_string()
}

/// Every setting, by name.
fn settings(state: &AppState) -> Vec<Setting> {
    use crate::server::{DEFAULT_KUBECONFIG_TOKEN_TTL_MS, DEFAULT_TOKEN_MAX_TTL_MS, registration};
    vec![
        Setting {
            name: "cacerts",
            value: state.ca_pem.to_string(),
            default: String::new(),
            flag: "--tls-ca",
        },
        Setting {
            name: "server-url",
            value: state.registration.server_url().to_owned(),
            default: String::new(),
            flag: "--server-url",
        },
        Setting {
            name: "server-version",
            value: env!("CARGO_PKG_VERSION").to_owned(),
            default: env!("CARGO_PKG_VERSION").to_owned(),
            flag: "",
        },
        Setting {
            name: "agent-image",
            value: state.registration.agent_image().to_owned(),
            default: registration::DEFAULT_AGENT_IMAGE.to_owned(),
            flag: "--agent-image",
        },
        Setting {
            name: "kubeconfig-default-token-ttl-minutes",
            value: minutes(state.kubeconfig_token_ttl_ms),
            default: minutes(DEFAULT_KUBECONFIG_TOKEN_TTL_MS),
            flag: "--kubeconfig-token-ttl",
        },
        Setting {
            name: "auth-token-max-ttl-minutes",
            value: minutes(state.max_token_ttl_ms),
            default: minutes(DEFAULT_TOKEN_MAX_TTL_MS),
            flag: "--auth-token-max-ttl",
        },
    ]
}

fn object(s: &Setting) -> Value {
    json!({
        "id": s.name,
        "name": s.name,
        "type": "setting",
        "value": s.value,
        "default": s.default,
        "customized": s.value != s.default,
        "source": if s.flag.is_empty() { "build".to_owned() } else { format!("flag {}", s.flag) },
    })
}

/// `GET /v3/settings`.
pub(crate) async fn list(State(state): State<AppState>, _caller: Caller) -> Json<Value> {
    let data: Vec<Value> = settings(&state).iter().map(object).collect();
    Json(json!({ "type": "collection", "resourceType": "setting", "data": data }))
}

/// `GET /v3/settings/{name}`.
pub(crate) async fn get(
    State(state): State<AppState>,
    _caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    settings(&state)
        .iter()
        .find(|s| s.name == name)
        .map(|s| Json(object(s)))
        .ok_or_else(|| ApiError::NotFound(format!("settings.management.cattle.io {name:?} not found")))
}

/// `PUT`/`DELETE` on a setting: not here — the flag that sets it, in the refusal.
pub(crate) async fn change(
    State(state): State<AppState>,
    _caller: Caller,
    method: Method,
    Path(name): Path<String>,
) -> Response {
    let how = match settings(&state).iter().find(|s| s.name == name) {
        Some(s) if !s.flag.is_empty() => format!("set {} when starting the server", s.flag),
        Some(_) => "it is fixed by the build".to_owned(),
        None => {
            return ApiError::NotFound(format!("settings.management.cattle.io {name:?} not found"))
                .into_response();
        }
    };
    ApiError::MethodNotAllowed(format!(
        "{method} is not supported on settings: {name} is read-only here; {how}"
    ))
    .into_response()
}
