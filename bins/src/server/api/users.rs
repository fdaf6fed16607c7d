//! Users: generated ids `u-xxxxx`, plain-ASCII usernames unique regardless of case, write-only
//! passwords (argon2), server-owned principal ids, default global roles; who may change a user
//! ([`escalation`]), and `POST /v3/users?action=changepassword` for one's own password.

use async_trait::async_trait;
use axum::Json;
use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Response};
use http::HeaderMap;
use rancher_auth::password;
use rancher_core::model::{GlobalRole, GlobalRoleBinding, GlobalRoleBindingSpec, User};
use rancher_core::store::{Api, Store};
use serde::Deserialize;
use std::sync::Arc;

use super::body::json_object;
use super::crud;
use super::escalation;
use super::kind::{ApiKind, Ctx, generated_name};
use crate::server::auth::Caller;
use crate::server::error::{ApiError, ApiResult};
use crate::server::state::AppState;

/// Hashes a new password after the strength check, within the process-wide limit on password hashing
/// (argon2 is slow on purpose).
pub(crate) async fn hash_new_password(pw: String) -> ApiResult<String> {
    password::check_strength(&pw).map_err(|e| ApiError::invalid_field("spec.password", e.to_string()))?;
    Ok(crate::server::hashing::hash(pw).await?)
}

/// The user with this login name, if any.
pub(crate) async fn find_by_username(store: &Arc<dyn Store>, username: &str) -> ApiResult<Option<User>> {
    Ok(Api::<User>::all(store.clone()).list().await?.into_iter().find(|u| u.spec.username == username))
}

/// The longest local username.
const MAX_USERNAME: usize = 128;

