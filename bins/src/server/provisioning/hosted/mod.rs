//! The hosted provisioners: clusters a cloud runs the control plane of — GKE ([`gke`]), AKS
//! ([`aks`]) and EKS (`eks`, with the `eks` feature: the AWS SDK) — created (or, with `imported: true`, registered), changed and deleted through the
//! cloud's API, signed in with a cloud credential of the cluster's creator.
//!
//! Each reconcile is stateless towards the cloud: it reads the cluster as the cloud has it, writes
//! it to `status.<engine>Status.upstreamSpec`, and makes at most one change (the engine's planner
//! orders them: the control plane before any node pool, pools one at a time), recording the cloud's
//! operation in `status.<engine>Status.operation` so that the next reconcile reports its failure.
//! Once the cluster matches its config, the provisioner hands the controller the cluster's endpoint
//! and a short-lived credential ([`Progress::Created`]) to deploy the cluster agent with, and it is
//! done when the agent has connected and reported.

pub(crate) mod aks;
#[cfg(feature = "eks")]
pub(crate) mod eks;
pub(crate) mod gke;

use std::sync::Arc;
use std::time::Duration;

use rancher_core::Conditions;
use rancher_core::model::{Cluster, ProvisioningProgress, StepState};
use rancher_core::store::Store;
use rancher_provision::ProvisionError;
use rancher_provision::hosted::credentials::{CloudSecret, CredentialSource};

use super::cluster_status;

/// How often a cloud operation in flight is looked at again.
pub(crate) const POLL: Duration = Duration::from_secs(5);

/// Where the clouds' APIs are when not at their public addresses (sovereign clouds, proxies, test
/// stand-ins), and the CAs to trust for them.
#[derive(Clone, Debug, Default)]
pub struct CloudEndpoints {
    /// GKE's `container/v1` base URL (default `https://container.googleapis.com`).
    pub gke: Option<String>,
    /// EKS's endpoint URL (default `https://eks.<region>.amazonaws.com`).
    pub eks: Option<String>,
    /// PEM CA certificates trusted for the clouds' APIs besides the system's.
    pub extra_ca_pem: Option<String>,
}

/// What every hosted provisioner works with.
pub(crate) struct Hosted {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) credentials: Arc<dyn CredentialSource>,
    pub(crate) endpoints: CloudEndpoints,
}

impl Hosted {
    /// Opens the credential `name` for `cluster` (its creator's, or one an admin creator may use).
    pub(crate) async fn secret(
        &self,
        cluster: &Cluster,
        field: &str,
        name: &str,
    ) -> Result<CloudSecret, ProvisionError> {
        if name.is_empty() {
            return Err(ProvisionError::invalid_spec(field, "names no cloud credential"));
        }
        self.credentials.open(name, cluster.creator()).await
    }

    /// Applies `change` to the stored cluster's status (see [`cluster_status::update`]).
    pub(crate) async fn write_status(
        &self,
        cluster: &Cluster,
        change: impl Fn(&mut Cluster) -> bool,
    ) -> Result<(), ProvisionError> {
        cluster_status::update(&self.store, cluster, change)
            .await
            .map_err(|e| ProvisionError::transient(format!("writing the cluster's status: {e}")))
    }
}

/// Whether the cluster agent has connected and reported: a hosted cluster is then provisioned.
pub(crate) fn agent_joined(cluster: &Cluster) -> bool {
    cluster.status.conditions.is_true("AgentDeployed") && cluster.status.version.is_some()
}

/// The progress of a hosted cluster: the cloud's cluster, the changes to it, the cluster agent.
pub(crate) fn progress(
    message: impl Into<String>,
    cloud: StepState,
    changes: StepState,
) -> ProvisioningProgress {
    ProvisioningProgress::new(message).step("cloud cluster", cloud, "").step("changes", changes, "").step(
        "cluster agent",
        StepState::Pending,
        "",
    )
}
