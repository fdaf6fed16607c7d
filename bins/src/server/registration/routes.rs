//! The HTTP side of registration: the import manifest and the agents' endpoints (public, each
//! checking the registration token itself), and the registration tokens under `/v3` (for
//! authenticated users; the token, URL and commands are computed on every read, never stored).

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::{Extension, Json, Router};
use http::{HeaderMap, StatusCode, header};
use rancher_core::Status;
use rancher_core::model::ClusterRegistrationToken;
use rancher_core::store::Api;
use rancher_core::validation::dns1123_label;
use serde_json::{Value, json};
use tracing::{info, warn};

use super::authorizer::ConnectAuthorizer;
use super::server_url::{is_loopback_url, is_same_host};
use crate::protocol::report::{ClusterReport, REPORT_PATH};
use crate::server::auth::Caller;
use crate::server::error::{ApiError, ApiResult, status_response};
use crate::server::listener::LocalAddr;
use crate::server::peers::{Forwarded, Route};
use crate::server::state::AppState;

/// The largest report body accepted.
const MAX_REPORT_BYTES: usize = 64 * 1024;
/// The most resource names a report's capacity or allocatable may list.
const MAX_RESOURCES: usize = 64;
/// The most digests a report may carry (the agent sends three).
const MAX_DIGESTS: usize = 16;

/// Routes without user authentication (agents present the registration token).
pub(crate) fn public() -> Router<AppState> {
    Router::new()
        .route("/v3/import/{file}", get(import_manifest))
        .route(rancher_tunnel::CONNECT_PATH, any(connect))
        .route(REPORT_PATH, post(report))
}

/// Routes for authenticated users (mounted under the `/v3` authentication layer).
pub(crate) fn authenticated() -> Router<AppState> {
    Router::new()
        .route("/v3/clusterregistrationtokens", get(list_tokens))
        .route("/v3/clusterregistrationtokens/{id}", get(get_token))
}

fn not_found() -> ApiError {
    ApiError::NotFound("the server could not find the requested resource".into())
}

/// `GET /v3/import/<token>_<cluster>.yaml`: the manifest, or 404 for any wrong part. A manifest
/// whose `CATTLE_SERVER` is a loopback address is handed only to a client on the server's own host
/// (a sim or a process agent there can reach it); anyone else gets 409 naming `--server-url`.
async fn import_manifest(
    State(state): State<AppState>,
    Path(file): Path<String>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    local: Option<Extension<LocalAddr>>,
) -> ApiResult<Response> {
    let (token, cluster) =
        file.strip_suffix(".yaml").and_then(|f| f.split_once('_')).ok_or_else(not_found)?;
    if dns1123_label(cluster).is_err() {
        return Err(not_found());
    }
    let reg = &state.registration;
    if !reg.check_token(cluster, token).await.map_err(|e| ApiError::Internal(e.to_string()))? {
        // No hint whether the cluster or the token was wrong.
        info!(cluster, "import manifest refused: unknown token");
        return Err(not_found());
    }
    if is_loopback_url(reg.server_url()) {
        let peer = peer.map(|Extension(ConnectInfo(addr))| addr.ip());
        let local = local.map(|Extension(LocalAddr(addr))| addr.ip());
        if !peer.is_some_and(|p| is_same_host(p, local)) {
            info!(cluster, peer = ?peer, "import manifest refused: the server URL is a loopback address");
            return Err(ApiError::Conflict(format!(
                "this server's URL is {}, a loopback address that agents in another host's cluster cannot \
                 reach: restart rancher-server with --server-url https://<an address the cluster can \
                 reach>[:port], then fetch the manifest again",
                reg.server_url()
            )));
        }
    }
    let yaml = reg.manifest(token, cluster);
    Ok(([(header::CONTENT_TYPE, "application/yaml")], yaml).into_response())
}

