//! Forwarding to the replica that owns a cluster ([`replicas`](super::replicas)). A proxied request
//! (`/k8s/clusters/<id>/…`) or a cluster agent's session (`/v3/connect`) that arrives at a server
//! other than its cluster's owner is sent on to the owner, which authenticates and serves it as if
//! it had come straight there: this server adds nothing to what the client sent but
//! [`FORWARDED_HEADER`], and a request carrying that header is never forwarded again (a client
//! setting it only keeps its own request from being forwarded).
//!
//! Ordinary requests to a peer share one HTTP/2 connection per pair of replicas, whatever the number
//! of clusters; an upgrade (an agent's WebSocket, `kubectl exec`, `port-forward`) takes an HTTP/1.1
//! connection of its own, spliced both ways once the owner has switched protocols. Peers are
//! reached at their peer URL over TLS, trusting the servers' shared CA.

mod connector;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode, Uri, header};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls::ClientConfig;
use rustls_pki_types::pem::PemObject;

use connector::PeerConnector;

use super::registration::Registration;
use super::replicas::{Heartbeat, Owner, Replica, Replicas};
use super::state::AppState;

/// Marks a request one replica sent on to another; its value is the sender's name.
pub(crate) const FORWARDED_HEADER: HeaderName = HeaderName::from_static("x-rancher-forwarded-by");

/// This server's way to its peers.
pub(crate) struct Peers {
    replicas: Replicas,
    /// Taken by the server's tasks when they start.
    heartbeat: std::sync::Mutex<Option<Heartbeat>>,
    /// One HTTP/2 connection per peer, for everything but upgrades.
    shared: Client<PeerConnector, Body>,
    /// HTTP/1.1, a connection per upgrade.
    upgrades: Client<PeerConnector, Body>,
}

impl std::fmt::Debug for Peers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Peers").field("replicas", &self.replicas).finish_non_exhaustive()
    }
}

impl Peers {
    /// Peers seen through `replicas`, reached over TLS trusting `ca_pem` (plain HTTP when `None`,
    /// for servers started with `--insecure-http`).
    pub(crate) fn new(
        replicas: Replicas,
        heartbeat: Option<Heartbeat>,
        tls: Option<Arc<ClientConfig>>,
    ) -> Self {
        let with_alpn = |alpn: &[u8]| {
            tls.as_ref().map(|t| {
                let mut t = (**t).clone();
                t.alpn_protocols = vec![alpn.to_vec()];
                Arc::new(t)
            })
        };
        let shared = Client::builder(TokioExecutor::new())
            .http2_only(true)
            .timer(TokioTimer::new())
            .pool_timer(TokioTimer::new())
            .http2_keep_alive_interval(Duration::from_secs(20))
            .build(PeerConnector { tls: with_alpn(b"h2") });
        let upgrades = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(0)
            .build(PeerConnector { tls: with_alpn(b"http/1.1") });
        Peers { replicas, heartbeat: std::sync::Mutex::new(heartbeat), shared, upgrades }
    }

    /// What keeps the view of the replicas current, for the server's tasks to run (once).
    pub(crate) fn take_heartbeat(&self) -> Option<Heartbeat> {
        self.heartbeat.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take()
    }

    /// The replicas as this server sees them.
    pub(crate) fn replicas(&self) -> &Replicas {
        &self.replicas
    }

    /// The peer to send a request for `cluster` to, or `None` to serve it here: here when it was
    /// forwarded already, when this server holds the cluster's agent session (`local`), or owns it.
    pub(crate) fn forward_target(&self, cluster: &str, headers: &HeaderMap, local: bool) -> Option<Replica> {
        if local || headers.contains_key(FORWARDED_HEADER) {
            return None;
        }
        match self.replicas.owner(cluster) {
            Owner::Me => None,
            Owner::Peer(peer) => Some(peer),
        }
    }

    /// Sends `req` to `peer` and answers with its response; an upgrade is spliced once both sides
    /// have switched protocols.
    pub(crate) async fn forward(&self, peer: &Replica, mut req: Request) -> Response {
        let upgrade = is_upgrade(req.headers());
        let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
        let (mut parts, body) = req.into_parts();
        let path = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
        let uri: Uri = match format!("{}{path}", peer.url.trim_end_matches('/')).parse() {
            Ok(uri) => uri,
            Err(e) => return unavailable(peer, &format!("its URL: {e}")),
        };
        parts.uri = uri;
        parts.headers.remove(header::HOST);
        if let Ok(me) = HeaderValue::from_str(self.replicas.me()) {
            parts.headers.insert(FORWARDED_HEADER, me);
        }
        let client = if upgrade {
            parts.version = http::Version::HTTP_11;
            &self.upgrades
        } else {
            // HTTP/2 has no connection-specific headers.
            for h in [header::CONNECTION, header::TRANSFER_ENCODING, header::UPGRADE, header::TE] {
                parts.headers.remove(h);
            }
            parts.headers.remove("keep-alive");
            parts.version = http::Version::HTTP_2;
            &self.shared
        };
        let mut resp = match client.request(Request::from_parts(parts, body)).await {
            Ok(resp) => resp,
            Err(e) => return unavailable(peer, &error_chain(&e)),
        };
        if let Some(client_upgrade) = client_upgrade
            && resp.status() == StatusCode::SWITCHING_PROTOCOLS
        {
            let peer_upgrade = hyper::upgrade::on(&mut resp);
            let name = peer.name.clone();
            tokio::spawn(async move {
                match tokio::try_join!(client_upgrade, peer_upgrade) {
                    Ok((client, peer)) => {
                        let (mut client, mut peer) = (TokioIo::new(client), TokioIo::new(peer));
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut peer).await;
                    }
                    Err(e) => tracing::debug!(peer = %name, "a forwarded upgrade did not complete: {e}"),
                }
            });
        }
        resp.map(Body::new)
    }
}

