//! Writing a provisioner's findings into a cluster's status while the controller writes there too.

use std::sync::Arc;

use rancher_core::model::Cluster;
use rancher_core::store::{Api, Store, StoreError};

/// How many times a change is re-applied to a fresher cluster after a Conflict.
const WRITE_ATTEMPTS: usize = 5;

/// Applies `change` to the stored cluster of `cluster`'s uid and writes it if it changed anything
/// (retried on a conflict); a cluster that is gone, or another of the same name, is left alone.
///
/// # Errors
/// The store's; a Conflict once [`WRITE_ATTEMPTS`] writes lost to others.
pub(crate) async fn update(
    store: &Arc<dyn Store>,
    cluster: &Cluster,
    change: impl Fn(&mut Cluster) -> bool,
) -> Result<(), StoreError> {
    let api = Api::<Cluster>::all(store.clone());
    for _ in 0..WRITE_ATTEMPTS {
        let Some(mut current) = api.get_opt(&cluster.metadata.name).await? else { return Ok(()) };
        if current.metadata.uid != cluster.metadata.uid || !change(&mut current) {
            return Ok(());
        }
        match api.update(&current).await {
            Ok(_) | Err(StoreError::NotFound { .. }) => return Ok(()),
            Err(StoreError::Conflict { .. }) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(StoreError::Conflict { resource: "clusters".into(), name: cluster.metadata.name.clone() })
}
