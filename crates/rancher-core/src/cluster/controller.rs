//! [`ClusterController`]: applies the [lifecycle rules](super::derive) to every cluster whenever it
//! changes. A new cluster with no conditions gets `Provisioned = Unknown` and `Waiting = Unknown`
//! ("waiting for the cluster agent to connect"), which shows as `waiting`; an imported cluster then
//! follows its `Connected` condition (written by the server's connection monitor) and its agent's
//! reports to `active`, `unavailable` and back.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::lifecycle::derive;
use crate::controller::{Action, Controller};
use crate::model::Cluster;
use crate::store::{Api, Store, StoreError};

/// How many clusters are reconciled at once by default. A reconcile is one write, which waits on the
/// store: with two at a time, a fleet of 10,000 arriving on three replicas over etcd (writes of tens of
/// milliseconds under that load) had 2,216 clusters Ready after twelve minutes.
pub const DEFAULT_WORKERS: usize = 16;

/// Runs the cluster controller over the clusters in a store.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use std::sync::Arc;
/// use rancher_core::cluster::ClusterController;
/// use rancher_core::store::MemoryStore;
/// use tokio_util::sync::CancellationToken;
///
/// let stop = CancellationToken::new();
/// let controller = ClusterController::new(Arc::new(MemoryStore::new()));
/// let running = tokio::spawn(controller.run(stop.clone()));
/// stop.cancel();
/// running.await.unwrap();
/// # }
/// ```
pub struct ClusterController {
    clusters: Api<Cluster>,
    workers: usize,
}

impl ClusterController {
    /// A controller for the clusters in `store`, reconciling [`DEFAULT_WORKERS`] at once.
    pub fn new(store: Arc<dyn Store>) -> Self {
        ClusterController { clusters: Api::all(store), workers: DEFAULT_WORKERS }
    }

    /// How many clusters may be reconciled at once (at least one).
    pub fn workers(mut self, n: usize) -> Self {
        self.workers = n.max(1);
        self
    }

    /// Runs until `stop` is cancelled and in-flight reconciles have finished.
    pub async fn run(self, stop: CancellationToken) {
        let ctx = Arc::new(self.clusters.clone());
        Controller::new(self.clusters)
            .workers(self.workers)
            .resync(Some(Duration::from_secs(300)))
            .run(reconcile, ctx, stop)
            .await;
    }
}

/// One reconcile of one cluster.
async fn reconcile(cluster: Arc<Cluster>, clusters: Arc<Api<Cluster>>) -> Result<Action, StoreError> {
    let mut updated = (*cluster).clone();
    if !derive(&mut updated) {
        return Ok(Action::await_change());
    }
    match clusters.update(&updated).await {
        Ok(_) => Ok(Action::await_change()),
        // Another writer (an agent's report, the connection monitor) changed the cluster since the
        // cached copy was read. The watch brings the new version, and with it the next reconcile —
        // at once, where an error would wait out a backoff that grows with every such race.
        Err(StoreError::Conflict { .. }) => Ok(Action::await_change()),
        Err(e) => Err(e),
    }
}