/// `GET /v3/connect`: the agents' WebSocket upgrade. A cluster agent whose cluster another replica
/// owns is spliced through to it ([`peers`](crate::server::peers)); node agents stay where they
/// land.
///
/// The connect rate is the rate of sessions a server takes on ([`ConnectAdmission`]), so a session
/// is admitted by the server that will hold it: the owner, for one spliced through. Admitted at the
/// door as well, a session would wait in two queues, each handing out its own turns, and a turn
/// given by one would be refused by the other — three replicas at 10,000 clusters held 4,364
/// sessions after 409 s while their doors sent thousands a minute back to wait.
///
/// [`ConnectAdmission`]: super::admission::ConnectAdmission
async fn connect(State(state): State<AppState>, req: Request) -> Response {
    let authz = ConnectAuthorizer::new(state.registration.clone());
    let mut req = req;
    if let Some(peers) = &state.peers
        && let Some(cluster) = cluster_agent_of(&authz, req.headers()).await
    {
        // Routed again when the owner turns out unreachable (it is suspected then, and another
        // replica owns the cluster); once at most, then the session is taken here.
        for _ in 0..2 {
            let (Route::Forward(peer) | Route::Later(peer)) =
                peers.destination(&cluster, req.headers(), false)
            else {
                break;
            };
            if peers.replicas().leaving() {
                // Relayed, the session would end with this server: the agent tries again, and its
                // balancer sends it to a server that stays.
                return ApiError::Unavailable("this server is stopping; connect to another".into())
                    .into_response();
            }
            info!(cluster, peer = %peer.name, "a cluster agent's session goes to the replica that owns its cluster");
            match peers.relay_session(&peer, req).await {
                Forwarded::Answered(resp) => return resp,
                Forwarded::Unreachable(again) => req = again,
            }
        }
    }
    if let Some(admission) = &state.connect_admission
        && let Err(wait) = admission.admit()
    {
        // Expected in a reconnect storm, and counted (`agent_connect_deferred`): not logged, which
        // at ten thousand agents would be a line for each of their turns.
        state.metrics.agent_connect_deferred();
        let mut resp = status_response(&Status::unavailable(
            "too many agents are connecting at once; come back after Retry-After, this agent's turn",
        ));
        resp.headers_mut().insert(header::RETRY_AFTER, http::HeaderValue::from(wait.as_secs()));
        return resp;
    }
    state.registration.tunnel().accept_upgrade(req, &authz).await.map(Body::new)
}

/// The cluster of a cluster agent's upgrade request whose token is good; `None` for anything else
/// (a node agent, a bad token: those are answered here).
async fn cluster_agent_of(authz: &ConnectAuthorizer, headers: &HeaderMap) -> Option<String> {
    let params = headers.get(rancher_tunnel::PARAMS_HEADER)?.to_str().ok()?;
    let params = crate::protocol::connect::TunnelParams::decode(params).ok()?;
    if params.node.is_some() {
        return None;
    }
    authz.cluster_of(headers).await.ok().map(|c| c.metadata.name)
}

fn check_report(r: &ClusterReport) -> Result<(), String> {
    let v = &r.version.git_version;
    if v.is_empty() || v.len() > 64 || !v.starts_with('v') {
        return Err(format!("version.gitVersion {v:?} is not a Kubernetes version"));
    }
    for (what, map) in [("capacity", &r.capacity), ("allocatable", &r.allocatable)] {
        if map.len() > MAX_RESOURCES {
            return Err(format!("{what} lists more than {MAX_RESOURCES} resources"));
        }
        if map.iter().any(|(k, v)| k.is_empty() || k.len() > 253 || v.len() > 64) {
            return Err(format!("{what} holds a malformed entry"));
        }
    }
    if r.digests.len() > MAX_DIGESTS
        || r.digests.iter().any(|(k, v)| k.is_empty() || k.len() > 64 || v.len() > 128)
    {
        return Err(format!("digests: at most {MAX_DIGESTS}, each a name and a value of at most 128 bytes"));
    }
    let short = |s: &str| s.len() <= 64;
    if !short(&r.version.major) || !short(&r.version.minor) || !short(&r.version.platform) {
        return Err("version fields are too long".into());
    }
    Ok(())
}

