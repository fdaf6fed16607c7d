//! Whoever grants a right must hold it: Kubernetes' escalation rules applied to every write that
//! grants (roles, bindings, users). Each `check_*` reads one [`Grants`] snapshot and refuses with an
//! [`EscalationError`] naming what the caller lacks.
//!
//! The rules, per kind (see each function):
//! * a global role is written only by someone whose global rules cover its rules, and who holds its
//!   inherited cluster roles in every cluster — or who may `escalate` `globalroles`;
//! * a global role is bound only by someone who holds it in that sense, or may `bind` it;
//! * a role template is written only by someone who holds its rules in every cluster (a global admin),
//!   or who may `escalate` `roletemplates`;
//! * a role template is bound in a cluster or project only by someone who holds all of it there
//!   (the union of what is bound to them there), a global admin, or someone who may `bind` it;
//! * a user — their roles, their password, their name, whether they exist — is changed only by
//!   someone who holds every permission that user holds, wherever the user holds it.

use std::sync::Arc;

use rancher_auth::rbac;
use rancher_auth::rbac_render::RenderError;
use rancher_core::model::{GlobalRole, PolicyRule, RoleTemplate, User};
use rancher_core::store::{Store, StoreError};

use super::grants::{GrantScope, Grants, Held, Missing, Subject, caller_subject};
use crate::server::auth::Caller;

/// Why a write that grants permissions was refused, or could not be checked.
#[derive(Debug, thiserror::Error)]
pub(crate) enum EscalationError {
    /// Reading the roles and bindings to compare with failed.
    #[error("reading the roles and bindings: {0}")]
    LoadGrants(#[source] StoreError),
    /// The caller would grant permissions it does not hold, and may not `bind` or `escalate` instead.
    #[error(
        "{what} is forbidden: user \"{caller}\" is attempting to {attempt} permissions it does not hold: \
         {missing} (hold them, or be allowed to {instead})"
    )]
    Escalates {
        /// What is being written (`globalrolebindings`, `roletemplates "x"`).
        what: String,
        /// The caller's user id.
        caller: String,
        /// What the write would do, up to the permissions it grants.
        attempt: String,
        /// What the caller lacks.
        missing: Missing,
        /// The verb that would allow the write anyway.
        instead: String,
    },
    /// The caller may not change a user who holds permissions the caller does not.
    #[error(
        "{what} is forbidden: user \"{caller}\" may not change user \"{target}\" ({username}), who holds \
         permissions \"{caller}\" does not: {missing}"
    )]
    ManagesStronger {
        /// What is being written (`users "u-x"`, `globalrolebindings`).
        what: String,
        /// The caller's user id.
        caller: String,
        /// The user being changed.
        target: String,
        /// Their login name.
        username: String,
        /// What the caller lacks.
        missing: Missing,
    },
    /// A role template named in the object, or inherited by one, does not exist.
    #[error("{field}: {source}")]
    UnknownTemplate {
        /// The field that names it.
        field: &'static str,
        /// Which template is missing.
        #[source]
        source: RenderError,
    },
}

type Result<T, E = EscalationError> = std::result::Result<T, E>;

async fn load(store: &Arc<dyn Store>) -> Result<Grants> {
    Grants::load(store).await.map_err(EscalationError::LoadGrants)
}

fn escalates(caller: &Caller, what: &str, attempt: &str, missing: Missing, instead: &str) -> EscalationError {
    EscalationError::Escalates {
        what: what.to_owned(),
        caller: caller.user_id().to_owned(),
        attempt: attempt.to_owned(),
        missing,
        instead: instead.to_owned(),
    }
}

/// CRTB and PRTB creation: the caller holds every permission of `template` in `scope`, or may
/// `bind` that role template (globally, or where it is bound).
pub(crate) async fn check_template_binding(
    store: &Arc<dyn Store>,
    caller: &Caller,
    plural: &str,
    scope: &GrantScope,
    template: &str,
) -> Result<()> {
    if caller.can("bind", "roletemplates", Some(template)) {
        return Ok(());
    }
    let grants = load(store).await?;
    let held = grants.in_scope(&caller_subject(caller), &caller.rules, scope);
    if held.allows("bind", "roletemplates", Some(template)) {
        return Ok(());
    }
    let wanted = grants
        .flatten(template, None)
        .map_err(|source| EscalationError::UnknownTemplate { field: "spec.roleTemplateName", source })?;
    held.covers(&wanted).map_err(|missing| {
        escalates(
            caller,
            plural,
            &format!("grant role template \"{template}\" in {scope}, which holds"),
            missing,
            &format!("\"bind\" roletemplates \"{template}\""),
        )
    })
}

/// What holding a global role means: its rules globally, its inherited cluster roles everywhere.
fn global_role_held(
    grants: &Grants,
    role: &GlobalRole,
    extra: Option<&RoleTemplate>,
) -> Result<(Vec<PolicyRule>, Held)> {
    let mut everywhere = Held::default();
    for t in &role.spec.inherited_cluster_roles {
        let f = grants.flatten(t, extra).map_err(|source| EscalationError::UnknownTemplate {
            field: "spec.inheritedClusterRoles",
            source,
        })?;
        everywhere.merge(f);
    }
    Ok((role.spec.rules.clone(), everywhere))
}

/// Whether the caller holds `role`: its rules among theirs, its inherited cluster roles everywhere.
/// The inner error says what they lack.
fn caller_holds_role(
    grants: &Grants,
    caller: &Caller,
    role: &GlobalRole,
) -> Result<std::result::Result<(), Missing>> {
    let (rules, everywhere) = global_role_held(grants, role, None)?;
    if let Err(u) = rbac::covers(&caller.rules, &rules) {
        return Ok(Err(Missing(u.to_string())));
    }
    let held = grants.everywhere(caller.user_id(), &caller.rules);
    Ok(held.covers(&everywhere).map_err(|m| m.in_place("every cluster")))
}

