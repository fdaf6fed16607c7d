//! One supervisor per connected cluster: when an agent session of a cluster appears (a tunnel
//! session event), a supervisor starts for that cluster *incarnation* (name and uid) and the access
//! its agent handed over, and runs every registered [`ClusterSync`] (RBAC rendering with the admins'
//! bindings, the authorized cluster endpoint's token records, the system namespaces) against the
//! cluster through one `kube::Client`, built when a sync runs and dropped when none does
//! ([`Target::lease`]; [`worker`]). It stops,
//! with all its work, when the cluster's last session goes, when another agent hands over new
//! access (a new supervisor takes over with a new client), or when the cluster is deleted.
//!
//! Nothing here polls: the [`run`] loop wakes on session events, on a cluster being deleted, and on
//! a supervisor's worker finding that its cluster or access is no longer current. Nor does anything
//! here watch inside a cluster: a sync is poked when a digest its agent reports changes
//! ([`ClusterSync::depends_on`]), so an idle cluster costs the server no downstream connection.

mod worker;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use prometheus_client::metrics::gauge::Gauge;
use rancher_core::model::Cluster;
use rancher_core::store::{Api, Store};
use rancher_tunnel::SessionEvent;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{Notify, Semaphore, SemaphorePermit, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::server::metrics::SyncTurns;
use crate::server::registration::{ClusterAccess, Registration, RegistrationError, cluster_of_key};
use crate::server::tenancy::SyncError;
use crate::server::tenancy::workers::follow_with;

/// A future that is `Send`, boxed.
pub(crate) type BoxFut<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Makes one downstream cluster match the store; run by every cluster's supervisor.
pub(crate) trait ClusterSync: Send + Sync + 'static {
    /// For logs and [`Registration::mark_synced`]: `rbac`, `ace-tokens`.
    fn name(&self) -> &'static str;

    /// One sync of `cluster` (as stored now) through `client` (the supervisor's, shared).
    fn sync<'a>(&'a self, cluster: &'a Cluster, client: kube::Client) -> BoxFut<'a, Result<(), SyncError>>;

    /// The digests of the cluster report ([`ClusterReport::digests`]) whose change means this sync
    /// must run again: the agent watches what the sync reads inside the cluster, so the server holds
    /// no watch through the tunnel. None by default.
    ///
    /// [`ClusterReport::digests`]: crate::protocol::report::ClusterReport::digests
    fn depends_on(&self) -> &'static [&'static str] {
        &[]
    }

    /// Whether this sync has anything to do in `cluster`, decided by what its driver fixed at
    /// creation (a supervisor asks once, at its first read of the cluster): one that has not does not
    /// keep a worker in every connected cluster. All by default.
    fn applies_to(&self, _cluster: &Cluster) -> bool {
        true
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

/// What one supervisor serves: a cluster incarnation through one agent hand-over, and the client
/// its syncs share while any of them runs.
pub(crate) struct Target {
    pub(crate) cluster: String,
    pub(crate) uid: String,
    pub(crate) access: Arc<ClusterAccess>,
    /// The client and how many syncs hold it; dropped when the last lets go, so that an idle
    /// cluster holds no client (its TLS configuration and request queue, some 30 KB) and no
    /// connection into the cluster.
    client: Mutex<(Option<kube::Client>, usize)>,
}

impl Target {
    /// The shared client, built if no sync holds it now; held until the lease drops.
    pub(crate) fn lease(self: &Arc<Self>, reg: &Arc<Registration>) -> Result<ClientLease, RegistrationError> {
        let mut slot = self.client.lock().unwrap_or_else(PoisonError::into_inner);
        let client = match &slot.0 {
            Some(c) => c.clone(),
            None => {
                let c = reg.client_with(&self.cluster, &self.access)?;
                slot.0 = Some(c.clone());
                c
            }
        };
        slot.1 += 1;
        Ok(ClientLease { target: self.clone(), client })
    }
}

/// A sync's hold on its supervisor's client ([`Target::lease`]).
pub(crate) struct ClientLease {
    target: Arc<Target>,
    pub(crate) client: kube::Client,
}

impl Drop for ClientLease {
    fn drop(&mut self) {
        let mut slot = self.target.client.lock().unwrap_or_else(PoisonError::into_inner);
        slot.1 = slot.1.saturating_sub(1);
        if slot.1 == 0 {
            slot.0 = None;
        }
    }
}

/// One sync's turn ([`Supervisors::sync_turn`]): other syncs wait while [`SYNCS_AT_ONCE`] are held.
pub(crate) struct SyncTurn<'a> {
    _permit: Option<SemaphorePermit<'a>>,
    _running: Option<Counted<'a>>,
}

/// One unit of a gauge, for as long as it is held (also when the future holding it is dropped).
struct Counted<'a>(&'a Gauge);

impl<'a> Counted<'a> {
    fn on(gauge: &'a Gauge) -> Self {
        gauge.inc();
        Counted(gauge)
    }
}

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
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
    /// The last digests each cluster's agent reported, to tell which changed.
    digests: Mutex<HashMap<String, BTreeMap<String, String>>>,
    running: Mutex<HashMap<String, Running>>,
    dirty: Mutex<HashSet<String>>,
    dirty_changed: Notify,
    /// Syncs running now, over every cluster ([`SYNCS_AT_ONCE`]).
    permits: Semaphore,
    /// Where the turns are counted (`/metrics`), once the server's metrics are attached.
    turns: std::sync::OnceLock<SyncTurns>,
}

/// How many syncs run at once over all clusters. A sync holds a client (TLS configuration, pooled
/// connections into its cluster) and its requests' buffers while it runs, tens of kilobytes; when a
/// thousand clusters connect together, their first syncs would otherwise all hold theirs at once,
/// and the process keeps the memory of that peak. Syncs wait on the network, not the CPU, so 64 in
/// flight keep the work moving.
pub(crate) const SYNCS_AT_ONCE: usize = 64;

