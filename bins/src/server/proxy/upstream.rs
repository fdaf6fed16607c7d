//! How the proxy reaches a cluster's API server ([`TunnelUpstreams`]): through the cluster agent's
//! tunnel session (or a node agent's), TLS verified against the CA the agent reported, authenticated
//! with the agent's credential, which may impersonate. Only the access and sessions of the cluster as
//! it exists now (by uid) are used: never those of an earlier cluster of the same name.

use std::sync::Arc;

use async_trait::async_trait;
use rancher_auth::proxy::{BoxError, BoxStream, Connector, ResolveError, Upstream, UpstreamResolver};
use rancher_core::model::Cluster;
use rancher_core::store::Api;
use rancher_tunnel::StreamUse;
use tower::util::BoxCloneSyncService;

use crate::server::cluster_ca;
use crate::server::registration::Registration;

/// Resolves clusters to their API server through the tunnel.
pub(crate) struct TunnelUpstreams {
    registration: Arc<Registration>,
}

impl TunnelUpstreams {
    pub(crate) fn new(registration: Arc<Registration>) -> Self {
        TunnelUpstreams { registration }
    }
}

/// Opens a stream for `use_` to `address` through one of the cluster's sessions, the cluster
/// agent's first. Fails at once when no agent is connected, so clients get 503 instead of waiting —
/// unless the cluster is moving here from another replica, whose agent is waited for
/// ([`Registration::await_handed_over`]).
fn tunnel_connector(
    registration: Arc<Registration>,
    cluster: String,
    uid: String,
    address: String,
    use_: StreamUse,
) -> Connector {
    BoxCloneSyncService::new(tower::service_fn(move |_uri: http::Uri| {
        let (registration, cluster, address) = (registration.clone(), cluster.clone(), address.clone());
        let uid = uid.clone();
        async move {
            let mut last: Option<rancher_tunnel::Error> = None;
            registration.await_handed_over(&cluster, &uid).await;
            for key in registration.session_keys_for(&cluster, &uid) {
                match registration.tunnel().dial_for(&key, "tcp", &address, use_).await {
                    Ok(stream) => return Ok::<BoxStream, BoxError>(Box::new(stream)),
                    Err(e) => last = Some(e),
                }
            }
            Err(match last {
                Some(e) => {
                    format!("cluster {cluster}: dialing its API server through the tunnel: {e}").into()
                }
                None => format!("cluster {cluster} is not connected: no agent session").into(),
            })
        }
    }))
}

/// A TLS client configuration trusting only the certificates in `ca_pem`.
fn tls_config(ca_pem: &str) -> Result<Arc<rustls::ClientConfig>, ResolveError> {
    let invalid = |m: String| ResolveError::Invalid(m);
    let mut roots = rustls::RootCertStore::empty();
    for cert in cluster_ca::certificates(ca_pem).map_err(|e| invalid(e.to_string()))? {
        roots.add(cert).map_err(|e| invalid(format!("the cluster CA is unusable: {e}")))?;
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

#[async_trait]
impl UpstreamResolver for TunnelUpstreams {
    async fn resolve(&self, cluster_id: &str) -> Result<Upstream, ResolveError> {
        let cluster = Api::<Cluster>::all(self.registration.store().clone())
            .get_opt(cluster_id)
            .await
            .map_err(|e| ResolveError::Other(Box::new(e)))?
            .filter(|c| c.metadata.deletion_timestamp.is_none())
            .ok_or(ResolveError::UnknownCluster)?;
        let uid = cluster.metadata.uid;
        // The agent hands its access over as its session starts (before it is registered).
        if !self.registration.await_handed_over(cluster_id, &uid).await {
            return Err(ResolveError::NoSession);
        }
        let access = self
            .registration
            .access(cluster_id)
            .filter(|a| a.cluster_uid == uid)
            .ok_or(ResolveError::NoSession)?;
        let base_url: http::Uri = format!("https://{}", access.address)
            .parse()
            .map_err(|e| ResolveError::Invalid(format!("API server address {:?}: {e}", access.address)))?;
        Ok(Upstream {
            base_url,
            connector: tunnel_connector(
                self.registration.clone(),
                cluster_id.to_owned(),
                uid.clone(),
                access.address.clone(),
                StreamUse::Request,
            ),
            long_running_connector: Some(tunnel_connector(
                self.registration.clone(),
                cluster_id.to_owned(),
                uid,
                access.address.clone(),
                StreamUse::LongRunning,
            )),
            tls: Some(tls_config(&access.ca_pem)?),
            bearer_token: Some(access.token.clone()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ca_without_certificates_is_refused() {
        assert!(matches!(tls_config(""), Err(ResolveError::Invalid(_))));
        assert!(matches!(tls_config("not pem"), Err(ResolveError::Invalid(_))));
    }
}