/// Local usernames are typed at `rancherctl login` and shown next to each other in lists, so they are
/// plain ASCII: letters, digits and `.`, `_`, `-`, `@` (e-mail-like names work), starting with a letter
/// or digit (never an option-like `-x`). No other script can make a look-alike of another user's name
/// (`аdmin` with a Cyrillic `а`), and no invisible or confusable character gets in.
fn check_username(username: &str) -> ApiResult<()> {
    if username.is_empty() {
        return Err(ApiError::invalid_field("spec.username", "a username is required"));
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@');
    if username.len() > MAX_USERNAME
        || !username.chars().all(allowed)
        || !username.starts_with(|c: char| c.is_ascii_alphanumeric())
    {
        return Err(ApiError::invalid_field(
            "spec.username",
            format!(
                "{username:?} is not a valid username: 1 to {MAX_USERNAME} ASCII letters, digits, '.', '_', \
                 '-' or '@', starting with a letter or digit"
            ),
        ));
    }
    Ok(())
}

/// Refuses `username` when another user (not `except`) has it, compared without regard to case, so
/// `Admin` is not a second `admin`.
async fn check_username_free(store: &Arc<dyn Store>, username: &str, except: Option<&str>) -> ApiResult<()> {
    let users = Api::<User>::all(store.clone()).list().await?;
    match users
        .iter()
        .find(|u| u.spec.username.eq_ignore_ascii_case(username) && Some(u.metadata.name.as_str()) != except)
    {
        Some(u) if u.spec.username == username => {
            Err(ApiError::AlreadyExists(format!("username {username:?} is taken")))
        }
        Some(u) => Err(ApiError::AlreadyExists(format!(
            "username {username:?} is taken: it differs from {:?} only in case",
            u.spec.username
        ))),
        None => Ok(()),
    }
}

/// The deterministic name of the binding of `user` to `role`, so bootstrap and retries stay idempotent.
pub(crate) fn binding_name(user: &str, role: &str) -> String {
    format!("{user}-{role}")
}

/// Binds `user` to `role` unless bound already.
pub(crate) async fn bind_global_role(store: &Arc<dyn Store>, user: &str, role: &str) -> ApiResult<()> {
    let grb = GlobalRoleBinding::new(
        &binding_name(user, role),
        GlobalRoleBindingSpec { user_name: user.into(), global_role_name: role.into(), ..Default::default() },
    );
    match Api::<GlobalRoleBinding>::all(store.clone()).create(&grb).await {
        Ok(_) | Err(rancher_core::store::StoreError::AlreadyExists { .. }) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

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
        // The id is the server's: the user's principal id is made from it, and a chosen one could
        // take the id a provider user gets on first login (`u-<hash of the principal>`).
        if !self.metadata.name.is_empty()
            || self.metadata.generate_name.as_deref().is_some_and(|g| !g.is_empty())
        {
            return Err(ApiError::invalid_field(
                "metadata.name",
                "user ids are made by the server (u-xxxxx): leave metadata.name and generateName out",
            ));
        }
        self.metadata.name = generated_name("u-");
        self.metadata.generate_name = None;
        check_username(&self.spec.username)?;
        check_username_free(&cx.state.store, &self.spec.username, None).await?;
        if self.spec.password.is_empty() {
            return Err(ApiError::invalid_field("spec.password", "a password is required"));
        }
        escalation::check_new_user_roles(cx).await?;
        self.spec.password = hash_new_password(std::mem::take(&mut self.spec.password)).await?;
        // Principal ids are the server's: bindings and the proxy match on them, so a client naming
        // another user's principal would act as that user.
        self.spec.principal_ids = vec![format!("local://{}", self.metadata.name)];
        if self.spec.display_name.is_empty() {
            self.spec.display_name = self.spec.username.clone();
        }
        Ok(())
    }

    /// Who may change this user at all is [`ApiKind::check_change`]; here, what may change: the
    /// principal ids never, the username to a free valid one, and the password only for someone
    /// else — one's own needs the current password (`?action=changepassword`), so a stolen session
    /// cannot lock its owner out.
    async fn prepare_update(&mut self, old: &Self, cx: &Ctx<'_>) -> ApiResult<()> {
        if self.spec.username != old.spec.username {
            check_username(&self.spec.username)?;
            check_username_free(&cx.state.store, &self.spec.username, Some(&old.metadata.name)).await?;
        }
        self.spec.principal_ids = old.spec.principal_ids.clone();
        self.spec.password = if self.spec.password.is_empty() {
            old.spec.password.clone()
        } else if old.metadata.name == cx.caller.user_id() {
            return Err(ApiError::Forbidden(format!(
                "users \"{}\" is forbidden: your own password is changed with POST \
                 /v3/users?action=changepassword and the current password",
                old.metadata.name
            )));
        } else {
            hash_new_password(std::mem::take(&mut self.spec.password)).await?
        };
        Ok(())
    }

    async fn check_change(&self, cx: &Ctx<'_>) -> ApiResult<()> {
        escalation::check_manage_user(cx, self).await
    }

    async fn after_create(&self, cx: &Ctx<'_>) -> ApiResult<()> {
        for role in Api::<GlobalRole>::all(cx.state.store.clone()).list().await? {
            if role.spec.new_user_default {
                bind_global_role(&cx.state.store, &self.metadata.name, &role.metadata.name).await?;
            }
        }
        Ok(())
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

fn query_action(query: Option<&str>) -> Option<String> {
    url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .find(|(k, _)| k == "action")
        .map(|(_, v)| v.into_owned())
}

/// `POST /v3/users`: creates a user; `?action=changepassword` changes the caller's own password.
pub(crate) async fn post(
    State(state): State<AppState>,
    caller: Caller,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    match query_action(query.as_deref()).as_deref() {
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
    password::check_strength(&input.new_password)
        .map_err(|e| ApiError::invalid_field("newPassword", e.to_string()))?;
    let users: Api<User> = Api::all(state.store.clone());
    let mut user = users.get(caller.user_id()).await?;
    if user.spec.password.is_empty() {
        return Err(ApiError::Forbidden(format!(
            "user \"{}\" has no local password: it logs in through its identity provider",
            caller.user_id()
        )));
    }
    let (current, hash) = (input.current_password, user.spec.password.clone());
    // Through the same bounded pool as logins: a stolen session cannot turn this into a CPU flood.
    let matches = crate::server::hashing::verify(current, Some(hash)).await?;
    if !matches {
        return Err(ApiError::Forbidden("the current password is not correct".into()));
    }
    user.spec.password = hash_new_password(input.new_password).await?;
    user.spec.must_change_password = false;
    // A compare-and-swap on the version read above: a concurrent change is a 409, never overwritten.
    users.update(&user).await?;
    Ok(Json(serde_json::json!({})).into_response())
}
