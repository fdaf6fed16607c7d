//! A `kube::Client` for a downstream cluster whose every connection is a tunnel stream: the
//! connector dials the cluster's API server through the cluster agent's session (or, when that is
//! missing, a node agent's), TLS is verified end to end against the cluster's CA from the agent's
//! params, and the bearer is the agent's credential.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::{TokioExecutor, TokioIo};
use kube::client::ConfigExt;
use rancher_tunnel::{TunnelServer, TunnelStream};
use tower::ServiceBuilder;

use super::{ClientBuildError, Registration, RegistrationError};
use crate::server::cluster_ca;

/// How the server reaches a downstream API server, as the agent described it. In memory only.
#[derive(Clone)]
pub struct ClusterAccess {
    /// `host:port` of the API server (the one destination the agent dials).
    pub address: String,
    /// The bearer credential.
    pub token: String,
    /// The API server's CA (PEM).
    pub ca_pem: String,
    /// The uid of the cluster the agent was authorized for: a cluster created later under the same
    /// name is a different cluster that this access must not serve.
    pub cluster_uid: String,
}

impl std::fmt::Debug for ClusterAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterAccess").field("address", &self.address).finish_non_exhaustive()
    }
}

/// Dials the API server through whichever session of the cluster (authorized for its uid) exists.
#[derive(Clone)]
struct TunnelConnector {
    registration: Arc<Registration>,
    cluster: String,
    cluster_uid: String,
    address: String,
}

/// A tunnel stream as hyper's client wants it.
struct TunnelConn(TokioIo<TunnelStream>);

impl Connection for TunnelConn {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

impl hyper::rt::Read for TunnelConn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl hyper::rt::Write for TunnelConn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

/// How long a dial waits for an agent to (re)appear, like Rancher's dialer factory.
const DIAL_WAIT: Duration = Duration::from_secs(30);

async fn dial(
    tunnel: TunnelServer,
    reg: Arc<Registration>,
    target: (String, String),
    address: String,
) -> Result<TunnelConn, rancher_tunnel::Error> {
    let (cluster, uid) = target;
    // The cluster agent first, then node agents (the fallback); wait for one when none is there.
    let mut last = None;
    for key in reg.session_keys_for(&cluster, &uid) {
        match tunnel.dial(&key, "tcp", &address).await {
            Ok(s) => return Ok(TunnelConn(TokioIo::new(s))),
            Err(e) => last = Some(e),
        }
    }
    // Sessions that were ending (their agents leaving) count as none: wait for an agent.
    if let Some(e) = last.filter(|e| !matches!(e, rancher_tunnel::Error::SessionClosed)) {
        return Err(e);
    }
    let s = tunnel.dial_timeout(&cluster, "tcp", &address, DIAL_WAIT).await?;
    // The session that appeared must be one of this cluster, not of an earlier one of its name.
    if reg.session_owner(&cluster).as_deref() != Some(uid.as_str()) {
        return Err(rancher_tunnel::Error::NoSession(cluster));
    }
    Ok(TunnelConn(TokioIo::new(s)))
}

impl tower::Service<http::Uri> for TunnelConnector {
    type Response = TunnelConn;
    type Error = rancher_tunnel::Error;
    type Future = Pin<Box<dyn Future<Output = Result<TunnelConn, rancher_tunnel::Error>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _uri: http::Uri) -> Self::Future {
        let tunnel = self.registration.tunnel().clone();
        let target = (self.cluster.clone(), self.cluster_uid.clone());
        Box::pin(dial(tunnel, self.registration.clone(), target, self.address.clone()))
    }
}

/// How long a connection into a cluster (a tunnel stream and a TLS session) stays open unused: long
/// enough for the requests of one sync or one command to share it, short enough that an idle
/// cluster costs the server no connection (at ten thousand clusters, each a few tens of KB).
const POOL_IDLE: Duration = Duration::from_secs(5);

impl Registration {
    /// A `kube::Client` for `cluster` that reaches its API server through the tunnel.
    ///
    /// Build one per use or cache it; each request dials a new tunnel stream only when hyper's pool
    /// has no idle connection.
    ///
    /// # Errors
    /// [`RegistrationError::NotConnected`] when no agent of the cluster has connected since the
    /// server started; [`RegistrationError::Client`] when its CA or credential is unusable.
    pub fn cluster_client(self: &Arc<Self>, cluster: &str) -> Result<kube::Client, RegistrationError> {
        let access = self
            .access(cluster)
            .ok_or_else(|| RegistrationError::NotConnected { cluster: cluster.to_owned() })?;
        self.client_with(cluster, &access)
    }

    /// A `kube::Client` for `cluster` built from `access` (which the caller checked is the access of
    /// the cluster it means); it dials only sessions authorized for `access.cluster_uid`.
    ///
    /// # Errors
    /// [`RegistrationError::Client`] when the CA or credential is unusable.
    pub(crate) fn client_with(
        self: &Arc<Self>,
        cluster: &str,
        access: &ClusterAccess,
    ) -> Result<kube::Client, RegistrationError> {
        let fail =
            |source: ClientBuildError| RegistrationError::Client { cluster: cluster.to_owned(), source };
        let url: http::Uri =
            format!("https://{}", access.address).parse().map_err(|e| fail(ClientBuildError::Address(e)))?;
        let roots = cluster_ca::kube_roots(&access.ca_pem).map_err(|e| fail(e.into()))?;
        let mut config = kube::Config::new(url);
        config.root_cert = Some(roots);
        config.auth_info.token = Some(access.token.clone().into());
        config.connect_timeout = Some(DIAL_WAIT + Duration::from_secs(15));
        let connector = TunnelConnector {
            registration: self.clone(),
            cluster: cluster.to_owned(),
            cluster_uid: access.cluster_uid.clone(),
            address: access.address.clone(),
        };
        let https = config
            .rustls_https_connector_with_connector(connector)
            .map_err(|e| fail(ClientBuildError::Tls(e)))?;
        let hyper_client: hyper_util::client::legacy::Client<_, kube::client::Body> =
            hyper_util::client::legacy::Client::builder(TokioExecutor::new())
                .pool_timer(hyper_util::rt::TokioTimer::new())
                .pool_idle_timeout(POOL_IDLE)
                .build(https);
        let auth = config.auth_layer().map_err(|e| fail(ClientBuildError::Auth(e)))?;
        let service = ServiceBuilder::new()
            .layer(config.base_uri_layer())
            .option_layer(auth)
            .map_err(|e: hyper_util::client::legacy::Error| -> Box<dyn std::error::Error + Send + Sync> {
                Box::new(e)
            })
            .service(hyper_client);
        Ok(kube::Client::new(service, "default"))
    }
}
