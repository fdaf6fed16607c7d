//! Forwarding to the replica that owns a cluster ([`replicas`](super::replicas)). A proxied request
//! (`/k8s/clusters/<id>/…`) or a cluster agent's session (`/v3/connect`) that arrives at a server
//! other than its cluster's owner is sent on to the owner, which authenticates and serves it as if
//! it had come straight there: this server adds nothing to what the client sent but its name to
//! [`FORWARDED_HEADER`]. A server that receives a forwarded request for a cluster it neither owns
//! nor holds (the two servers' views of the replicas differed for a moment, while one joined or
//! left) sends it on once more, but never past [`MAX_HOPS`]; past them, it waits for its view to
//! change or the cluster's agent to arrive (a client setting the header only keeps its own request
//! from being forwarded). A server that has left waits for neither — its view will not come round
//! to owning the cluster — so a request sent back to it by a peer that had not yet seen it leave
//! goes to the owner once more, a moment later ([`Route::Later`]).
//!
//! Ordinary requests to a peer share one HTTP/2 connection per pair of replicas, whatever the number
//! of clusters; an upgrade (an agent's WebSocket, `kubectl exec`, `port-forward`) takes an HTTP/1.1
//! connection of its own, spliced both ways once the owner has switched protocols. Peers are
//! reached at their peer URL over TLS, trusting the servers' shared CA.

mod connector;
mod handover;

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::response::Response;
use futures::StreamExt;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode, Uri, header};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rancher_core::{Status, error_chain};
use rustls::ClientConfig;
use rustls_pki_types::pem::PemObject;
use tokio_util::sync::CancellationToken;

use connector::PeerConnector;
pub(crate) use handover::{drain, hand_over, leave, ready};

use super::error::status_response;
use super::registration::Registration;
use super::replicas::{Heartbeat, Owner, Replica, Replicas};
use super::state::AppState;

/// Marks a request one replica sent on to another; its value names the servers that forwarded
/// it, comma-separated, in order.
pub(crate) const FORWARDED_HEADER: HeaderName = HeaderName::from_static("x-rancher-forwarded-by");

/// How many times a request may be forwarded between servers.
pub(crate) const MAX_HOPS: usize = 2;

/// How long a server that has left waits before it sends a request that came back to it on to
/// the owner again: the peer that sent it back sees the departure within a watch event.
const RESEND_AFTER_LEAVING: Duration = Duration::from_millis(250);

/// The servers `headers` say forwarded a request, in order; `None` when the header is not text.
/// Past `MAX_HOPS + 1` names the rest are not read (no request is forwarded that often).
fn forwarders(headers: &HeaderMap) -> Option<Vec<&str>> {
    let mut names = Vec::new();
    for value in headers.get_all(FORWARDED_HEADER) {
        names.extend(value.to_str().ok()?.split(',').map(str::trim).filter(|n| !n.is_empty()));
        if names.len() > MAX_HOPS {
            names.truncate(MAX_HOPS + 1);
            break;
        }
    }
    Some(names)
}