impl Default for Supervisors {
    fn default() -> Self {
        Supervisors {
            syncs: watch::Sender::new(Vec::new()),
            digests: Mutex::new(HashMap::new()),
            running: Mutex::new(HashMap::new()),
            dirty: Mutex::new(HashSet::new()),
            dirty_changed: Notify::new(),
            permits: Semaphore::new(SYNCS_AT_ONCE),
            turns: std::sync::OnceLock::new(),
        }
    }
}

impl Supervisors {
    fn lock_running(&self) -> MutexGuard<'_, HashMap<String, Running>> {
        self.running.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts the sync turns in `turns` from now on (once, at build).
    pub(crate) fn count_turns_in(&self, turns: SyncTurns) {
        let _ = self.turns.set(turns);
    }

    /// A turn to run one sync ([`SYNCS_AT_ONCE`] at a time); the sync runs while it is held.
    pub(crate) async fn sync_turn(&self) -> SyncTurn<'_> {
        let turns = self.turns.get();
        let waiting = turns.map(|t| Counted::on(&t.waiting));
        // Never closed; a closed one would let every sync run at once rather than none.
        let permit = self.permits.acquire().await.ok();
        drop(waiting);
        SyncTurn { _permit: permit, _running: turns.map(|t| Counted::on(&t.running)) }
    }

    /// How many supervisors run.
    pub(crate) fn running(&self) -> usize {
        self.lock_running().len()
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

    /// Records the digests `cluster`'s agent reported (`None`: the cluster is gone) and pokes, in
    /// its running supervisor, the syncs that depend on one that changed. The first digests seen of
    /// a cluster poke nothing: a supervisor syncs everything when it starts.
    fn digests_seen(&self, cluster: &str, now: Option<&BTreeMap<String, String>>) {
        let changed: Vec<String> = {
            let mut all = self.digests.lock().unwrap_or_else(PoisonError::into_inner);
            let Some(now) = now else {
                all.remove(cluster);
                return;
            };
            let Some(before) = all.get(cluster) else {
                all.insert(cluster.to_owned(), now.clone());
                return;
            };
            if before == now {
                return;
            }
            let changed =
                now.iter().filter(|(k, v)| before.get(*k) != Some(*v)).map(|(k, _)| k.clone()).collect();
            all.insert(cluster.to_owned(), now.clone());
            changed
        };
        for sync in self.syncs.borrow().iter() {
            if sync.sync.depends_on().iter().any(|d| changed.iter().any(|c| c == d)) {
                tracing::debug!(sync = sync.sync.name(), cluster, ?changed, "the agent reported a change");
                sync.pokes.poke(cluster);
            }
        }
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
    if let Err(e) = reg.client_with(cluster, &access) {
        // Unusable CA or credential: nothing can reach the cluster until its agent hands over new.
        tracing::warn!(cluster, error = %e, "no client for the cluster's supervisor");
        return;
    }
    let target = Arc::new(Target {
        cluster: cluster.to_owned(),
        uid: access.cluster_uid.clone(),
        access,
        client: Mutex::new((None, 0)),
    });
    let cancel = stop.child_token();
    running.insert(cluster.to_owned(), Running { target: target.clone(), cancel: cancel.clone() });
    drop(running);
    tasks.spawn(worker::supervise(reg.clone(), target, sups.syncs.subscribe(), cancel));
}

/// Whether `cluster`'s supervisor runs for the access its agent handed over last while one of its
/// sessions is up: nothing a session event can change, so no need to read the cluster. (Its
/// deletion reaches the supervisor from the store, as a dirty mark, which always reads it.) A
/// restarted server's ten thousand reconnects overran the session events; each time, reading every
/// cluster to look again made the loop fall further behind and overrun them again.
fn settled(reg: &Registration, cluster: &str) -> bool {
    let Some(access) = reg.access(cluster) else { return false };
    let current = reg
        .supervisors()
        .lock_running()
        .get(cluster)
        .is_some_and(|r| Arc::ptr_eq(&access, &r.target.access) && !r.cancel.is_cancelled());
    current && !reg.session_keys_for(cluster, &access.cluster_uid).is_empty()
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
    let gone = r.clone();
    tasks.spawn(follow_with(
        reg.store().clone(),
        stop.clone(),
        |c: &Cluster| c.metadata.name.clone(),
        move |c, name| {
            let sups = r.supervisors();
            if c.metadata.deletion_timestamp.is_some() {
                sups.mark_dirty(name);
            }
            sups.digests_seen(name, Some(&c.status.downstream_digests));
        },
        move |name| {
            let sups = gone.supervisors();
            sups.mark_dirty(name);
            sups.digests_seen(name, None);
        },
    ));
    for name in every_candidate(&reg) {
        reconcile(&reg, &name, &tasks, &stop).await;
    }
    let sups = reg.supervisors();
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            ev = events.recv() => match ev {
                Ok(SessionEvent::Connected { client_key, .. } | SessionEvent::Disconnected { client_key, .. }) => {
                    let cluster = cluster_of_key(&client_key);
                    if !settled(&reg, cluster) {
                        reconcile(&reg, cluster, &tasks, &stop).await;
                    }
                }
                Ok(_) => {}
                Err(RecvError::Lagged(missed)) => {
                    tracing::warn!(missed, "tunnel events missed; looking at every cluster's supervisor");
                    for name in every_candidate(&reg) {
                        if !settled(&reg, &name) {
                            reconcile(&reg, &name, &tasks, &stop).await;
                        }
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
