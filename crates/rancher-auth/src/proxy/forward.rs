//! The end of the stack: [`Forward`] sends the request to its cluster's API server over cached
//! per-cluster HTTP/1.1 connections, streams the response back as it arrives, and splices upgraded
//! connections (SPDY or WebSocket: exec, attach, port-forward) after the `101`. It sends only headers
//! the impersonate layer rebuilt, plus the proxy's own credential for the API server.
//!
//! Requests that end by themselves go over a [`ConnPool`], whose connections the requests drive;
//! long-running ones (watches, `logs -f`, upgrades) over hyper's pooled client, whose connections
//! are tasks of their own and come from the upstream's long-running connector.

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::future::BoxFuture;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Uri, Version, header};
use hyper::upgrade::OnUpgrade;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rancher_core::error_chain;
use tower::Service;

use super::cluster::ClusterTarget;
use super::conn_pool::{ConnPool, SendError};
use super::error::{BoxError, ProxyBody, ProxyError, boxed};
use super::headers::strip_hop_by_hop;
use super::idle_cache::IdleCache;
use super::impersonate::HeadersRebuilt;
use super::request_info::RequestInfo;
use super::upstream::{Prepared, ResolveError, TlsConnector, UpstreamResolver};

/// Tuning of [`Forward`]. No response timeout is imposed: watches end when the API server ends them
/// (`timeoutSeconds`), and streams when either side closes.
#[derive(Clone, Debug)]
pub struct ForwardConfig {
    /// How long dialing and the TLS handshake to an API server may take.
    pub connect_timeout: Duration,
    /// A cluster's client (and its resolved upstream) is dropped after this long without requests.
    pub client_idle_timeout: Duration,
    /// Idle keep-alive connections to an API server are closed after this long (found and closed
    /// within half as long again).
    pub pool_idle_timeout: Duration,
    /// At most this many idle keep-alive connections are kept per cluster.
    pub pool_max_idle_per_cluster: usize,
}

impl Default for ForwardConfig {
    fn default() -> Self {
        ForwardConfig {
            connect_timeout: Duration::from_secs(10),
            client_idle_timeout: Duration::from_secs(300),
            pool_idle_timeout: Duration::from_secs(90),
            pool_max_idle_per_cluster: 128,
        }
    }
}

/// One cluster's connections: a pool for ordinary requests, a client for long-running ones
/// (watches, exec, `logs -f`), whose connections come from the upstream's long-running connector.
struct ClusterClient {
    ordinary: Arc<ConnPool>,
    long_running: Client<TlsConnector, ProxyBody>,
    upstream: Prepared,
    /// The `Host` header of every request.
    host: HeaderValue,
}

impl ClusterClient {
    /// The request to send for `path` (with its query): its URI as the long-running client or the
    /// pool wants it (absolute, or the path with a `Host` header).
    fn request(
        &self,
        long_running: bool,
        method: Method,
        path: &str,
        mut headers: HeaderMap,
        body: ProxyBody,
    ) -> Result<Request<ProxyBody>, ProxyError> {
        let path = format!("{}{path}", self.upstream.path_prefix);
        let uri = if long_running {
            Uri::builder()
                .scheme(self.upstream.origin.scheme_str().unwrap_or("https"))
                .authority(self.upstream.origin.authority().map_or("", |a| a.as_str()))
                .path_and_query(path)
                .build()
        } else {
            headers.insert(header::HOST, self.host.clone());
            Uri::builder().path_and_query(path).build()
        };
        let uri = uri.map_err(|_| ProxyError::NotRouted("malformed path".into()))?;
        let mut out = Request::new(body);
        *out.method_mut() = method;
        *out.uri_mut() = uri;
        *out.version_mut() = Version::HTTP_11;
        *out.headers_mut() = headers;
        Ok(out)
    }

    /// Sends `out` (from [`request`](Self::request)): long-running over the client, else the pool.
    async fn send(&self, long_running: bool, out: Request<ProxyBody>) -> Result<Response<ProxyBody>, Failed> {
        if long_running {
            return match self.long_running.request(out).await {
                Ok(resp) => Ok(resp.map(boxed)),
                Err(e) => Err(Failed { connect: e.is_connect(), source: e.into() }),
            };
        }
        match self.ordinary.send(&self.upstream.origin, out).await {
            Ok(resp) => Ok(resp.map(boxed)),
            Err(e) => Err(Failed { connect: matches!(e, SendError::Connect(_)), source: e.into() }),
        }
    }
}

