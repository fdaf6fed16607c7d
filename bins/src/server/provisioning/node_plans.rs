//! The server's client of a node agent's plan API ([`crate::protocol::node_plan`]): HTTP/1.1 over a
//! tunnel stream to the node agent's in-process plan service, found by the session key
//! `<cluster>:<node>`. Every call has a deadline and reads at most
//! [`MAX_STATUS_BYTES`](crate::protocol::node_plan::MAX_STATUS_BYTES) of answer.

use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use rancher_provision::plan::{NodePlan, NodeStatus, PLAN_SERVICE};
use rancher_tunnel::{LOCAL_NETWORK, TunnelServer};
use tokio_util::task::AbortOnDropHandle;

use crate::protocol::node_plan::{MAX_PLAN_BYTES, MAX_STATUS_BYTES, PLAN_PATH, STATUS_PATH};

/// How long opening the stream to the plan service may take.
const DIAL_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one request may take once the stream is open.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a call to a node agent's plan API failed.
#[derive(Debug, thiserror::Error)]
pub enum NodePlanError {
    /// No stream to the node agent's plan service: no session, or the agent refused (an agent
    /// without the plan service: a cluster agent, or an old node agent).
    #[error("node {client_key}: opening the plan service: {source}")]
    Dial {
        /// The node agent's session key.
        client_key: String,
        /// The tunnel's error.
        #[source]
        source: rancher_tunnel::Error,
    },
    /// The HTTP exchange failed.
    #[error("node {client_key}: the plan API: {source}")]
    Http {
        /// The node agent's session key.
        client_key: String,
        /// hyper's error.
        #[source]
        source: hyper::Error,
    },
    /// No complete answer in time.
    #[error("node {client_key}: the plan API did not answer within {timeout:?}")]
    Timeout {
        /// The node agent's session key.
        client_key: String,
        /// The deadline.
        timeout: Duration,
    },
    /// The node agent refused the plan (`422`: a path outside its allowed roots, …; `400`; `413`).
    #[error("node {client_key}: the node agent refused the plan ({status}): {message}")]
    Refused {
        /// The node agent's session key.
        client_key: String,
        /// The HTTP status.
        status: u16,
        /// The node agent's reason.
        message: String,
    },
    /// An answer this client does not expect, or larger than it reads.
    #[error("node {client_key}: unexpected answer from the plan API: {message}")]
    Unexpected {
        /// The node agent's session key.
        client_key: String,
        /// What was wrong.
        message: String,
    },
    /// The plan is larger than a node agent accepts.
    #[error("the plan is {size} bytes; a node agent accepts at most {MAX_PLAN_BYTES}")]
    PlanTooLarge {
        /// Its encoded size.
        size: usize,
    },
}

/// Sends `plan` to the node agent of session `client_key` (`<cluster>:<node>`). `Ok` means the node
/// agent accepted it; it applies it in the background: follow [`node_status`] until
/// `applied_revision` is the plan's revision.
///
/// # Errors
/// [`NodePlanError`]: no session, a refusal naming the offending path, a timeout.
pub async fn send_plan(
    tunnel: &TunnelServer,
    client_key: &str,
    plan: &NodePlan,
) -> Result<(), NodePlanError> {
    let body =
        serde_json::to_vec(plan).map_err(|e| unexpected(client_key, format!("encoding the plan: {e}")))?;
    if body.len() > MAX_PLAN_BYTES {
        return Err(NodePlanError::PlanTooLarge { size: body.len() });
    }
    let (status, text) = call(tunnel, client_key, Method::PUT, PLAN_PATH, Some(body)).await?;
    match status {
        StatusCode::ACCEPTED | StatusCode::OK => Ok(()),
        s if s.is_client_error() => Err(NodePlanError::Refused {
            client_key: client_key.to_owned(),
            status: s.as_u16(),
            message: String::from_utf8_lossy(&text).trim().to_owned(),
        }),
        s => Err(unexpected(client_key, format!("PUT {PLAN_PATH} answered {s}"))),
    }
}

/// The status the node agent of session `client_key` reports now.
///
/// # Errors
/// [`NodePlanError`]: no session, a timeout, an answer that is not a `NodeStatus`.
pub async fn node_status(tunnel: &TunnelServer, client_key: &str) -> Result<NodeStatus, NodePlanError> {
    let (status, body) = call(tunnel, client_key, Method::GET, STATUS_PATH, None).await?;
    if status != StatusCode::OK {
        return Err(unexpected(client_key, format!("GET {STATUS_PATH} answered {status}")));
    }
    serde_json::from_slice(&body)
        .map_err(|e| unexpected(client_key, format!("the status is not a NodeStatus: {e}")))
}

fn unexpected(client_key: &str, message: String) -> NodePlanError {
    NodePlanError::Unexpected { client_key: client_key.to_owned(), message }
}

async fn call(
    tunnel: &TunnelServer,
    client_key: &str,
    method: Method,
    path: &str,
    body: Option<Vec<u8>>,
) -> Result<(StatusCode, Bytes), NodePlanError> {
    let key = client_key.to_owned();
    let stream = match tokio::time::timeout(
        DIAL_TIMEOUT,
        tunnel.dial(client_key, LOCAL_NETWORK, PLAN_SERVICE),
    )
    .await
    {
        Ok(Ok(s)) => s,
        Ok(Err(source)) => return Err(NodePlanError::Dial { client_key: key, source }),
        Err(_) => return Err(NodePlanError::Timeout { client_key: key, timeout: DIAL_TIMEOUT }),
    };
    let exchange = async {
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        // The connection's task lives only as long as this exchange (aborted with it on a timeout).
        let _conn = AbortOnDropHandle::new(tokio::spawn(async move {
            let _ = conn.await;
        }));
        let mut req = Request::builder().method(method).uri(path).header(header::HOST, PLAN_SERVICE);
        if body.is_some() {
            req = req.header(header::CONTENT_TYPE, "application/json");
        }
        let req = req.body(Full::new(Bytes::from(body.unwrap_or_default()))).expect("a valid request");
        let resp = sender.send_request(req).await?;
        let status = resp.status();
        Ok::<_, hyper::Error>((status, Limited::new(resp.into_body(), MAX_STATUS_BYTES).collect().await))
    };
    match tokio::time::timeout(REQUEST_TIMEOUT, exchange).await {
        Err(_) => Err(NodePlanError::Timeout { client_key: key, timeout: REQUEST_TIMEOUT }),
        Ok(Err(source)) => Err(NodePlanError::Http { client_key: key, source }),
        Ok(Ok((status, Ok(collected)))) => Ok((status, collected.to_bytes())),
        Ok(Ok((_, Err(e)))) => Err(unexpected(client_key, format!("reading the answer: {e}"))),
    }
}
