//! get, list, create, update, patch, delete and deletecollection on stored resources.

use std::sync::Arc;

use http::{Request, Response};
use hyper::body::Incoming;
use serde_json::{Value, json};

use super::ResourceRequest;
use crate::authn::UserInfo;
use crate::http_util::{Body, Wants, json_response, parse_object, read_body};
use crate::resources::ResourceDef;
use crate::selectors::{FieldSelector, LabelSelector};
use crate::state::SimState;
use crate::status::ApiError;
use crate::store::StoreError;
use crate::{admission, field_validation, meta, patch, table};

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
    match rr.verb.as_str() {
        "get" => get(state, &rr, wants),
        "list" => super::list::serve(state, &rr, wants).await,
        "watch" => super::watch::serve(state, &rr, wants),
        verb => {
            let body = read_body(req.into_body()).await?;
            if matches!(verb, "create" | "update") {
                rr.findings.scan_body(&body, &content_type);
            }
            match verb {
                "create" => create(state, &rr, parse_object(&body, &content_type)?),
                "update" => update(state, &rr, parse_object(&body, &content_type)?, false),
                "patch" => patch(state, &rr, &body, &content_type),
                "delete" => delete(state, &rr, &body, &content_type),
                "deletecollection" => delete_collection(state, &rr, &body, &content_type),
                _ => Err(ApiError::method_not_allowed(verb, &rr.def.plural)),
            }
        }
    }
}

/// Maps a store error to the Status the API server returns for this resource.
pub(crate) fn store_error(d: &ResourceDef, name: &str, e: StoreError) -> ApiError {
    match e {
        StoreError::NotFound => ApiError::not_found(&d.group, &d.plural, name),
        StoreError::AlreadyExists => ApiError::already_exists(&d.group, &d.plural, name),
        StoreError::Conflict => ApiError::conflict(&d.group, &d.plural, name),
    }
}

fn get(state: &SimState, rr: &ResourceRequest, wants: Wants) -> Result<Response<Body>, ApiError> {
    let obj = state
        .store
        .get(&rr.def.key(), &rr.namespace, &rr.name)
        .ok_or_else(|| ApiError::not_found(&rr.def.group, &rr.def.plural, &rr.name))?;
    if wants == Wants::Table {
        let rv = meta::resource_version(&obj).to_string();
        return Ok(json_response(
            200,
            &table::render(&rr.def, &[obj], &rv, rr.query.get("includeObject"), true),
        ));
    }
    Ok(json_response(200, &obj))
}

/// Selected objects of a list or watch request.
pub(crate) struct Filter {
    labels: LabelSelector,
    fields: FieldSelector,
}

impl Filter {
    pub(crate) fn from_query(rr: &ResourceRequest) -> Result<Self, ApiError> {
        Ok(Filter {
            labels: LabelSelector::parse(rr.query.get("labelSelector").unwrap_or(""))?,
            fields: FieldSelector::parse(rr.query.get("fieldSelector").unwrap_or(""))?,
        })
    }
    pub(crate) fn matches(&self, o: &Value) -> bool {
        self.labels.matches_object(o) && self.fields.matches(o)
    }
}

pub(super) fn ns_filter(rr: &ResourceRequest) -> Option<&str> {
    (rr.def.namespaced && !rr.namespace.is_empty()).then_some(rr.namespace.as_str())
}

fn dry_run(rr: &ResourceRequest) -> bool {
    rr.query.get("dryRun").is_some_and(|v| v == "All")
}

/// Checks that the namespace of a namespaced create exists and is not terminating.
pub(crate) fn check_namespace(state: &SimState, d: &ResourceDef, ns: &str) -> Result<(), ApiError> {
    if !d.namespaced {
        return Ok(());
    }
    let nso =
        state.store.get("namespaces", "", ns).ok_or_else(|| ApiError::not_found("", "namespaces", ns))?;
    if meta::is_deleting(&nso) {
        return Err(ApiError::forbidden(
            format!("{} \"{}\" is forbidden: unable to create new content in namespace {ns} because it is being terminated", d.plural, ""),
            json!({"kind": d.plural, "group": d.group}),
        )
        .with_reason_cause("NamespaceTerminating"));
    }
    Ok(())
}

