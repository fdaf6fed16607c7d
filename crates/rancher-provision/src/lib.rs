//! How clusters come into being: the [`Provisioner`] trait and, for clusters built on machines, the
//! [`MachineDriver`] trait.
//!
//! The server's provisioning controller dispatches on a cluster's `status.driver` to the provisioner
//! registered for that driver (`ServerBuilder::provisioner` in the `rancher` crate) and drives it:
//!
//! * [`validate`](Provisioner::validate) when a cluster is created through `/v3` — an
//!   [`ProvisionError::InvalidSpec`] becomes a 422 naming the field, and nothing is stored;
//! * [`reconcile`](Provisioner::reconcile) until it returns [`Progress::Done`] (or
//!   [`Progress::WaitingForAgent`]), again after `after` while it returns [`Progress::InProgress`], and
//!   with exponential backoff after a [`ProvisionError::Transient`] failure;
//! * [`remove`](Provisioner::remove) once the cluster is deleted, until it returns
//!   [`Progress::Done`]; only then does the cluster leave the store (a finalizer holds it).
//!
//! Progress lands on the cluster: the `Provisioned` condition summarises it (`Unknown` while in
//! progress, `True` once provisioned, `False` on a failure that retrying will not fix) and
//! `status.provisioning` holds the [`ProvisioningProgress`](rancher_core::model::ProvisioningProgress)
//! (rancher-core's type, the one [`Progress`] carries) — a message and each step's state — that
//! a CLI draws as a progress bar. Deleting a cluster fires [`ProvisionContext::cancel`] for a
//! reconcile in flight.
//!
//! A provisioner is idempotent: `reconcile` may be called any number of times with the same cluster
//! and must converge, never duplicate; it never blocks for long, but returns `InProgress` and is
//! called again. The traits are object-safe, so a platform plugs in its own as `Arc<dyn Provisioner>`.
//!
//! # Example: a provisioner for your own infrastructure
//!
//! ```
//! use std::time::Duration;
//! use async_trait::async_trait;
//! use rancher_core::model::{Cluster, ProvisioningProgress, StepState};
//! use rancher_provision::{ProvisionContext, ProvisionError, Provisioner, Progress};
//!
//! /// Clusters on racks of machines; `spec.driverConfig.racks` says how many.
//! struct Racks;
//!
//! fn racks(cluster: &Cluster) -> Option<u64> {
//!     cluster.spec.driver_config.as_ref()?.get("racks")?.as_u64()
//! }
//!
//! #[async_trait]
//! impl Provisioner for Racks {
//!     fn driver(&self) -> &str {
//!         "racks"
//!     }
//!
//!     fn validate(&self, cluster: &Cluster) -> Result<(), ProvisionError> {
//!         match racks(cluster) {
//!             Some(1..) => Ok(()),
//!             _ => Err(ProvisionError::invalid_spec("spec.driverConfig.racks", "must be a number above 0")),
//!         }
//!     }
//!
//!     async fn reconcile(&self, cluster: &Cluster, ctx: &ProvisionContext) -> Result<Progress, ProvisionError> {
//!         if ctx.cancel.is_cancelled() {
//!             return Err(ProvisionError::Cancelled);
//!         }
//!         // Ask the infrastructure how far it got (here: pretend every rack is powered on).
//!         let wanted = racks(cluster).unwrap_or(0);
//!         let powered = wanted;
//!         if powered < wanted {
//!             let progress = ProvisioningProgress::new(format!("{powered} of {wanted} racks powered on"))
//!                 .step("racks", StepState::Running, "")
//!                 .step("kubernetes", StepState::Pending, "");
//!             return Ok(Progress::InProgress { progress, after: Duration::from_secs(5) });
//!         }
//!         Ok(Progress::WaitingForAgent {
//!             progress: ProvisioningProgress::new(format!("apply the import manifest from {}", ctx.server_url))
//!                 .step("racks", StepState::Done, "")
//!                 .step("kubernetes", StepState::Done, ""),
//!         })
//!     }
//!
//!     async fn remove(&self, _cluster: &Cluster, _ctx: &ProvisionContext) -> Result<Progress, ProvisionError> {
//!         Ok(Progress::Done) // powered everything off (idempotent: already off is fine)
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let p: std::sync::Arc<dyn Provisioner> = std::sync::Arc::new(Racks);
//! let mut cluster = Cluster::new("c-racks", Default::default());
//! let err = p.validate(&cluster).unwrap_err();
//! assert_eq!(err.to_string(), "spec.driverConfig.racks: must be a number above 0");
//! cluster.spec.driver_config = Some(serde_json::json!({ "racks": 2 }));
//! assert!(p.validate(&cluster).is_ok());
//! match p.reconcile(&cluster, &ProvisionContext::default()).await.unwrap() {
//!     Progress::WaitingForAgent { progress } => assert_eq!((progress.done(), progress.total()), (2, 2)),
//!     other => panic!("{other:?}"),
//! }
//! # }
//! ```
//!
//! The kinds that ship with rancher-rs (imported in the server today; SSH hosts RKE-style, machine
//! drivers, hosted EKS/GKE/AKS later) implement this same contract.

