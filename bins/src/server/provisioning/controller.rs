//! The provisioning controller: for every cluster whose `status.driver` has a registered provisioner,
//! holds [`PROVISION_FINALIZER`], calls `reconcile` (after `InProgress`'s delay, with backoff after a
//! transient failure) and writes what it reports to the `Provisioned` condition and
//! `status.provisioning` — deploying the cluster agent first when the provisioner hands the cluster
//! over ([`agent_deploy`]); once the cluster is deleted, cancels a reconcile in flight, waits for the
//! clean-up controller's finalizer to go, calls `remove` until it is done, then lets the cluster go.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures::StreamExt;
use rancher_core::controller::watcher::{Config, Event};
use rancher_core::controller::{Action, Backoff, Controller, watcher};
use rancher_core::model::Cluster;
use rancher_core::store::{Api, Store, StoreError};
use rancher_core::{ConditionStatus, Conditions};
use rancher_provision::{Progress, ProvisionContext};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::PROVISION_FINALIZER;
use super::agent_deploy::{self, AGENT_MANIFEST_APPLIED};
use super::outcome::{Next, Outcome, REASON_FAILED, REASON_RETRYING};
use super::registry::Provisioners;
use crate::server::cleanup::CLUSTER_FINALIZER;
use crate::server::registration::Registration;

/// The condition a deleted cluster carries while its provisioner fails to remove it (`False`, with the
/// reason `Retrying` or `Failed` and the provisioner's message, naming the host for `rke`).
pub(crate) const REMOVED: &str = "Removed";
/// Retry delays after failed provisioner calls.
const BACKOFF: Backoff = Backoff { base: Duration::from_millis(250), max: Duration::from_secs(300) };
/// How often a `remove` that keeps answering anything but `Done` (without a delay) is called again.
const REMOVE_POLL: Duration = Duration::from_secs(5);
/// How many times a status write is re-applied to a fresher cluster after a Conflict.
const WRITE_ATTEMPTS: usize = 5;

/// When a cluster may be handed to its provisioner again, whatever events arrive meanwhile (our own
/// status writes wake the controller too; the provisioner's delay and the backoff must still hold).
struct Gate {
    /// `None`: not before the spec changes.
    not_before: Option<Instant>,
    /// The spec's generation when the gate closed (the store bumps it with every spec change).
    generation: i64,
}

/// What the controller works with.
pub(super) struct Ctx {
    pub(super) store: Arc<dyn Store>,
    pub(super) provisioners: Provisioners,
    /// The server URL and CA checksum provisioners are told, and the import manifests and
    /// registration tokens of clusters handed over.
    pub(super) registration: Arc<Registration>,
    /// The server's stop; every provisioner call's token is a child of it.
    pub(super) stop: CancellationToken,
    /// The token of the reconcile in flight, by cluster uid.
    inflight: Mutex<HashMap<String, CancellationToken>>,
    gates: Mutex<HashMap<String, Gate>>,
    failures: Mutex<HashMap<String, u32>>,
}

impl Ctx {
    pub(super) fn new(
        store: Arc<dyn Store>,
        provisioners: Provisioners,
        registration: Arc<Registration>,
        stop: CancellationToken,
    ) -> Self {
        Ctx {
            store,
            provisioners,
            registration,
            stop,
            inflight: Mutex::default(),
            gates: Mutex::default(),
            failures: Mutex::default(),
        }
    }

    fn provision_context(&self, cancel: CancellationToken) -> ProvisionContext {
        ProvisionContext {
            server_url: self.registration.server_url().to_owned(),
            ca_checksum: self.registration.ca_checksum().to_owned(),
            cancel,
        }
    }

    /// How long `cluster` must still wait, if its gate is closed.
    fn gated(&self, cluster: &Cluster) -> Option<Option<Duration>> {
        let gates = self.gates.lock().unwrap_or_else(PoisonError::into_inner);
        let gate =
            gates.get(&cluster.metadata.uid).filter(|g| g.generation == cluster.metadata.generation)?;
        match gate.not_before {
            None => Some(None),
            Some(at) => {
                let now = Instant::now();
                (at > now).then(|| Some(at - now))
            }
        }
    }

    fn close_gate(&self, cluster: &Cluster, not_before: Option<Instant>) {
        let gate = Gate { not_before, generation: cluster.metadata.generation };
        self.gates.lock().unwrap_or_else(PoisonError::into_inner).insert(cluster.metadata.uid.clone(), gate);
    }

    fn open_gate(&self, uid: &str) {
        self.gates.lock().unwrap_or_else(PoisonError::into_inner).remove(uid);
    }

    /// The next backoff delay for `uid` (counting this failure).
    fn failed(&self, uid: &str) -> Duration {
        let mut failures = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        let n = failures.entry(uid.to_owned()).or_insert(0);
        *n = n.saturating_add(1);
        BACKOFF.delay(*n)
    }

    fn succeeded(&self, uid: &str) {
        self.failures.lock().unwrap_or_else(PoisonError::into_inner).remove(uid);
    }

    fn forget(&self, uid: &str) {
        self.open_gate(uid);
        self.succeeded(uid);
    }

