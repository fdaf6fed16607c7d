//! What this process holds of each cluster's agents, by cluster *incarnation*: which cluster uid
//! each session was authorized for, the downstream access per uid, which syncs have run under the
//! current access, and forgetting all of it when a cluster is deleted.

use std::collections::HashMap;
use std::sync::Arc;

use super::{ClusterAccess, Registration};

impl Registration {
    /// [`session_keys`](Self::session_keys) whose sessions were authorized for the cluster with `uid`.
    pub(crate) fn session_keys_for(&self, cluster: &str, uid: &str) -> Vec<String> {
        let owners = self.lock_owners();
        let mut keys = self.session_keys(cluster);
        keys.retain(|k| owners.get(k).is_some_and(|u| u == uid));
        keys
    }

    fn lock_owners(&self) -> std::sync::MutexGuard<'_, HashMap<String, String>> {
        self.session_owners.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn lock_synced(&self) -> std::sync::MutexGuard<'_, HashMap<(&'static str, String), Arc<ClusterAccess>>> {
        self.synced.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// `(cluster, cluster uid)` of every downstream access held.
    pub(crate) fn access_uids(&self) -> Vec<(String, String)> {
        self.lock_access().iter().map(|(c, a)| (c.clone(), a.cluster_uid.clone())).collect()
    }

    /// Drops the downstream access of `cluster` if it is still the one handed over for `uid`.
    pub(crate) fn drop_access(&self, cluster: &str, uid: &str) {
        let mut access = self.lock_access();
        if access.get(cluster).is_some_and(|a| a.cluster_uid == uid) {
            access.remove(cluster);
        }
    }

    /// Records which cluster (by uid) the session of `client_key` was authorized for.
    pub(crate) fn set_session_owner(&self, client_key: &str, cluster_uid: &str) {
        self.lock_owners().insert(client_key.to_owned(), cluster_uid.to_owned());
    }

    /// The uid of the cluster the session of `client_key` was authorized for.
    pub(crate) fn session_owner(&self, client_key: &str) -> Option<String> {
        self.lock_owners().get(client_key).cloned()
    }

    /// Drops everything this process holds for `cluster` (its downstream access, session owners and
    /// sync marks) and closes the sessions of its cluster agent and node agents. Returns how many
    /// sessions were closed. For a deleted cluster; idempotent.
    pub(crate) fn forget_cluster(&self, cluster: &str) -> usize {
        let keys = self.session_keys(cluster);
        self.lock_access().remove(cluster);
        let prefix = format!("{cluster}:");
        self.lock_owners().retain(|k, _| k != cluster && !k.starts_with(&prefix));
        self.lock_synced().retain(|(_, c), _| c != cluster);
        keys.iter().filter(|k| self.tunnel.close_session(k)).count()
    }

    /// Notes that the `sync` controller (`rbac`, `ace-tokens`) has made `cluster` match the store
    /// under `access` (its current agent session).
    pub(crate) fn mark_synced(&self, sync: &'static str, cluster: &str, access: &Arc<ClusterAccess>) {
        self.lock_synced().insert((sync, cluster.to_owned()), access.clone());
        self.synced_changed.notify_waiters();
    }

    /// Whether `sync` has run for `cluster` since its current access was handed over.
    pub(crate) fn is_synced(&self, sync: &'static str, cluster: &str) -> bool {
        let Some(access) = self.access(cluster) else { return false };
        self.lock_synced().get(&(sync, cluster.to_owned())).is_some_and(|a| Arc::ptr_eq(a, &access))
    }

    /// Waits until [`is_synced`](Self::is_synced), at most until `deadline`. Returns whether it is.
    pub(crate) async fn wait_synced(
        &self,
        sync: &'static str,
        cluster: &str,
        deadline: tokio::time::Instant,
    ) -> bool {
        loop {
            let changed = self.synced_changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if self.is_synced(sync, cluster) {
                return true;
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                return self.is_synced(sync, cluster);
            }
        }
    }
}