/// Why a request got no response.
struct Failed {
    /// No connection could be made: nothing was sent.
    connect: bool,
    source: BoxError,
}

/// The per-cluster clients of a [`Forward`]; lets the owner drop a cluster's client at once (after
/// its agent reconnected or its credentials changed).
#[derive(Clone)]
pub struct ClusterClients {
    cache: Arc<IdleCache<ClusterClient>>,
}

impl ClusterClients {
    /// Drops the cached client of `cluster_id`; the next request resolves its upstream again.
    pub fn invalidate(&self, cluster_id: &str) {
        self.cache.remove(cluster_id);
    }

    /// How many clusters have a cached client.
    pub fn len(&self) -> usize {
        self.cache.len()
    }

    /// Whether no cluster has a cached client.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Sends each request to the API server of its [`ClusterTarget`].
pub struct Forward<R> {
    resolver: Arc<R>,
    clients: ClusterClients,
    config: ForwardConfig,
    /// The spliced upgraded connections (exec, attach, port-forward): aborted when the last clone
    /// of this service is dropped.
    splices: Arc<std::sync::Mutex<tokio::task::JoinSet<()>>>,
}

impl<R> Clone for Forward<R> {
    fn clone(&self) -> Self {
        Forward {
            resolver: self.resolver.clone(),
            clients: self.clients.clone(),
            config: self.config.clone(),
            splices: self.splices.clone(),
        }
    }
}

impl<R: UpstreamResolver + 'static> Forward<R> {
    /// Forwards to the upstreams `resolver` names.
    pub fn new(resolver: R, config: ForwardConfig) -> Self {
        let cache = Arc::new(IdleCache::new(config.client_idle_timeout));
        Forward {
            resolver: Arc::new(resolver),
            clients: ClusterClients { cache },
            config,
            splices: Arc::default(),
        }
    }

    /// A handle on the cached per-cluster clients.
    pub fn clients(&self) -> ClusterClients {
        self.clients.clone()
    }

    async fn client(&self, cluster: &str) -> Result<Arc<ClusterClient>, ProxyError> {
        if let Some(client) = self.clients.cache.get(cluster) {
            return Ok(client);
        }
        let resolve_err = |source| ProxyError::Resolve { cluster: cluster.to_owned(), source };
        let upstream = self.resolver.resolve(cluster).await.map_err(resolve_err)?;
        let upstream = upstream.prepare(self.config.connect_timeout).map_err(resolve_err)?;
        let client_with = |connector: &TlsConnector| {
            Client::builder(TokioExecutor::new())
                .pool_timer(TokioTimer::new())
                .pool_idle_timeout(self.config.pool_idle_timeout)
                .pool_max_idle_per_host(self.config.pool_max_idle_per_cluster)
                .build(connector.clone())
        };
        let host = host_header(&upstream.origin)
            .ok_or_else(|| resolve_err(ResolveError::Invalid("base URL has no host".into())))?;
        let ordinary = ConnPool::new(
            upstream.connector.clone(),
            self.config.pool_max_idle_per_cluster,
            self.config.pool_idle_timeout,
        );
        let long_running = client_with(&upstream.long_running_connector);
        let client = Arc::new(ClusterClient { ordinary, long_running, upstream, host });
        self.clients.cache.insert(cluster, client.clone());
        Ok(client)
    }