mod aws_sigv4;
pub mod bundle;
pub mod cluster_pki;
mod context;
mod error;
pub mod etcd_api;
pub mod etcd_snapshots;
pub mod hosted;
pub mod plan;
mod progress;
pub mod rke;
pub mod rke_plans;
pub mod s3;
pub mod ssh;

use async_trait::async_trait;
use rancher_core::model::{Cluster, Node};

pub use context::ProvisionContext;
pub use error::{BoxError, ProvisionError};
pub use progress::{Downstream, DownstreamCredential, Progress};

/// Brings clusters of one driver into being and takes them away again.
///
/// Implementations must be idempotent and must not block: long operations return
/// [`Progress::InProgress`] and are called again. See the [crate docs](crate) for how the server
/// drives them and a worked example.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait Provisioner: Send + Sync {
    /// The driver name this provisioner serves (`imported`, `rke`, `EKS`, …), matched against
    /// `cluster.status.driver` (which the server copies from `spec.driver`). One provisioner per name.
    fn driver(&self) -> &str;

    /// Checks a cluster's spec before it is stored; the default accepts everything.
    ///
    /// # Errors
    /// [`ProvisionError::InvalidSpec`] naming the field, with a message the user can act on.
    fn validate(&self, _cluster: &Cluster) -> Result<(), ProvisionError> {
        Ok(())
    }

    /// The JSON Schema of this driver's settings — what a cluster of it carries in
    /// `spec.driverConfig` — from which clients build a form (the server's console does). The
    /// default has none: such clusters are created through the API with their settings as JSON.
    fn settings_schema(&self) -> Option<serde_json::Value> {
        None
    }

    /// What is accepted in a cluster's spec but worth telling the user (a topology other than the
    /// recommended one, settings that are ignored): called after a successful
    /// [`validate`](Provisioner::validate); the API sends each as a `Warning: 299 - "…"` header, as
    /// Kubernetes does. The default has none.
    fn warnings(&self, _cluster: &Cluster) -> Vec<String> {
        Vec::new()
    }

    /// Moves the cluster one step towards its spec.
    ///
    /// # Errors
    /// [`ProvisionError::Transient`] is retried with backoff; [`ProvisionError::Cancelled`] when
    /// `ctx.cancel` fired; any other error is recorded in `Provisioned=False` and retried only when
    /// the cluster changes.
    async fn reconcile(&self, cluster: &Cluster, ctx: &ProvisionContext) -> Result<Progress, ProvisionError>;

    /// Removes what [`reconcile`](Provisioner::reconcile) created (also half-made infrastructure of a
    /// cancelled reconcile). Called while the cluster is Terminating, after the server's own
    /// clean-up; the cluster leaves the store once this returns [`Progress::Done`].
    ///
    /// # Errors
    /// Any [`ProvisionError`]; the controller retries with backoff.
    async fn remove(&self, cluster: &Cluster, ctx: &ProvisionContext) -> Result<Progress, ProvisionError>;
}

