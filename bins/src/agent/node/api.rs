//! The plan API, served in-process on tunnel streams (network `local`, name
//! [`PLAN_SERVICE`](rancher_provision::plan::PLAN_SERVICE)) over HTTP/1.1:
//!
//! * `PUT /v1/plan` — a JSON [`NodePlan`] (at most `MAX_PLAN_BYTES`): `202` once checked; it is
//!   applied in the background and a newer plan supersedes one not yet applied. `400` on bad JSON,
//!   `413` when too large, `422` when the plan is refused (a path outside the allowed roots…), with
//!   the reason in the body and in the status's `error`.
//! * `GET /v1/status` — the [`NodeStatus`](rancher_provision::plan::NodeStatus) as JSON.
//!
//! The wire contract is [`crate::protocol::node_plan`].

use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::{TokioIo, TokioTimer};
use rancher_provision::plan::NodePlan;
use rancher_tunnel::{LocalService, TunnelStream};
use tokio::sync::watch;
use tracing::{debug, info, warn};

use super::supervisor::Shared;
use super::validate;
use crate::protocol::node_plan::{MAX_PLAN_BYTES, PLAN_PATH, STATUS_PATH};

/// How long the server may take to send a request's head.
const HEADER_TIMEOUT: Duration = Duration::from_secs(30);

/// The plan API of one node agent.
pub(crate) struct PlanApi {
    pub(crate) shared: Arc<Shared>,
    pub(crate) plans: watch::Sender<Option<NodePlan>>,
    pub(crate) roots: Arc<[PathBuf]>,
}

#[async_trait::async_trait]
impl LocalService for PlanApi {
    async fn serve(&self, stream: TunnelStream) {
        self.serve_io(stream).await;
    }
}

impl PlanApi {
    /// Serves HTTP/1.1 on one byte stream until the peer closes it.
    async fn serve_io<I>(&self, io: I)
    where
        I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send,
    {
        let service = hyper::service::service_fn(|req| {
            let answer = self.handle(req);
            async move { Ok::<_, Infallible>(answer.await) }
        });
        let conn = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(HEADER_TIMEOUT)
            .serve_connection(TokioIo::new(io), service);
        if let Err(e) = conn.await {
            debug!(error = %e, "plan API connection ended with an error");
        }
    }
}

fn answer(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(body.into()));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_str(content_type)
            .unwrap_or(http::HeaderValue::from_static("application/octet-stream")),
    );
    resp
}

fn text(status: StatusCode, msg: impl Into<String>) -> Response<Full<Bytes>> {
    answer(status, "text/plain; charset=utf-8", msg.into())
}

