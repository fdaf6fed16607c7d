//! `POST /v3/principals?action=search`: how anyone signed in names a colleague (a cluster or project
//! owner adding a member, say) without being able to list users. Callers who may list users search
//! by part of a login or display name; everyone else gets exact login-name matches only, so the
//! search cannot enumerate accounts. At most [`MAX_RESULTS`] principals come back.

use axum::Json;
use axum::body::Body;
use axum::extract::{RawQuery, State};
use http::HeaderMap;
use rancher_core::model::User;
use rancher_core::store::Api;
use serde_json::{Value, json};

use super::body::json_object;
use crate::server::auth::Caller;
use crate::server::error::{ApiError, ApiResult};
use crate::server::state::AppState;

/// The most principals one search returns.
pub(crate) const MAX_RESULTS: usize = 50;
/// The longest search text.
const MAX_NAME: usize = 256;

/// The principal of a local user, in Rancher's shape.
fn principal(user: &User) -> Value {
    json!({
        "id": format!("local://{}", user.metadata.name),
        "type": "principal",
        "principalType": "user",
        "loginName": user.spec.username,
        "name": user.spec.display_name,
        "provider": "local",
        "me": false,
    })
}

/// True when `user` answers the search `needle` (already lower-case) for a caller who may enumerate.
fn matches_partially(user: &User, needle: &str) -> bool {
    user.spec.username.to_lowercase().contains(needle)
        || user.spec.display_name.to_lowercase().contains(needle)
}

/// `POST /v3/principals?action=search` with `{"name": "...", "principalType": "user"|"group"?}`.
pub(crate) async fn post(
    State(state): State<AppState>,
    caller: Caller,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Json<Value>> {
    let action = crate::server::api::query_value(query.as_deref(), "action");
    if action.as_deref() != Some("search") {
        return Err(ApiError::BadRequest(format!(
            "unknown action {:?} on principals (known: search)",
            action.unwrap_or_default()
        )));
    }
    let map = json_object(&headers, body, state.body_limit).await?;
    let name = match map.get("name") {
        Some(Value::String(s)) if !s.trim().is_empty() && s.len() <= MAX_NAME => s.trim().to_owned(),
        _ => {
            return Err(ApiError::invalid_field(
                "name",
                format!("the text to search for: a non-empty string of at most {MAX_NAME} bytes"),
            ));
        }
    };
    let principal_type = match map.get("principalType") {
        None | Some(Value::Null) => None,
        Some(Value::String(t)) if t == "user" || t == "group" => Some(t.as_str()),
        Some(_) => return Err(ApiError::invalid_field("principalType", "must be \"user\" or \"group\"")),
    };
    // The local provider has users only.
    let mut data = Vec::new();
    if principal_type != Some("group") {
        let enumerate = caller.can("list", "users", None);
        let needle = name.to_lowercase();
        let users = Api::<User>::all(state.store.clone()).list().await?;
        data = users
            .iter()
            .filter(|u| if enumerate { matches_partially(u, &needle) } else { u.spec.username == name })
            .take(MAX_RESULTS)
            .map(|u| {
                let mut p = principal(u);
                p["me"] = (u.metadata.name == caller.user_id()).into();
                p
            })
            .collect();
    }
    Ok(Json(json!({ "type": "collection", "resourceType": "principal", "data": data })))
}
