//! The heart of rancher-rs, with no network I/O: the management model, the [`Store`](store::Store) it
//! lives in, and the controller runtime that drives it.
//!
//! * [`model`] — Cluster, Project, User, Token, GlobalRole, RoleTemplate, the bindings, Node, NodePool,
//!   ClusterRegistrationToken: Kubernetes-style objects with metadata, spec and status.
//! * [`store`] — the `Store` trait with Kubernetes semantics (resourceVersion compare-and-swap,
//!   finalizers, label selectors, paging, watch from a version) and its backends.
//! * [`controller`] — kube-runtime's blocks: a [`watcher`](controller::watcher()) (list, watch, resume,
//!   re-list on Gone, backoff), a [`reflector`](controller::reflector()) cache readable from any task,
//!   and a [`Controller`](controller::Controller): a work queue fed by watches of a kind and of
//!   secondary kinds, one worker per key, retries with backoff or an error policy, resync.
//! * [`cluster`] — the cluster controller that drives a cluster's lifecycle conditions.
//! * At the root: the parts every kind shares — [`ObjectMeta`], [`Condition`]s and the [`Resource`]
//!   trait — and [`Status`], the Kubernetes error object.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use rancher_core::model::{Cluster, ClusterSpec};
//! use rancher_core::store::{Api, MemoryStore};
//!
//! let clusters: Api<Cluster> = Api::all(Arc::new(MemoryStore::new()));
//! let mut demo = clusters.create(&Cluster::new("demo", ClusterSpec::default())).await?;
//! demo.spec.description = "a first cluster".into();
//! let updated = clusters.update(&demo).await?;
//! assert_ne!(updated.metadata.resource_version, demo.metadata.resource_version);
//! # Ok(()) }
//! ```

pub mod cluster;
pub mod controller;
mod meta;
pub mod model;
mod status;
pub mod store;
pub mod validation;

pub use meta::{Condition, ConditionStatus, Conditions, MetadataOnly, ObjectMeta, Resource};
pub use status::{Status, StatusCause, StatusDetails, error_chain};
