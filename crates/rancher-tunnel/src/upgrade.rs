//! The `/v3/connect` handler: checks the WebSocket upgrade request, asks the embedding
//! server's [`Authorizer`] which client the agent is, answers 101 and starts the session.

use async_trait::async_trait;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tracing::{info, warn};

use crate::server::TunnelServer;

/// The path agents connect to.
pub const CONNECT_PATH: &str = "/v3/connect";
/// Header carrying the agent's token (Rancher: the cluster registration token).
pub const TOKEN_HEADER: &str = "X-API-Tunnel-Token";
/// Header carrying the agent's parameters (Rancher: base64 JSON naming the cluster/node).
pub const PARAMS_HEADER: &str = "X-API-Tunnel-Params";
/// Longest client key accepted from an authorizer.
const MAX_CLIENT_KEY_LEN: usize = 256;

/// Why an [`Authorizer`] refused an agent. The reason is logged by the server and sent in the
/// 401 body; never put the token in it.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct Rejection(pub String);

/// Decides from the upgrade request's headers which client key a session belongs to.
///
/// Implemented for closures `Fn(&HeaderMap) -> Result<String, Rejection>`:
///
/// ```
/// use rancher_tunnel::{Authorizer, Rejection, TOKEN_HEADER};
/// let authz = |h: &http::HeaderMap| match h.get(TOKEN_HEADER) {
///     Some(v) if v == "secret" => Ok("c-abc12".to_string()),
///     _ => Err(Rejection("unknown token".into())),
/// };
/// let _: &dyn Authorizer = &authz;
/// ```
#[async_trait]
pub trait Authorizer: Send + Sync {
    /// The client key for this agent, or why it is refused (answered with 401).
    async fn authorize(&self, headers: &HeaderMap) -> Result<String, Rejection>;
}

#[async_trait]
impl<F> Authorizer for F
where
    F: Fn(&HeaderMap) -> Result<String, Rejection> + Send + Sync,
{
    async fn authorize(&self, headers: &HeaderMap) -> Result<String, Rejection> {
        self(headers)
    }
}

/// A Kubernetes `Status` failure body.
pub(crate) fn status_response(code: StatusCode, reason: &str, message: &str) -> Response<Full<Bytes>> {
    let body = serde_json::json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code.as_u16(),
    });
    let mut resp = Response::new(Full::new(Bytes::from(body.to_string())));
    *resp.status_mut() = code;
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

fn header_has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

impl TunnelServer {
    /// Handles an agent's `GET /v3/connect`: validates the WebSocket upgrade, authorizes it and
    /// answers `101 Switching Protocols`; the session starts once hyper hands over the
    /// connection. Mount it in any hyper or axum router (the request must come from a
    /// connection served `with_upgrades()`); in axum, map the body with `axum::body::Body::new`.
    ///
    /// Answers 405 for other methods, 400 for a malformed upgrade, 401 when `authorizer`
    /// refuses; each with a Kubernetes `Status` JSON body.
    pub async fn accept_upgrade<B>(
        &self,
        mut req: Request<B>,
        authorizer: &dyn Authorizer,
    ) -> Response<Full<Bytes>>
    where
        B: Send + 'static,
    {
        if req.method() != Method::GET {
            return status_response(
                StatusCode::METHOD_NOT_ALLOWED,
                "MethodNotAllowed",
                "use GET with a WebSocket upgrade",
            );
        }
        let headers = req.headers();
        let ws_key = headers.get(header::SEC_WEBSOCKET_KEY).cloned();
        let valid = header_has_token(headers, header::CONNECTION, "upgrade")
            && header_has_token(headers, header::UPGRADE, "websocket")
            && headers.get(header::SEC_WEBSOCKET_VERSION).is_some_and(|v| v == "13");
        let Some(ws_key) = ws_key.filter(|_| valid) else {
            return status_response(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                "expected a WebSocket upgrade (Connection: Upgrade, Upgrade: websocket, Sec-WebSocket-Version: 13, Sec-WebSocket-Key)",
            );
        };
        let client_key = match authorizer.authorize(headers).await {
            Ok(k) if !k.is_empty() && k.len() <= MAX_CLIENT_KEY_LEN => k,
            Ok(_) => {
                warn!("tunnel connect refused: authorizer returned an empty or over-long client key");
                return status_response(StatusCode::UNAUTHORIZED, "Unauthorized", "failed authentication");
            }
            Err(rejection) => {
                warn!(reason = %rejection, "tunnel connect refused");
                return status_response(
                    StatusCode::UNAUTHORIZED,
                    "Unauthorized",
                    &format!("failed authentication: {rejection}"),
                );
            }
        };
        let on_upgrade = hyper::upgrade::on(&mut req);
        let this = self.clone();
        self.spawn_tracked(async move {
            match on_upgrade.await {
                Ok(upgraded) => match this.transport().accept(Box::new(TokioIo::new(upgraded))).await {
                    Ok(io) => {
                        this.serve_session(client_key, io);
                    }
                    Err(e) => warn!(client_key, error = %e, "tunnel transport accept failed"),
                },
                Err(e) => info!(client_key, error = %e, "tunnel upgrade did not complete"),
            }
        });
        let mut resp = Response::new(Full::new(Bytes::new()));
        *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let h = resp.headers_mut();
        h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        if let Ok(v) = HeaderValue::from_str(&derive_accept_key(ws_key.as_bytes())) {
            h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
        }
        resp
    }
}
