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
    /// A controller for the clusters in `store`.
    pub fn new(store: Arc<dyn Store>) -> Self {
        ClusterController { clusters: Api::all(store), workers: 2 }
    }

    /// How many clusters may be reconciled at once.
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
    // A Conflict means the cluster changed meanwhile: the error retries with the new version.
    clusters.update(&updated).await?;
    Ok(Action::await_change())
}
