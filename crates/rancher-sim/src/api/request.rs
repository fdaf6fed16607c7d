//! Parsing a resource path (`/apis/apps/v1/namespaces/default/deployments/web/scale`) and the verb.

use http::{Method, Request};
use hyper::body::Incoming;

use crate::http_util::Query;
use crate::resources::{self, ResourceDef};
use crate::state::SimState;
use crate::status::ApiError;

/// A request for a resource, its namespace, name, subresource and RBAC verb.
#[derive(Debug, Clone)]
pub(crate) struct ResourceRequest {
    pub(crate) def: ResourceDef,
    pub(crate) namespace: String,
    pub(crate) name: String,
    pub(crate) subresource: String,
    pub(crate) verb: String,
    pub(crate) query: Query,
    /// Unknown and duplicate fields found while decoding the body, and the warnings they produce.
    pub(crate) findings: std::sync::Arc<crate::field_validation::Findings>,
    /// The body is a server-side apply patch (its errors are worded as schema errors).
    pub(crate) apply: bool,
}

pub(crate) fn parse(
    state: &SimState,
    req: &Request<Incoming>,
    segs: &[&str],
) -> Result<ResourceRequest, ApiError> {
    let (group, version, rest) = match segs {
        ["api", v, rest @ ..] => ("", *v, rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => return Err(ApiError::path_not_found()),
    };
    let (namespace, rest) = match rest {
        ["namespaces", ns, r, tail @ ..] if !(tail.is_empty() && matches!(*r, "status" | "finalize")) => {
            (ns.to_string(), &rest[2..])
        }
        _ => (String::new(), rest),
    };
    let (plural, name, sub) = match rest {
        [p] => (*p, "", ""),
        [p, n] => (*p, *n, ""),
        [p, n, s] => (*p, *n, *s),
        _ => return Err(ApiError::path_not_found()),
    };
    let def = resources::lookup(&state.store, group, version, plural).ok_or_else(ApiError::path_not_found)?;
    if !sub.is_empty() && !def.subresources.contains(&sub) {
        return Err(ApiError::path_not_found());
    }
    if def.namespaced && namespace.is_empty() && !name.is_empty() {
        return Err(ApiError::path_not_found());
    }
    if !def.namespaced && !namespace.is_empty() {
        return Err(ApiError::path_not_found());
    }
    let query = Query::parse(req.uri().query());
    let verb = match (req.method(), name.is_empty(), sub) {
        (_, false, "exec" | "attach" | "portforward") => "create",
        (&Method::GET | &Method::HEAD, true, _) if query.flag("watch") => "watch",
        (&Method::GET | &Method::HEAD, false, _) if query.flag("watch") => "watch",
        (&Method::GET | &Method::HEAD, true, _) => "list",
        (&Method::GET | &Method::HEAD, false, _) => "get",
        (&Method::POST, _, _) => "create",
        (&Method::PUT, false, _) => "update",
        (&Method::PATCH, false, _) => "patch",
        (&Method::DELETE, false, _) => "delete",
        (&Method::DELETE, true, _) => "deletecollection",
        (m, _, _) => return Err(ApiError::method_not_allowed(m.as_str(), &def.plural)),
    };
    if verb == "create" && !name.is_empty() && sub.is_empty() {
        return Err(ApiError::method_not_allowed("POST", &def.plural));
    }
    if def.verbs == resources::Verbs::CreateOnly && verb != "create" {
        return Err(ApiError::method_not_allowed(req.method().as_str(), &def.plural));
    }
    Ok(ResourceRequest {
        def,
        namespace,
        name: name.to_string(),
        subresource: sub.to_string(),
        verb: verb.to_string(),
        query,
        findings: Default::default(),
        apply: false,
    })
}
