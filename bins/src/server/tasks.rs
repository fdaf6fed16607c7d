//! The server's background work — the controllers, the cluster supervisors, the connection monitor, the identity refresh and
//! the tunnel's sessions — owned by one [`ServerTasks`], started with the router and stopped after it.

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use rancher_core::cluster::ClusterController;

use super::registration::ConnectionMonitor;
use super::state::AppState;
use super::{ace_sync, cleanup, leadership, provisioning, supervisor, tenancy};

/// How long the controllers get to stop after the listener drained.
const CONTROLLER_STOP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// How long agents' tunnel sessions get to close cleanly at shutdown.
const TUNNEL_CLOSE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// The server's background tasks: the cluster, provisioning, tenancy, ACE-sync, system-project and
/// clean-up controllers, one supervisor per connected cluster, the connection monitor, the identity
/// providers' group refresh, and the agents' tunnel sessions. [`Server::run`](super::Server::run) owns them; an embedder that mounts
/// [`Server::into_router`](super::Server::into_router) in its own app holds them and calls
/// [`shutdown`](Self::shutdown) after its server has drained.
///
/// Dropping it without `shutdown` still stops every task (at its next await) but does not wait for
/// them, and leaves agents' sessions to their keepalive.
#[must_use = "dropping ServerTasks stops the server's controllers"]
pub struct ServerTasks {
    stop: CancellationToken,
    state: AppState,
    tasks: Vec<(&'static str, JoinHandle<()>)>,
}

impl std::fmt::Debug for ServerTasks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.tasks.iter().map(|(n, _)| *n).collect();
        f.debug_struct("ServerTasks").field("tasks", &names).finish_non_exhaustive()
    }
}

impl ServerTasks {
    /// Starts every background task of the server of `state`.
    pub(crate) fn start(state: &AppState) -> ServerTasks {
        let stop = CancellationToken::new();
        let store = &state.store;
        let registration = state.registration.clone();
        let clients = state.proxy.clients().clone();
        let tasks = vec![
            (
                "connection monitor",
                tokio::spawn(ConnectionMonitor::new(registration.clone()).run(stop.clone())),
            ),
            ("cluster supervisors", tokio::spawn(supervisor::run(registration.clone(), stop.clone()))),
            (
                "tenancy controller",
                tokio::spawn(tenancy::run(store.clone(), registration.clone(), stop.clone())),
            ),
            (
                "ace token sync",
                tokio::spawn(ace_sync::run(store.clone(), registration.clone(), stop.clone())),
            ),
            (
                "system namespaces",
                tokio::spawn(tenancy::system_projects::run(
                    store.clone(),
                    registration.clone(),
                    stop.clone(),
                )),
            ),
            (
                "node role labels",
                tokio::spawn(provisioning::rke::node_roles::run(
                    store.clone(),
                    registration.clone(),
                    stop.clone(),
                )),
            ),
            (
                "clean-up controller",
                tokio::spawn(cleanup::run(store.clone(), registration.clone(), clients, stop.clone())),
            ),
            (
                "controllers that run once",
                tokio::spawn(leadership::run(
                    store.clone(),
                    state.replica.clone(),
                    state.metrics.clone(),
                    stop.clone(),
                    run_once(state),
                )),
            ),
        ];
        let mut tasks = tasks;
        if let Some(peers) = &state.peers {
            if let Some(heartbeat) = peers.take_heartbeat() {
                tasks.push(("replica heartbeat", tokio::spawn(heartbeat.run(stop.clone()))));
            }
            tasks.push((
                "cluster hand-over",
                tokio::spawn(super::peers::hand_over(
                    registration.clone(),
                    peers.replicas().clone(),
                    stop.clone(),
                )),
            ));
        }
        // Group membership at external providers is re-read from the start (OpenLDAP users can be
        // refreshed even if nobody has logged in through this process yet; OAuth users once they have).
        if state.providers.any() {
            state.providers.start_refresh(store.clone());
        }
        ServerTasks { stop, state: state.clone(), tasks }
    }

    /// Closes the agents' tunnel sessions (they reconnect to whichever server is up next), then stops
    /// every task: each gets until a shared deadline of 10 s, after which it is aborted (and named in
    /// the log) so that a process on SIGTERM still exits promptly.
    pub async fn shutdown(mut self) {
        self.state.registration.tunnel().shutdown(TUNNEL_CLOSE_TIMEOUT).await;
        self.stop.cancel();
        self.state.providers.stop.cancel();
        let deadline = tokio::time::Instant::now() + CONTROLLER_STOP_TIMEOUT;
        let mut tasks = std::mem::take(&mut self.tasks);
        tasks.extend(self.state.providers.take_refresh_task().map(|t| ("identity refresh", t)));
        for (what, task) in tasks {
            stop_task(what, task, deadline).await;
        }
        self.state.authn.finish_writes(deadline).await;
    }
}

impl Drop for ServerTasks {
    fn drop(&mut self) {
        self.stop.cancel();
        self.state.providers.stop.cancel();
        if let Some(refresh) = self.state.providers.take_refresh_task() {
            refresh.abort();
        }
    }
}

/// Starts the controllers that must run on one server of those sharing the store ([`leadership`]),
/// until `stop`.
fn run_once(state: &AppState) -> impl Fn(CancellationToken) -> leadership::Tasks + use<> {
    let state = state.clone();
    move |stop: CancellationToken| {
        let store = &state.store;
        let registration = state.registration.clone();
        vec![
            (
                "provisioning controller",
                tokio::spawn(provisioning::run(
                    store.clone(),
                    state.provisioners.clone(),
                    registration.clone(),
                    stop.clone(),
                )),
            ),
            ("cluster controller", tokio::spawn(ClusterController::new(store.clone()).run(stop.clone()))),
            (
                "system projects controller",
                tokio::spawn(tenancy::system_projects::ensure_projects(
                    store.clone(),
                    state.project_names.clone(),
                    stop.clone(),
                )),
            ),
            (
                "certificate expiry",
                tokio::spawn(provisioning::rke::expiry::run(
                    store.clone(),
                    state.sealer.clone(),
                    stop.clone(),
                )),
            ),
            (
                "etcd snapshot schedule",
                tokio::spawn(provisioning::rke::backup_schedule::run(
                    store.clone(),
                    state.sealer.clone(),
                    stop.clone(),
                )),
            ),
        ]
    }
}

/// Waits for a stopped task until `deadline`, then aborts it.
async fn stop_task(what: &str, mut task: JoinHandle<()>, deadline: tokio::time::Instant) {
    match tokio::time::timeout_at(deadline, &mut task).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::error!("the {what} ended abnormally: {e}"),
        Err(_) => {
            tracing::warn!(
                "the {what} did not stop within {CONTROLLER_STOP_TIMEOUT:?} of shutdown; aborting it"
            );
            task.abort();
        }
    }
}
