//! Token authentication, shared by `/v3` and the proxy at `/k8s/clusters/<id>/…`: [`TokenAuthenticator`]
//! finds the caller from a token (Bearer, Basic, the `R_SESS` cookie or a WebSocket bearer protocol),
//! checks it against the store's current state on every request (so a revoked or disabled token fails
//! at once; from memory where the store allows, see [`identity_cache`]), and
//! notes `lastUsedAt` at most once a minute. [`authenticate`] is the `/v3` middleware; it holds browser
//! sessions (the `R_SESS` cookie) to the same-origin and CSRF rules of
//! [`rancher_auth::proxy::BrowserPolicy`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{FromRequestParts, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::request::Parts;
use http::{HeaderMap, Method};
use jiff::Timestamp;
use rancher_auth::proxy::{AuthError, BrowserPolicy};
use rancher_auth::rbac::{self, ResourceAttributes};
use rancher_auth::token::{self, ApiToken, TokenError};
use rancher_core::model::{GlobalRole, GlobalRoleBinding, PolicyRule, Token, User};
use rancher_core::store::{Api, Store, StoreError};

use super::error::{ApiError, ApiResult};
use super::state::AppState;

mod identity_cache;

use identity_cache::IdentityCache;

/// The API group of the management kinds, as RBAC rules name it.
pub(crate) const MANAGEMENT_GROUP: &str = "management.cattle.io";
/// How often at most `status.lastUsedAt` of one token is written.
const LAST_USED_INTERVAL: Duration = Duration::from_secs(60);
/// The most tokens whose last write time is remembered before old entries are dropped.
const LAST_USED_MEMORY: usize = 100_000;

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

/// Where a token is being used, for cluster-scoped tokens (`spec.clusterName`).
#[derive(Clone, Copy, Debug)]
pub(crate) enum Scope<'a> {
    /// The management API: a request with this method and path.
    Api {
        /// The method.
        method: &'a Method,
        /// The path.
        path: &'a str,
    },
    /// The proxy to this cluster.
    Cluster(&'a str),
}

/// A verified token and its user.
#[derive(Clone, Debug)]
pub(crate) struct Authenticated {
    pub(crate) token: Arc<Token>,
    pub(crate) user: Arc<User>,
}

/// Checks presented tokens against the store; shared by `/v3` and the proxy.
pub(crate) struct TokenAuthenticator {
    store: Arc<dyn Store>,
    /// Tokens and users in memory, where the store's watches keep up with its writes.
    cache: Option<IdentityCache>,
    /// Token name → when this server last wrote its `lastUsedAt` (or started to).
    last_used_writes: Mutex<HashMap<String, tokio::time::Instant>>,
    /// The `lastUsedAt` writes in flight: waited for by [`TokenAuthenticator::finish_writes`] at
    /// shutdown, aborted when the authenticator is dropped.
    writes: Mutex<tokio::task::JoinSet<()>>,
}

impl std::fmt::Debug for TokenAuthenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenAuthenticator").finish_non_exhaustive()
    }
}

fn token_error(e: TokenError) -> AuthError {
    match e {
        TokenError::Expired => AuthError::Expired,
        TokenError::Disabled => AuthError::Disabled,
        _ => AuthError::InvalidToken,
    }
}

fn backend(e: StoreError) -> AuthError {
    AuthError::Backend(Box::new(e))
}

/// Whether a cluster-scoped token (for `cluster`) may be used in `scope`: only for its cluster, and on
/// the management API only to read itself.
fn scope_allows(token: &Token, scope: Scope<'_>) -> bool {
    let cluster = token.spec.cluster_name.as_str();
    if cluster.is_empty() {
        return true;
    }
    match scope {
        Scope::Cluster(id) => id == cluster,
        Scope::Api { method, path } => {
            *method == Method::GET && path == format!("/v3/tokens/{}", token.metadata.name)
        }
    }
}

/// The token a request presents: `Authorization` (Bearer or Basic), the `R_SESS` cookie, or the
/// WebSocket bearer subprotocol browsers use for exec.
fn presented(headers: &HeaderMap) -> Result<ApiToken, AuthError> {
    match ApiToken::from_headers(headers) {
        Ok(Some(t)) => Ok(t),
        Ok(None) => rancher_auth::proxy::bearer_token(headers)
            .ok_or(AuthError::MissingCredentials)?
            .parse()
            .map_err(|_| AuthError::InvalidToken),
        Err(_) => Err(AuthError::InvalidToken),
    }
}