    /// Cancels the reconcile in flight for the cluster `uid`, if any.
    fn cancel(&self, uid: &str) {
        if let Some(token) = self.inflight.lock().unwrap_or_else(PoisonError::into_inner).get(uid) {
            token.cancel();
        }
    }
}

/// Runs the controller, and the watch that cancels reconciles of deleted clusters, until `stop`.
pub(super) async fn run(ctx: Arc<Ctx>) {
    let stop = ctx.stop.clone();
    let canceller = tokio::spawn(cancel_on_delete(ctx.clone()));
    Controller::new(Api::<Cluster>::all(ctx.store.clone()))
        .workers(4)
        .resync(Some(Duration::from_secs(600)))
        .run(reconcile, ctx, stop)
        .await;
    if let Err(e) = canceller.await {
        tracing::error!("the provisioning cancel watch ended abnormally: {e}");
    }
}

pub(super) async fn reconcile(cluster: Arc<Cluster>, ctx: Arc<Ctx>) -> Result<Action, StoreError> {
    let driver = cluster.status.driver.as_str();
    if driver.is_empty() {
        return Ok(Action::await_change()); // the local cluster, or one no provisioner drives
    }
    let api = Api::<Cluster>::all(ctx.store.clone());
    let ours = cluster.metadata.finalizers.iter().any(|f| f == PROVISION_FINALIZER);
    if cluster.metadata.deletion_timestamp.is_some() {
        if !ours {
            return Ok(Action::await_change());
        }
        // The server's own clean-up goes first (it needs the cluster's agent); its update wakes us.
        if cluster.metadata.finalizers.iter().any(|f| f == CLUSTER_FINALIZER) {
            return Ok(Action::await_change());
        }
        return remove(&cluster, &ctx, &api).await;
    }
    let Some(provisioner) = ctx.provisioners.get(driver).cloned() else {
        let outcome = Outcome::unknown_driver(ctx.provisioners.unknown(driver));
        write_status(&api, &cluster, |c| outcome.apply(c)).await?;
        return Ok(Action::await_change());
    };
    if !ours {
        let mut held = (*cluster).clone();
        held.metadata.finalizers.push(PROVISION_FINALIZER.to_owned());
        api.update(&held).await?; // the update wakes us again
        return Ok(Action::await_change());
    }
    if let Some(wait) = ctx.gated(&cluster) {
        return Ok(wait.map_or_else(Action::await_change, Action::requeue));
    }

    let uid = cluster.metadata.uid.clone();
    let cancel = ctx.stop.child_token();
    ctx.inflight.lock().unwrap_or_else(PoisonError::into_inner).insert(uid.clone(), cancel.clone());
    // Deleted between the queue and here: the watch may have fired before the token existed.
    if api.get_opt(&cluster.metadata.name).await?.is_none_or(|c| c.metadata.deletion_timestamp.is_some()) {
        cancel.cancel();
    }
    let result = provisioner.reconcile(&cluster, &ctx.provision_context(cancel.clone())).await;
    let outcome = match result {
        // The hand-over's credential lives until this arm ends: it is used for the deployment only.
        Ok(Progress::Created { progress, downstream }) => {
            let mark_applying = async |endpoint: &str| {
                let message = format!("applying the cluster agent's manifest through {endpoint}");
                write_status(&api, &cluster, |c| {
                    c.status.conditions.set_condition(
                        AGENT_MANIFEST_APPLIED,
                        ConditionStatus::Unknown,
                        "",
                        &message,
                    )
                })
                .await
            };
            let handover =
                agent_deploy::hand_over(&ctx.registration, &cluster, &downstream, &cancel, mark_applying)
                    .await;
            Outcome::created(&cluster, progress, handover)
        }
        result => {
            if let Err(e) = &result {
                tracing::warn!(cluster = %cluster.metadata.name, driver, "provisioning: {e}");
            }
            Outcome::of(&cluster, result)
        }
    };
    ctx.inflight.lock().unwrap_or_else(PoisonError::into_inner).remove(&uid);
    if cancel.is_cancelled() {
        tracing::info!(cluster = %cluster.metadata.name, "provisioning cancelled");
        return Ok(Action::await_change()); // the deletion (queued meanwhile) takes over
    }
    let generation = cluster.metadata.generation;
    write_status(&api, &cluster, |c| {
        let observed = c.status.observed_generation != Some(generation);
        c.status.observed_generation = Some(generation);
        outcome.apply(c) | observed
    })
    .await?;
    Ok(match outcome.next {
        Next::OnChange | Next::Cancelled => {
            ctx.forget(&uid);
            Action::await_change()
        }
        Next::OnChangeOr(after) => {
            ctx.forget(&uid);
            Action::requeue(after)
        }
        Next::After(after) => {
            ctx.succeeded(&uid);
            ctx.close_gate(&cluster, Some(Instant::now() + after));
            Action::requeue(after)
        }
        Next::Backoff => {
            let delay = ctx.failed(&uid);
            ctx.close_gate(&cluster, Some(Instant::now() + delay));
            Action::requeue(delay)
        }
        Next::SpecChange => {
            ctx.succeeded(&uid);
            ctx.close_gate(&cluster, None);
            Action::await_change()
        }
    })
}