/// This server's way to its peers.
pub(crate) struct Peers {
    replicas: Replicas,
    /// Taken by the server's tasks when they start.
    heartbeat: std::sync::Mutex<Option<Heartbeat>>,
    /// One HTTP/2 connection per peer, for everything but upgrades.
    shared: Client<PeerConnector, Body>,
    /// HTTP/1.1, a connection per upgrade.
    upgrades: Client<PeerConnector, Body>,
    /// The bodies kept while forwarding, in KiB ([`KEPT_BODIES`]).
    kept_bodies: Arc<tokio::sync::Semaphore>,
    /// Cancelled when a draining server sends its agents on ([`drain`]): ends the agent sessions it
    /// relays and the forwarded responses still streaming.
    handed_over: CancellationToken,
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
        Peers {
            replicas,
            heartbeat: std::sync::Mutex::new(heartbeat),
            shared,
            upgrades,
            handed_over: CancellationToken::new(),
            kept_bodies: Arc::new(tokio::sync::Semaphore::new(kib(KEPT_BODIES) as usize)),
        }
    }

    /// What keeps the view of the replicas current, for the server's tasks to run (once).
    pub(crate) fn take_heartbeat(&self) -> Option<Heartbeat> {
        self.heartbeat.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take()
    }

    /// The replicas as this server sees them.
    pub(crate) fn replicas(&self) -> &Replicas {
        &self.replicas
    }

    /// [Suspects](Replicas::suspect) `peer` when a connection to it, opened afresh, is refused or
    /// has no route: nothing listens there any more (killed, or its host gone). A peer that takes
    /// the connection, or is only slow to (a loaded replica), keeps its clusters: taking them away
    /// would send their agents reconnecting and load it and the others more. Asked after a request
    /// to `peer` failed, whatever hyper made of it (a pooled connection that broke, a request that
    /// waited for a connection another one was opening).
    async fn suspect_if_gone(&self, peer: &Replica) {
        let Some((host, port)) = peer.url.parse::<Uri>().ok().as_ref().and_then(connector::host_port) else {
            return;
        };
        let probe = tokio::time::timeout(PROBE_TIMEOUT, tokio::net::TcpStream::connect((host, port))).await;
        if let Ok(Err(e)) = probe {
            use std::io::ErrorKind::{ConnectionRefused, HostUnreachable, NetworkUnreachable};
            if matches!(e.kind(), ConnectionRefused | HostUnreachable | NetworkUnreachable) {
                self.replicas.suspect(&peer.name);
            }
        }
    }

    /// Where a request for `cluster` goes: here when this server holds a session to serve it
    /// through (`local`) or owns the cluster, else to the owner, unless the request has been
    /// forwarded [`MAX_HOPS`] times already — then, from a server that has left, once more after
    /// a pause.
    pub(crate) fn destination(&self, cluster: &str, headers: &HeaderMap, local: bool) -> Route {
        if local {
            return Route::Here;
        }
        // How often it has been forwarded; `None` (a header that is not text) forwards it no more.
        let hops = forwarders(headers).map(|names| names.len());
        match self.replicas.owner(cluster) {
            Owner::Me => Route::Here,
            Owner::Peer(peer) if hops.is_some_and(|n| n < MAX_HOPS) => Route::Forward(peer),
            Owner::Peer(peer) if self.replicas.leaving() && hops == Some(MAX_HOPS) => Route::Later(peer),
            Owner::Peer(_) => Route::Nowhere,
        }
    }

    /// Sends `req` to `peer` and answers with its response; an upgrade is spliced once both sides
    /// have switched protocols.
    ///
    /// The body of a long-running response (a watch, `logs -f`) still streaming when this server
    /// [drains](drain) ends there, cleanly, and its client watches again through a server that
    /// stays; any other response is passed on whole, however late it comes (one held by the owner
    /// until the agent this server sent on arrives there); an upgraded connection (`exec`,
    /// `port-forward`) lasts until the listener's drain runs out.
    ///
    /// When `peer` does not accept the connection, the request comes back to be routed again
    /// ([`Forwarded::Unreachable`]) — unless its body was too large to keep ([`REPLAYABLE_BODY`]);
    /// so does a read (`GET`, `HEAD`, `OPTIONS`) whose connection broke before an answer. Either
    /// way `peer` is suspected if it is gone ([`suspect_if_gone`](Self::suspect_if_gone)).
    pub(crate) async fn forward(&self, peer: &Replica, req: Request) -> Forwarded {
        self.forward_until(peer, req, None).await
    }

    /// Relays a cluster agent's session (its upgrade request) to `peer`, until the session ends or
    /// this server [drains](drain). As [`forward`](Self::forward) when `peer` is unreachable.
    pub(crate) async fn relay_session(&self, peer: &Replica, req: Request) -> Forwarded {
        self.forward_until(peer, req, Some(self.handed_over.clone())).await
    }

    async fn forward_until(
        &self,
        peer: &Replica,
        mut req: Request,
        until: Option<CancellationToken>,
    ) -> Forwarded {
        let upgrade = is_upgrade(req.headers());
        let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
        let (mut parts, body) = req.into_parts();
        let idempotent =
            matches!(parts.method, http::Method::GET | http::Method::HEAD | http::Method::OPTIONS);
        let long_running = !upgrade && is_long_running(&parts.method, &parts.uri);
        // Nothing is sent when the connection is refused: a request whose body is kept can go
        // again. A small body (a Kubernetes object) is read first and kept; a large one streams.
        // The bodies kept at once are bounded in all ([`KEPT_BODIES`]): the requests are not
        // authenticated yet (their owner does that).
        let size = axum::body::HttpBody::size_hint(&body).upper();
        let permit = size
            .filter(|n| (1..=REPLAYABLE_BODY).contains(n))
            .and_then(|n| self.kept_bodies.clone().try_acquire_many_owned(kib(n)).ok());
        let (body, kept) = match size {
            Some(0) => (body, Some(Bytes::new())),
            Some(_) if permit.is_some() => match http_body_util::BodyExt::collect(body).await {
                Ok(collected) => {
                    let bytes = collected.to_bytes();
                    (Body::from(bytes.clone()), Some(bytes))
                }
                Err(e) => {
                    let status = Status::bad_request(format!("reading the request body: {e}"));
                    return Forwarded::Answered(status_response(&status));
                }
            },
            _ => (body, None),
        };
        let again = kept.map(|kept| {
            let mut again = Request::new(Body::from(kept));
            *again.method_mut() = parts.method.clone();
            *again.uri_mut() = parts.uri.clone();
            *again.version_mut() = parts.version;
            *again.headers_mut() = parts.headers.clone();
            *again.extensions_mut() = parts.extensions.clone();
            again
        });
        let path = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
        let uri: Uri = match format!("{}{path}", peer.url.trim_end_matches('/')).parse() {
            Ok(uri) => uri,
            Err(e) => return Forwarded::Answered(unavailable(peer, &format!("its URL: {e}"))),
        };
        parts.uri = uri;
        parts.headers.remove(header::HOST);
        let mut by: Vec<String> =
            forwarders(&parts.headers).unwrap_or_default().into_iter().map(str::to_owned).collect();
        by.push(self.replicas.me().to_owned());
        if let Ok(by) = HeaderValue::from_str(&by.join(",")) {
            parts.headers.insert(FORWARDED_HEADER, by);
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
            // Refused (the peer is gone): nothing was sent. Broken before an answer: a read went
            // nowhere, and may go again.
            Err(e) if e.is_connect() || idempotent => {
                tracing::debug!(peer = %peer.name, "a forwarded request got no answer ({}); routing it again", error_chain(&e));
                self.suspect_if_gone(peer).await;
                return match again {
                    Some(mut again) => {
                        if let Some(client_upgrade) = client_upgrade {
                            again.extensions_mut().insert(client_upgrade);
                        }
                        Forwarded::Unreachable(again)
                    }
                    None => Forwarded::Answered(unavailable(peer, &error_chain(&e))),
                };
            }
            // A write whose connection broke: it may or may not have been carried out.
            Err(e) => {
                self.suspect_if_gone(peer).await;
                return Forwarded::Answered(broke_off(peer, &error_chain(&e)));
            }
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
                        let splice = tokio::io::copy_bidirectional(&mut client, &mut peer);
                        match until {
                            Some(until) => tokio::select! {
                                _ = splice => {}
                                () = until.cancelled() => {}
                            },
                            None => drop(splice.await),
                        }
                    }
                    Err(e) => tracing::debug!(peer = %name, "a forwarded upgrade did not complete: {e}"),
                }
            });
            return Forwarded::Answered(resp.map(Body::new));
        }
        if !long_running {
            return Forwarded::Answered(resp.map(Body::new));
        }
        let draining = self.handed_over.clone().cancelled_owned();
        Forwarded::Answered(
            resp.map(|body| Body::from_stream(Body::new(body).into_data_stream().take_until(draining))),
        )
    }
}

