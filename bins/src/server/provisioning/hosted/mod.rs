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

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rancher_core::Conditions;
use rancher_core::model::{
    Cluster, ClusterStatus, HostedOperation, HostedStatus, ProvisioningProgress, StepState,
};
use rancher_core::store::Store;
use rancher_provision::hosted::credentials::{CloudSecret, CredentialSource};
use rancher_provision::{Downstream, Progress, ProvisionError};
use sha2::{Digest, Sha256};

use super::cluster_status;

/// How often a hosted provisioner looks again at a cloud operation in flight (AKS: as its
/// `Retry-After` says, 1–60 s).
pub const POLL: Duration = Duration::from_secs(5);

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

/// Where an engine keeps its findings in a cluster's status (`gkeStatus`, `aksStatus`, `eksStatus`).
pub(crate) type StatusOf<C> = fn(&mut ClusterStatus) -> &mut Option<Box<HostedStatus<C>>>;

impl Hosted {
    /// Records `op` (or none) as the engine's cloud operation in flight.
    pub(crate) async fn record<C: Default>(
        &self,
        cluster: &Cluster,
        of: StatusOf<C>,
        op: Option<HostedOperation>,
    ) -> Result<(), ProvisionError> {
        self.write_status(cluster, |c| {
            let status = of(&mut c.status).get_or_insert_default();
            if status.operation == op {
                return false;
            }
            status.operation.clone_from(&op);
            true
        })
        .await
    }

    /// Records the cluster as the cloud reports it: `upstream` in the engine config's terms, and the
    /// cloud's state of it.
    pub(crate) async fn observed<C: Default + Clone + PartialEq>(
        &self,
        cluster: &Cluster,
        of: StatusOf<C>,
        upstream: C,
        phase: &str,
    ) -> Result<(), ProvisionError> {
        self.write_status(cluster, |c| {
            let status = of(&mut c.status).get_or_insert_default();
            let changed = status.upstream_spec.as_ref() != Some(&upstream) || status.phase != phase;
            status.upstream_spec = Some(upstream.clone());
            phase.clone_into(&mut status.phase);
            changed
        })
        .await
    }
}

/// Signed-in clients by a digest of what they sign in with, so that a client's token is reused
/// across reconciles (and a rotated credential gets a new client).
pub(crate) struct Clients<T>(Mutex<HashMap<[u8; 32], T>>);

impl<T: Clone> Clients<T> {
    /// At most this many are kept; beyond, the cache starts again.
    const MAX: usize = 256;

    pub(crate) fn new() -> Self {
        Clients(Mutex::default())
    }

    /// The client for `parts` (secrets among them: only their digest is kept), made by `make` once.
    pub(crate) fn get_or_make<E>(&self, parts: &[&str], make: impl FnOnce() -> Result<T, E>) -> Result<T, E> {
        let mut digest = Sha256::new();
        for part in parts {
            digest.update(part.as_bytes());
            digest.update([0]);
        }
        let key: [u8; 32] = digest.finalize().into();
        if let Some(client) = self.0.lock().unwrap_or_else(PoisonError::into_inner).get(&key) {
            return Ok(client.clone());
        }
        let client = make()?;
        let mut clients = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if clients.len() >= Self::MAX {
            clients.clear();
        }
        clients.insert(key, client.clone());
        Ok(client)
    }
}

/// Hands a cluster the cloud runs (and that matches its config) to the controller, which deploys the
/// cluster agent through `downstream`; `what` says what the cloud reports.
pub(crate) fn hand_over(what: &str, downstream: Downstream) -> Progress {
    Progress::Created {
        progress: progress(format!("{what}; deploying the cluster agent"), StepState::Done, StepState::Done),
        downstream,
    }
}

/// Whether a removal may end at once after `e` opening the cluster's credential: a permanent refusal
/// for a cluster the provisioner never recorded anything of, so nothing was made in the cloud.
pub(crate) fn never_made<C>(e: &ProvisionError, status: Option<&HostedStatus<C>>) -> bool {
    !e.is_transient() && status.is_none()
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
