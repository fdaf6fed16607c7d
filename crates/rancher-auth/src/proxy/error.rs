//! The proxy's own failures and how each becomes a Kubernetes `Status` response. Layers return
//! [`ProxyError`]; only [`crate::proxy::stack`] turns it into a response, through [`ProxyError::into_response`].

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, combinators::UnsyncBoxBody};
use rancher_core::Status;

use super::authenticate::AuthError;
use super::browser::BrowserRefusal;
use super::cluster::Denied;
use super::upstream::ResolveError;

/// A boxed error, as tower and hyper pass them around.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body of requests and responses inside the proxy stack: any body, boxed, streamed frame by
/// frame and never buffered.
pub struct ProxyBody(UnsyncBoxBody<Bytes, BoxError>);

/// Boxes any body into a [`ProxyBody`].
pub fn boxed<B>(body: B) -> ProxyBody
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    ProxyBody(body.map_err(Into::into).boxed_unsync())
}

impl ProxyBody {
    /// An empty body.
    pub fn empty() -> Self {
        boxed(http_body_util::Empty::new().map_err(|e: std::convert::Infallible| match e {}))
    }
}

impl http_body::Body for ProxyBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, BoxError>>> {
        std::pin::Pin::new(&mut self.0).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.0.size_hint()
    }
}

impl std::fmt::Debug for ProxyBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ProxyBody")
    }
}

/// Why the proxy itself refused or failed a request (downstream answers are never turned into this).
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// A browser session (the `R_SESS` cookie) from another origin or without its CSRF token (403).
    #[error("{0}")]
    BrowserRefused(#[source] BrowserRefusal),
    /// The request's credentials were missing or not accepted (401).
    #[error("authentication failed: {0}")]
    Unauthenticated(#[source] AuthError),
    /// The path is not `/k8s/clusters/<valid id>/…` (404).
    #[error("not found: {0}")]
    NotRouted(String),
    /// The user may not reach this cluster, or it does not exist (403 / 404).
    #[error("cluster {cluster}: {source}")]
    AccessDenied {
        /// The cluster asked for.
        cluster: String,
        /// Why.
        #[source]
        source: Denied,
    },
    /// The authenticated identity cannot be sent as `Impersonate-*` headers (500).
    #[error("user {user} cannot be impersonated: {reason}")]
    Impersonation {
        /// The user id.
        user: String,
        /// Which value was not a valid header.
        reason: String,
    },
    /// No way to reach the cluster's API server: no agent session, unknown cluster, bad upstream (503/404).
    #[error("cluster {cluster}: {source}")]
    Resolve {
        /// The cluster asked for.
        cluster: String,
        /// Why.
        #[source]
        source: ResolveError,
    },
    /// The cluster's API server could not be reached, or a read's exchange broke off even when
    /// sent again (503).
    #[error("cluster {cluster} is unreachable: {source}")]
    Upstream {
        /// The cluster asked for.
        cluster: String,
        /// The transport error.
        #[source]
        source: BoxError,
    },
    /// A write (or an upgrade) reached the way to the cluster's API server and the exchange broke
    /// off before an answer: whether it was carried out is unknown, as when a client's own
    /// connection breaks (502).
    #[error(
        "cluster {cluster}: the connection to its API server broke before it answered, so the request \
         may or may not have been carried out: {source}"
    )]
    BrokeOff {
        /// The cluster asked for.
        cluster: String,
        /// The transport error.
        #[source]
        source: BoxError,
    },
    /// The stack was composed wrongly (a layer's input is missing); a bug, not a client error (500).
    #[error("proxy misconfigured: {0}")]
    Internal(&'static str),
}

impl ProxyError {
    /// The Kubernetes `Status` reported to the client. Messages never include credentials.
    pub fn status(&self) -> Status {
        match self {
            ProxyError::Unauthenticated(AuthError::Backend(_)) => {
                Status::internal("authentication is unavailable; try again")
            }
            ProxyError::Unauthenticated(e) => Status::unauthorized(format!("Unauthorized: {e}")),
            ProxyError::BrowserRefused(e) => Status::forbidden(e.to_string()),
            ProxyError::NotRouted(m) => Status::not_found(m.clone()),
            ProxyError::AccessDenied { source: Denied::NotFound, cluster } => {
                Status::not_found(format!("cluster {cluster} not found"))
            }
            ProxyError::AccessDenied { source: e @ Denied::Forbidden(_), cluster } => {
                Status::forbidden(format!("cluster {cluster}: {e}"))
            }
            ProxyError::Resolve { source: ResolveError::UnknownCluster, cluster } => {
                Status::not_found(format!("cluster {cluster} not found"))
            }
            ProxyError::Resolve { .. } | ProxyError::Upstream { .. } => Status::unavailable(self.to_string()),
            ProxyError::BrokeOff { .. } => Status::bad_gateway(self.to_string()),
            ProxyError::Impersonation { .. } | ProxyError::Internal(_) => Status::internal(self.to_string()),
        }
    }

    /// Renders the error as a `Status` JSON response with the matching HTTP code.
    pub fn into_response(self) -> Response<ProxyBody> {
        status_response(&self.status())
    }
}

/// A `Status` as an HTTP response.
pub fn status_response(status: &Status) -> Response<ProxyBody> {
    let body = serde_json::to_vec(status).unwrap_or_else(|_| b"{}".to_vec());
    let mut resp = Response::new(boxed(Full::new(Bytes::from(body))));
    *resp.status_mut() = StatusCode::from_u16(status.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}