/// Whether a proxied request (`/k8s/clusters/<id>/…`) holds its response open for as long as its
/// client wants: a watch, `logs -f`. Only those are cut short when a server drains; a response cut
/// short otherwise would be a truncated one (and with its length announced, a broken connection).
fn is_long_running(method: &http::Method, uri: &Uri) -> bool {
    let Some((_, path)) = rancher_auth::proxy::split_cluster_path(uri.path()) else { return false };
    method == http::Method::GET
        && rancher_auth::proxy::RequestInfo::parse(method, path, uri.query()).is_long_running()
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

/// 503 with a Kubernetes `Status` naming the peer.
fn unavailable(peer: &Replica, why: &str) -> Response {
    tracing::warn!(peer = %peer.name, url = %peer.url, "forwarding to the replica that owns the cluster failed: {why}");
    status_response(&Status::unavailable(format!(
        "the server that holds this cluster ({}) did not answer: {why}",
        peer.name
    )))
}

/// 502 with a Kubernetes `Status`: the peer took the request and its connection broke before it
/// answered (it died). Whether the request was carried out is unknown, as when a client's own
/// connection breaks; a read is routed again instead ([`Forwarded::Unreachable`]).
fn broke_off(peer: &Replica, why: &str) -> Response {
    tracing::warn!(peer = %peer.name, url = %peer.url, "a request forwarded to the replica that owns the cluster broke off: {why}");
    status_response(&Status::bad_gateway(format!(
        "the server that holds this cluster ({}) broke off before it answered, so the request may or may \
         not have been carried out: {why}",
        peer.name
    )))
}

/// The largest request body a server keeps while forwarding, so that the request can go to
/// another replica when the owner turns out unreachable.
const REPLAYABLE_BODY: u64 = 256 * 1024;

/// How many bytes of request bodies a server keeps at once while forwarding; past that, bodies
/// stream (and their requests are not sent again).
const KEPT_BODIES: u64 = 32 * 1024 * 1024;

/// `bytes` in whole KiB, rounded up: the unit of the kept bodies' semaphore.
fn kib(bytes: u64) -> u32 {
    u32::try_from(bytes.div_ceil(1024)).unwrap_or(u32::MAX)
}

/// What became of a request sent to a peer.
#[derive(Debug)]
pub(crate) enum Forwarded {
    /// The peer's answer, or a `503` (`502`) naming it.
    Answered(Response),
    /// The peer did not accept the connection, or a read got no answer (and the peer is suspected
    /// now if it is gone): the request, to route again.
    Unreachable(Request),
}

/// How long [`Peers::suspect_if_gone`] waits for a peer to take a connection.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// How many times a request goes to a peer that turns out unreachable before it is answered `503`.
const UNREACHABLE_TRIES: usize = 3;

/// Where [`Peers::destination`] sends a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Route {
    /// Served by this server.
    Here,
    /// Sent on to this peer.
    Forward(Replica),
    /// Sent on to this peer after [`RESEND_AFTER_LEAVING`]: this server has left, and the request
    /// came back from a peer that had not seen it leave yet. Past one more hop, a peer that still
    /// sees this server as the owner waits for its own view to change.
    Later(Replica),
    /// Owned by a peer, but forwarded too often to send on.
    Nowhere,
}

