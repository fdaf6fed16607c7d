//! Global admins downstream, as part of the desired RBAC of every connected cluster: as Rancher does,
//! each user whose global roles manage every cluster gets a ClusterRoleBinding `globaladmin-<user id>`
//! to `cluster-admin`; a user who is demoted, disabled or deleted loses it at the next sync (seconds
//! after the GlobalRoleBinding, GlobalRole or User changes), without any request of theirs.
//!
//! The bindings carry our managed-by label and are pruned like every other rendered object. Bindings
//! of that name made by earlier versions (labelled only `cattle.io/creator=rancher-rs`, on a user's
//! first proxied request) are adopted when still wanted and deleted otherwise.

use std::collections::BTreeMap;

use k8s_openapi::api::rbac::v1::ClusterRoleBinding;
use kube::api::{DeleteParams, DynamicObject, ListParams, PostParams};
use rancher_auth::rbac_render::{MANAGED_BY_LABEL, MANAGED_BY_VALUE, differs, is_managed};
use rancher_core::model::{GlobalRole, GlobalRoleBinding, User};
use rancher_core::validation::dns1123_label;
use serde_json::{Value, json};

use super::SyncError;
use super::apply::{Changes, Key, Kind};
use crate::server::auth::is_cluster_admin;
use crate::server::proxy::membership::global_rules;

/// The label earlier versions put on the admin bindings they made (and we still add).
pub(crate) const GLOBAL_ADMIN_LABEL: &str = "cattle.io/creator";
/// Its value.
const GLOBAL_ADMIN_VALUE: &str = "rancher-rs";
/// The prefix of the admin bindings' names.
const PREFIX: &str = "globaladmin-";

/// The `globaladmin-<user>` ClusterRoleBindings every cluster should hold: one per enabled user whose
/// global roles make them an admin.
pub(crate) fn desired(
    users: &[User],
    grbs: &[GlobalRoleBinding],
    roles: &[GlobalRole],
) -> BTreeMap<Key, Value> {
    let mut out = BTreeMap::new();
    for u in users.iter().filter(|u| u.spec.enabled && u.metadata.deletion_timestamp.is_none()) {
        let id = u.metadata.name.as_str();
        let name = format!("{PREFIX}{id}");
        // The user id becomes part of an object name: skip anything that would not be one.
        if dns1123_label(id).is_err() || name.len() > 253 || !is_cluster_admin(&global_rules(id, grbs, roles))
        {
            continue;
        }
        let labels = json!({ MANAGED_BY_LABEL: MANAGED_BY_VALUE, GLOBAL_ADMIN_LABEL: GLOBAL_ADMIN_VALUE });
        let crb = json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": { "name": name, "labels": labels },
            "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin" },
            "subjects": [{ "apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": id }],
        });
        out.insert((String::new(), name), crb);
    }
    out
}

/// Takes over the admin bindings earlier versions made: replaced by the wanted form when the user is
/// still an admin, deleted when not. Objects of that name someone else made are left alone.
pub(crate) async fn adopt_legacy(
    client: &kube::Client,
    wanted: &BTreeMap<Key, Value>,
    changes: &mut Changes,
    errors: &mut Vec<SyncError>,
) {
    let kind = Kind::of::<ClusterRoleBinding>(false);
    let api: kube::Api<DynamicObject> = kube::Api::all_with(client.clone(), &kind.resource);
    let selector = format!("{GLOBAL_ADMIN_LABEL}={GLOBAL_ADMIN_VALUE}");
    let list = match api.list(&ListParams::default().labels(&selector)).await {
        Ok(l) => l,
        Err(e) => {
            errors.push(kind.downstream("listing", &(String::new(), String::new()), e));
            return;
        }
    };
    for o in list.items {
        let name = o.metadata.name.clone().unwrap_or_default();
        let Ok(have) = serde_json::to_value(&o) else { continue };
        let legacy = name.starts_with(PREFIX)
            && have["metadata"]["labels"][GLOBAL_ADMIN_LABEL].as_str() == Some(GLOBAL_ADMIN_VALUE)
            && !is_managed(&have);
        if !legacy {
            continue;
        }
        let key = (String::new(), name.clone());
        match wanted.get(&key) {
            Some(want) if differs(want, &have) => {
                let Ok(mut obj) = serde_json::from_value::<DynamicObject>(want.clone()) else { continue };
                obj.metadata.resource_version = o.metadata.resource_version.clone();
                match api.replace(&name, &PostParams::default(), &obj).await {
                    Ok(_) => changes.updated += 1,
                    Err(e) => errors.push(kind.downstream("adopting", &key, e)),
                }
            }
            Some(_) => {}
            None => match api.delete(&name, &DeleteParams::default()).await {
                Ok(_) => changes.deleted += 1,
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => errors.push(kind.downstream("deleting", &key, e)),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use rancher_core::model::{GlobalRoleBindingSpec, GlobalRoleSpec, PolicyRule, UserSpec};

    use super::*;

    fn user(id: &str, enabled: bool) -> User {
        User::new(id, UserSpec { enabled, ..Default::default() })
    }

    fn grb(user: &str, role: &str) -> GlobalRoleBinding {
        GlobalRoleBinding::new(
            &format!("{user}-{role}"),
            GlobalRoleBindingSpec {
                user_name: user.into(),
                global_role_name: role.into(),
                ..Default::default()
            },
        )
    }

    #[test]
    fn only_enabled_admins_get_the_binding() {
        let all = PolicyRule {
            verbs: vec!["*".into()],
            api_groups: vec!["*".into()],
            resources: vec!["*".into()],
            ..Default::default()
        };
        let roles = [
            GlobalRole::new("admin", GlobalRoleSpec { rules: vec![all], ..Default::default() }),
            GlobalRole::new("user", GlobalRoleSpec::default()),
        ];
        let users = [user("u-admin", true), user("u-std", true), user("u-off", false), user("U_bad", true)];
        let grbs = [
            grb("u-admin", "admin"),
            grb("u-std", "user"),
            grb("u-off", "admin"),
            grb("U_bad", "admin"),
            grb("u-gone", "admin"),
        ];
        let got = desired(&users, &grbs, &roles);
        let names: Vec<&str> = got.keys().map(|(_, n)| n.as_str()).collect();
        assert_eq!(names, ["globaladmin-u-admin"]);
        let crb = &got[&(String::new(), "globaladmin-u-admin".into())];
        assert!(is_managed(crb));
        assert_eq!(crb["subjects"][0]["name"], "u-admin");
        assert_eq!(crb["roleRef"]["name"], "cluster-admin");
        // A binding to a role that does not exist grants nothing.
        assert!(desired(&users, &[grb("u-std", "nope")], &roles).is_empty());
    }
}