trait WithCause {
    fn with_reason_cause(self, reason: &str) -> Self;
}
impl WithCause for ApiError {
    fn with_reason_cause(mut self, reason: &str) -> Self {
        if let Some(d) = self.details.as_mut() {
            d["causes"] = json!([{"reason": reason, "message": self.message, "field": "metadata.namespace"}]);
        }
        self
    }
}

/// Puts the URL namespace into the object (rejecting a different one in the body).
fn set_namespace(rr: &ResourceRequest, obj: &mut Value) -> Result<(), ApiError> {
    let body_ns = meta::namespace(obj).to_string();
    if rr.def.namespaced {
        if rr.namespace.is_empty() {
            return Err(ApiError::bad_request("the namespace of the object must be set in the request path"));
        }
        if !body_ns.is_empty() && body_ns != rr.namespace {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
        meta::metadata_mut(obj).insert("namespace".into(), json!(rr.namespace));
    } else {
        meta::metadata_mut(obj).remove("namespace");
    }
    Ok(())
}

/// Applies the request's `fieldValidation` directive to the decoded object.
fn check_fields(rr: &ResourceRequest, obj: &mut Value, stored: Option<&Value>) -> Result<(), ApiError> {
    let mode = field_validation::Mode::parse(rr.query.get("fieldValidation"))?;
    field_validation::check(&rr.def, mode, &rr.findings, obj, stored, rr.apply)
}

pub(crate) fn create_object(
    state: &SimState,
    rr: &ResourceRequest,
    mut obj: Value,
) -> Result<Value, ApiError> {
    admission::check_type(&rr.def, &mut obj)?;
    check_fields(rr, &mut obj, None)?;
    set_namespace(rr, &mut obj)?;
    if meta::name(&obj).is_empty()
        && let Some(prefix) = obj["metadata"]["generateName"].as_str().filter(|p| !p.is_empty())
    {
        let name = format!("{prefix}{}", meta::random_suffix(5));
        meta::metadata_mut(&mut obj).insert("name".into(), json!(name));
    }
    for k in ["uid", "resourceVersion", "creationTimestamp", "deletionTimestamp", "generation"] {
        meta::metadata_mut(&mut obj).remove(k);
    }
    admission::admit(state, &rr.def, &mut obj, None)?;
    check_namespace(state, &rr.def, &rr.namespace)?;
    if dry_run(rr) {
        return Ok(obj);
    }
    let name = meta::name(&obj).to_string();
    let stored = state.store.create(&rr.def.key(), obj).map_err(|e| store_error(&rr.def, &name, e))?;
    Ok((*stored).clone())
}

fn create(state: &SimState, rr: &ResourceRequest, obj: Value) -> Result<Response<Body>, ApiError> {
    Ok(json_response(201, &create_object(state, rr, obj)?))
}

/// Replaces an object. For resources with a status subresource, the main resource keeps the stored
/// status and the status subresource changes only status.
pub(crate) fn update_object(
    state: &SimState,
    rr: &ResourceRequest,
    mut obj: Value,
    status_only: bool,
) -> Result<Value, ApiError> {
    admission::check_type(&rr.def, &mut obj)?;
    set_namespace(rr, &mut obj)?;
    let body_name = meta::name(&obj).to_string();
    if body_name.is_empty() {
        meta::metadata_mut(&mut obj).insert("name".into(), json!(rr.name));
    } else if body_name != rr.name {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({body_name}) does not match the name on the URL ({})",
            rr.name
        )));
    }
    let old = state
        .store
        .get(&rr.def.key(), &rr.namespace, &rr.name)
        .ok_or_else(|| ApiError::not_found(&rr.def.group, &rr.def.plural, &rr.name))?;
    check_fields(rr, &mut obj, Some(&old))?;
    if status_only {
        let mut next = (*old).clone();
        next["status"] = obj["status"].take();
        if !meta::resource_version(&obj).is_empty() {
            meta::metadata_mut(&mut next)
                .insert("resourceVersion".into(), json!(meta::resource_version(&obj)));
        }
        obj = next;
    } else if rr.def.has_status() {
        match old.get("status") {
            Some(s) => obj["status"] = s.clone(),
            None => {
                if let Some(o) = obj.as_object_mut() {
                    o.remove("status");
                }
            }
        }
    }
    admission::admit(state, &rr.def, &mut obj, Some(&old))?;
    if dry_run(rr) {
        return Ok(obj);
    }
    let stored = state.store.update(&rr.def.key(), obj).map_err(|e| store_error(&rr.def, &rr.name, e))?;
    Ok((*stored).clone())
}

