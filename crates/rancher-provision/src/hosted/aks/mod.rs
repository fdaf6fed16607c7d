//! Azure Kubernetes Service below the provisioner: [`validate`] for `spec.aksConfig`, the bodies it
//! becomes ([`spec`]), and [`AksClient`], a client for the documented Azure Resource Manager REST API
//! (`Microsoft.ContainerService` api-version [`API_VERSION`]) signed in with the OAuth 2.0
//! client-credentials grant.
//!
//! [`changes`] lists the steps from a cluster as Azure has it to the spec, in the order AKS allows.
//!
//! Every mutating call returns an [`Operation`]: [`AksClient::poll_operation`] looks once (for a
//! reconcile loop that must not block), [`AksClient::wait`] polls until it ends.
//!
//! ```no_run
//! # async fn example() -> Result<(), rancher_provision::hosted::aks::AksError> {
//! use std::time::Duration;
//! use rancher_provision::hosted::aks::{AksClient, AksClientOptions, AzureCredentials};
//!
//! let creds = AzureCredentials {
//!     tenant_id: "00000000-0000-0000-0000-000000000001".into(),
//!     client_id: "00000000-0000-0000-0000-000000000002".into(),
//!     client_secret: "s3cret".to_owned().into(),
//!     subscription_id: "00000000-0000-0000-0000-000000000003".into(),
//! };
//! let client = AksClient::new(creds, AksClientOptions::default())?;
//! let op = client.scale_pool("rg", "prod", "user1", 5).await?;
//! client.wait(&op, Duration::from_secs(1800), &Default::default()).await?;
//! let cluster = client.get_cluster("rg", "prod").await?.expect("it exists");
//! println!("{:?}", cluster.properties.provisioning_state);
//! # Ok(()) }
//! ```

mod auth;
mod client;
mod clusters;
mod diff;
mod error;
mod kubeconfig;
mod net;
mod operation;
pub mod spec;
mod types;
mod upstream;
mod validate;

pub use auth::AzureCredentials;
pub use client::{AksClient, AksClientOptions, AzureEndpoints};
pub use diff::{AksChange, changes};
pub use error::{AksError, AzureErrorBody, Result};
pub use kubeconfig::{AdminKubeconfig, KubeconfigAccess};
pub use operation::{Operation, OperationState};
pub use types::{
    AgentPool, AgentPoolProfile, AgentPoolProperties, ApiServerAccessProfile, LinuxProfile, ManagedCluster,
    ManagedClusterProperties, NetworkProfile, PowerState, ResourceGroup, ServicePrincipalProfile,
    SshConfiguration, SshPublicKey, UpgradeSettings,
};
pub use upstream::upstream_spec;
pub use validate::validate;

/// The `Microsoft.ContainerService` api-version every AKS call uses: a stable (non-preview) version
/// documented in the AKS REST reference.
pub const API_VERSION: &str = "2024-09-01";

/// The `Microsoft.Resources` api-version of the resource-group calls.
pub const RESOURCES_API_VERSION: &str = "2021-04-01";