/// GlobalRole create and update: the caller holds the role as written, or may `escalate` it.
pub(crate) async fn check_global_role_write(
    store: &Arc<dyn Store>,
    caller: &Caller,
    role: &GlobalRole,
) -> Result<()> {
    let name = role.metadata.name.as_str();
    if caller.can("escalate", "globalroles", (!name.is_empty()).then_some(name)) {
        return Ok(());
    }
    let grants = load(store).await?;
    caller_holds_role(&grants, caller, role)?.map_err(|missing| {
        escalates(
            caller,
            &format!("globalroles \"{name}\""),
            "write a global role with",
            missing,
            "\"escalate\" globalroles",
        )
    })
}

/// What a global role binding write does: make one, or remove (or change) one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BindingWrite {
    /// A new binding.
    Bind,
    /// An update or delete of a stored binding.
    Unbind,
}

/// GlobalRoleBinding create, update and delete: the caller holds the role or may `bind` it; and, when
/// the subject is a user, the caller may manage that user (so nobody but an admin binds anything to an
/// admin, or removes an admin's binding). A group's binding is removed only by someone who holds (or
/// may bind) its role, so a group of admins is not demoted by a mere binding editor either.
pub(crate) async fn check_global_role_binding(
    store: &Arc<dyn Store>,
    caller: &Caller,
    role: &GlobalRole,
    user: Option<&User>,
    write: BindingWrite,
) -> Result<()> {
    let name = role.metadata.name.as_str();
    let grants = load(store).await?;
    if !caller.can("bind", "globalroles", Some(name)) {
        let attempt = match write {
            BindingWrite::Bind => format!("bind global role \"{name}\", which holds"),
            BindingWrite::Unbind => format!("remove a binding of global role \"{name}\", which holds"),
        };
        caller_holds_role(&grants, caller, role)?.map_err(|missing| {
            escalates(
                caller,
                "globalrolebindings",
                &attempt,
                missing,
                &format!("\"bind\" globalroles \"{name}\""),
            )
        })?;
    }
    match user {
        Some(u) => check_manage(&grants, caller, u, "globalrolebindings"),
        None => Ok(()),
    }
}

/// RoleTemplate create and update: its rules apply wherever it is (or will be) bound, so the caller
/// must hold them in every cluster — in practice a global admin — or may `escalate` role templates.
pub(crate) async fn check_template_write(
    store: &Arc<dyn Store>,
    caller: &Caller,
    template: &RoleTemplate,
) -> Result<()> {
    let name = template.metadata.name.as_str();
    if caller.can("escalate", "roletemplates", (!name.is_empty()).then_some(name)) {
        return Ok(());
    }
    let grants = load(store).await?;
    let held = grants.everywhere(caller.user_id(), &caller.rules);
    if held.all {
        return Ok(());
    }
    let wanted = grants
        .flatten(name, Some(template))
        .map_err(|source| EscalationError::UnknownTemplate { field: "spec.roleTemplateNames", source })?;
    held.covers(&wanted).map_err(|missing| {
        escalates(
            caller,
            &format!("roletemplates \"{name}\""),
            "write a role template, which applies in every cluster it is bound in, with",
            missing,
            "\"escalate\" roletemplates",
        )
    })
}

/// Whether `caller` holds every permission `target` holds: globally, in every cluster, and in each
/// cluster and project where the target has a binding.
fn check_manage(grants: &Grants, caller: &Caller, target: &User, what: &str) -> Result<()> {
    if target.metadata.name == caller.user_id() {
        return Ok(());
    }
    let me = caller_subject(caller);
    let them = Subject::of(target);
    let their_rules = grants.global_rules(them.id);
    let refuse = |missing: Missing| EscalationError::ManagesStronger {
        what: what.to_owned(),
        caller: caller.user_id().to_owned(),
        target: them.id.to_owned(),
        username: target.spec.username.clone(),
        missing,
    };
    rbac::covers(&caller.rules, &their_rules).map_err(|u| refuse(Missing(u.to_string())))?;
    let mine = grants.everywhere(me.id, &caller.rules);
    if mine.all {
        return Ok(());
    }
    mine.covers(&grants.everywhere(them.id, &their_rules))
        .map_err(|m| refuse(m.in_place("every cluster")))?;
    for scope in grants.scopes_of(&them) {
        let theirs = grants.in_scope(&them, &their_rules, &scope);
        grants
            .in_scope(&me, &caller.rules, &scope)
            .covers(&theirs)
            .map_err(|m| refuse(m.in_place(&scope)))?;
    }
    Ok(())
}

/// Update, disable, rename, delete or reset the password of `target`: only by someone who holds every
/// permission the target holds (so only an admin changes an admin).
pub(crate) async fn check_manage_user(store: &Arc<dyn Store>, caller: &Caller, target: &User) -> Result<()> {
    let grants = load(store).await?;
    check_manage(&grants, caller, target, &format!("users \"{}\"", target.metadata.name))
}

/// Creating a user gives it the new-user-default global roles and a password the creator knows, so
/// the creator must hold those roles.
pub(crate) async fn check_new_user_roles(store: &Arc<dyn Store>, caller: &Caller) -> Result<()> {
    let grants = load(store).await?;
    for role in grants.roles.values().filter(|r| r.spec.new_user_default) {
        caller_holds_role(&grants, caller, role)?.map_err(|missing| {
            escalates(
                caller,
                "users",
                &format!("create a user, who is given global role \"{}\", which holds", role.metadata.name),
                missing,
                &format!("\"bind\" globalroles \"{}\"", role.metadata.name),
            )
        })?;
    }
    Ok(())
}
