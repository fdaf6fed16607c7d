//! Admins in downstream clusters: as Rancher does, a user whose global role manages every cluster gets
//! a ClusterRoleBinding `globaladmin-<user id>` to `cluster-admin` in each cluster they reach through
//! the proxy, made on their first request after an agent (re)connected. A user who is no longer an
//! admin loses it on their first proxied request (per agent session) — see [`AdminBindings::revoke`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleRef, Subject};
use kube::api::{ObjectMeta, PostParams};
use rancher_core::validation::dns1123_label;

use crate::server::registration::{ClusterAccess, Registration};

/// The label marking RBAC objects this server made for global admins.
pub(crate) const GLOBAL_ADMIN_LABEL: &str = "cattle.io/creator";

/// (cluster, user id) → the agent access under which the binding was made (or removed). Holding the
/// `Arc` keeps its address from being reused, so `ptr_eq` tells a new agent session from the old one.
type Seen = HashMap<(String, String), Arc<ClusterAccess>>;

/// Remembers which (cluster, user) already has (or has not) its binding, per agent session.
pub(crate) struct AdminBindings {
    registration: Arc<Registration>,
    done: Mutex<Seen>,
    revoked: Mutex<Seen>,
}

impl AdminBindings {
    pub(crate) fn new(registration: Arc<Registration>) -> Self {
        AdminBindings { registration, done: Mutex::new(HashMap::new()), revoked: Mutex::new(HashMap::new()) }
    }

    /// Makes sure `user` is bound to `cluster-admin` in `cluster`. Failures are logged, not returned:
    /// without the binding the downstream API server refuses the requests itself.
    pub(crate) async fn ensure(&self, cluster: &str, user: &str) {
        let Some(access) = self.registration.access(cluster) else { return };
        let key = (cluster.to_owned(), user.to_owned());
        if seen_under(&self.done, &key, &access) || dns1123_label(user).is_err() {
            return;
        }
        match self.create(cluster, user).await {
            Ok(()) => {
                lock(&self.revoked).remove(&key);
                lock(&self.done).insert(key, access);
            }
            Err(e) => tracing::warn!(cluster, user, "binding the admin downstream: {e}"),
        }
    }

    /// Removes the `globaladmin-<user>` binding this server made, if any: `user` is not an admin (any
    /// more). Failures are logged; the next session retries.
    pub(crate) async fn revoke(&self, cluster: &str, user: &str) {
        let Some(access) = self.registration.access(cluster) else { return };
        let key = (cluster.to_owned(), user.to_owned());
        if seen_under(&self.revoked, &key, &access) || dns1123_label(user).is_err() {
            return;
        }
        match self.delete(cluster, user).await {
            Ok(()) => {
                lock(&self.done).remove(&key);
                lock(&self.revoked).insert(key, access);
            }
            Err(e) => tracing::warn!(cluster, user, "removing a former admin's binding downstream: {e}"),
        }
    }

    async fn delete(&self, cluster: &str, user: &str) -> Result<(), String> {
        let client = self.registration.cluster_client(cluster).map_err(|e| e.to_string())?;
        let api: kube::Api<ClusterRoleBinding> = kube::Api::all(client);
        let name = format!("globaladmin-{user}");
        match api.get_opt(&name).await.map_err(|e| e.to_string())? {
            // Only what we made: someone else's object of that name is left alone.
            Some(crb)
                if crb
                    .metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(GLOBAL_ADMIN_LABEL))
                    .map(String::as_str)
                    == Some("rancher-rs") =>
            {
                match api.delete(&name, &Default::default()).await {
                    Ok(_) => Ok(()),
                    Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
                    Err(e) => Err(e.to_string()),
                }
            }
            _ => Ok(()),
        }
    }

    async fn create(&self, cluster: &str, user: &str) -> Result<(), String> {
        let client = self.registration.cluster_client(cluster).map_err(|e| e.to_string())?;
        let api: kube::Api<ClusterRoleBinding> = kube::Api::all(client);
        let crb = ClusterRoleBinding {
            metadata: ObjectMeta {
                name: Some(format!("globaladmin-{user}")),
                labels: Some([(GLOBAL_ADMIN_LABEL.to_owned(), "rancher-rs".to_owned())].into()),
                ..Default::default()
            },
            role_ref: RoleRef {
                api_group: "rbac.authorization.k8s.io".into(),
                kind: "ClusterRole".into(),
                name: "cluster-admin".into(),
            },
            subjects: Some(vec![Subject {
                api_group: Some("rbac.authorization.k8s.io".into()),
                kind: "User".into(),
                name: user.to_owned(),
                namespace: None,
            }]),
        };
        match api.create(&PostParams::default(), &crb).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
            Err(e) => Err(e.to_string()),
        }
    }
}

fn lock(seen: &Mutex<Seen>) -> std::sync::MutexGuard<'_, Seen> {
    seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Whether `key` was handled under this very agent access.
fn seen_under(seen: &Mutex<Seen>, key: &(String, String), access: &Arc<ClusterAccess>) -> bool {
    lock(seen).get(key).is_some_and(|a| Arc::ptr_eq(a, access))
}
