//! GKE below the provisioner: checking a `gkeConfig` ([`validate`]), what it asks Google for
//! ([`cluster_for_create`], [`node_pool_for_create`]), and a client of the documented `container/v1`
//! REST API ([`GkeClient`]) that signs in with a service-account key.
//!
//! ```no_run
//! # async fn example(key_json: secrecy::SecretString, config: rancher_core::model::GkeConfig)
//! # -> Result<(), rancher_provision::ProvisionError> {
//! use std::time::Duration;
//! use rancher_provision::hosted::gke::{self, GkeClient, GkeOptions, Location};
//!
//! gke::validate(&config)?;
//! let client = GkeClient::from_key_json(&key_json, GkeOptions::default())?;
//! let at = Location::of(&config);
//! if client.find_cluster(&at, &config.cluster_name).await?.is_none() {
//!     let op = client.create_cluster(&at, &gke::cluster_for_create(&config)).await?;
//!     let cancel = tokio_util::sync::CancellationToken::new();
//!     client.wait_operation(&at, &op, Duration::from_secs(10), Duration::from_secs(1800), &cancel).await?;
//! }
//! let cluster = client.get_cluster(&at, &config.cluster_name).await?;
//! println!("{:?} at https://{} (CA {} bytes)", cluster.status, cluster.endpoint, cluster.ca_pem().unwrap_or_default().len());
//! println!("{} API calls", client.calls().api_calls());
//! # Ok(()) }
//! ```

mod auth;
mod client;
mod error;
mod from_config;
mod plan;
mod types;
mod validate;

pub use auth::{CLOUD_PLATFORM_SCOPE, ServiceAccountKey};
pub use client::{ApiCalls, DEFAULT_BASE_URL, GkeClient, GkeOptions, Location, RetryPolicy};
pub use error::GkeError;
pub use from_config::{cluster_for_create, node_pool_for_create};
pub use plan::{GkeChange, next_change, older_than, upstream_spec};
pub use types::{
    CidrBlock, Cluster, ClusterStatus, ClusterUpdate, IpAllocationPolicy, MasterAuth,
    MasterAuthorizedNetworksConfig, MaxPodsConstraint, NodeConfig, NodeManagement, NodePool,
    NodePoolAutoscaling, NodePoolStatus, NodePoolUpdate, NodeTaint, Operation, OperationStatus,
    PrivateClusterConfig, RpcStatus,
};
pub use validate::{MAX_NAME_LEN, TAINT_EFFECTS, gke_name, validate, version};

/// The driver name of GKE clusters (Rancher's).
pub const DRIVER: &str = "GKE";

/// A GKE call's result.
pub type Result<T, E = GkeError> = std::result::Result<T, E>;