    async fn forward(self, mut req: Request<ProxyBody>) -> Result<Response<ProxyBody>, ProxyError> {
        let cluster = req
            .extensions()
            .get::<ClusterTarget>()
            .ok_or(ProxyError::Internal("no ClusterTarget"))?
            .id
            .clone();
        // The headers must have been rebuilt from the allow-list and the identity: a header map the
        // client wrote never goes downstream.
        let rebuilt = *req
            .extensions()
            .get::<HeadersRebuilt>()
            .ok_or(ProxyError::Internal("request headers were not rebuilt by the impersonate layer"))?;
        let client = self.client(&cluster).await?;
        let upgrade = rebuilt.upgrade();
        // Must be taken before the request is sent on: it is the client connection's handover.
        let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));

        let (parts, body) = req.into_parts();
        let long_running = is_long_running(&parts.method, &parts.uri, upgrade);
        let path = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
        let mut headers = parts.headers;
        // The proxy's own credential for the API server, as whom it impersonates.
        match &client.upstream.authorization {
            Some(auth) => headers.insert(header::AUTHORIZATION, auth.clone()),
            None => headers.remove(header::AUTHORIZATION),
        };
        // A safe request without a body whose connection broke before its answer (an API server going
        // down with it) is sent once more, as a browser or Go's client would: nothing it does
        // changes anything. It goes on a new connection: the other idle connections of the pool led
        // to the same API server and are as broken, only not found out yet. Connects that fail are
        // tried again in the connector already.
        let again = (matches!(parts.method, Method::GET | Method::HEAD)
            && !upgrade
            && http_body::Body::is_end_stream(&body))
        .then(|| (parts.method.clone(), headers.clone()));
        let write = again.is_none();
        let out = client.request(long_running, parts.method, path, headers, body)?;
        let sent = match (client.send(long_running, out).await, again) {
            (Err(e), Some((method, headers))) if !e.connect => {
                tracing::debug!(%cluster, error = %error_chain(&*e.source), "the API server's connection broke; once more on a new one");
                // Dropping the cached client drops its pools with it: the requests after this one
                // connect afresh too.
                self.clients.invalidate(&cluster);
                let fresh = self.client(&cluster).await?;
                let out = fresh.request(long_running, method, path, headers, ProxyBody::empty())?;
                fresh.send(long_running, out).await
            }
            (sent, _) => sent,
        };
        let mut resp = sent.map_err(|e| {
            if e.connect {
                // The session or endpoint may have changed: resolve afresh next time.
                self.clients.invalidate(&cluster);
            }
            let source = error_chain(&*e.source).into();
            if write && !e.connect {
                ProxyError::BrokeOff { cluster: cluster.clone(), source }
            } else {
                ProxyError::Upstream { cluster: cluster.clone(), source }
            }
        })?;

        if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
            let Some(client_upgrade) = client_upgrade else {
                return Err(ProxyError::Upstream {
                    cluster,
                    source: "API server switched protocols on a request that asked for no upgrade".into(),
                });
            };
            let upstream_upgrade = hyper::upgrade::on(&mut resp);
            let mut splices = self.splices.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            while splices.try_join_next().is_some() {}
            splices.spawn(splice(cluster, client_upgrade, upstream_upgrade));
        } else {
            strip_hop_by_hop(resp.headers_mut());
        }
        Ok(resp)
    }
}

impl<R: UpstreamResolver + 'static> Service<Request<ProxyBody>> for Forward<R> {
    type Response = Response<ProxyBody>;
    type Error = ProxyError;
    type Future = BoxFuture<'static, Result<Response<ProxyBody>, ProxyError>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), ProxyError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<ProxyBody>) -> Self::Future {
        Box::pin(self.clone().forward(req))
    }
}

/// The `Host` of requests to `origin`: its host, and its port unless it is the scheme's default (as
/// hyper's client writes it).
fn host_header(origin: &Uri) -> Option<HeaderValue> {
    let authority = origin.authority()?;
    let default = if origin.scheme_str() == Some("https") { 443 } else { 80 };
    let host = match authority.port_u16() {
        Some(port) if port != default => format!("{}:{port}", authority.host()),
        _ => authority.host().to_owned(),
    };
    HeaderValue::try_from(host).ok()
}

/// Whether the request holds its connection for as long as its client wants: an upgrade (exec,
/// attach, port-forward) or a long-running GET (watch, `logs -f`, proxy).
fn is_long_running(method: &Method, uri: &Uri, upgrade: bool) -> bool {
    upgrade
        || (method == Method::GET
            && may_be_long_running(uri.path(), uri.query())
            && RequestInfo::parse(method, uri.path(), uri.query()).is_long_running())
}

