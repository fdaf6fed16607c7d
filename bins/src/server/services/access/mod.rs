//! Access policy apart from HTTP: what a user holds where ([`grants`]), who may grant what
//! ([`escalation`]), and who may reach a cluster ([`may_reach_cluster`]).

pub(crate) mod escalation;
pub(crate) mod grants;

use std::sync::Arc;

use rancher_core::store::Store;

pub(crate) use self::escalation::{BindingWrite, EscalationError};
pub(crate) use self::grants::{GrantScope, Grants, Held};
use crate::server::auth::{Caller, is_cluster_admin};

/// Why whether a user may reach a cluster could not be decided.
#[derive(Debug, thiserror::Error)]
#[error("reading the bindings of cluster {cluster:?}: {source}")]
pub(crate) struct MembershipUnreadable {
    /// The cluster.
    pub(crate) cluster: String,
    /// What the proxy's membership check reported.
    #[source]
    pub(crate) source: rancher_auth::proxy::Denied,
}

/// True when `caller` may reach `cluster`: admins (global `*` on clusters) reach every cluster, others
/// need a cluster or project role template binding there. A cluster that does not exist has no
/// members.
///
/// # Errors
/// [`MembershipUnreadable`] when the bindings cannot be read.
pub(crate) async fn may_reach_cluster(
    store: &Arc<dyn Store>,
    caller: &Caller,
    cluster: &str,
) -> Result<bool, MembershipUnreadable> {
    if is_cluster_admin(&caller.rules) {
        return Ok(true);
    }
    let identity = crate::server::kubeconfig::caller_identity(caller);
    crate::server::proxy::has_binding(store, &identity, cluster)
        .await
        .map_err(|source| MembershipUnreadable { cluster: cluster.to_owned(), source })
}
