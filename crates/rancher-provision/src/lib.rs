//! How clusters come into being: the [`Provisioner`] trait and, for clusters built on machines, the
//! [`MachineDriver`] trait.
//!
//! The cluster controller (in `rancher-core`'s cluster lifecycle, composed by the `rancher` crate) looks up
//! the provisioner registered for a cluster's driver and calls it until the cluster is where the user wants
//! it. A provisioner is idempotent: [`Provisioner::reconcile`] may be called any number of times with the
//! same cluster and must converge, never duplicate. Plugins are registered at run time as
//! `Box<dyn Provisioner>`, so a platform can bring its own infrastructure:
//!
//! ```no_run
//! use async_trait::async_trait;
//! use rancher_core::model::Cluster;
//! use rancher_provision::{ProvisionContext, ProvisionError, Provisioner, Progress};
//!
//! /// Clusters that already exist somewhere and only need their agent.
//! struct BringYourOwn;
//!
//! #[async_trait]
//! impl Provisioner for BringYourOwn {
//!     fn driver(&self) -> &str {
//!         "byo"
//!     }
//!     async fn reconcile(&self, cluster: &Cluster, _ctx: &ProvisionContext) -> Result<Progress, ProvisionError> {
//!         Ok(Progress::WaitingForAgent { message: format!("apply the agent manifest in {}", cluster.metadata.name) })
//!     }
//!     async fn remove(&self, _cluster: &Cluster, _ctx: &ProvisionContext) -> Result<Progress, ProvisionError> {
//!         Ok(Progress::Done)
//!     }
//! }
//!
//! let provisioners: Vec<Box<dyn Provisioner>> = vec![Box::new(BringYourOwn)];
//! assert_eq!(provisioners[0].driver(), "byo");
//! ```
//!
//! The kinds that ship with rancher-rs (imported, SSH hosts RKE-style, machine drivers, hosted EKS/GKE/AKS)
//! arrive in later releases; this crate holds their shared contract.

use std::time::Duration;

use async_trait::async_trait;
use rancher_core::model::{Cluster, Node};

/// What a provisioner reports after one step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Progress {
    /// Work is under way; call again after `after`.
    InProgress {
        /// What is happening, for the cluster's `Provisioned` condition.
        message: String,
        /// When to look again.
        after: Duration,
    },
    /// The infrastructure is in place; the cluster agent has yet to connect.
    WaitingForAgent {
        /// What the user should know (e.g. the command that installs the agent).
        message: String,
    },
    /// The step is complete: the cluster is provisioned (for `reconcile`) or removed (for `remove`).
    Done,
}

/// What a provisioner may use while it works.
#[derive(Clone, Debug, Default)]
pub struct ProvisionContext {
    /// The management server's external URL, which agents dial.
    pub server_url: String,
    /// The SHA-256 checksum of the server's CA, which agents pin.
    pub ca_checksum: String,
}

/// Why a provisioner step failed.
#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    /// The cluster's spec cannot be provisioned as written; retrying will not help.
    #[error("invalid cluster spec: {0}")]
    InvalidSpec(String),
    /// The infrastructure API failed; the controller retries with backoff.
    #[error("infrastructure: {0}")]
    Infrastructure(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// This provisioner does not support the requested operation.
    #[error("not implemented: {0}")]
    NotImplemented(String),
}

/// Brings clusters of one driver into being and takes them away again.
///
/// Implementations must be idempotent and must not block: long operations return
/// [`Progress::InProgress`] and are called again.
#[cfg_attr(test, mockall::automock)]
#[async_trait]
pub trait Provisioner: Send + Sync {
    /// The driver name this provisioner serves (`imported`, `rke`, `EKS`, …), matched against
    /// `cluster.status.driver`.
    fn driver(&self) -> &str;

    /// Checks a cluster's spec before it is stored; the default accepts everything.
    ///
    /// # Errors
    /// [`ProvisionError::InvalidSpec`] with a message the user can act on.
    fn validate(&self, _cluster: &Cluster) -> Result<(), ProvisionError> {
        Ok(())
    }

    /// Moves the cluster one step towards its spec.
    ///
    /// # Errors
    /// Any [`ProvisionError`]; the controller records it in the `Provisioned` condition and retries
    /// unless it is [`ProvisionError::InvalidSpec`].
    async fn reconcile(&self, cluster: &Cluster, ctx: &ProvisionContext) -> Result<Progress, ProvisionError>;

    /// Removes what [`reconcile`](Provisioner::reconcile) created. Called while the cluster is
    /// Terminating; the cluster's finalizer is dropped once this returns [`Progress::Done`].
    ///
    /// # Errors
    /// Any [`ProvisionError`]; the controller retries.
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
#[cfg_attr(test, mockall::automock)]
#[async_trait]
pub trait MachineDriver: Send + Sync {
    /// The driver's name (`amazonec2`, `digitalocean`, `azure`, `vmwarevsphere`).
    fn name(&self) -> &str;

    /// Creates the machine for `node` if it does not exist, and reports where it is once it runs.
    ///
    /// # Errors
    /// [`ProvisionError::Infrastructure`] when the cloud API fails.
    async fn create(&self, node: &Node) -> Result<Option<MachineAddress>, ProvisionError>;

    /// Destroys the machine for `node`; succeeds if it is already gone.
    ///
    /// # Errors
    /// [`ProvisionError::Infrastructure`] when the cloud API fails.
    async fn remove(&self, node: &Node) -> Result<(), ProvisionError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn provisioners_are_usable_as_trait_objects() {
        let mut mock = MockProvisioner::new();
        mock.expect_driver().return_const("custom".to_owned());
        mock.expect_reconcile().returning(|c, _| {
            Ok(Progress::WaitingForAgent { message: format!("install the agent in {}", c.metadata.name) })
        });
        let p: Box<dyn Provisioner> = Box::new(mock);
        assert_eq!(p.driver(), "custom");
        let cluster = Cluster::new("edge-1", Default::default());
        let progress = p.reconcile(&cluster, &ProvisionContext::default()).await.unwrap();
        assert_eq!(progress, Progress::WaitingForAgent { message: "install the agent in edge-1".into() });
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
        let err = p.reconcile(&cluster, &ProvisionContext::default()).await.unwrap_err();
        assert_eq!(err.to_string(), "not implemented: reconcile");
    }
}
