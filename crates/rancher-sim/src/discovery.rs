//! Non-resource endpoints: `/version`, health checks, and API discovery (`/api`, `/apis`,
//! per-group and per-version resource lists). Plain JSON discovery only: clients asking for the
//! aggregated form get the legacy documents and fall back, as they do with older servers.

use std::collections::BTreeMap;

use http::{Request, Response};
use hyper::body::Incoming;
use serde_json::{Value, json};

use crate::http_util::{Body, json_response, negotiate, text_response};
use crate::resources::{self, ResourceDef};
use crate::state::SimState;
use crate::status::ApiError;

pub(crate) fn serve(
    state: &SimState,
    req: &Request<Incoming>,
    segs: &[&str],
) -> Result<Response<Body>, ApiError> {
    let accept = req.headers().get(http::header::ACCEPT).and_then(|v| v.to_str().ok());
    match segs {
        ["healthz" | "livez" | "readyz", ..] => return Ok(text_response(200, "ok")),
        ["openapi", rest @ ..] => return crate::openapi::serve(state, accept, rest, req.uri().query()),
        _ => {}
    }
    negotiate(accept)?;
    let all = resources::all(&state.store);
    let doc = match segs {
        [] => {
            json!({"paths": ["/api", "/api/v1", "/apis", "/healthz", "/livez", "/openapi/v2", "/openapi/v3", "/readyz", "/version"]})
        }
        ["version"] => version(state),
        ["metrics"] => return Ok(text_response(200, "# rancher-sim serves no metrics\n")),
        ["api"] => json!({
            "kind": "APIVersions",
            "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": req.uri().authority().map(|a| a.to_string()).unwrap_or_default()}],
        }),
        ["api", "v1"] => resource_list("v1", all.iter().filter(|d| d.group.is_empty())),
        ["api", _] => return Err(ApiError::path_not_found()),
        ["apis"] => {
            json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups(&all).into_values().collect::<Vec<_>>()})
        }
        ["apis", g] => groups(&all)
            .remove(*g)
            .map(|mut v| {
                v["kind"] = json!("APIGroup");
                v["apiVersion"] = json!("v1");
                v
            })
            .ok_or_else(ApiError::path_not_found)?,
        ["apis", g, v] => {
            let defs: Vec<&ResourceDef> = all.iter().filter(|d| d.group == *g && d.version == *v).collect();
            if defs.is_empty() {
                return Err(ApiError::path_not_found());
            }
            resource_list(&format!("{g}/{v}"), defs.into_iter())
        }
        _ => return Err(ApiError::path_not_found()),
    };
    Ok(json_response(200, &doc))
}

pub(crate) fn version(state: &SimState) -> Value {
    let v = state.config.git_version.trim_start_matches('v');
    let mut parts = v.split('.');
    json!({
        "major": parts.next().unwrap_or("1"),
        "minor": parts.next().unwrap_or("33"),
        "gitVersion": state.config.git_version,
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2025-05-15T00:00:00Z",
        "goVersion": "go1.24.2",
        "compiler": "gc",
        "platform": "linux/amd64",
    })
}

fn groups(all: &[ResourceDef]) -> BTreeMap<String, Value> {
    let mut out: BTreeMap<String, Value> = BTreeMap::new();
    for d in all.iter().filter(|d| !d.group.is_empty()) {
        let e = out.entry(d.group.clone()).or_insert_with(|| {
            json!({"name": d.group, "versions": [], "preferredVersion": {"groupVersion": d.api_version(), "version": d.version}})
        });
        let versions = e["versions"].as_array_mut().expect("array");
        if !versions.iter().any(|v| v["version"] == d.version.as_str()) {
            versions.push(json!({"groupVersion": d.api_version(), "version": d.version}));
        }
    }
    out
}

fn sub_kind(d: &ResourceDef, sub: &str) -> (Value, Vec<&'static str>) {
    let (kind, group, version, verbs): (&str, &str, &str, Vec<&str>) = match sub {
        "status" => (&d.kind, "", "", vec!["get", "patch", "update"]),
        "scale" => ("Scale", "autoscaling", "v1", vec!["get", "patch", "update"]),
        "log" => ("Pod", "", "", vec!["get"]),
        "exec" => ("PodExecOptions", "", "", vec!["create", "get"]),
        "attach" => ("PodAttachOptions", "", "", vec!["create", "get"]),
        "portforward" => ("PodPortForwardOptions", "", "", vec!["create", "get"]),
        "binding" => ("Binding", "", "", vec!["create"]),
        "token" => ("TokenRequest", "authentication.k8s.io", "v1", vec!["create"]),
        "finalize" => ("Namespace", "", "", vec!["update"]),
        _ => (&d.kind, "", "", vec!["get"]),
    };
    let mut v = json!({"name": format!("{}/{sub}", d.plural), "singularName": "", "namespaced": d.namespaced, "kind": kind, "verbs": verbs});
    if !group.is_empty() {
        v["group"] = json!(group);
        v["version"] = json!(version);
    }
    (v, verbs)
}

fn resource_list<'a>(group_version: &str, defs: impl Iterator<Item = &'a ResourceDef>) -> Value {
    let mut resources = vec![];
    for d in defs {
        let mut v = json!({
            "name": d.plural,
            "singularName": d.singular,
            "namespaced": d.namespaced,
            "kind": d.kind,
            "verbs": d.verb_names(),
        });
        if !d.short_names.is_empty() {
            v["shortNames"] = json!(d.short_names);
        }
        if !d.categories.is_empty() {
            v["categories"] = json!(d.categories);
        }
        resources.push(v);
        for s in &d.subresources {
            resources.push(sub_kind(d, s).0);
        }
    }
    json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": resources})
}
