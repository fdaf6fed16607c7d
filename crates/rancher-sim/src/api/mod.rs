//! Request routing: authenticate, impersonate, authorise, then hand the request to discovery,
//! OpenAPI, the CRUD handlers, or a subresource handler.

mod crud;
mod list;
mod request;
mod subresources;
mod watch;

use std::sync::Arc;

use http::{Method, Request, Response};
use hyper::body::Incoming;

use crate::authn::{self, UserInfo};
use crate::http_util::{Body, error_response, negotiate};
use crate::rbac::{self, Attributes};
use crate::resources::Verbs;
use crate::state::SimState;
use crate::status::ApiError;

pub(crate) use request::ResourceRequest;

/// Handles one HTTP request and always produces a response (errors become `Status` objects).
pub(crate) async fn handle(
    state: Arc<SimState>,
    req: Request<Incoming>,
    identity: Option<Arc<(String, Vec<String>)>>,
) -> Response<Body> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let r = route(&state, req, identity.as_deref()).await;
    match r {
        Ok(resp) => {
            tracing::debug!(%method, %path, status = resp.status().as_u16(), "request");
            resp
        }
        Err(e) => {
            tracing::debug!(%method, %path, status = e.code, reason = e.reason, "request failed");
            error_response(&e)
        }
    }
}

fn forbid(user: &UserInfo, a: &Attributes) -> ApiError {
    let details = if a.path.is_some() {
        serde_json::json!({})
    } else {
        let mut d = serde_json::json!({"kind": a.resource});
        if !a.name.is_empty() {
            d["name"] = a.name.clone().into();
        }
        if !a.group.is_empty() {
            d["group"] = a.group.clone().into();
        }
        d
    };
    ApiError::forbidden(rbac::forbidden_message(user, a), details)
}

/// Checks RBAC for `a`, returning the Forbidden status the API server would.
pub(crate) fn authorize(state: &SimState, user: &UserInfo, a: &Attributes) -> Result<(), ApiError> {
    if rbac::authorize(&state.store, user, a).allowed { Ok(()) } else { Err(forbid(user, a)) }
}

async fn route(
    state: &Arc<SimState>,
    req: Request<Incoming>,
    identity: Option<&(String, Vec<String>)>,
) -> Result<Response<Body>, ApiError> {
    let caller = authn::authenticate(state, req.headers(), identity).await?;
    let user = authn::impersonate(state, caller, req.headers())?;
    let path = req.uri().path().to_string();
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let non_resource = matches!(
        segs.as_slice(),
        [] | ["version"]
            | ["healthz" | "livez" | "readyz", ..]
            | ["api"]
            | ["api", _]
            | ["apis"]
            | ["apis", _]
            | ["apis", _, _]
            | ["openapi", ..]
            | ["metrics"]
    );
    if non_resource {
        let verb = if req.method() == Method::GET || req.method() == Method::HEAD { "get" } else { "post" };
        authorize(state, &user, &Attributes::non_resource(verb, &path))?;
        return crate::discovery::serve(state, &req, &segs);
    }
    let rr = request::parse(state, &req, &segs)?;
    let mut attrs = Attributes::resource(&rr.verb, &rr.def.group, &rr.def.plural, &rr.namespace, &rr.name);
    attrs.subresource = rr.subresource.clone();
    if rr.def.verbs == Verbs::CreateOnly {
        // Reviews are answered for whoever asks (system:basic-user grants the self reviews).
        authorize(state, &user, &attrs)?;
        let content_type = req
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("application/json")
            .to_string();
        let body = crate::http_util::read_body(req.into_body()).await?;
        return crate::reviews::handle(state, &user, &rr, &body, &content_type).await;
    }
    authorize(state, &user, &attrs)?;
    let wants = match rr.subresource.as_str() {
        "log" | "exec" | "attach" | "portforward" => crate::http_util::Wants::Json,
        _ => negotiate(req.headers().get(http::header::ACCEPT).and_then(|v| v.to_str().ok()))?,
    };
    let findings = rr.findings.clone();
    let mut resp = match rr.subresource.as_str() {
        "" => crud::dispatch(state, &user, rr, req, wants).await,
        _ => subresources::dispatch(state, &user, rr, req, wants).await,
    }?;
    for w in findings.warnings() {
        // The API server's warning format: `299 - "<text>"`, quotes and backslashes escaped.
        let text = w.replace('\\', "\\\\").replace('"', "\\\"");
        if let Ok(v) = http::HeaderValue::from_str(&format!("299 - \"{text}\"")) {
            resp.headers_mut().append(http::header::WARNING, v);
        }
    }
    Ok(resp)
}
