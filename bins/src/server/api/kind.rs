//! [`ApiKind`]: what the generic handlers need to know about each management kind — its API type name,
//! who owns an object, where its members' roles apply, what is secret, and the checks and defaults
//! applied before it is stored.

use async_trait::async_trait;
use rancher_core::Resource;
use serde_json::{Map, Value};

use crate::server::auth::Caller;
use crate::server::error::ApiResult;
use crate::server::services::access::GrantScope;
use crate::server::state::AppState;

/// Where a handler runs: the server's state and the caller, and the warnings the response carries.
pub(crate) struct Ctx<'a> {
    pub(crate) state: &'a AppState,
    pub(crate) caller: &'a Caller,
    /// Sent as `Warning: 299 - "…"` headers, as Kubernetes does (see [`Ctx::warning_headers`]).
    warnings: std::sync::Mutex<Vec<String>>,
}

impl<'a> Ctx<'a> {
    /// A context without warnings.
    pub(crate) fn new(state: &'a AppState, caller: &'a Caller) -> Self {
        Ctx { state, caller, warnings: Default::default() }
    }

    /// Adds warnings for the response.
    pub(crate) fn warn(&self, warnings: impl IntoIterator<Item = String>) {
        self.warnings.lock().unwrap_or_else(std::sync::PoisonError::into_inner).extend(warnings);
    }

    /// The warnings as `Warning` headers: `299 - "<text>"`, quotes and backslashes escaped, anything
    /// but printable ASCII replaced by `?` (a header carries no more), each at most 1024 characters.
    pub(crate) fn warning_headers(&self) -> http::HeaderMap {
        let mut headers = http::HeaderMap::new();
        let warnings =
            std::mem::take(&mut *self.warnings.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
        for w in warnings {
            let mut text = String::with_capacity(w.len() + 10);
            text.push_str("299 - \"");
            for c in w.chars().take(1024) {
                match c {
                    '"' | '\\' => {
                        text.push('\\');
                        text.push(c);
                    }
                    ' '..='~' => text.push(c),
                    _ => text.push('?'),
                }
            }
            text.push('"');
            if let Ok(v) = http::HeaderValue::from_str(&text) {
                headers.append(http::header::WARNING, v);
            }
        }
        headers
    }
}

/// How to narrow a list to the caller's own objects: those carrying this label with this value.
pub(crate) struct OwnFilter {
    pub(crate) label: &'static str,
    pub(crate) value: String,
}

/// A management kind served under `/v3/<plural>`.
#[async_trait]
pub(crate) trait ApiKind: Resource {
    /// The type name in responses (`cluster`, `globalRole`).
    const TYPE: &'static str;

    /// Verbs a caller may use on objects they own, without an RBAC rule (their own tokens, their user).
    const SELF_VERBS: &'static [&'static str] = &[];

    /// True when the caller owns the object (see [`ApiKind::SELF_VERBS`]).
    fn owned_by(&self, _caller: &Caller) -> bool {
        false
    }

    /// True for kinds whose objects belong to one cluster or project, so that the roles a caller holds
    /// there (not only their global roles) authorize reading and writing them, and its members see
    /// them — clusters, projects and the role template bindings, which cluster and project owners
    /// manage, as in Rancher (see [`super::visibility`]).
    const MEMBER_MANAGED: bool = false;

    /// For [`ApiKind::MEMBER_MANAGED`] kinds: the cluster or project this object belongs to. The roles
    /// held there authorize verbs on it, and whoever has a binding there (a member) sees it.
    fn grant_scope(&self) -> Option<GrantScope> {
        None
    }

    /// For [`ApiKind::MEMBER_MANAGED`] kinds: where the roles that allow creating this object are held
    /// (`None`: only global roles may create it). The scope of the object by default; a new project is
    /// created by the roles held in its cluster.
    fn create_scope(&self) -> Option<GrantScope> {
        self.grant_scope()
    }

    /// For a [`ApiKind::MEMBER_MANAGED`] kind whose scope is a cluster: members of any project of that
    /// cluster see the object too (a project member sees the cluster the project is in).
    const SEEN_FROM_PROJECTS: bool = false;

    /// Rancher's filter query parameters this kind takes on lists (`clusterId`, `projectId`).
    const LIST_FILTERS: &'static [&'static str] = &[];

    /// The value this object has for one of [`ApiKind::LIST_FILTERS`].
    fn filter_value(&self, _param: &str) -> Option<String> {
        None
    }

    /// The caller's own objects, for callers who may not list every object.
    fn own_filter(_caller: &Caller) -> Option<OwnFilter> {
        None
    }

    /// Removes what must never leave the server (password hashes, token hashes).
    fn redact(&mut self) {}

    /// Moves Rancher's top-level fields of this kind (`clusterId`, `userId`, …) into ours before a
    /// create or update body is decoded (see [`rancher_shape`](super::rancher_shape)).
    ///
    /// # Errors
    /// 422 when a Rancher field is malformed or disagrees with ours in the same body.
    fn rancher_fields_in(_map: &mut Map<String, Value>) -> ApiResult<()> {
        Ok(())
    }

    /// Adds Rancher's fields of this object to its response, next to `metadata` and `spec`.
    fn rancher_fields_out(&self, _map: &mut Map<String, Value>) {}

    /// For namespaced kinds: the namespace implied by the spec when the body names none.
    fn namespace_from_spec(&self) -> Option<String> {
        None
    }

    /// Defaults and checks before a create; may fill in a generated name or hash a secret.
    async fn prepare_create(&mut self, _cx: &Ctx<'_>) -> ApiResult<()> {
        Ok(())
    }

    /// Checks before an update; `old` is the stored object.
    async fn prepare_update(&mut self, _old: &Self, _cx: &Ctx<'_>) -> ApiResult<()> {
        Ok(())
    }

    /// Follow-up writes after a create (e.g. a new user's default role bindings).
    async fn after_create(&self, _cx: &Ctx<'_>) -> ApiResult<()> {
        Ok(())
    }

    /// Checks, beyond the verb, before the caller changes or deletes this stored object: whether they
    /// may change whom it concerns (a user, a user's binding).
    async fn check_change(&self, _cx: &Ctx<'_>) -> ApiResult<()> {
        Ok(())
    }

    /// Refuses deletes of objects that must stay (builtin roles).
    fn check_delete(&self) -> ApiResult<()> {
        Ok(())
    }

    /// Clean-up after a delete (e.g. a user's tokens).
    async fn after_delete(&self, _cx: &Ctx<'_>) {}
}

/// The id of an object in paths and responses: the name, or `namespace:name` for namespaced kinds.
pub(crate) fn object_id<K: Resource>(obj: &K) -> String {
    let meta = obj.meta();
    match (&meta.namespace, K::NAMESPACED) {
        (Some(ns), true) => format!("{ns}:{}", meta.name),
        _ => meta.name.clone(),
    }
}

/// A random lower-case id with a prefix: `u-` + 5 characters.
pub(crate) fn generated_name(prefix: &str) -> String {
    format!("{prefix}{}", rancher_auth::token::random_id(5))
}
