//! Who may open a tunnel on `/v3/connect`: an agent presenting a registration token
//! (`X-API-Tunnel-Token`) of the cluster as it exists now — not of an earlier cluster of the same
//! name — and well-formed params (`X-API-Tunnel-Params`). The session's client key is the cluster
//! id, or `<cluster>:<node>` for a node agent, recorded with the cluster's uid. The downstream
//! credential in the params is kept in memory; the API endpoint and CA are recorded in the
//! cluster's status. Agents join imported clusters, those built by the `rke` driver (whose node
//! agents carry the node work) and those whose provisioner handed them over
//! ([`joins_by_agent`](super::joins_by_agent)).

use std::sync::Arc;

use async_trait::async_trait;
use http::HeaderMap;
use rancher_tunnel::{Authorizer, PARAMS_HEADER, Rejection, TOKEN_HEADER};
use tracing::{info, warn};

use rancher_core::model::Cluster;
use rancher_core::store::Api;

use super::kube_client::ClusterAccess;
use super::{Registration, joins_by_agent};
use crate::protocol::connect::TunnelParams;
use crate::server::cleanup::owner::{self, CLUSTER_UID_ANNOTATION};

/// The `/v3/connect` authorizer of one request.
pub(crate) struct ConnectAuthorizer {
    reg: Arc<Registration>,
    /// The token this request presented and its cluster, once checked: the server looks at the
    /// token once before it routes the request and once as it accepts the session, and reads the
    /// store once (two reads per agent's connect, which a reconnecting fleet multiplies).
    checked: std::sync::OnceLock<(String, Cluster)>,
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Result<&'a str, Rejection> {
    headers
        .get(name)
        .ok_or_else(|| Rejection(format!("no {name} header")))?
        .to_str()
        .map_err(|_| Rejection(format!("the {name} header is not text")))
}

impl ConnectAuthorizer {
    /// The authorizer of one request.
    pub(crate) fn new(reg: Arc<Registration>) -> Self {
        ConnectAuthorizer { reg, checked: std::sync::OnceLock::new() }
    }

    /// The cluster (as stored now) whose registration token is in `headers`, or why not.
    pub(crate) async fn cluster_of(&self, headers: &HeaderMap) -> Result<Cluster, Rejection> {
        let token = header(headers, TOKEN_HEADER)?;
        if let Some((checked, cluster)) = self.checked.get()
            && checked == token
        {
            return Ok(cluster.clone());
        }
        let stored = self.check(token).await?;
        let _ = self.checked.set((token.to_owned(), stored.clone()));
        Ok(stored)
    }

    async fn check(&self, token: &str) -> Result<Cluster, Rejection> {
        let crt = match self.reg.registration_token(token).await {
            Ok(Some(crt)) => crt,
            Ok(None) => return Err(Rejection("unknown or revoked registration token".into())),
            Err(e) => {
                warn!(error = %e, "registration token lookup failed");
                return Err(Rejection("the server could not check the token; try again".into()));
            }
        };
        let cluster = crt.metadata.namespace.clone().unwrap_or_default();
        let stored = match Api::<Cluster>::all(self.reg.store().clone()).get_opt(&cluster).await {
            Ok(Some(c)) => c,
            Ok(None) => return Err(Rejection(format!("cluster {cluster} no longer exists"))),
            Err(e) => {
                warn!(cluster, error = %e, "reading the cluster failed");
                return Err(Rejection("the server could not read the cluster; try again".into()));
            }
        };
        if stored.metadata.deletion_timestamp.is_some() {
            return Err(Rejection(format!("cluster {cluster} is being deleted")));
        }
        // A token left by an earlier cluster of this name is not one of this cluster.
        if !owner::belongs(&crt.metadata, CLUSTER_UID_ANNOTATION, &stored.metadata) {
            warn!(cluster, "refused a registration token of an earlier cluster of the same name");
            return Err(Rejection("unknown or revoked registration token".into()));
        }
        Ok(stored)
    }
}

#[async_trait]
impl Authorizer for ConnectAuthorizer {
    async fn authorize(&self, headers: &HeaderMap) -> Result<String, Rejection> {
        let reg = &self.reg;
        let stored = self.cluster_of(headers).await?;
        let cluster = stored.metadata.name.clone();
        let params = TunnelParams::decode(header(headers, PARAMS_HEADER)?)
            .map_err(|e| Rejection(format!("cluster {cluster}: {e}")))?;
        if !stored.status.driver.is_empty() && !joins_by_agent(&stored) {
            return Err(Rejection(format!(
                "cluster {cluster} is a {:?} cluster: agents join only imported and rke clusters, and \
                 those whose provisioner handed them over",
                stored.status.driver
            )));
        }
        if let Some(c) = &params.cluster {
            let ca_pem = c.ca_pem().map_err(|e| Rejection(format!("cluster {cluster}: {e}")))?;
            let endpoint = format!("https://{}", c.address);
            let ca_b64 = c.ca_cert.clone();
            reg.set_access(
                &cluster,
                ClusterAccess {
                    address: c.address.clone(),
                    token: c.token.clone(),
                    ca_pem,
                    cluster_uid: stored.metadata.uid.clone(),
                },
            );
            // An agent that connects again finds them recorded already (as read just now).
            let unchanged = stored.status.api_endpoint == endpoint && stored.status.ca_cert == ca_b64;
            let recorded = if unchanged {
                Ok(None)
            } else {
                reg.update_cluster(&cluster, |cl| {
                    if cl.metadata.uid != stored.metadata.uid {
                        return false;
                    }
                    if cl.status.api_endpoint == endpoint && cl.status.ca_cert == ca_b64 {
                        return false;
                    }
                    cl.status.api_endpoint = endpoint.clone();
                    cl.status.ca_cert = ca_b64.clone();
                    true
                })
                .await
            };
            if let Err(e) = recorded {
                // The tunnel still works; the endpoint is recorded on the next connect.
                warn!(cluster, error = %e, "recording the cluster's API endpoint failed");
            }
        }
        let key = match &params.node {
            Some(node) => format!("{cluster}:{}", node.requested_hostname),
            None => cluster,
        };
        // The connection monitor closes the session if, once registered, it turns out to be for a
        // cluster that was deleted (and perhaps made again) meanwhile.
        reg.set_session_owner(&key, &stored.metadata.uid);
        info!(client_key = %key, "tunnel agent authorized");
        Ok(key)
    }
}
