//! Provisioning: the registry of [`Provisioner`](rancher_provision::Provisioner)s by driver name
//! (`imported`, `rke`, and the [`hosted`] `GKE`, `AKS` and (feature `eks`) `EKS` built in, others plugged in through
//! [`ServerBuilder::provisioner`](crate::server::ServerBuilder::provisioner)) and the controller that
//! drives them.
//!
//! * **Which driver.** `spec.driver` names it when a cluster is created through `/v3` (empty: the
//!   engine config's — `rke` for an `rkeConfig`, `GKE` for a `gkeConfig`, `AKS` for an `aksConfig`, `EKS` for an `eksConfig` —
//!   else `imported`); the API copies it to `status.driver`, calls the provisioner's `validate` (a 422
//!   naming the field on a bad spec, nothing stored) and puts [`PROVISION_FINALIZER`] on the cluster.
//!   `spec.driverConfig` holds the driver's own settings. The driver cannot change afterwards.
//! * **Provisioning.** The [`controller`] calls `reconcile` and writes its progress to the
//!   `Provisioned` condition and `status.provisioning`; see [`outcome`] for the mapping. A cluster
//!   whose driver nobody registered gets `Provisioned=False`, reason `UnknownDriver`, once.
//! * **Deletion.** Two finalizers hold a deleted cluster, in order: the clean-up controller's
//!   ([`CLUSTER_FINALIZER`](crate::server::cleanup::CLUSTER_FINALIZER): agent sessions, downstream
//!   objects, bindings) and then ours: `remove` runs only once the clean-up's is gone, and the
//!   cluster leaves the store when `remove` is done. A reconcile in flight is cancelled at once.
//! * **Hand-over.** A provisioner that answers `Created` hands over the new cluster's endpoint and a
//!   credential; [`agent_deploy`] applies the cluster agent's manifest through it (or, when the
//!   endpoint is unreachable, the cluster waits for the user's import) and the tunnel does the rest.
//! * **Node work.** [`node_plans`] sends a host's plan to its node agent and reads its status
//!   through the tunnel.

mod agent_deploy;
pub(crate) mod cluster_status;
mod controller;
pub(crate) mod hosted;
mod imported;
pub mod node_plans;
mod outcome;
mod registry;
pub(crate) mod rke;

use std::sync::Arc;

use rancher_core::store::Store;
use rancher_provision::Provisioner;
use rancher_provision::bundle::BundleRegistry;
use tokio_util::sync::CancellationToken;

use crate::server::registration::Registration;

pub(crate) use agent_deploy::AGENT_MANIFEST_APPLIED;
pub(crate) use hosted::aks::DRIVER as AKS_DRIVER;
pub(crate) use registry::Provisioners;
pub use registry::RegistryError;
pub(crate) use rke::keys as rke_keys;
pub(crate) use rke::{export as rke_export, state as rke_state};

/// The finalizer that holds a deleted cluster until its provisioner has removed it.
pub(crate) const PROVISION_FINALIZER: &str = "controller.cattle.io/cluster-provisioner";

/// The built-in provisioners (`imported`, `rke` with these bundles and sealer, and the hosted `GKE`
/// and `AKS`) followed by `plugged` (in registration order).
///
/// # Errors
/// [`RegistryError`] when two claim one driver name.
pub(crate) fn registry(
    plugged: &[Arc<dyn Provisioner>],
    bundles: Arc<BundleRegistry>,
    sealer: Arc<crate::server::secrets::Sealer>,
    hosted: Arc<hosted::Hosted>,
) -> Result<(Provisioners, Arc<rke::RkeProvisioner>), RegistryError> {
    let rke = Arc::new(rke::RkeProvisioner::new(bundles, sealer));
    let builtin: Vec<Arc<dyn Provisioner>> = vec![
        Arc::new(imported::Imported),
        rke.clone(),
        Arc::new(hosted::gke::GkeProvisioner::new(hosted.clone())),
        Arc::new(hosted::aks::AksProvisioner::new(hosted.clone())),
        #[cfg(feature = "eks")]
        Arc::new(hosted::eks::EksProvisioner::new(hosted)),
    ];
    #[cfg(not(feature = "eks"))]
    drop(hosted);
    Ok((Provisioners::new(builtin.into_iter().chain(plugged.iter().cloned()))?, rke))
}

/// Runs the provisioning controller until `stop`.
pub(crate) async fn run(
    store: Arc<dyn Store>,
    provisioners: Provisioners,
    registration: Arc<Registration>,
    stop: CancellationToken,
) {
    let ctx = controller::Ctx::new(store, provisioners, registration, stop);
    controller::run(Arc::new(ctx)).await;
}
