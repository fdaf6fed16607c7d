//! Admins in downstream clusters: as Rancher does, a user whose global role manages every cluster gets
//! a ClusterRoleBinding `globaladmin-<user id>` to `cluster-admin` in each cluster they reach through
//! the proxy, made on their first request after an agent (re)connected.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleRef, Subject};
use kube::api::{ObjectMeta, PostParams};
use rancher_core::validation::dns1123_label;

use crate::server::registration::Registration;

/// The label marking RBAC objects this server made for global admins.
pub(crate) const GLOBAL_ADMIN_LABEL: &str = "cattle.io/creator";

/// Remembers which (cluster, agent session access, user) already has its binding.
pub(crate) struct AdminBindings {
    registration: Arc<Registration>,
    done: Mutex<HashSet<(String, usize, String)>>,
}

impl AdminBindings {
    pub(crate) fn new(registration: Arc<Registration>) -> Self {
        AdminBindings { registration, done: Mutex::new(HashSet::new()) }
    }

    /// Makes sure `user` is bound to `cluster-admin` in `cluster`. Failures are logged, not returned:
    /// without the binding the downstream API server refuses the requests itself.
    pub(crate) async fn ensure(&self, cluster: &str, user: &str) {
        let Some(access) = self.registration.access(cluster) else { return };
        let key = (cluster.to_owned(), Arc::as_ptr(&access) as usize, user.to_owned());
        if self.lock().contains(&key) || dns1123_label(user).is_err() {
            return;
        }
        match self.create(cluster, user).await {
            Ok(()) => {
                self.lock().insert(key);
            }
            Err(e) => tracing::warn!(cluster, user, "binding the admin downstream: {e}"),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<(String, usize, String)>> {
        self.done.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
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
