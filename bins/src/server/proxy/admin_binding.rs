//! Admins in downstream clusters: as Rancher does, a user whose global role manages every cluster gets
//! a ClusterRoleBinding `globaladmin-<user id>` to `cluster-admin` in each cluster they reach through
//! the proxy, made on their first request after an agent (re)connected. A user who is no longer an
//! admin loses it on their first proxied request (per agent session) — see [`AdminBindings::revoke`].

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleRef, Subject};
use kube::api::{ObjectMeta, PostParams};
use rancher_core::validation::dns1123_label;

use crate::server::registration::Registration;

/// The label marking RBAC objects this server made for global admins.
pub(crate) const GLOBAL_ADMIN_LABEL: &str = "cattle.io/creator";

/// (cluster, address of the agent's access, user id).
type Key = (String, usize, String);

/// Remembers which (cluster, agent session access, user) already has (or has not) its binding.
pub(crate) struct AdminBindings {
    registration: Arc<Registration>,
    done: Mutex<HashSet<Key>>,
    revoked: Mutex<HashSet<Key>>,
}

impl AdminBindings {
    pub(crate) fn new(registration: Arc<Registration>) -> Self {
        AdminBindings { registration, done: Mutex::new(HashSet::new()), revoked: Mutex::new(HashSet::new()) }
    }

    /// Makes sure `user` is bound to `cluster-admin` in `cluster`. Failures are logged, not returned:
    /// without the binding the downstream API server refuses the requests itself.
    pub(crate) async fn ensure(&self, cluster: &str, user: &str) {
        let Some(access) = self.registration.access(cluster) else { return };
        let key = (cluster.to_owned(), Arc::as_ptr(&access) as usize, user.to_owned());
        if lock(&self.done).contains(&key) || dns1123_label(user).is_err() {
            return;
        }
        match self.create(cluster, user).await {
            Ok(()) => {
                lock(&self.revoked).remove(&key);
                lock(&self.done).insert(key);
            }
            Err(e) => tracing::warn!(cluster, user, "binding the admin downstream: {e}"),
        }
    }

    /// Removes the `globaladmin-<user>` binding this server made, if any: `user` is not an admin (any
    /// more). Failures are logged; the next session retries.
    pub(crate) async fn revoke(&self, cluster: &str, user: &str) {
        let Some(access) = self.registration.access(cluster) else { return };
        let key = (cluster.to_owned(), Arc::as_ptr(&access) as usize, user.to_owned());
        if lock(&self.revoked).contains(&key) || dns1123_label(user).is_err() {
            return;
        }
        match self.delete(cluster, user).await {
            Ok(()) => {
                lock(&self.done).remove(&key);
                lock(&self.revoked).insert(key);
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

fn lock(set: &Mutex<HashSet<Key>>) -> std::sync::MutexGuard<'_, HashSet<Key>> {
    set.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
