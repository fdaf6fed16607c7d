//! `EksUpdateStandIn`: a stand-in in front of moto for the three EKS operations moto 5 lacks — `UpdateClusterVersion`,
//! `UpdateNodegroupVersion` and `DescribeUpdate` — following AWS's documented contract for just
//! those (EKS API reference): an update starts `InProgress`, answers `InProgress` to its first
//! `DescribeUpdate` and `Successful` after; only then does the cluster's (or node group's) version
//! change; a control plane moves one minor version at a time; an unknown cluster, node group or
//! update is a 404 `ResourceNotFoundException`. Everything else is forwarded to moto unchanged,
//! with two additions: the versions the stand-in changed show in `DescribeCluster` /
//! `DescribeNodegroup`, and the updates moto's `UpdateNodegroupConfig` / `UpdateClusterConfig`
//! return (done at once) can be described. Every request a client sends it is recorded
//! ([`EksUpdateStandIn::calls`]), so that a bench can count a client's EKS calls.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response, StatusCode};
use serde_json::{Value, json};

#[derive(Default)]
struct State {
    /// Update id → (cluster, node group, the update, `DescribeUpdate`s left before it succeeds,
    /// the version it sets).
    updates: HashMap<String, Tracked>,
    /// (cluster, node group) → the version an update set.
    versions: HashMap<(String, Option<String>), String>,
    next: u64,
    /// Every request received, in order.
    calls: Vec<Call>,
}

/// One request a client sent the stand-in (the stand-in's own lookups at moto are not in it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Call {
    /// `GET`, `POST`, …
    pub method: String,
    /// The path, without the query (`/clusters/prod/node-groups`).
    pub path: String,
    /// The access key id of the request's SigV4 signature (not a secret), when signed.
    pub access_key_id: Option<String>,
    /// The status it was answered with.
    pub status: u16,
}

struct Tracked {
    cluster: String,
    nodegroup: Option<String>,
    update: Value,
    polls_left: u32,
    sets_version: Option<String>,
}

/// The stand-in, serving on a loopback port until dropped.
pub struct EksUpdateStandIn {
    port: u16,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for EksUpdateStandIn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl EksUpdateStandIn {
    /// Starts it in front of the moto at `moto` (`http://127.0.0.1:<port>`).
    ///
    /// # Panics
    /// When it cannot listen.
    pub async fn start(moto: String) -> EksUpdateStandIn {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(State::default()));
        let http = reqwest::Client::new();
        let shared = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { return };
                let (state, http, moto) = (state.clone(), http.clone(), moto.clone());
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| {
                        let (state, http, moto) = (state.clone(), http.clone(), moto.clone());
                        async move { Ok::<_, Infallible>(handle(req, &state, &http, &moto).await) }
                    });
                    let io = hyper_util::rt::TokioIo::new(stream);
                    let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, svc).await;
                });
            }
        });
        EksUpdateStandIn { port, state: shared, task }
    }

    /// Every request received so far, in order.
    pub fn calls(&self) -> Vec<Call> {
        self.state.lock().unwrap().calls.clone()
    }

    /// `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

fn answer(status: StatusCode, body: &Value) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap()
}

/// An AWS REST-JSON error: the code in `x-amzn-ErrorType`, the words in the body.
fn aws_error(status: StatusCode, code: &str, message: &str) -> Response<Full<Bytes>> {
    let mut r = answer(status, &json!({ "message": message }));
    r.headers_mut().insert("x-amzn-errortype", code.parse().unwrap());
    r
}

/// A GET to moto with the caller's `Authorization` (moto routes on its credential scope's service
/// and keeps state per region).
async fn moto_get(http: &reqwest::Client, moto: &str, path: &str, auth: &hyper::HeaderMap) -> Option<Value> {
    let mut req = http.get(format!("{moto}{path}"));
    if let Some(a) = auth.get(hyper::header::AUTHORIZATION) {
        req = req.header(hyper::header::AUTHORIZATION, a);
    }
    let r = req.send().await.ok()?;
    if !r.status().is_success() {
        return None;
    }
    r.json().await.ok()
}

fn minor(v: &str) -> Option<(u32, u32)> {
    let (a, b) = v.split_once('.')?;
    Some((a.parse().ok()?, b.split('.').next()?.parse().ok()?))
}