pub(crate) fn update(
    state: &SimState,
    rr: &ResourceRequest,
    obj: Value,
    status_only: bool,
) -> Result<Response<Body>, ApiError> {
    Ok(json_response(200, &update_object(state, rr, obj, status_only)?))
}

const PATCH_TYPES: &[&str] = &[
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
    "application/apply-patch+yaml",
];

/// Applies a patch to the stored object (creating it for server-side apply) and writes it back,
/// retrying when a controller wrote in between and the patch carried no resourceVersion.
pub(crate) fn patch_object(
    state: &SimState,
    rr: &ResourceRequest,
    body: &[u8],
    content_type: &str,
    status_only: bool,
) -> Result<(u16, Value), ApiError> {
    let media = content_type.split(';').next().unwrap_or("").trim();
    if !PATCH_TYPES.contains(&media) {
        return Err(ApiError::unsupported_media_type(media, PATCH_TYPES));
    }
    let patch_doc: Value =
        parse_object(body, if media == "application/apply-patch+yaml" { media } else { "application/json" })?;
    let mut applying = rr.clone();
    applying.apply = media == "application/apply-patch+yaml";
    let rr = &applying;
    for _attempt in 0..5 {
        let Some(cur) = state.store.get(&rr.def.key(), &rr.namespace, &rr.name) else {
            if media == "application/apply-patch+yaml" {
                let mut obj = patch_doc.clone();
                if meta::name(&obj).is_empty() {
                    meta::metadata_mut(&mut obj).insert("name".into(), json!(rr.name));
                }
                if meta::name(&obj) != rr.name {
                    return Err(ApiError::bad_request(
                        "the name of the object does not match the name on the URL",
                    ));
                }
                return Ok((201, create_object(state, rr, obj)?));
            }
            return Err(ApiError::not_found(&rr.def.group, &rr.def.plural, &rr.name));
        };
        let mut next = (*cur).clone();
        match media {
            "application/json-patch+json" => patch::json_patch(&mut next, &patch_doc)?,
            "application/merge-patch+json" => patch::merge(&mut next, &patch_doc),
            _ => {
                if !patch_doc.is_object() {
                    return Err(ApiError::bad_request("patch body must be a JSON object"));
                }
                patch::strategic(&mut next, &patch_doc)
            }
        }
        let pinned = !meta::resource_version(&patch_doc).is_empty()
            || (media == "application/json-patch+json"
                && meta::resource_version(&next) != meta::resource_version(&cur));
        if !pinned {
            meta::metadata_mut(&mut next)
                .insert("resourceVersion".into(), json!(meta::resource_version(&cur)));
        }
        if meta::name(&next) != rr.name {
            return Err(ApiError::bad_request("the name of the object cannot be changed by a patch"));
        }
        match update_object(state, rr, next, status_only) {
            Err(e) if e.reason == "Conflict" && !pinned => continue,
            Err(e) => return Err(e),
            Ok(v) => return Ok((200, v)),
        }
    }
    Err(ApiError::conflict(&rr.def.group, &rr.def.plural, &rr.name))
}

fn patch(
    state: &SimState,
    rr: &ResourceRequest,
    body: &[u8],
    content_type: &str,
) -> Result<Response<Body>, ApiError> {
    let (code, v) = patch_object(state, rr, body, content_type, false)?;
    Ok(json_response(code, &v))
}

/// Parsed DeleteOptions (body or query).
#[derive(Debug, Clone)]
pub(crate) struct DeleteOptions {
    propagation: String,
    uid: Option<String>,
    rv: Option<String>,
    grace: Option<i64>,
    /// `dryRun: ["All"]` in the body or `?dryRun=All`: checked, not done.
    dry_run: bool,
}

