//! One supervisor per connected cluster: when an agent session of a cluster appears (a tunnel
//! session event), a supervisor starts for that cluster *incarnation* (name and uid) and the access
//! its agent handed over; it builds one `kube::Client` through the tunnel and runs every registered
//! [`ClusterSync`] (RBAC rendering with the admins' bindings, the authorized cluster endpoint's token
//! records, the system namespaces) against the cluster with that one client ([`worker`]). It stops,
//! with all its work, when the cluster's last session goes, when another agent hands over new
//! access (a new supervisor takes over with a new client), or when the cluster is deleted.
//!
//! Nothing here polls: the [`run`] loop wakes on session events, on a cluster being deleted, and on
//! a supervisor's worker finding that its cluster or access is no longer current.

mod worker;

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use rancher_core::model::Cluster;
use rancher_core::store::{Api, Store};
use rancher_tunnel::SessionEvent;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::server::registration::{ClusterAccess, Registration, cluster_of_key};
use crate::server::tenancy::SyncError;
use crate::server::tenancy::workers::follow;

/// A future that is `Send`, boxed.
pub(crate) type BoxFut<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Makes one downstream cluster match the store; run by every cluster's supervisor.
pub(crate) trait ClusterSync: Send + Sync + 'static {
    /// For logs and [`Registration::mark_synced`]: `rbac`, `ace-tokens`.
    fn name(&self) -> &'static str;

    /// One sync of `cluster` (as stored now) through `client` (the supervisor's, shared).
    fn sync<'a>(&'a self, cluster: &'a Cluster, client: kube::Client) -> BoxFut<'a, Result<(), SyncError>>;

    /// Watches the downstream objects a sync reads, calling `poke` when they change; runs until
    /// `stop`. The default watches nothing.
    fn watch_downstream(
        &self,
        _client: kube::Client,
        _poke: Arc<Notify>,
        stop: CancellationToken,
    ) -> BoxFut<'static, ()> {
        Box::pin(async move { stop.cancelled().await })
    }
}

/// Per cluster, how to wake one sync's worker in that cluster's running supervisor.
#[derive(Default)]
pub(crate) struct Pokes(Mutex<HashMap<String, Arc<Notify>>>);

impl Pokes {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Arc<Notify>>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Asks the worker of `cluster` (if one runs) to sync soon.
    pub(crate) fn poke(&self, cluster: &str) {
        if let Some(n) = self.lock().get(cluster) {
            n.notify_one();
        }
    }

    /// Asks every running worker to sync soon.
    pub(crate) fn poke_all(&self) {
        for n in self.lock().values() {
            n.notify_one();
        }
    }

    fn insert(&self, cluster: &str, notify: Arc<Notify>) {
        self.lock().insert(cluster.to_owned(), notify);
    }

    /// Forgets `cluster`'s worker if it is still `notify` (a newer supervisor's stays).
    fn remove(&self, cluster: &str, notify: &Arc<Notify>) {
        let mut map = self.lock();
        if map.get(cluster).is_some_and(|n| Arc::ptr_eq(n, notify)) {
            map.remove(cluster);
        }
    }
}

/// A sync every supervisor runs, with how often it repairs drift and how it is poked.
#[derive(Clone)]
pub(crate) struct Registered {
    pub(crate) sync: Arc<dyn ClusterSync>,
    pub(crate) store: Arc<dyn Store>,
    pub(crate) resync: Duration,
    pub(crate) pokes: Arc<Pokes>,
}

/// What one supervisor serves: a cluster incarnation through one agent hand-over, and the client.
pub(crate) struct Target {
    pub(crate) cluster: String,
    pub(crate) uid: String,
    pub(crate) access: Arc<ClusterAccess>,
    pub(crate) client: kube::Client,
}

/// A running supervisor.
struct Running {
    target: Arc<Target>,
    cancel: CancellationToken,
}

/// The supervisors of one server: the syncs they run, which run now, and which clusters must be
/// looked at again. Held by [`Registration`]; driven by [`run`].
pub(crate) struct Supervisors {
    syncs: watch::Sender<Vec<Registered>>,
    running: Mutex<HashMap<String, Running>>,
    dirty: Mutex<HashSet<String>>,
    dirty_changed: Notify,
}

impl Default for Supervisors {
    fn default() -> Self {
        Supervisors {
            syncs: watch::Sender::new(Vec::new()),
            running: Mutex::new(HashMap::new()),
            dirty: Mutex::new(HashSet::new()),
            dirty_changed: Notify::new(),
        }
    }
}

impl Supervisors {
    fn lock_running(&self) -> MutexGuard<'_, HashMap<String, Running>> {
        self.running.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds a sync: every running supervisor starts it, and every later one runs it.
    pub(crate) fn register(&self, sync: Registered) {
        tracing::debug!(sync = sync.sync.name(), "cluster sync registered");
        self.syncs.send_modify(|all| all.push(sync));
    }

    /// Asks [`run`] to look at `cluster` again (deleted, or a worker found it no longer current).
    pub(crate) fn mark_dirty(&self, cluster: &str) {
        self.dirty.lock().unwrap_or_else(PoisonError::into_inner).insert(cluster.to_owned());
        self.dirty_changed.notify_one();
    }