/// The access key id in a SigV4 `Authorization` header (`… Credential=<key>/<date>/…`).
fn access_key_id(headers: &hyper::HeaderMap) -> Option<String> {
    let auth = headers.get(hyper::header::AUTHORIZATION)?.to_str().ok()?;
    let (_, credential) = auth.split_once("Credential=")?;
    Some(credential.split('/').next()?.to_owned())
}

async fn handle(
    req: Request<hyper::body::Incoming>,
    state: &Mutex<State>,
    http: &reqwest::Client,
    moto: &str,
) -> Response<Full<Bytes>> {
    let method = req.method().to_string();
    let path = req.uri().path().to_owned();
    let access_key_id = access_key_id(req.headers());
    let resp = answer_request(req, state, http, moto).await;
    let status = resp.status().as_u16();
    state.lock().unwrap().calls.push(Call { method, path, access_key_id, status });
    resp
}

async fn answer_request(
    req: Request<hyper::body::Incoming>,
    state: &Mutex<State>,
    http: &reqwest::Client,
    moto: &str,
) -> Response<Full<Bytes>> {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let query = req.uri().query().map(str::to_owned);
    let headers = req.headers().clone();
    let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let input: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    match (method.as_str(), parts.as_slice()) {
        ("POST", ["clusters", c, "updates"]) => {
            let Some(cur) = moto_get(http, moto, &format!("/clusters/{c}"), &headers).await else {
                return aws_error(
                    StatusCode::NOT_FOUND,
                    "ResourceNotFoundException",
                    &format!("No cluster found for name: {c}."),
                );
            };
            let current = state
                .lock()
                .unwrap()
                .versions
                .get(&((*c).to_owned(), None))
                .cloned()
                .unwrap_or_else(|| cur["cluster"]["version"].as_str().unwrap_or_default().to_owned());
            let wanted = input["version"].as_str().unwrap_or_default().to_owned();
            match (minor(&current), minor(&wanted)) {
                (Some(from), Some(to)) if to.0 == from.0 && to.1 == from.1 + 1 => {}
                _ => {
                    return aws_error(
                        StatusCode::BAD_REQUEST,
                        "InvalidParameterException",
                        &format!("Unsupported Kubernetes minor version update from {current} to {wanted}"),
                    );
                }
            }
            start_update(state, c, None, "VersionUpdate", wanted)
        }
        ("POST", ["clusters", c, "node-groups", ng, "update-version"]) => {
            if moto_get(http, moto, &format!("/clusters/{c}/node-groups/{ng}"), &headers).await.is_none() {
                return aws_error(
                    StatusCode::NOT_FOUND,
                    "ResourceNotFoundException",
                    &format!("No node group found for name: {ng}."),
                );
            }
            let wanted = match input["version"].as_str() {
                Some(v) => v.to_owned(),
                None => {
                    let cluster =
                        moto_get(http, moto, &format!("/clusters/{c}"), &headers).await.unwrap_or_default();
                    let st = state.lock().unwrap();
                    st.versions.get(&((*c).to_owned(), None)).cloned().unwrap_or_else(|| {
                        cluster["cluster"]["version"].as_str().unwrap_or_default().to_owned()
                    })
                }
            };
            start_update(state, c, Some(ng), "VersionUpdate", wanted)
        }
        ("GET", ["clusters", c, "updates", id]) => {
            let ng = query
                .as_deref()
                .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("nodegroupName=")))
                .map(str::to_owned);
            let mut st = state.lock().unwrap();
            let State { updates, versions, .. } = &mut *st;
            match updates.get_mut(*id) {
                Some(t) if t.cluster == *c && t.nodegroup == ng => {
                    if t.polls_left > 0 {
                        t.polls_left -= 1;
                    } else if t.update["status"] == "InProgress" {
                        t.update["status"] = json!("Successful");
                        if let Some(v) = t.sets_version.take() {
                            versions.insert((t.cluster.clone(), t.nodegroup.clone()), v);
                        }
                    }
                    answer(StatusCode::OK, &json!({ "update": t.update }))
                }
                _ => aws_error(
                    StatusCode::NOT_FOUND,
                    "ResourceNotFoundException",
                    &format!("No update found for ID: {id}."),
                ),
            }
        }
        _ => forward(method, &path, query.as_deref(), headers, body, state, http, moto, &parts).await,
    }
}