/// Reads DeleteOptions from a JSON, YAML or protobuf body (client-go sends protobuf for built-in
/// kinds when it speaks protobuf), falling back to the query parameters.
fn delete_options(rr: &ResourceRequest, body: &[u8], content_type: &str) -> Result<DeleteOptions, ApiError> {
    let media = content_type.split(';').next().unwrap_or("").trim();
    let v: Value = if body.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else if media == "application/vnd.kubernetes.protobuf" {
        let v = crate::protobuf::decode(body)?;
        if v["kind"] != "DeleteOptions" {
            return Err(ApiError::bad_request(format!(
                "invalid DeleteOptions: the body is a protobuf {}",
                v["kind"].as_str().unwrap_or("object")
            )));
        }
        v
    } else {
        let media = if matches!(media, "application/yaml") { media } else { "application/json" };
        parse_object(body, media)
            .map_err(|e| ApiError::bad_request(format!("invalid DeleteOptions: {}", e.message)))?
    };
    if !v.is_object() {
        return Err(ApiError::bad_request("invalid DeleteOptions: the body must be an object"));
    }
    let propagation = v["propagationPolicy"]
        .as_str()
        .or(rr.query.get("propagationPolicy"))
        .map(String::from)
        .unwrap_or_else(|| if v["orphanDependents"] == true { "Orphan".into() } else { "Background".into() });
    if !matches!(propagation.as_str(), "Background" | "Foreground" | "Orphan") {
        return Err(ApiError::bad_request(format!("invalid propagationPolicy {propagation:?}")));
    }
    let grace = match v.get("gracePeriodSeconds").filter(|g| !g.is_null()) {
        Some(g) => {
            Some(g.as_i64().ok_or_else(|| ApiError::bad_request("gracePeriodSeconds must be an integer"))?)
        }
        None => rr.query.int("gracePeriodSeconds")?,
    };
    if grace.is_some_and(|g| g < 0) {
        return Err(ApiError::bad_request("gracePeriodSeconds must be greater than or equal to 0"));
    }
    let mut dry = rr.query.all("dryRun");
    match &v["dryRun"] {
        Value::Null => {}
        Value::Array(a) => {
            for d in a {
                dry.push(
                    d.as_str()
                        .ok_or_else(|| ApiError::bad_request("dryRun must be a list of strings"))?
                        .into(),
                )
            }
        }
        _ => return Err(ApiError::bad_request("dryRun must be a list of strings")),
    }
    if let Some(bad) = dry.iter().find(|d| d.as_str() != "All") {
        return Err(ApiError::bad_request(format!(
            "dryRun: Unsupported value: {bad:?}: supported values: \"All\""
        )));
    }
    let precondition = |k: &str| match &v["preconditions"][k] {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s.clone())),
        _ => Err(ApiError::bad_request(format!("preconditions.{k} must be a string"))),
    };
    Ok(DeleteOptions {
        grace,
        propagation,
        uid: precondition("uid")?,
        rv: precondition("resourceVersion")?,
        dry_run: !dry.is_empty(),
    })
}

/// The kubelet's `Killing` events for the containers of a running pod being deleted.
fn kubelet_stops(state: &SimState, pod: &Value) {
    let node = pod["spec"]["nodeName"].as_str().unwrap_or("");
    for c in pod["spec"]["containers"].as_array().into_iter().flatten() {
        let name = c["name"].as_str().unwrap_or("");
        let note = crate::events::Note::normal("Killing", format!("Stopping container {name}"))
            .at(format!("spec.containers{{{name}}}"));
        crate::events::record(state, pod, note, crate::events::Reporter::kubelet(node));
    }
}

