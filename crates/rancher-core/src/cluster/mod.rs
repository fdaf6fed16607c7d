//! The cluster lifecycle: the controller that drives a [`Cluster`](crate::model::Cluster) from created
//! to active.

mod controller;

pub use controller::{ClusterController, WAITING_FOR_AGENT};
