//! The cluster lifecycle: the rules that summarise a [`Cluster`](crate::model::Cluster)'s conditions
//! ([`derive`]) and the controller that applies them from created to active.

mod controller;
mod lifecycle;

pub use controller::{ClusterController, DEFAULT_WORKERS};
pub use lifecycle::{
    IMPORTED, REASON_DISCONNECTED, WAITING_FOR_AGENT, WAITING_FOR_REPORT, derive, is_imported,
};
