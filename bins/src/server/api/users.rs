//! `/v3/users` over [`services::users`](crate::server::services::users): the user kind's checks and
//! defaults on create, update and delete, and `POST /v3/users?action=changepassword` for one's own
//! password.

use async_trait::async_trait;
use axum::Json;
use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Response};
use http::HeaderMap;
use rancher_core::model::User;
use serde::Deserialize;

use super::body::json_object;
use super::crud;
use super::kind::{ApiKind, Ctx};
use super::query_value;
use crate::server::auth::Caller;
use crate::server::error::{ApiError, ApiResult};
use crate::server::services::users;
use crate::server::state::AppState;

#[async_trait]
impl ApiKind for User {
    const TYPE: &'static str = "user";
    const SELF_VERBS: &'static [&'static str] = &["get"];

    fn owned_by(&self, caller: &Caller) -> bool {
        self.metadata.name == caller.user_id()
    }

    fn redact(&mut self) {
        self.spec.password.clear();
    }

    async fn prepare_create(&mut self, cx: &Ctx<'_>) -> ApiResult<()> {
        Ok(users::prepare_new(&cx.state.store, cx.caller, self).await?)
    }

    /// Who may change this user at all is [`ApiKind::check_change`]; here, what may change
    /// ([`users::prepare_change`]).
    async fn prepare_update(&mut self, old: &Self, cx: &Ctx<'_>) -> ApiResult<()> {
        Ok(users::prepare_change(&cx.state.store, cx.caller, self, old).await?)
    }

    async fn check_change(&self, cx: &Ctx<'_>) -> ApiResult<()> {
        Ok(users::check_manage(&cx.state.store, cx.caller, self).await?)
    }

    async fn after_create(&self, cx: &Ctx<'_>) -> ApiResult<()> {
        Ok(users::bind_default_roles(&cx.state.store, &self.metadata.name).await?)
    }

    fn check_delete(&self) -> ApiResult<()> {
        Ok(())
    }

    async fn after_delete(&self, cx: &Ctx<'_>) {
        // Their tokens, global role bindings and cluster and project role template bindings go with
        // them. Failures are logged, not fatal: the user is gone, their tokens are refused anyway, and
        // the orphan sweep removes what is left.
        if let Err(e) = crate::server::cleanup::leftovers::remove_user_leftovers(&cx.state.store, self).await
        {
            tracing::warn!(user = %self.metadata.name, "removing a deleted user's tokens and bindings: {e}");
        }
    }
}

/// `GET /v3/users`: the users the caller may list; `?me=true` (as Rancher's UI asks): the caller's
/// own user, whoever they are.
pub(crate) async fn list(
    state: State<AppState>,
    caller: Caller,
    RawQuery(query): RawQuery,
) -> ApiResult<Json<serde_json::Value>> {
    let me = query_value(query.as_deref(), "me").as_deref() == Some("true");
    if !me {
        return crud::list::<User>(state, caller, RawQuery(query)).await;
    }
    let own = crud::to_output(caller.user.clone())?;
    Ok(Json(serde_json::json!({ "type": "collection", "resourceType": "user", "data": [own] })))
}

/// `POST /v3/users`: creates a user; `?action=changepassword` changes the caller's own password.
pub(crate) async fn post(
    State(state): State<AppState>,
    caller: Caller,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    match query_value(query.as_deref(), "action").as_deref() {
        None => Ok(crud::create::<User>(State(state), caller, headers, body).await?.into_response()),
        Some("changepassword") => change_password(&state, &caller, &headers, body).await,
        Some(other) => {
            Err(ApiError::BadRequest(format!("unknown action {other:?} on users (known: changepassword)")))
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ChangePassword {
    current_password: String,
    new_password: String,
}

/// The caller's own password, given the current one (as Rancher's `changepassword` action).
async fn change_password(
    state: &AppState,
    caller: &Caller,
    headers: &HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    let map = json_object(headers, body, state.body_limit).await?;
    let input: ChangePassword = serde_json::from_value(serde_json::Value::Object(map)).map_err(|e| {
        ApiError::BadRequest(format!("changepassword needs \"currentPassword\" and \"newPassword\": {e}"))
    })?;
    users::change_own_password(&state.store, caller.user_id(), input.current_password, input.new_password)
        .await?;
    Ok(Json(serde_json::json!({})).into_response())
}
