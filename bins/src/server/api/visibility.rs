//! Who sees and manages what by membership, as in Rancher. Beyond the caller's global roles, the roles
//! held where an object belongs (its cluster or project, [`ApiKind::grant_scope`]) authorize verbs on
//! it, and a member of that cluster or project — anyone with a binding there — sees it. [`Access`]
//! answers from one snapshot of the roles and bindings, loaded once per request.
//!
//! What that means for the member-managed kinds:
//! * a cluster is seen by anyone with a binding in it or in one of its projects, and managed by those
//!   whose cluster role allows it (`cluster-owner`);
//! * a project is seen by its members and by those whose cluster role allows `get` on `projects`
//!   there, created by those whose cluster role allows `create` (`cluster-member`, `cluster-owner`),
//!   and managed by its owners (`project-owner`) and the cluster's;
//! * a cluster's role template bindings are seen by the cluster's members, a project's by the
//!   project's; writing them also passes the escalation checks of
//!   [`escalation`](crate::server::services::access::escalation).

use std::collections::BTreeMap;

use super::kind::ApiKind;
use crate::server::auth::Caller;
use crate::server::error::ApiResult;
use crate::server::services::access::{GrantScope, Grants, Held};
use crate::server::state::AppState;

/// What one caller may see and do by membership, from one snapshot of the roles and bindings.
pub(crate) struct Access<'a> {
    caller: &'a Caller,
    grants: Grants,
    /// What the caller holds per scope, worked out once per scope.
    held: BTreeMap<GrantScope, Held>,
}

impl<'a> Access<'a> {
    /// Reads the roles and bindings once.
    pub(crate) async fn load(state: &AppState, caller: &'a Caller) -> ApiResult<Self> {
        Ok(Access { caller, grants: Grants::load(&state.store).await?, held: BTreeMap::new() })
    }

    fn held(&mut self, scope: GrantScope) -> &Held {
        let (grants, caller) = (&self.grants, self.caller);
        self.held.entry(scope).or_insert_with_key(|scope| grants.held_by(caller, scope))
    }

    /// True when the roles held where the stored `obj` belongs allow `verb` on it.
    pub(crate) fn allows<K: ApiKind>(&mut self, verb: &str, obj: &K) -> bool {
        let Some(scope) = obj.grant_scope().filter(|_| K::MEMBER_MANAGED) else { return false };
        self.held(scope).allows(verb, K::PLURAL, Some(obj.meta().name.as_str()))
    }

    /// True when the roles held where the new `obj` would belong allow creating it.
    pub(crate) fn allows_create<K: ApiKind>(&mut self, obj: &K) -> bool {
        let Some(scope) = obj.create_scope().filter(|_| K::MEMBER_MANAGED) else { return false };
        self.held(scope).allows("create", K::PLURAL, None)
    }

    /// True when the caller may see `obj`: by their global roles, as its owner, as a member of where it
    /// belongs, or by the roles they hold there.
    pub(crate) fn sees<K: ApiKind>(&mut self, obj: &K) -> bool {
        let name = obj.meta().name.as_str();
        if self.caller.can("get", K::PLURAL, Some(name))
            || (K::SELF_VERBS.contains(&"get") && obj.owned_by(self.caller))
        {
            return true;
        }
        let Some(scope) = obj.grant_scope().filter(|_| K::MEMBER_MANAGED) else { return false };
        self.grants.is_member(self.caller, &scope, K::SEEN_FROM_PROJECTS)
            || self.held(scope).allows("get", K::PLURAL, Some(name))
    }
}