/// Hands clusters over when the replicas change: the cluster agents' sessions this server holds for
/// clusters another replica now owns are closed, so that the agents reconnect (with their jitter)
/// and reach the owner. Runs until `stop`.
pub(crate) async fn hand_over(
    registration: Arc<Registration>,
    mut replicas: Replicas,
    stop: tokio_util::sync::CancellationToken,
) {
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            changed = replicas.changed() => if !changed { return },
        }
        let tunnel = registration.tunnel();
        for key in tunnel.client_keys() {
            // Node agents stay where they are (see `connect`).
            if key.contains(':') {
                continue;
            }
            if let Owner::Peer(peer) = replicas.owner(&key) {
                tracing::info!(cluster = %key, to = %peer.name, "handing the cluster over to the replica that owns it now");
                tunnel.close_session(&key);
            }
        }
    }
}

/// The TLS client settings for peers: trusting the servers' CA (`ca_pem`); `None` without TLS.
///
/// # Errors
/// A server with TLS but no CA to trust (its own certificate given without `--tls-ca`), or a CA
/// that does not parse.
pub(crate) fn client_tls(ca_pem: &str, insecure_http: bool) -> Result<Option<Arc<ClientConfig>>, String> {
    if insecure_http {
        return Ok(None);
    }
    if ca_pem.is_empty() {
        return Err("servers sharing a store verify each other with the CA that signed their \
                    certificates: give --tls-ca with --tls-cert"
            .into());
    }
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_types::CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        let cert = cert.map_err(|e| format!("the CA: {e}"))?;
        roots.add(cert).map_err(|e| format!("the CA: {e}"))?;
    }
    rancher_tunnel::client_tls_with_roots(roots).map(Some).map_err(|e| e.to_string())
}

fn is_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE)
        && headers
            .get_all(header::CONNECTION)
            .iter()
            .any(|v| v.to_str().is_ok_and(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case("upgrade"))))
}

fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// 503 with a Kubernetes `Status` naming the peer.
fn unavailable(peer: &Replica, why: &str) -> Response {
    tracing::warn!(peer = %peer.name, url = %peer.url, "forwarding to the replica that owns the cluster failed: {why}");
    let message = format!("the server that holds this cluster ({}) did not answer: {why}", peer.name);
    let body = serde_json::json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": "ServiceUnavailable",
        "code": 503,
    });
    (StatusCode::SERVICE_UNAVAILABLE, axum::Json(body)).into_response()
}

/// Middleware on `/k8s/clusters/…`: a request for a cluster this server neither owns nor holds the
/// agent session of goes to the owner.
pub(crate) async fn route_proxied(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let Some(peers) = &state.peers else { return next.run(req).await };
    let cluster = req.uri().path().strip_prefix("/k8s/clusters/").and_then(|rest| rest.split('/').next());
    let Some(cluster) = cluster.filter(|c| !c.is_empty()) else { return next.run(req).await };
    let local = state.registration.is_connected(cluster);
    match peers.forward_target(cluster, req.headers(), local) {
        Some(peer) => peers.forward(&peer, req).await,
        None => next.run(req).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upgrades_are_told_by_both_headers() {
        let mut h = HeaderMap::new();
        assert!(!is_upgrade(&h));
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        assert!(!is_upgrade(&h), "Upgrade without Connection: upgrade is not one");
        h.insert(header::CONNECTION, HeaderValue::from_static("keep-alive, Upgrade"));
        assert!(is_upgrade(&h));
    }

    #[test]
    fn a_forwarded_request_or_a_local_session_is_served_here() {
        let peer = Replica { name: "b".into(), url: "https://b:8443".into() };
        let both = vec![Replica { name: "a".into(), url: "https://a:8443".into() }, peer.clone()];
        let peers = Peers::new(Replicas::fixed("a", both), None, None);
        let theirs =
            (0..100).map(|i| format!("c-{i}")).find(|c| peers.replicas.owner(c) != Owner::Me).unwrap();
        let mut headers = HeaderMap::new();
        assert_eq!(peers.forward_target(&theirs, &headers, false), Some(peer));
        assert_eq!(peers.forward_target(&theirs, &headers, true), None, "the agent is connected here");
        headers.insert(FORWARDED_HEADER, HeaderValue::from_static("b"));
        assert_eq!(peers.forward_target(&theirs, &headers, false), None, "forwarded once, never again");
    }
}