/// `POST /v3/connect/report`: a cluster agent's view of its cluster.
async fn report(State(state): State<AppState>, headers: HeaderMap, body: Body) -> ApiResult<StatusCode> {
    let authz = ConnectAuthorizer::new(state.registration.clone());
    let stored = authz.cluster_of(&headers).await.map_err(|r| {
        warn!(reason = %r, "cluster report refused");
        ApiError::Unauthenticated(format!("report refused: {r}"))
    })?;
    let (cluster, uid) = (stored.metadata.name, stored.metadata.uid);
    let bytes = axum::body::to_bytes(body, MAX_REPORT_BYTES)
        .await
        .map_err(|_| ApiError::TooLarge { limit: MAX_REPORT_BYTES })?;
    let r: ClusterReport = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::BadRequest(format!("the report is not valid: {e}")))?;
    check_report(&r).map_err(|m| ApiError::invalid_field("report", m))?;
    let updated = state
        .registration
        .update_cluster(&cluster, |c| {
            if c.metadata.uid != uid {
                return false;
            }
            let s = &mut c.status;
            let seen = |s: &rancher_core::model::ClusterStatus| {
                let digests = s.downstream_digests.clone();
                (
                    s.version.clone(),
                    s.node_count,
                    s.pod_count,
                    s.capacity.clone(),
                    s.allocatable.clone(),
                    digests,
                )
            };
            let before = seen(s);
            s.version = Some(r.version.clone());
            s.node_count = Some(r.node_count);
            s.pod_count = Some(r.pod_count);
            s.capacity = r.capacity.clone();
            s.allocatable = r.allocatable.clone();
            s.downstream_digests = r.digests.clone();
            before != seen(s)
        })
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    if updated.is_none_or(|c| c.metadata.uid != uid) {
        return Err(ApiError::NotFound(format!("cluster {cluster} no longer exists")));
    }
    Ok(StatusCode::NO_CONTENT)
}

fn token_output(state: &AppState, mut crt: ClusterRegistrationToken) -> ApiResult<Value> {
    crt.status = state.registration.crt_status(&crt);
    let id = format!("{}:{}", crt.metadata.namespace.as_deref().unwrap_or_default(), crt.metadata.name);
    let mut v = serde_json::to_value(&crt).map_err(|e| ApiError::Internal(e.to_string()))?;
    if let Some(m) = v.as_object_mut() {
        m.insert("id".into(), id.into());
        m.insert("type".into(), "clusterRegistrationToken".into());
    }
    Ok(v)
}

const PLURAL: &str = "clusterregistrationtokens";