/// Drives `remove` of a Terminating cluster until it is done, then drops our finalizer.
async fn remove(cluster: &Cluster, ctx: &Ctx, api: &Api<Cluster>) -> Result<Action, StoreError> {
    let name = cluster.metadata.name.as_str();
    let uid = cluster.metadata.uid.as_str();
    let driver = cluster.status.driver.as_str();
    let Some(provisioner) = ctx.provisioners.get(driver).cloned() else {
        // Whatever the driver made may still exist: hold the cluster until its provisioner is back.
        let message = format!("cannot remove the cluster: {}", ctx.provisioners.unknown(driver));
        tracing::warn!(cluster = name, "{message}");
        write_status(api, cluster, |c| set_message(c, &message)).await?;
        return Ok(Action::await_change());
    };
    // A removal retried after a failure or a delay waits for it, whatever our own writes wake.
    if let Some(Some(wait)) = ctx.gated(cluster) {
        return Ok(Action::requeue(wait));
    }
    let retry = |delay: Duration| {
        ctx.close_gate(cluster, Some(Instant::now() + delay));
        Ok(Action::requeue(delay))
    };
    match provisioner.remove(cluster, &ctx.provision_context(ctx.stop.child_token())).await {
        Ok(Progress::Done) => {
            let mut done = cluster.clone();
            done.metadata.finalizers.retain(|f| f != PROVISION_FINALIZER);
            match api.update(&done).await {
                Ok(_) | Err(StoreError::NotFound { .. }) => {}
                Err(e) => return Err(e), // retried: `remove` is idempotent
            }
            ctx.forget(uid);
            tracing::info!(cluster = name, driver, "the provisioner removed the cluster");
            Ok(Action::await_change())
        }
        Ok(Progress::InProgress { progress, after }) => {
            ctx.succeeded(uid);
            write_status(api, cluster, |c| {
                let changed = c.status.provisioning.as_ref() != Some(&progress);
                c.status.provisioning = Some(progress.clone());
                changed
            })
            .await?;
            retry(after)
        }
        Ok(_) => retry(REMOVE_POLL),
        Err(e) => {
            let delay = if e.is_transient() { ctx.failed(uid) } else { BACKOFF.max };
            tracing::warn!(cluster = name, driver, retry_in = ?delay, "removing the cluster: {e}");
            let message = format!("removing the cluster: {e}");
            let reason = if e.is_transient() { REASON_RETRYING } else { REASON_FAILED };
            write_status(api, cluster, |c| {
                let condition =
                    c.status.conditions.set_condition(REMOVED, ConditionStatus::False, reason, &message);
                set_message(c, &message) | condition
            })
            .await?;
            retry(delay)
        }
    }
}

fn set_message(cluster: &mut Cluster, message: &str) -> bool {
    let progress = cluster.status.provisioning.get_or_insert_with(Default::default);
    if progress.message == message {
        return false;
    }
    progress.message = message.to_owned();
    true
}

/// Applies `change` to the cluster and writes it if it changed anything; after a Conflict, applies it
/// again to the cluster as it is now (the provisioner is not called again for someone else's write).
async fn write_status(
    api: &Api<Cluster>,
    cluster: &Cluster,
    change: impl Fn(&mut Cluster) -> bool,
) -> Result<(), StoreError> {
    let mut current = cluster.clone();
    for _ in 0..WRITE_ATTEMPTS {
        if !change(&mut current) {
            return Ok(());
        }
        match api.update(&current).await {
            Ok(_) | Err(StoreError::NotFound { .. }) => return Ok(()),
            Err(StoreError::Conflict { .. }) => match api.get_opt(&cluster.metadata.name).await? {
                Some(fresh) if fresh.metadata.uid == cluster.metadata.uid => current = fresh,
                _ => return Ok(()),
            },
            Err(e) => return Err(e),
        }
    }
    // The cluster kept changing; the runtime retries the whole reconcile with backoff.
    Err(StoreError::Conflict { resource: "clusters".into(), name: cluster.metadata.name.clone() })
}

/// Cancels the reconcile in flight of a cluster that is being deleted. A cluster with a reconcile in
/// flight holds [`PROVISION_FINALIZER`], so it cannot vanish unseen: after a re-list (the store lost
/// the watch's version) its deletion shows as a listed cluster with a deletion timestamp.
async fn cancel_on_delete(ctx: Arc<Ctx>) {
    let mut events = std::pin::pin!(watcher(Api::<Cluster>::all(ctx.store.clone()), Config::default()));
    while let Some(Some(event)) = ctx.stop.run_until_cancelled(events.next()).await {
        match event {
            Ok(Event::Apply(c) | Event::InitApply(c)) if c.metadata.deletion_timestamp.is_some() => {
                ctx.cancel(&c.metadata.uid);
            }
            Ok(Event::Delete(c)) => ctx.cancel(&c.metadata.uid),
            Ok(_) => {}
            Err(e) => tracing::debug!("provisioning: watching clusters (retrying): {e}"),
        }
    }
}