impl PlanApi {
    async fn handle(&self, req: Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
        match (req.method().clone(), req.uri().path()) {
            (Method::GET, STATUS_PATH) => match serde_json::to_vec(&self.shared.snapshot()) {
                Ok(body) => answer(StatusCode::OK, "application/json", body),
                Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, format!("encoding the status: {e}")),
            },
            (Method::PUT, PLAN_PATH) => self.put_plan(req).await,
            (_, STATUS_PATH | PLAN_PATH) => text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed"),
            (_, path) => text(StatusCode::NOT_FOUND, format!("no such path {path:?}")),
        }
    }

    async fn put_plan(&self, req: Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
        let body = match Limited::new(req.into_body(), MAX_PLAN_BYTES).collect().await {
            Ok(b) => b.to_bytes(),
            Err(e) if e.is::<http_body_util::LengthLimitError>() => {
                return text(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("a plan is at most {MAX_PLAN_BYTES} bytes"),
                );
            }
            Err(e) => return text(StatusCode::BAD_REQUEST, format!("reading the plan: {e}")),
        };
        // Off the tunnel's thread: a plan may be megabytes, and the session's other streams wait
        // for nothing it does.
        let parsed = tokio::task::spawn_blocking(move || serde_json::from_slice::<NodePlan>(&body)).await;
        let plan = match parsed {
            Ok(Ok(p)) => p,
            Ok(Err(e)) => return text(StatusCode::BAD_REQUEST, format!("the plan is not a NodePlan: {e}")),
            Err(e) => return text(StatusCode::INTERNAL_SERVER_ERROR, format!("reading the plan: {e}")),
        };
        if let Err(e) = validate::check(&plan, &self.roots) {
            let msg = e.to_string();
            warn!(revision = %plan.revision, error = %msg, "refused a plan");
            self.shared.update(|s| s.error = Some(msg.clone()));
            return text(StatusCode::UNPROCESSABLE_ENTITY, msg);
        }
        info!(revision = %plan.revision, files = plan.files.len(), processes = plan.processes.len(), "plan received");
        let revision = plan.revision.clone();
        self.plans.send_replace(Some(plan));
        let body = serde_json::json!({ "revision": revision }).to_string();
        answer(StatusCode::ACCEPTED, "application/json", body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Harness {
        api: Arc<PlanApi>,
        plans: watch::Receiver<Option<NodePlan>>,
    }

    fn harness() -> Harness {
        let (plans, rx) = watch::channel(None);
        let api = PlanApi { shared: Arc::default(), plans, roots: vec![PathBuf::from("/srv")].into() };
        Harness { api: Arc::new(api), plans: rx }
    }

    /// One request over an in-memory stream; the answer's status and body.
    async fn call(api: &Arc<PlanApi>, method: Method, path: &str, body: Vec<u8>) -> (StatusCode, String) {
        let (client, server) = tokio::io::duplex(64 * 1024);
        let api = api.clone();
        let serving = tokio::spawn(async move { api.serve_io(server).await });
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(client)).await.unwrap();
        tokio::spawn(conn);
        let req = Request::builder().method(method).uri(path).body(Full::new(Bytes::from(body))).unwrap();
        let resp = send.send_request(req).await.unwrap();
        let status = resp.status();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        drop(send);
        serving.abort();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn a_checked_plan_is_accepted_and_handed_to_the_supervisor() {
        let mut h = harness();
        let plan = NodePlan { revision: "r1".into(), ..Default::default() };
        let (status, body) = call(&h.api, Method::PUT, PLAN_PATH, serde_json::to_vec(&plan).unwrap()).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        assert!(h.plans.has_changed().unwrap());
        assert_eq!(h.plans.borrow_and_update().as_ref().map(|p| p.revision.as_str()), Some("r1"));
        let (status, body) = call(&h.api, Method::GET, STATUS_PATH, Vec::new()).await;
        assert_eq!(status, StatusCode::OK);
        let st: rancher_provision::plan::NodeStatus = serde_json::from_str(&body).unwrap();
        assert_eq!(st.error, None);
    }

    #[tokio::test]
    async fn bad_plans_get_clear_answers_and_never_reach_the_supervisor() {
        let h = harness();
        let (status, body) = call(&h.api, Method::PUT, PLAN_PATH, b"{".to_vec()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert!(body.contains("not a NodePlan"), "{body}");
        let outside = serde_json::json!({
            "revision": "r2",
            "files": [{"path": "/etc/shadow", "content": "", "mode": 384}],
        });
        let (status, body) = call(&h.api, Method::PUT, PLAN_PATH, outside.to_string().into_bytes()).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert!(body.contains("\"/etc/shadow\" lies outside"), "{body}");
        assert!(h.api.shared.snapshot().error.unwrap().contains("/etc/shadow"));
        let huge = vec![b' '; MAX_PLAN_BYTES + 1];
        let (status, _) = call(&h.api, Method::PUT, PLAN_PATH, huge).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        assert!(!h.plans.has_changed().unwrap(), "no plan was handed on");
        assert_eq!(call(&h.api, Method::GET, "/v1/other", Vec::new()).await.0, StatusCode::NOT_FOUND);
        assert_eq!(
            call(&h.api, Method::POST, STATUS_PATH, Vec::new()).await.0,
            StatusCode::METHOD_NOT_ALLOWED
        );
    }
}
