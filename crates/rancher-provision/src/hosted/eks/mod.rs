//! EKS below the provisioner: checking an `eksConfig` ([`validate`]), what it asks AWS for
//! ([`cluster_for_create`], [`nodegroup_for_create`]), the bearer token for a cluster's API server
//! ([`bearer_token`], signed here with the crate's own SigV4), and — with the `eks` feature — a
//! client of the EKS API through the official AWS SDK ([`EksClient`]).
//!
//! Creating the VPC or the IAM roles is not implemented: a cluster names existing subnets and roles.
//!
//! ```no_run
//! # #[cfg(feature = "eks")]
//! # async fn example(secret: rancher_provision::hosted::credentials::CloudSecret, config: rancher_core::model::EksConfig)
//! # -> Result<(), rancher_provision::ProvisionError> {
//! use std::time::Duration;
//! use rancher_provision::hosted::eks::{self, EksClient, EksOptions, Wait};
//!
//! eks::validate(&config)?;
//! let client = EksClient::from_secret(&secret, &config.region, EksOptions::default())?;
//! let cancel = tokio_util::sync::CancellationToken::new();
//! let wait = Wait { poll: Duration::from_secs(15), deadline: Duration::from_secs(1800), cancel: &cancel };
//! let name = &config.display_name;
//! if client.find_cluster(name).await?.is_none() {
//!     client.create_cluster(&eks::cluster_for_create(&config)).await?;
//! }
//! let cluster = client.wait_cluster_active(name, wait).await?;
//! for ng in &config.node_groups {
//!     if client.find_nodegroup(name, &ng.nodegroup_name).await?.is_none() {
//!         client.create_nodegroup(name, &eks::nodegroup_for_create(&config, ng)).await?;
//!     }
//! }
//! let token = client.bearer_token(name); // for `Authorization: Bearer` at cluster.endpoint
//! println!("{:?} at {:?} ({} API calls)", cluster.status, cluster.endpoint, client.calls().api_calls());
//! # let _ = token; Ok(()) }
//! ```

#[cfg(feature = "eks")]
mod client;
#[cfg(feature = "eks")]
mod convert;
mod error;
mod plan;
#[cfg(feature = "eks")]
mod retry;
mod token;
mod types;
mod validate;
#[cfg(feature = "eks")]
mod wait;

#[cfg(feature = "eks")]
pub use client::{EksClient, EksOptions};
pub use error::EksError;
pub use plan::{EksChange, busy, next_change, upstream_spec};
#[cfg(feature = "eks")]
pub use retry::{ApiCalls, RetryAfterClassifier, RetryPolicy};
pub use token::{
    AwsKeys, CLUSTER_ID_HEADER, TOKEN_LIFETIME, TOKEN_PREFIX, URL_EXPIRES_SECS, bearer_token,
    bearer_token_for_host, sts_host, token_url,
};
pub use types::{
    Cluster, ClusterConfigUpdate, ClusterCreate, ClusterStatus, Nodegroup, NodegroupCreate, NodegroupStatus,
    Scaling, Update, UpdateStatus, cluster_for_create, nodegroup_for_create,
};
pub use validate::{
    LOG_TYPES, MAX_CLUSTER_NAME_LEN, MAX_NODE_VERSION_SKEW, MAX_NODEGROUP_NAME_LEN, MAX_NODEGROUP_SIZE,
    eks_name, region, validate, version,
};
#[cfg(feature = "eks")]
pub use wait::Wait;

/// The driver name of EKS clusters (Rancher's).
pub const DRIVER: &str = "EKS";

/// An EKS call's result.
pub type Result<T, E = EksError> = std::result::Result<T, E>;