    /// The client of `cluster`'s running supervisor when it serves `access` (the same agent
    /// hand-over), shared with its syncs.
    pub(crate) fn client_for(&self, cluster: &str, access: &Arc<ClusterAccess>) -> Option<kube::Client> {
        self.lock_running()
            .get(cluster)
            .filter(|r| Arc::ptr_eq(&r.target.access, access) && !r.cancel.is_cancelled())
            .map(|r| r.target.client.clone())
    }
}

/// The access a supervisor of `cluster` should serve now: the latest hand-over, while a session
/// authorized for its cluster uid exists and the stored cluster is that incarnation and not being
/// deleted. `Err(())` when the store could not be read (nothing changes then).
async fn wanted(reg: &Registration, cluster: &str) -> Result<Option<Arc<ClusterAccess>>, ()> {
    let Some(access) = reg.access(cluster) else { return Ok(None) };
    if reg.session_keys_for(cluster, &access.cluster_uid).is_empty() {
        return Ok(None);
    }
    match Api::<Cluster>::all(reg.store().clone()).get_opt(cluster).await {
        Ok(Some(c)) if c.metadata.uid == access.cluster_uid && c.metadata.deletion_timestamp.is_none() => {
            Ok(Some(access))
        }
        Ok(_) => Ok(None),
        Err(e) => {
            tracing::warn!(cluster, error = %e, "reading the cluster for its supervisor");
            Err(())
        }
    }
}

/// Starts, replaces or stops the supervisor of `cluster` so that it matches [`wanted`].
async fn reconcile(reg: &Arc<Registration>, cluster: &str, tasks: &TaskTracker, stop: &CancellationToken) {
    let Ok(want) = wanted(reg, cluster).await else { return };
    let sups = reg.supervisors();
    let mut running = sups.lock_running();
    if let Some(r) = running.get(cluster) {
        let same = want.as_ref().is_some_and(|a| Arc::ptr_eq(a, &r.target.access));
        if same && !r.cancel.is_cancelled() {
            return;
        }
        r.cancel.cancel();
        running.remove(cluster);
    }
    let Some(access) = want else { return };
    let client = match reg.client_with(cluster, &access) {
        Ok(c) => c,
        Err(e) => {
            // Unusable CA or credential: nothing can reach the cluster until its agent hands over new.
            tracing::warn!(cluster, error = %e, "no client for the cluster's supervisor");
            return;
        }
    };
    let target =
        Arc::new(Target { cluster: cluster.to_owned(), uid: access.cluster_uid.clone(), access, client });
    let cancel = stop.child_token();
    running.insert(cluster.to_owned(), Running { target: target.clone(), cancel: cancel.clone() });
    drop(running);
    tasks.spawn(worker::supervise(reg.clone(), target, sups.syncs.subscribe(), cancel));
}

/// Everything that may need a supervisor, or has one: running ones, and clusters with a session or
/// an access hand-over.
fn every_candidate(reg: &Registration) -> HashSet<String> {
    let mut names: HashSet<String> = reg.supervisors().lock_running().keys().cloned().collect();
    names.extend(reg.tunnel().client_keys().iter().map(|k| cluster_of_key(k).to_owned()));
    names.extend(reg.access_uids().into_iter().map(|(c, _)| c));
    names
}

/// Keeps one supervisor per connected cluster until `stop`, then stops them all and waits for them.
pub(crate) async fn run(reg: Arc<Registration>, stop: CancellationToken) {
    let tasks = TaskTracker::new();
    // Subscribed before the first look, so no session that appears meanwhile is missed.
    let mut events = reg.tunnel().subscribe();
    let r = reg.clone();
    tasks.spawn(follow::<Cluster>(reg.store().clone(), stop.clone(), move |c, deleted| {
        if deleted || c.metadata.deletion_timestamp.is_some() {
            r.supervisors().mark_dirty(&c.metadata.name);
        }
    }));
    for name in every_candidate(&reg) {
        reconcile(&reg, &name, &tasks, &stop).await;
    }
    let sups = reg.supervisors();
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            ev = events.recv() => match ev {
                Ok(SessionEvent::Connected { client_key, .. } | SessionEvent::Disconnected { client_key, .. }) => {
                    reconcile(&reg, cluster_of_key(&client_key), &tasks, &stop).await;
                }
                Ok(_) => {}
                Err(RecvError::Lagged(missed)) => {
                    tracing::warn!(missed, "tunnel events missed; looking at every cluster's supervisor");
                    for name in every_candidate(&reg) {
                        reconcile(&reg, &name, &tasks, &stop).await;
                    }
                }
                Err(RecvError::Closed) => break,
            },
            () = sups.dirty_changed.notified() => {
                let names: Vec<String> =
                    sups.dirty.lock().unwrap_or_else(PoisonError::into_inner).drain().collect();
                for name in names {
                    reconcile(&reg, &name, &tasks, &stop).await;
                }
            }
        }
    }
    for (_, r) in sups.lock_running().drain() {
        r.cancel.cancel();
    }
    stop.cancelled().await;
    tasks.close();
    tasks.wait().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_stopping_supervisor_leaves_its_successors_worker_pokeable() {
        let pokes = Pokes::default();
        let (old, new) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
        pokes.insert("c-1", old.clone());
        // The next supervisor of c-1 starts before the old one has finished stopping.
        pokes.insert("c-1", new.clone());
        pokes.remove("c-1", &old);
        pokes.poke("c-1");
        tokio::time::timeout(Duration::from_secs(1), new.notified()).await.expect("the new worker is poked");
        pokes.remove("c-1", &new);
        assert!(pokes.lock().is_empty());
    }
}
