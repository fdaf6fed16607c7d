//! `pods/exec` and `pods/attach`: validate, pick the protocol the client offers (WebSocket
//! `v5.channel.k8s.io`/`v4.channel.k8s.io`, or SPDY/3.1 with `v4.channel.k8s.io`), answer 101 and run
//! the built-in shell on the upgraded connection.

mod commands;
pub(crate) mod fs;
pub(crate) mod shell;
mod spdy;
mod websocket;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use serde_json::Value;

use crate::api::ResourceRequest;
use crate::http_util::{Body, full};
use crate::state::SimState;
use crate::status::ApiError;

/// How long a process takes to start once the connection is upgraded, as a container runtime's
/// exec takes tens of milliseconds to start one. A process that wrote at once would also write
/// before kubectl is ready to read: kubectl before 1.33, over WebSocket, reads the connection
/// before it has made the streams it reads into and drops what comes first ("Unknown stream id 1,
/// discarding message", kubernetes/kubernetes#131189), which a real runtime never gives it time for.
const PROCESS_START: Duration = Duration::from_millis(50);

/// What the client asked to run and which streams it wants.
#[derive(Debug, Clone)]
pub(crate) struct ExecRequest {
    pub(crate) command: Vec<String>,
    pub(crate) stdin: bool,
    pub(crate) stdout: bool,
    pub(crate) stderr: bool,
    pub(crate) tty: bool,
    pub(crate) process: shell::Process,
}

/// The transport the client offered.
pub(crate) enum Upgrade {
    WebSocket { key: String, protocol: String },
    Spdy { protocol: String },
}

/// Picks WebSocket or SPDY and a subprotocol from the ones offered in `supported` order.
pub(crate) fn negotiate(headers: &HeaderMap, supported: &[&str]) -> Result<Upgrade, ApiError> {
    let upgrade =
        headers.get(header::UPGRADE).and_then(|v| v.to_str().ok()).unwrap_or("").to_ascii_lowercase();
    if upgrade == "websocket" {
        let key = headers
            .get("sec-websocket-key")
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| ApiError::bad_request("missing Sec-WebSocket-Key"))?
            .to_string();
        let offered: Vec<String> = headers
            .get_all("sec-websocket-protocol")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(',').map(|s| s.trim().to_string()))
            .collect();
        let protocol =
            offered.iter().find(|p| supported.contains(&p.as_str())).cloned().ok_or_else(|| {
                ApiError::bad_request(format!(
                    "unable to negotiate a WebSocket subprotocol from {offered:?}; supported: {supported:?}"
                ))
            })?;
        return Ok(Upgrade::WebSocket { key, protocol });
    }
    if upgrade.starts_with("spdy/3.1") {
        let offered: Vec<String> = headers
            .get_all("x-stream-protocol-version")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(',').map(|s| s.trim().to_string()))
            .collect();
        let protocol = supported
            .iter()
            .find(|s| offered.iter().any(|o| o == *s))
            .map(|s| s.to_string())
            .ok_or_else(|| ApiError::forbidden(format!("unable to upgrade: unable to negotiate protocol: client supports {offered:?}, server supports {supported:?}"), serde_json::json!({})))?;
        return Ok(Upgrade::Spdy { protocol });
    }
    Err(ApiError::bad_request("Upgrade request required"))
}

/// The 101 response for an upgrade.
pub(crate) fn switching(up: &Upgrade) -> Response<Body> {
    let mut r = Response::new(full(""));
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = r.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    match up {
        Upgrade::WebSocket { key, protocol } => {
            h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
            let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
            if let Ok(v) = HeaderValue::from_str(&accept) {
                h.insert("sec-websocket-accept", v);
            }
            if let Ok(v) = HeaderValue::from_str(protocol) {
                h.insert("sec-websocket-protocol", v);
            }
        }
        Upgrade::Spdy { protocol } => {
            h.insert(header::UPGRADE, HeaderValue::from_static("SPDY/3.1"));
            if let Ok(v) = HeaderValue::from_str(protocol) {
                h.insert("x-stream-protocol-version", v);
            }
        }
    }
    r
}