/// Where a machine driver's machine can be reached once it exists.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MachineAddress {
    /// Public address (what SSH dials).
    pub address: String,
    /// Address inside the cluster network.
    pub internal_address: String,
    /// SSH user.
    pub ssh_user: String,
}

/// Creates and destroys machines on one infrastructure (EC2, DigitalOcean, Azure, vSphere, …).
///
/// A node-pool provisioner calls a driver for each [`Node`] it wants; the driver keeps whatever ids it needs
/// in the node's annotations.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait MachineDriver: Send + Sync {
    /// The driver's name (`amazonec2`, `digitalocean`, `azure`, `vmwarevsphere`).
    fn name(&self) -> &str;

    /// Creates the machine for `node` if it does not exist, and reports where it is once it runs.
    ///
    /// # Errors
    /// [`ProvisionError::Transient`] when the cloud API fails.
    async fn create(&self, node: &Node) -> Result<Option<MachineAddress>, ProvisionError>;

    /// Destroys the machine for `node`; succeeds if it is already gone.
    ///
    /// # Errors
    /// [`ProvisionError::Transient`] when the cloud API fails.
    async fn remove(&self, node: &Node) -> Result<(), ProvisionError>;
}

#[cfg(test)]
mod tests {
    use rancher_core::model::ProvisioningProgress;

    use super::*;

    #[tokio::test]
    async fn provisioners_are_usable_as_trait_objects() {
        let mut mock = MockProvisioner::new();
        mock.expect_driver().return_const("custom".to_owned());
        mock.expect_reconcile().returning(|c, _| {
            Ok(Progress::WaitingForAgent {
                progress: ProvisioningProgress::new(format!("install the agent in {}", c.metadata.name)),
            })
        });
        let p: Box<dyn Provisioner> = Box::new(mock);
        assert_eq!(p.driver(), "custom");
        let cluster = Cluster::new("edge-1", Default::default());
        match p.reconcile(&cluster, &ProvisionContext::default()).await.unwrap() {
            Progress::WaitingForAgent { progress } => {
                assert_eq!(progress.message, "install the agent in edge-1")
            }
            other => panic!("{other:?}"),
        }
    }

    /// A provisioner that only implements the required methods.
    struct Minimal;

    #[async_trait]
    impl Provisioner for Minimal {
        fn driver(&self) -> &str {
            "minimal"
        }
        async fn reconcile(&self, _: &Cluster, _: &ProvisionContext) -> Result<Progress, ProvisionError> {
            Err(ProvisionError::NotImplemented("reconcile".into()))
        }
        async fn remove(&self, _: &Cluster, _: &ProvisionContext) -> Result<Progress, ProvisionError> {
            Ok(Progress::Done)
        }
    }

    #[tokio::test]
    async fn the_default_validation_accepts_any_spec_and_errors_say_what_failed() {
        let p: Box<dyn Provisioner> = Box::new(Minimal);
        let cluster = Cluster::new("edge-1", Default::default());
        assert!(p.validate(&cluster).is_ok());
        assert!(p.warnings(&cluster).is_empty());
        let err = p.reconcile(&cluster, &ProvisionContext::default()).await.unwrap_err();
        assert_eq!(err.to_string(), "not implemented: reconcile");
    }

    #[test]
    fn credentials_never_show_in_debug_output() {
        let d = Downstream {
            api_endpoint: "https://10.0.0.1:6443".into(),
            ca_pem: String::new(),
            credential: DownstreamCredential::BearerToken("s3cr3t-token".to_owned().into()),
        };
        let shown = format!("{d:?}");
        assert!(shown.contains("10.0.0.1") && !shown.contains("s3cr3t-token"), "{shown}");
    }
}