/// `GET /v3/clusterregistrationtokens`.
async fn list_tokens(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<Value>> {
    if !caller.can("list", PLURAL, None) {
        return Err(caller.forbidden("list", PLURAL, None));
    }
    let items = Api::<ClusterRegistrationToken>::all(state.store.clone()).list().await?;
    let data = items.into_iter().map(|c| token_output(&state, c)).collect::<ApiResult<Vec<_>>>()?;
    Ok(Json(json!({ "type": "collection", "resourceType": "clusterRegistrationToken", "data": data })))
}

/// `GET /v3/clusterregistrationtokens/<cluster>:<name>`.
async fn get_token(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let (cluster, name) = id.split_once(':').ok_or_else(|| {
        ApiError::NotFound(format!("{PLURAL} \"{id}\" not found: ids look like <cluster>:<name>"))
    })?;
    if !caller.can("get", PLURAL, Some(name)) {
        return Err(caller.forbidden("get", PLURAL, Some(name)));
    }
    let crt = Api::<ClusterRegistrationToken>::namespaced(state.store.clone(), cluster).get(name).await?;
    Ok(Json(token_output(&state, crt)?))
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::sync::Arc;

    use axum::body::Body;
    use http::Request;
    use rancher_core::model::{Cluster, ClusterSpec, ImportedConfig};
    use rancher_core::store::{Api, MemoryStore};
    use tower::ServiceExt as _;

    use crate::server::Server;
    use crate::server::listener::LocalAddr;

    /// The server's router, and the import manifest path of a new imported cluster.
    async fn server_with_import(dir: &std::path::Path, server_url: Option<&str>) -> (axum::Router, String) {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let mut b = Server::builder()
            .data_dir(dir)
            .store(Arc::new(MemoryStore::new()))
            .https_listen("127.0.0.1:0".parse().unwrap())
            .bootstrap_password("a-long-admin-password");
        if let Some(url) = server_url {
            b = b.server_url(url);
        }
        let server = b.build().await.unwrap();
        let spec = ClusterSpec { imported_config: Some(ImportedConfig::default()), ..Default::default() };
        let cluster = Api::<Cluster>::all(server.store()).create(&Cluster::new("imp", spec)).await.unwrap();
        let reg = server.registration();
        let crt = reg.ensure_default_token(&cluster).await.unwrap();
        let path = format!("/v3/import/{}_imp.yaml", reg.crt_status(&crt).token);
        (crate::server::api::router(server.state.clone()), path)
    }

    /// The code of `GET path` from `peer`, connected to the server's `local` address.
    async fn fetch(app: &axum::Router, path: &str, peer: &str, local: &str) -> (u16, String) {
        let mut req = Request::get(path).body(Body::empty()).unwrap();
        req.extensions_mut().insert(axum::extract::ConnectInfo(peer.parse::<SocketAddr>().unwrap()));
        req.extensions_mut().insert(LocalAddr(local.parse().unwrap()));
        let resp = app.clone().oneshot(req).await.unwrap();
        let code = resp.status().as_u16();
        let body = axum::body::to_bytes(resp.into_body(), usize::MAX).await.unwrap();
        (code, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn a_loopback_manifest_is_handed_only_to_clients_on_the_servers_host() {
        let dir = tempfile::tempdir().unwrap();
        let (app, path) = server_with_import(dir.path(), None).await;
        // The server listens on 127.0.0.1: its URL is a loopback address.
        let (code, body) = fetch(&app, &path, "127.0.0.1:40000", "127.0.0.1:8443").await;
        assert_eq!(code, 200, "{body}");
        assert!(body.contains("CATTLE_SERVER") && body.contains("https://127.0.0.1:"), "{body}");
        let (code, body) = fetch(&app, &path, "10.0.0.5:40000", "10.0.0.5:8443").await;
        assert_eq!(code, 200, "a client on the server's own non-loopback address: {body}");

        let (code, body) = fetch(&app, &path, "192.0.2.7:40000", "10.0.0.5:8443").await;
        assert_eq!(code, 409, "{body}");
        let status: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!((status["kind"].as_str(), status["reason"].as_str()), (Some("Status"), Some("Conflict")));
        let message = status["message"].as_str().unwrap();
        assert!(message.contains("--server-url") && message.contains("loopback"), "{message}");
        assert!(!body.contains("CATTLE_TOKEN"), "no part of the manifest leaks: {body}");

        // A wrong token is still a 404, wherever it comes from.
        let wrong = path.replacen("/v3/import/", "/v3/import/0", 1);
        assert_eq!(fetch(&app, &wrong, "192.0.2.7:40000", "10.0.0.5:8443").await.0, 404);
    }

    #[tokio::test]
    async fn a_reachable_server_url_is_handed_to_anyone_with_the_token() {
        let dir = tempfile::tempdir().unwrap();
        let (app, path) = server_with_import(dir.path(), Some("https://rancher.example.com:8443")).await;
        let (code, body) = fetch(&app, &path, "192.0.2.7:40000", "10.0.0.5:8443").await;
        assert_eq!(code, 200, "{body}");
        assert!(body.contains("\"https://rancher.example.com:8443\""), "{body}");
    }
}
