//! Subresources: status, scale, binding, finalize, serviceaccounts/token, pods/log, and the streaming
//! exec/attach/portforward upgrades.

use std::sync::Arc;

use http::{Request, Response};
use hyper::body::Incoming;
use serde_json::{Value, json};

use super::ResourceRequest;
use super::crud::{patch_object, store_error, update, update_object};
use crate::authn::UserInfo;
use crate::http_util::{Body, Wants, json_response, parse_object, read_body};
use crate::state::SimState;
use crate::status::ApiError;
use crate::{meta, table};

pub(super) async fn dispatch(
    state: &Arc<SimState>,
    _user: &UserInfo,
    rr: ResourceRequest,
    req: Request<Incoming>,
    wants: Wants,
) -> Result<Response<Body>, ApiError> {
    let content_type = req
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json")
        .to_string();
    match (rr.subresource.as_str(), rr.verb.as_str()) {
        ("exec" | "attach", _) => crate::exec::handle(state, rr, req).await,
        ("portforward", _) => crate::portforward::handle(state, rr, req).await,
        ("log", "get") => crate::logs::handle(state, &rr),
        ("status", "get") => {
            let obj = get(state, &rr)?;
            if wants == Wants::Table {
                let rv = meta::resource_version(&obj).to_string();
                return Ok(json_response(200, &table::render(&rr.def, &[Arc::new(obj)], &rv, None, true)));
            }
            Ok(json_response(200, &obj))
        }
        ("status", "update") => {
            let body = read_body(req.into_body()).await?;
            update(state, &rr, parse_object(&body, &content_type)?, true)
        }
        ("status", "patch") => {
            let body = read_body(req.into_body()).await?;
            let (code, v) = patch_object(state, &rr, &body, &content_type, true)?;
            Ok(json_response(code, &v))
        }
        ("scale", "get") => Ok(json_response(200, &scale_of(&rr, &get(state, &rr)?))),
        ("scale", "update" | "patch") => {
            let body = read_body(req.into_body()).await?;
            let cur = scale_of(&rr, &get(state, &rr)?);
            let mut next = cur.clone();
            match rr.verb.as_str() {
                "update" => next = parse_object(&body, &content_type)?,
                _ => {
                    let p = parse_object(&body, "application/json")?;
                    match content_type.split(';').next().unwrap_or("") {
                        "application/json-patch+json" => crate::patch::json_patch(&mut next, &p)?,
                        "application/merge-patch+json" => crate::patch::merge(&mut next, &p),
                        _ => crate::patch::strategic(&mut next, &p),
                    }
                }
            }
            let replicas = next["spec"]["replicas"].as_i64().filter(|r| *r >= 0).ok_or_else(|| {
                ApiError::invalid(
                    "autoscaling",
                    "Scale",
                    &rr.name,
                    vec![crate::status::Cause::invalid(
                        "spec.replicas",
                        &next["spec"]["replicas"],
                        "must be greater than or equal to 0",
                    )],
                )
            })?;
            let mut obj = get(state, &rr)?;
            obj["spec"]["replicas"] = json!(replicas);
            let stored = update_object(state, &rr, obj, false)?;
            Ok(json_response(200, &scale_of(&rr, &stored)))
        }
        ("binding", "create") => {
            let body = read_body(req.into_body()).await?;
            let b = parse_object(&body, &content_type)?;
            let node = b["target"]["name"].as_str().unwrap_or("").to_string();
            if node.is_empty() {
                return Err(ApiError::invalid(
                    "",
                    "Binding",
                    &rr.name,
                    vec![crate::status::Cause::required("target.name")],
                ));
            }
            let r = state.store.mutate("pods", &rr.namespace, &rr.name, |p| {
                if p["spec"]["nodeName"].as_str().is_some_and(|n| !n.is_empty()) {
                    return false;
                }
                p["spec"]["nodeName"] = json!(node);
                true
            });
            match r {
                Ok(Some(_)) => Ok(json_response(201, &crate::status::success_status(None))),
                Ok(None) => Err(ApiError::new(
                    409,
                    "Conflict",
                    format!("pod {} is already assigned to a node", rr.name),
                )),
                Err(e) => Err(store_error(&rr.def, &rr.name, e)),
            }
        }
        ("finalize", "update") => {
            let body = read_body(req.into_body()).await?;
            let b = parse_object(&body, &content_type)?;
            let r = state.store.mutate("namespaces", "", &rr.name, |ns| {
                ns["spec"]["finalizers"] = b["spec"]["finalizers"].clone();
                true
            });
            match r {
                // The namespace as written: it may be gone already when nothing holds it any more.
                Ok(Some(ns)) => Ok(json_response(200, &ns)),
                Ok(None) => Ok(json_response(200, &get(state, &rr)?)),
                Err(e) => Err(store_error(&rr.def, &rr.name, e)),
            }
        }
        ("token", "create") => {
            let body = read_body(req.into_body()).await?;
            crate::reviews::token_request(state, &rr, &parse_object(&body, &content_type)?)
        }
        (sub, verb) => Err(ApiError::method_not_allowed(verb, &format!("{}/{sub}", rr.def.plural))),
    }
}

fn get(state: &SimState, rr: &ResourceRequest) -> Result<Value, ApiError> {
    state
        .store
        .get(&rr.def.key(), &rr.namespace, &rr.name)
        .map(|o| (*o).clone())
        .ok_or_else(|| ApiError::not_found(&rr.def.group, &rr.def.plural, &rr.name))
}

fn scale_of(rr: &ResourceRequest, o: &Value) -> Value {
    let sel = crate::selectors::LabelSelector::from_structured(&o["spec"]["selector"]).map(|_| {
        meta::str_map(&o["spec"]["selector"]["matchLabels"])
            .into_iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",")
    });
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": rr.name,
            "namespace": rr.namespace,
            "uid": o["metadata"]["uid"],
            "resourceVersion": o["metadata"]["resourceVersion"],
            "creationTimestamp": o["metadata"]["creationTimestamp"],
        },
        "spec": {"replicas": o["spec"]["replicas"].as_i64().unwrap_or(0)},
        "status": {"replicas": o["status"]["replicas"].as_i64().unwrap_or(0), "selector": sel.unwrap_or_default()},
    })
}