/// Whether this server serves requests for `cluster` through the sessions it holds: when it owns
/// the cluster and holds any, or holds only node agents' (which stay where they are). A cluster
/// agent's session of a cluster that has just moved away is left to finish what it carries, and
/// new requests go to the owner, which waits for the agent.
fn serves_locally(registration: &Registration, cluster: &str) -> bool {
    registration.is_connected(cluster)
        && (registration.owns(cluster) || !registration.tunnel().has_session(cluster))
}

/// Serves a request on `/k8s/clusters/…`: a request for a cluster this server neither owns nor holds
/// the agent session of goes to the owner, the rest to this server's proxy. One that cannot go on
/// ([`Route::Nowhere`]) while clusters are moving waits, up to
/// [`HANDOVER_WAIT`](super::registration::HANDOVER_WAIT), for this server's view of the replicas to
/// change or an agent to arrive, and is routed again.
pub(crate) async fn route_proxied(state: &AppState, req: Request) -> Response {
    let Some(peers) = &state.peers else { return serve_here(state, req).await };
    // A path that names no cluster (or not a valid id) is the proxy's to refuse, here.
    let Some(cluster) =
        rancher_auth::proxy::split_cluster_path(req.uri().path()).map(|(id, _)| id.to_owned())
    else {
        return serve_here(state, req).await;
    };
    let registration = &state.registration;
    let deadline = tokio::time::Instant::now() + super::registration::HANDOVER_WAIT;
    let mut view = peers.replicas().follow();
    let mut sessions = registration.tunnel().subscribe();
    let mut req = req;
    let mut unreachable = 0;
    loop {
        let route = peers.destination(&cluster, req.headers(), serves_locally(registration, &cluster));
        let peer = match route {
            Route::Forward(peer) => peer,
            Route::Later(peer) => {
                tokio::time::sleep(RESEND_AFTER_LEAVING).await;
                peer
            }
            Route::Here => return serve_here(state, req).await,
            Route::Nowhere if !registration.settling() || tokio::time::Instant::now() >= deadline => {
                return serve_here(state, req).await;
            }
            Route::Nowhere => {
                tokio::select! {
                    _ = view.changed() => {}
                    _ = sessions.recv() => {}
                    () = tokio::time::sleep_until(deadline) => {}
                }
                continue;
            }
        };
        match peers.forward(&peer, req).await {
            Forwarded::Answered(resp) => return resp,
            Forwarded::Unreachable(_) if unreachable + 1 >= UNREACHABLE_TRIES => {
                return unavailable(&peer, "it does not accept connections");
            }
            Forwarded::Unreachable(again) => {
                unreachable += 1;
                req = again;
            }
        }
    }
}

/// This server's proxy.
async fn serve_here(state: &AppState, req: Request) -> Response {
    let Ok(resp) = tower::ServiceExt::oneshot(state.proxy.clone(), req).await;
    resp.map(Body::new)
}

#[cfg(test)]
mod tests;
