//! Authentication middleware for `/v3`: finds the caller from a token (Bearer, Basic or the `R_SESS`
//! cookie), checks it, and collects the caller's global-role rules for authorization.

use std::sync::Arc;

use axum::extract::{FromRequestParts, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::request::Parts;
use jiff::Timestamp;
use rancher_auth::rbac::{self, ResourceAttributes};
use rancher_auth::token::{self, ApiToken};
use rancher_core::model::{GlobalRole, GlobalRoleBinding, PolicyRule, Token, User};
use rancher_core::store::{Api, Store};

use super::error::{ApiError, ApiResult};
use super::state::AppState;

/// The API group of the management kinds, as RBAC rules name it.
pub(crate) const MANAGEMENT_GROUP: &str = "management.cattle.io";

/// Who is calling: the user, the token used, and the rules of the user's global roles.
#[derive(Clone, Debug)]
pub(crate) struct Caller {
    pub(crate) user: User,
    pub(crate) token_name: String,
    pub(crate) rules: Arc<Vec<PolicyRule>>,
}

impl Caller {
    /// The user's id (`u-xxxxx`).
    pub(crate) fn user_id(&self) -> &str {
        &self.user.metadata.name
    }

    /// True when the caller's global roles allow `verb` on `resource` (optionally the named object).
    pub(crate) fn can(&self, verb: &str, resource: &str, name: Option<&str>) -> bool {
        rbac::allows(
            self.rules.iter(),
            &ResourceAttributes { verb, api_group: MANAGEMENT_GROUP, resource, name },
        )
    }

    /// The Kubernetes-style Forbidden error for `verb` on `resource`.
    pub(crate) fn forbidden(&self, verb: &str, resource: &str, name: Option<&str>) -> ApiError {
        let what = match name {
            Some(n) => format!("{resource} \"{n}\" is forbidden"),
            None => format!("{resource} is forbidden"),
        };
        ApiError::Forbidden(format!(
            "{what}: User \"{}\" cannot {verb} resource \"{resource}\" in API group \"{MANAGEMENT_GROUP}\"",
            self.user_id()
        ))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Caller>()
            .cloned()
            .ok_or_else(|| ApiError::Internal("route is missing the authentication layer".into()))
    }
}

/// Middleware: authenticates the request or answers 401.
pub(crate) async fn authenticate(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    match caller_for(&state.store, req.headers()).await {
        Ok(caller) => {
            req.extensions_mut().insert(caller);
            next.run(req).await
        }
        Err(e) => e.into_response(),
    }
}

/// Finds and checks the caller of a request.
pub(crate) async fn caller_for(store: &Arc<dyn Store>, headers: &http::HeaderMap) -> ApiResult<Caller> {
    let presented = ApiToken::from_headers(headers)
        .map_err(|e| ApiError::Unauthenticated(e.to_string()))?
        .ok_or_else(|| {
            ApiError::Unauthenticated(
                "must authenticate: send a token as Authorization: Bearer token-<id>:<secret>".into(),
            )
        })?;
    let stored = Api::<Token>::all(store.clone())
        .get_opt(presented.name())
        .await?
        .ok_or_else(|| ApiError::Unauthenticated("invalid token".into()))?;
    token::verify(&presented, &stored, Timestamp::now())
        .map_err(|e| ApiError::Unauthenticated(e.to_string()))?;
    let user = Api::<User>::all(store.clone())
        .get_opt(&stored.spec.user_id)
        .await?
        .ok_or_else(|| ApiError::Unauthenticated("the token's user no longer exists".into()))?;
    if !user.spec.enabled {
        return Err(ApiError::Unauthenticated("the user is disabled".into()));
    }
    let rules = rules_for(store, &user.metadata.name).await?;
    Ok(Caller { user, token_name: stored.metadata.name, rules: Arc::new(rules) })
}

/// The rules of every global role bound to the user.
pub(crate) async fn rules_for(store: &Arc<dyn Store>, user_id: &str) -> ApiResult<Vec<PolicyRule>> {
    let bindings = Api::<GlobalRoleBinding>::all(store.clone()).list().await?;
    let roles: Api<GlobalRole> = Api::all(store.clone());
    let mut rules = Vec::new();
    for b in bindings.iter().filter(|b| b.spec.user_name == user_id) {
        // A binding to a role that was deleted grants nothing.
        if let Some(role) = roles.get_opt(&b.spec.global_role_name).await? {
            rules.extend(role.spec.rules);
        }
    }
    Ok(rules)
}