impl TokenAuthenticator {
    /// Checks tokens against `store`. Needs a Tokio runtime.
    pub(crate) fn new(store: Arc<dyn Store>) -> Self {
        TokenAuthenticator {
            cache: IdentityCache::start(&store),
            store,
            last_used_writes: Mutex::new(HashMap::new()),
            writes: Mutex::new(tokio::task::JoinSet::new()),
        }
    }

    /// Waits until `deadline` for the `lastUsedAt` writes in flight, then aborts what is left.
    pub(crate) async fn finish_writes(&self, deadline: tokio::time::Instant) {
        let mut writes =
            std::mem::take(&mut *self.writes.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
        if tokio::time::timeout_at(deadline, async { while writes.join_next().await.is_some() {} })
            .await
            .is_err()
        {
            writes.shutdown().await;
        }
    }

    /// Verifies the request's token for `scope` at `now`: it exists, the secret matches the stored
    /// hash, it is enabled, neither its TTL nor its idle TTL has passed, its scope allows this use,
    /// and its user exists and is enabled. Every check reads the store, so revocation is immediate.
    ///
    /// # Errors
    /// [`AuthError`]; messages never contain the secret.
    pub(crate) async fn verify(
        &self,
        headers: &HeaderMap,
        scope: Scope<'_>,
    ) -> Result<Authenticated, AuthError> {
        let presented = presented(headers)?;
        let now = Timestamp::now();
        let cached = self.cache.as_ref().and_then(|c| c.current(presented.name()));
        let stored = match &cached {
            Some(lookup) => lookup.token.clone(),
            None => Api::<Token>::all(self.store.clone())
                .get_opt(presented.name())
                .await
                .map_err(backend)?
                .map(Arc::new),
        };
        let stored = stored.ok_or(AuthError::InvalidToken)?;
        token::verify(&presented, &stored, now).map_err(token_error)?;
        if idle_expired(&stored, now) {
            return Err(AuthError::Expired);
        }
        if !scope_allows(&stored, scope) {
            return Err(AuthError::WrongCluster);
        }
        let user = match &cached {
            Some(lookup) => lookup.user.clone(),
            None => Api::<User>::all(self.store.clone())
                .get_opt(&stored.spec.user_id)
                .await
                .map_err(backend)?
                .map(Arc::new),
        };
        let user = user.ok_or(AuthError::InvalidToken)?;
        if !user.spec.enabled {
            return Err(AuthError::Disabled);
        }
        self.note_use(&stored, now);
        Ok(Authenticated { token: stored, user })
    }

    /// Writes `status.lastUsedAt` in the background when the stored value is a minute old or more and
    /// this server has not written it within the minute. Compare-and-swap: if the token changed in
    /// between (or was deleted), this use is simply not recorded.
    fn note_use(&self, stored: &Token, now: Timestamp) {
        let fresh = stored.status.last_used_at.is_some_and(|at| {
            now.duration_since(at) < jiff::SignedDuration::try_from(LAST_USED_INTERVAL).unwrap_or_default()
        });
        if fresh {
            return;
        }
        {
            let mut writes = self.last_used_writes.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let t = tokio::time::Instant::now();
            if writes.get(&stored.metadata.name).is_some_and(|at| t.duration_since(*at) < LAST_USED_INTERVAL)
            {
                return;
            }
            if writes.len() >= LAST_USED_MEMORY {
                writes.retain(|_, at| t.duration_since(*at) < LAST_USED_INTERVAL);
            }
            writes.insert(stored.metadata.name.clone(), t);
        }
        let mut token = stored.clone();
        token.status.last_used_at = Some(now);
        let api = Api::<Token>::all(self.store.clone());
        let mut writes = self.writes.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        while writes.try_join_next().is_some() {}
        writes.spawn(async move {
            match api.update(&token).await {
                Ok(_) | Err(StoreError::Conflict { .. } | StoreError::NotFound { .. }) => {}
                Err(e) => tracing::debug!(token = %token.metadata.name, "recording lastUsedAt: {e}"),
            }
        });
    }
}

/// True when the token has an idle TTL and has not been used (or, never used, made) within it.
fn idle_expired(token: &Token, now: Timestamp) -> bool {
    if token.spec.idle_ttl <= 0 {
        return false;
    }
    let Some(since) = token.status.last_used_at.or(token.metadata.creation_timestamp) else {
        return false;
    };
    since
        .checked_add(jiff::SignedDuration::from_millis(token.spec.idle_ttl))
        .is_ok_and(|deadline| deadline <= now)
}

fn unauthenticated(e: AuthError) -> ApiError {
    match e {
        AuthError::Backend(e) => ApiError::Unavailable(format!("authentication backend failed: {e}")),
        AuthError::MissingCredentials => ApiError::Unauthenticated(
            "must authenticate: send a token as Authorization: Bearer token-<id>:<secret>".into(),
        ),
        AuthError::WrongCluster => {
            ApiError::Unauthenticated("this token is scoped to one cluster and is not valid here".into())
        }
        AuthError::Disabled => ApiError::Unauthenticated("the token or its user is disabled".into()),
        other => ApiError::Unauthenticated(other.to_string()),
    }
}

/// Middleware: authenticates the request or answers 401 (403 for a browser session from another
/// origin or without its CSRF token).
pub(crate) async fn authenticate(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    if token::uses_session_cookie(req.headers()) {
        let policy = BrowserPolicy::for_server_url(state.registration.server_url()).unwrap_or_default();
        if let Err(refusal) = policy.check(req.method(), req.uri(), req.headers()) {
            return ApiError::Forbidden(refusal.to_string()).into_response();
        }
    }
    match caller_for(&state, req.method(), req.uri().path(), req.headers()).await {
        Ok(caller) => {
            req.extensions_mut().insert(caller);
            next.run(req).await
        }
        Err(e) => e.into_response(),
    }
}

/// Finds and checks the caller of a `/v3` request.
pub(crate) async fn caller_for(
    state: &AppState,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
) -> ApiResult<Caller> {
    let Authenticated { token, user } =
        state.authn.verify(headers, Scope::Api { method, path }).await.map_err(unauthenticated)?;
    let rules = rules_for(&state.store, &user.metadata.name).await?;
    Ok(Caller {
        user: Arc::unwrap_or_clone(user),
        token_name: token.metadata.name.clone(),
        rules: Arc::new(rules),
    })
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

/// True when `rules` let the holder manage every cluster (the `admin` global role and its like).
pub(crate) fn is_cluster_admin(rules: &[PolicyRule]) -> bool {
    rbac::allows(
        rules,
        &ResourceAttributes { verb: "*", api_group: MANAGEMENT_GROUP, resource: "clusters", name: None },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use rancher_core::model::TokenSpec;

    fn token(cluster: &str, idle_ttl: i64) -> Token {
        let mut t = Token::new(
            "token-abcde",
            TokenSpec { user_id: "u-x".into(), cluster_name: cluster.into(), idle_ttl, ..Default::default() },
        );
        t.metadata.creation_timestamp = Some("2030-01-01T00:00:00Z".parse().unwrap());
        t
    }

    #[test]
    fn cluster_scoped_tokens_work_for_their_cluster_and_reading_themselves_only() {
        let t = token("c-1", 0);
        assert!(scope_allows(&t, Scope::Cluster("c-1")));
        assert!(!scope_allows(&t, Scope::Cluster("c-2")));
        let get = Method::GET;
        assert!(scope_allows(&t, Scope::Api { method: &get, path: "/v3/tokens/token-abcde" }));
        assert!(!scope_allows(&t, Scope::Api { method: &get, path: "/v3/tokens/token-other" }));
        assert!(!scope_allows(&t, Scope::Api { method: &get, path: "/v3/clusters" }));
        let del = Method::DELETE;
        assert!(!scope_allows(&t, Scope::Api { method: &del, path: "/v3/tokens/token-abcde" }));
        let global = token("", 0);
        assert!(scope_allows(&global, Scope::Cluster("c-2")));
        assert!(scope_allows(&global, Scope::Api { method: &del, path: "/v3/clusters/x" }));
    }

    #[test]
    fn idle_ttl_counts_from_the_last_use_or_creation() {
        let at = |s: &str| s.parse::<Timestamp>().unwrap();
        let mut t = token("", 60_000);
        assert!(!idle_expired(&t, at("2030-01-01T00:00:59Z")));
        assert!(idle_expired(&t, at("2030-01-01T00:01:00Z")));
        t.status.last_used_at = Some(at("2030-01-01T00:05:00Z"));
        assert!(!idle_expired(&t, at("2030-01-01T00:05:30Z")));
        assert!(idle_expired(&t, at("2030-01-01T00:06:01Z")));
        assert!(!idle_expired(&token("", 0), at("2999-01-01T00:00:00Z")));
    }

    #[test]
    fn admin_rules_are_recognised() {
        let all = PolicyRule {
            verbs: vec!["*".into()],
            api_groups: vec!["*".into()],
            resources: vec!["*".into()],
            ..Default::default()
        };
        assert!(is_cluster_admin(std::slice::from_ref(&all)));
        let create = PolicyRule {
            verbs: vec!["create".into()],
            api_groups: vec![MANAGEMENT_GROUP.into()],
            resources: vec!["clusters".into()],
            ..Default::default()
        };
        assert!(!is_cluster_admin(&[create]));
    }
}