/// False only for requests [`RequestInfo::is_long_running`] cannot call long-running: no word that
/// makes a request so (a watch, a proxy, a stream to a pod, a log) appears in the path or query,
/// and nothing is percent-escaped that could spell one. Most requests are ordinary; this spares them
/// the full parse (a dozen allocations).
fn may_be_long_running(path: &str, query: Option<&str>) -> bool {
    const WORDS: [&str; 6] = ["watch", "proxy", "exec", "attach", "portforward", "log"];
    let hints = |s: &str| s.contains('%') || WORDS.iter().any(|w| s.contains(w));
    hints(path) || query.is_some_and(hints)
}

/// Copies bytes both ways between the client's and the API server's upgraded connections until
/// both sides are done. The task ends when either connection closes.
async fn splice(cluster: String, client: OnUpgrade, upstream: OnUpgrade) {
    let (client, upstream) = match tokio::try_join!(client, upstream) {
        Ok(pair) => pair,
        Err(e) => {
            tracing::debug!(%cluster, error = %e, "upgrade did not complete");
            return;
        }
    };
    let (mut client, mut upstream) = (TokioIo::new(client), TokioIo::new(upstream));
    match tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
        Ok((up, down)) => tracing::debug!(%cluster, up, down, "upgraded stream closed"),
        Err(e) => tracing::debug!(%cluster, error = %e, "upgraded stream broke off"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::upstream::StaticUpstreams;
    use tower::ServiceExt as _;

    #[test]
    fn watches_upgrades_and_followed_logs_are_long_running() {
        let long = |m: Method, u: &str, up: bool| is_long_running(&m, &u.parse().unwrap(), up);
        assert!(long(Method::GET, "/api/v1/pods?watch=true", false));
        assert!(long(Method::GET, "/api/v1/watch/namespaces/a/pods", false));
        assert!(long(Method::GET, "/api/v1/namespaces/a/pods/p/log?follow=true", false));
        assert!(long(Method::POST, "/api/v1/namespaces/a/pods/p/exec?command=sh", true));
        assert!(!long(Method::GET, "/api/v1/pods", false));
        assert!(!long(Method::GET, "/api/v1/pods?watch=false", false));
        assert!(!long(Method::POST, "/api/v1/namespaces/a/pods", false));
    }

    /// The quick check never calls ordinary a request the full parse calls long-running.
    #[test]
    fn the_quick_check_lets_every_long_running_request_through() {
        let paths = [
            "/api/v1/pods?watch=true",
            "/api/v1/pods?watch=1",
            "/api/v1/pods?%77atch=true",
            "/api/v1/watch/namespaces/a/pods",
            "/api/v1/%77atch/namespaces/a/pods",
            "/api/v1/namespaces/a/pods/p/log",
            "/api/v1/namespaces/a/pods/p/l%6fg?follow=true",
            "/api/v1/namespaces/a/pods/p/exec?command=sh",
            "/api/v1/namespaces/a/pods/p/attach",
            "/api/v1/namespaces/a/pods/p/portforward",
            "/api/v1/namespaces/a/services/s/proxy/metrics",
            "/api/v1/proxy/namespaces/a/services/s",
            "/apis/apps/v1/namespaces/a/deployments?watch=true&resourceVersion=1",
            "/api/v1/namespaces/a/pods?fieldSelector=metadata.name%3Dp&watch=true",
            "/api/v1/namespaces/default",
            "/api/v1/pods",
            "/apis/apps/v1/namespaces/a/deployments/d",
        ];
        for raw in paths {
            let uri: Uri = raw.parse().unwrap();
            let full = RequestInfo::parse(&Method::GET, uri.path(), uri.query()).is_long_running();
            assert!(!full || may_be_long_running(uri.path(), uri.query()), "{raw}");
        }
        assert!(!may_be_long_running("/api/v1/namespaces/default", None));
        assert!(!may_be_long_running("/api/v1/pods", Some("limit=500")));
    }

    #[tokio::test]
    async fn a_request_whose_headers_were_not_rebuilt_is_never_sent() {
        let forward = Forward::new(StaticUpstreams::new(), ForwardConfig::default());
        let mut req = Request::get("/api/v1/pods")
            .header("impersonate-user", "admin")
            .body(ProxyBody::empty())
            .unwrap();
        req.extensions_mut().insert(ClusterTarget { id: "c1".into() });
        let err = forward.oneshot(req).await.unwrap_err();
        assert!(matches!(err, ProxyError::Internal(_)), "{err}");
        assert_eq!(err.status().code, 500);
    }
}