fn start_update(
    state: &Mutex<State>,
    cluster: &str,
    ng: Option<&str>,
    kind: &str,
    version: String,
) -> Response<Full<Bytes>> {
    let mut st = state.lock().unwrap();
    st.next += 1;
    let id = format!("00000000-0000-4000-8000-{:012}", st.next);
    let update = json!({
        "id": id, "status": "InProgress", "type": kind, "errors": [],
        "params": [{ "type": "Version", "value": version }],
    });
    st.updates.insert(
        id,
        Tracked {
            cluster: cluster.to_owned(),
            nodegroup: ng.map(str::to_owned),
            update: update.clone(),
            polls_left: 1,
            sets_version: Some(version),
        },
    );
    answer(StatusCode::OK, &json!({ "update": update }))
}

#[allow(clippy::too_many_arguments)]
async fn forward(
    method: hyper::Method,
    path: &str,
    query: Option<&str>,
    headers: hyper::HeaderMap,
    body: Bytes,
    state: &Mutex<State>,
    http: &reqwest::Client,
    moto: &str,
    parts: &[&str],
) -> Response<Full<Bytes>> {
    let url = match query {
        Some(q) => format!("{moto}{path}?{q}"),
        None => format!("{moto}{path}"),
    };
    let mut req = http.request(method.clone(), url).body(body);
    for (k, v) in &headers {
        if k != hyper::header::HOST && k != hyper::header::CONTENT_LENGTH {
            req = req.header(k, v);
        }
    }
    let resp = match req.send().await {
        Ok(r) => r,
        Err(e) => return aws_error(StatusCode::BAD_GATEWAY, "ServiceUnavailableException", &e.to_string()),
    };
    let status = resp.status();
    let mut out_headers = resp.headers().clone();
    let bytes = resp.bytes().await.unwrap_or_default();
    let mut body = bytes.clone();
    if status.is_success()
        && let Ok(mut v) = serde_json::from_slice::<Value>(&bytes)
    {
        let mut st = state.lock().unwrap();
        let changed = match (method.as_str(), parts) {
            ("GET", ["clusters", c]) => st
                .versions
                .get(&((*c).to_owned(), None))
                .map(|ver| v["cluster"]["version"] = json!(ver))
                .is_some(),
            ("GET", ["clusters", c, "node-groups", ng]) => st
                .versions
                .get(&((*c).to_owned(), Some((*ng).to_owned())))
                .map(|ver| v["nodegroup"]["version"] = json!(ver))
                .is_some(),
            ("POST", ["clusters", c, rest @ .., "update-config"]) => {
                if let Some(id) = v["update"]["id"].as_str() {
                    let nodegroup = match rest {
                        ["node-groups", ng] => Some((*ng).to_owned()),
                        _ => None,
                    };
                    st.updates.insert(
                        id.to_owned(),
                        Tracked {
                            cluster: (*c).to_owned(),
                            nodegroup,
                            update: v["update"].clone(),
                            polls_left: 0,
                            sets_version: None,
                        },
                    );
                }
                false
            }
            _ => false,
        };
        if changed {
            body = Bytes::from(v.to_string());
            out_headers.remove(hyper::header::CONTENT_LENGTH);
        }
    }
    let mut r = Response::builder().status(status.as_u16());
    for (k, v) in &out_headers {
        if k != hyper::header::TRANSFER_ENCODING && k != hyper::header::CONTENT_LENGTH {
            r = r.header(k, v);
        }
    }
    r.body(Full::new(body)).unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Requests are recorded with the signer's access key and the answer's status — here ones the
    /// stand-in answers itself (no moto behind it: an unknown update, a cluster it cannot find).
    #[tokio::test]
    async fn every_request_is_recorded_with_its_access_key_and_status() {
        let standin = EksUpdateStandIn::start("http://127.0.0.1:9".into()).await;
        let http = reqwest::Client::new();
        let auth = "AWS4-HMAC-SHA256 Credential=AKIABENCH/20240101/us-west-2/eks/aws4_request, \
                    SignedHeaders=host, Signature=00";
        let r = http
            .get(format!("{}/clusters/c1/updates/u1?nodegroupName=ng", standin.endpoint()))
            .header("authorization", auth)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404);
        let r = http.post(format!("{}/clusters/c2/updates", standin.endpoint())).send().await.unwrap();
        assert_eq!(r.status(), 404);
        let calls = standin.calls();
        assert_eq!(
            calls,
            [
                Call {
                    method: "GET".into(),
                    path: "/clusters/c1/updates/u1".into(),
                    access_key_id: Some("AKIABENCH".into()),
                    status: 404,
                },
                Call {
                    method: "POST".into(),
                    path: "/clusters/c2/updates".into(),
                    access_key_id: None,
                    status: 404,
                },
            ]
        );
    }
}
