//! `POST /v3-public/<kind>Providers/<name>?action=login` at a password provider (OpenLDAP, or one
//! plugged in): a user name and password in, a session token out. The directory's user becomes (or is found as) the local user named after a hash
//! of its principal id; its groups are stored on the user and the token at each login.

use std::sync::Arc;

use axum::response::Response;
use jiff::Timestamp;
use rancher_auth::providers::{AuthProvider, Credentials, Error as ProviderError, Identity};
use rancher_core::model::{User, UserSpec};
use rancher_core::store::{Api, Store, StoreError};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::server::api::created_token_response;
use crate::server::error::{ApiError, ApiResult};
use crate::server::services::login::{LOGIN_FAILED, LoginError};
use crate::server::services::tokens::{self, DEFAULT_SESSION_TTL_MS, TokenRequest};
use crate::server::services::users;
use crate::server::state::AppState;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LoginInput {
    username: String,
    password: String,
    #[serde(default)]
    ttl: Option<i64>,
    #[serde(default)]
    description: String,
    #[serde(default)]
    response_type: String,
}

/// The local user id for a provider principal: stable, so concurrent first logins make one user.
fn user_id_for(principal: &str) -> String {
    let digest = Sha256::digest(principal.as_bytes());
    format!("u-{}", &hex::encode(digest)[..12])
}

/// Finds or makes the local user of `identity` and records its groups.
pub(super) async fn local_user(store: &Arc<dyn Store>, identity: &Identity) -> ApiResult<User> {
    let users: Api<User> = Api::all(store.clone());
    let id = user_id_for(&identity.user.id);
    let groups: Vec<String> = identity.groups.iter().map(|g| g.id.clone()).collect();
    for _ in 0..8 {
        let existing = users.get_opt(&id).await?;
        let result = match existing {
            Some(mut u) => {
                if !u.spec.principal_ids.contains(&identity.user.id) {
                    // A hash collision with another principal: refuse rather than merge two people.
                    return Err(ApiError::Internal("the user id of this principal is taken".into()));
                }
                if !u.spec.enabled {
                    return Err(ApiError::Unauthenticated(LOGIN_FAILED.into()));
                }
                u.status.group_principals = groups.clone();
                u.status.last_login = Some(Timestamp::now());
                users.update(&u).await
            }
            None => {
                let mut u = User::new(
                    &id,
                    UserSpec {
                        display_name: identity.user.display_name.clone(),
                        principal_ids: vec![identity.user.id.clone()],
                        enabled: true,
                        ..Default::default()
                    },
                );
                u.status.group_principals = groups.clone();
                u.status.last_login = Some(Timestamp::now());
                let created = users.create(&u).await;
                if created.is_ok() {
                    users::bind_default_roles(store, &id).await?;
                }
                created
            }
        };
        match result {
            Ok(u) => return Ok(u),
            Err(StoreError::Conflict { .. } | StoreError::AlreadyExists { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(ApiError::Unavailable("the user changed concurrently too often; try again".into()))
}

pub(super) fn provider_error(e: ProviderError) -> ApiError {
    match e {
        ProviderError::InvalidCredentials | ProviderError::PrincipalNotFound { .. } => {
            ApiError::Unauthenticated(LOGIN_FAILED.into())
        }
        other => ApiError::Unavailable(format!("the identity provider failed: {other}")),
    }
}

/// `POST ?action=login` with a user name and password at an external provider (OpenLDAP, Active
/// Directory, or a plugged-in one). Attempts are throttled per `<provider>:<username>` and address.
pub(super) async fn password_login(
    state: &AppState,
    provider: Arc<dyn AuthProvider>,
    ip: Option<std::net::IpAddr>,
    body: serde_json::Map<String, serde_json::Value>,
) -> ApiResult<Response> {
    let input: LoginInput = serde_json::from_value(serde_json::Value::Object(body))
        .map_err(|e| ApiError::BadRequest(format!("login needs \"username\" and \"password\": {e}")))?;
    let attempt = state
        .login_throttle
        .begin(&format!("{}:{}", provider.name(), input.username), ip)
        .await
        .map_err(LoginError::Throttled)?;
    let identity = match provider.authenticate(&Credentials::password(&input.username, input.password)).await
    {
        Ok(identity) => identity,
        Err(e) => {
            let e = provider_error(e);
            if matches!(e, ApiError::Unauthenticated(_)) {
                attempt.failed()
            } else {
                attempt.not_checked()
            }
            return Err(e);
        }
    };
    let user = match local_user(&state.store, &identity).await {
        Ok(u) => u,
        Err(e) => {
            if matches!(e, ApiError::Unauthenticated(_)) {
                attempt.failed()
            } else {
                attempt.not_checked()
            }
            return Err(e);
        }
    };
    attempt.succeeded();
    session_token(
        state,
        provider.name(),
        &identity,
        &user,
        input.ttl,
        input.description,
        &input.response_type,
    )
    .await
}

/// The end of every provider login: start the group refresh, then issue a session token for `user` that
/// carries the identity's principals (so its groups reach the proxy's Impersonate-Group headers).
pub(super) async fn session_token(
    state: &AppState,
    provider: &str,
    identity: &Identity,
    user: &User,
    ttl: Option<i64>,
    description: String,
    response_type: &str,
) -> ApiResult<Response> {
    state.providers.start_refresh(state.store.clone());
    let req = TokenRequest {
        kind: "session",
        ttl_ms: ttl.unwrap_or(DEFAULT_SESSION_TTL_MS),
        description,
        derived: false,
        cluster_name: String::new(),
        auth_provider: provider.to_owned(),
        user_principal: identity.user.id.clone(),
        group_principals: identity.groups.iter().map(|g| g.id.clone()).collect(),
    };
    let (stored, secret) = tokens::issue(&state.store, state.max_token_ttl_ms, user, req).await?;
    created_token_response(stored, &secret, response_type == "cookie")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_ids_are_stable_dns_labels_per_principal() {
        let a = user_id_for("openldap_user://uid=alice,ou=people,dc=example,dc=org");
        assert_eq!(a, user_id_for("openldap_user://uid=alice,ou=people,dc=example,dc=org"));
        assert_ne!(a, user_id_for("openldap_user://uid=bob,ou=people,dc=example,dc=org"));
        assert!(rancher_core::validation::dns1123_label(&a).is_ok() && a.len() == 14, "{a}");
    }
}