/// Deletes one object with the given propagation; namespaces go Terminating and are emptied by the
/// namespace controller.
pub(crate) fn delete_object(
    state: &SimState,
    d: &ResourceDef,
    ns: &str,
    name: &str,
    opts: &DeleteOptions,
) -> Result<Value, ApiError> {
    let (propagation, uid, rv, grace) =
        (opts.propagation.as_str(), opts.uid.as_deref(), opts.rv.as_deref(), opts.grace);
    let key = d.key();
    // A running pod's containers are stopped by its kubelet, which says so (`Killing`).
    let mut stopping = None;
    if key == "pods"
        && let Some(pod) = state.store.get(&key, ns, name)
    {
        // A running pod is deleted gracefully: Terminating until the simulated kubelet has stopped
        // it. Unscheduled and finished pods, and grace 0 (`--grace-period=0 --force`), go at once.
        let grace =
            grace.unwrap_or_else(|| pod["spec"]["terminationGracePeriodSeconds"].as_i64().unwrap_or(30));
        let bound = pod["spec"]["nodeName"].as_str().is_some_and(|n| !n.is_empty());
        let finished = matches!(pod["status"]["phase"].as_str(), Some("Succeeded" | "Failed"));
        let running = bound && !finished && !meta::is_deleting(&pod);
        if grace > 0 && bound && !finished {
            let obj = state
                .store
                .mark_graceful(&key, ns, name, grace, uid, rv)
                .map_err(|e| store_error(d, name, e))?;
            if running {
                kubelet_stops(state, &pod);
            }
            return Ok((*obj).clone());
        }
        stopping = running.then_some(pod);
    }
    if key == "namespaces" {
        // Held by spec.finalizers (["kubernetes"]) until the namespace controller has emptied it.
        let r = state.store.delete(&key, ns, name, None, uid, rv).map_err(|e| store_error(d, name, e))?;
        let mut obj = (*r.object).clone();
        if !r.gone && obj["status"]["phase"] != "Terminating" {
            obj = state
                .store
                .mutate(&key, "", name, |o| {
                    o["status"]["phase"] = json!("Terminating");
                    true
                })
                .ok()
                .flatten()
                .map(|o| (*o).clone())
                .unwrap_or(obj);
        }
        return Ok(obj);
    }
    let finalizer = match propagation {
        "Foreground" => Some("foregroundDeletion"),
        "Orphan" => Some("orphan"),
        _ => None,
    };
    let r = state.store.delete(&key, ns, name, finalizer, uid, rv).map_err(|e| store_error(d, name, e))?;
    // core/v1 and events.k8s.io/v1 Events are two views of one object.
    crate::events::deleted(state, &key, ns, name);
    if let Some(pod) = stopping {
        kubelet_stops(state, &pod);
    }
    Ok((*r.object).clone())
}

fn delete(
    state: &SimState,
    rr: &ResourceRequest,
    body: &[u8],
    content_type: &str,
) -> Result<Response<Body>, ApiError> {
    let opts = delete_options(rr, body, content_type)?;
    if opts.dry_run {
        let obj = state
            .store
            .get(&rr.def.key(), &rr.namespace, &rr.name)
            .ok_or_else(|| ApiError::not_found(&rr.def.group, &rr.def.plural, &rr.name))?;
        // A dry run checks what the delete would: the preconditions.
        let stale = |want: &Option<String>, got: &str| want.as_deref().is_some_and(|w| w != got);
        if stale(&opts.uid, meta::uid(&obj)) || stale(&opts.rv, meta::resource_version(&obj)) {
            return Err(ApiError::conflict(&rr.def.group, &rr.def.plural, &rr.name));
        }
        return Ok(json_response(200, &obj));
    }
    let obj = delete_object(state, &rr.def, &rr.namespace, &rr.name, &opts)?;
    Ok(json_response(200, &obj))
}

fn delete_collection(
    state: &SimState,
    rr: &ResourceRequest,
    body: &[u8],
    content_type: &str,
) -> Result<Response<Body>, ApiError> {
    let opts = delete_options(rr, body, content_type)?;
    let filter = Filter::from_query(rr)?;
    let (items, rv) = state.store.list(&rr.def.key(), ns_filter(rr));
    let mut deleted = vec![];
    for o in items.iter().filter(|o| filter.matches(o)) {
        if opts.dry_run {
            deleted.push((**o).clone());
            continue;
        }
        match delete_object(
            state,
            &rr.def,
            meta::namespace(o),
            meta::name(o),
            &DeleteOptions { uid: None, rv: None, ..opts.clone() },
        ) {
            Ok(v) => deleted.push(v),
            Err(e) if e.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    Ok(json_response(
        200,
        &json!({"kind": format!("{}List", rr.def.kind), "apiVersion": rr.def.api_version(), "metadata": {"resourceVersion": rv.to_string()}, "items": deleted}),
    ))
}