fn process_for(state: &SimState, pod: &Value, container: &str) -> shell::Process {
    let hostname = crate::meta::name(pod).to_string();
    let mut env = BTreeMap::new();
    env.insert(
        "PATH".to_string(),
        "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_string(),
    );
    env.insert("HOSTNAME".to_string(), hostname.clone());
    env.insert("HOME".to_string(), "/root".to_string());
    env.insert("KUBERNETES_SERVICE_HOST".to_string(), "10.96.0.1".to_string());
    env.insert("KUBERNETES_SERVICE_PORT".to_string(), "443".to_string());
    let mut main = vec![];
    for c in pod["spec"]["containers"].as_array().into_iter().flatten().filter(|c| c["name"] == container) {
        for e in c["env"].as_array().into_iter().flatten() {
            if let (Some(k), Some(v)) = (e["name"].as_str(), e["value"].as_str()) {
                env.insert(k.to_string(), v.to_string());
            }
        }
        main = crate::meta::str_list(&c["command"]);
        main.extend(crate::meta::str_list(&c["args"]));
        if main.is_empty() {
            // No command: the image's own entrypoint, named after the image.
            let image = c["image"].as_str().unwrap_or("");
            let base = image.rsplit('/').next().unwrap_or(image);
            main.push(base.split([':', '@']).next().unwrap_or(base).to_string());
        }
    }
    let (pods, _) = state.store.list("pods", None);
    let live: std::collections::HashSet<String> =
        pods.iter().map(|p| crate::meta::uid(p).to_string()).collect();
    let namespace = crate::meta::namespace(pod).to_string();
    let pod_ip = pod["status"]["podIP"].as_str().unwrap_or("").to_string();
    let fs =
        state.pod_files.get(crate::meta::uid(pod), &live, || fs::Fs::seeded(&hostname, &namespace, &pod_ip));
    shell::Process { env, hostname, fs, main: main.join(" ") }
}

/// Checks the pod and container are running; returns the pod.
pub(crate) fn running_pod(state: &SimState, rr: &ResourceRequest) -> Result<Value, ApiError> {
    let pod = state
        .store
        .get("pods", &rr.namespace, &rr.name)
        .ok_or_else(|| ApiError::not_found("", "pods", &rr.name))?;
    let phase = pod["status"]["phase"].as_str().unwrap_or("Pending");
    if phase != "Running" {
        return Err(ApiError::bad_request(format!(
            "unable to upgrade connection: pod {} is not running (phase {phase})",
            rr.name
        )));
    }
    Ok((*pod).clone())
}

pub(crate) async fn handle(
    state: &Arc<SimState>,
    rr: ResourceRequest,
    mut req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let pod = running_pod(state, &rr)?;
    let container = crate::logs::pick_container(&pod, rr.query.get("container"))?;
    let q = &rr.query;
    let attach = rr.subresource == "attach";
    let command = q.all("command");
    if !attach && command.is_empty() {
        return Err(ApiError::bad_request("you must specify at least 1 command"));
    }
    let er = ExecRequest {
        command,
        stdin: q.flag("stdin") || q.flag("input"),
        stdout: q.flag("stdout") || q.flag("output"),
        stderr: q.flag("stderr") || q.flag("error"),
        tty: q.flag("tty"),
        process: process_for(state, &pod, &container),
    };
    if !er.stdin && !er.stdout && !er.stderr {
        return Err(ApiError::bad_request("you must specify at least one of stdin, stdout, stderr"));
    }
    let up = negotiate(req.headers(), &["v5.channel.k8s.io", "v4.channel.k8s.io"])?;
    let resp = switching(&up);
    let on_upgrade = hyper::upgrade::on(&mut req);
    let cancel = state.cancel.clone();
    tokio::spawn(async move {
        let Ok(upgraded) = on_upgrade.await else { return };
        let io = hyper_util::rt::TokioIo::new(upgraded);
        let session = async {
            tokio::time::sleep(PROCESS_START).await;
            match up {
                Upgrade::WebSocket { protocol, .. } => websocket::serve(io, er, &protocol).await,
                Upgrade::Spdy { .. } => spdy::serve(io, er).await,
            }
        };
        tokio::select! {
            _ = session => {}
            _ = cancel.cancelled() => {}
        }
    });
    Ok(resp)
}
