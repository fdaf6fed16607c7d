//! Managed clusters and agent pools: PUT / PATCH / GET / DELETE, each mutation an operation.

use std::collections::BTreeMap;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::arm::{arm_error, not_found, started};
use super::state::{Cluster, Effect, State, key};

/// Fields Azure computes; a PUT's copies are ignored.
const READ_ONLY: &[&str] = &[
    "provisioningState",
    "powerState",
    "fqdn",
    "privateFQDN",
    "currentKubernetesVersion",
    "currentOrchestratorVersion",
];

fn minor(v: &str) -> Option<(u64, u64)> {
    let mut p = v.split('.');
    Some((p.next()?.parse().ok()?, p.next()?.parse().ok()?))
}

fn invalid(message: &str) -> Response {
    arm_error(StatusCode::BAD_REQUEST, "InvalidParameter", message)
}

fn busy() -> Response {
    arm_error(
        StatusCode::CONFLICT,
        "OperationNotAllowed",
        "Operation is not allowed because there's an in progress operation on the managed cluster.",
    )
}

fn strip_read_only(v: &mut Value) {
    if let Some(o) = v.as_object_mut() {
        for k in READ_ONLY {
            o.remove(*k);
        }
        o.remove("name");
    }
}

/// Checks a pool's properties; fills in its version from the control plane's.
/// `Err` is the message of a 400 InvalidParameter.
fn check_pool(name: &str, p: &mut Value, cp_version: &str) -> Result<(), String> {
    let ok = (1..=12).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if !ok {
        return Err(format!(
            "Agent pool name '{name}' is invalid: lowercase letters and digits, at most 12."
        ));
    }
    if p["orchestratorVersion"].as_str().is_none_or(str::is_empty) {
        p["orchestratorVersion"] = json!(cp_version);
    }
    let pv = p["orchestratorVersion"].as_str().unwrap_or_default();
    match (minor(pv), minor(cp_version)) {
        (Some(a), Some(b)) if a > b => {
            Err(format!("Agent pool '{name}' version {pv} is newer than the control plane's {cp_version}."))
        }
        (None, _) => Err(format!("Agent pool '{name}' version '{pv}' is not a version.")),
        _ => Ok(()),
    }
}

pub(super) fn cluster(
    s: &mut State,
    method: &str,
    rg: &str,
    name: &str,
    body: &[u8],
    api_version: &str,
) -> Response {
    let k = key(rg, name);
    match method {
        "GET" => s
            .cluster_view(rg, name)
            .map_or_else(|| not_found(rg, name), |v| (StatusCode::OK, axum::Json(v)).into_response()),
        "PUT" => put_cluster(s, rg, name, body, api_version),
        "PATCH" => {
            let Some(c) = s.clusters.get_mut(&k) else { return not_found(rg, name) };
            if c.busy.is_some() {
                return busy();
            }
            let Ok(v) = serde_json::from_slice::<Value>(body) else {
                return arm_error(
                    StatusCode::BAD_REQUEST,
                    "InvalidRequestContent",
                    "The request content was invalid.",
                );
            };
            c.body["tags"] = v["tags"].clone();
            let view = s.cluster_view(rg, name).unwrap_or_default();
            (StatusCode::OK, axum::Json(view)).into_response()
        }
        "DELETE" => {
            let Some(c) = s.clusters.get_mut(&k) else { return StatusCode::NO_CONTENT.into_response() };
            if c.busy.is_some() {
                return busy();
            }
            c.body["properties"]["provisioningState"] = json!("Deleting");
            let location = c.body["location"].as_str().unwrap_or_default().to_owned();
            let id = s.start_op(Effect::ClusterDelete, k, &location);
            started(s, StatusCode::ACCEPTED, None, &id, &location, api_version, true)
        }
        _ => arm_error(StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed", "Not supported here."),
    }
}

fn put_cluster(s: &mut State, rg: &str, name: &str, body: &[u8], api_version: &str) -> Response {
    let ok = (1..=63).contains(&name.len())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric());
    if !ok {
        return invalid(&format!("The managed cluster name '{name}' is invalid."));
    }
    let Ok(mut v) = serde_json::from_slice::<Value>(body) else {
        return arm_error(
            StatusCode::BAD_REQUEST,
            "InvalidRequestContent",
            "The request content was invalid.",
        );
    };
    let k = key(rg, name);
    let existing = s.clusters.get(&k);
    if existing.is_some_and(|c| c.busy.is_some()) {
        return busy();
    }
    let Some(location) = v["location"].as_str().filter(|l| !l.is_empty()).map(str::to_owned) else {
        return arm_error(StatusCode::BAD_REQUEST, "LocationRequired", "The location property is required.");
    };
    if let Some(o) = v.as_object_mut() {
        for f in ["id", "name", "type"] {
            o.remove(f);
        }
    }
    if !v["properties"].is_object() {
        v["properties"] = json!({});
    }
    strip_read_only(&mut v["properties"]);
    let profiles = v["properties"].as_object_mut().and_then(|p| p.remove("agentPoolProfiles"));
    let profiles: Vec<Value> = profiles.and_then(|p| p.as_array().cloned()).unwrap_or_default();
    let old_version =
        existing.and_then(|c| c.body["properties"]["kubernetesVersion"].as_str().map(str::to_owned));
    if v["properties"]["kubernetesVersion"].as_str().is_none_or(str::is_empty) {
        v["properties"]["kubernetesVersion"] = json!(old_version.clone().unwrap_or_else(|| "1.30.4".into()));
    }
    let cp = v["properties"]["kubernetesVersion"].as_str().unwrap_or_default().to_owned();
    if minor(&cp).is_none() {
        return invalid(&format!("Kubernetes version '{cp}' is not a version."));
    }
    let mut pools: BTreeMap<String, Value> = existing.map(|c| c.pools.clone()).unwrap_or_default();
    let mut scaled = false;
    for mut p in profiles {
        let pname = p["name"].as_str().unwrap_or_default().to_owned();
        strip_read_only(&mut p);
        if let Some(old) = pools.get(&pname) {
            scaled |= old["count"] != p["count"];
            if p["orchestratorVersion"].is_null() {
                p["orchestratorVersion"] = old["orchestratorVersion"].clone();
            }
        }
        if let Err(m) = check_pool(&pname, &mut p, &cp) {
            return invalid(&m);
        }
        pools.insert(pname, p);
    }
    for (pname, p) in &pools {
        let pv = p["orchestratorVersion"].as_str().unwrap_or_default();
        if minor(pv) > minor(&cp) {
            return invalid(&format!(
                "Agent pool '{pname}' version {pv} is newer than the control plane's {cp}."
            ));
        }
    }
    if !pools.values().any(|p| p["mode"] == "System") {
        return arm_error(
            StatusCode::BAD_REQUEST,
            "MustDefineAtLeastOneSystemPool",
            "Must define at least one system pool.",
        );
    }
    let state = match (existing, &old_version) {
        (None, _) => "Creating",
        (Some(_), Some(old)) if *old != cp => "Upgrading",
        (Some(_), _) if scaled => "Scaling",
        (Some(_), _) => "Updating",
    };
    if let Some(old) = existing {
        // The secret is write-only: a PUT without it keeps the one Azure has.
        let old_secret = old.body["properties"]["servicePrincipalProfile"]["secret"].clone();
        if v["properties"]["servicePrincipalProfile"].is_object()
            && v["properties"]["servicePrincipalProfile"]["secret"].is_null()
            && !old_secret.is_null()
        {
            v["properties"]["servicePrincipalProfile"]["secret"] = old_secret;
        }
        v["properties"]["currentKubernetesVersion"] =
            old.body["properties"]["currentKubernetesVersion"].clone();
    }
    v["properties"]["provisioningState"] = json!(state);
    for p in pools.values_mut() {
        p["provisioningState"] = json!(state);
    }
    let created = existing.is_none();
    s.clusters
        .insert(k.clone(), Cluster { rg: rg.to_owned(), name: name.to_owned(), body: v, pools, busy: None });
    let id = s.start_op(Effect::ClusterPut, k, &location);
    let view = s.cluster_view(rg, name);
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    started(s, status, view, &id, &location, api_version, false)
}

pub(super) fn pool(
    s: &mut State,
    method: &str,
    rg: &str,
    cluster: &str,
    pool: &str,
    body: &[u8],
    api_version: &str,
) -> Response {
    let k = key(rg, cluster);
    let Some(c) = s.clusters.get_mut(&k) else { return not_found(rg, cluster) };
    let location = c.body["location"].as_str().unwrap_or_default().to_owned();
    let cp = c.body["properties"]["kubernetesVersion"].as_str().unwrap_or_default().to_owned();
    match method {
        "GET" => s.pool_view(rg, cluster, pool).map_or_else(
            || arm_error(StatusCode::NOT_FOUND, "NotFound", &format!("Agent pool '{pool}' was not found.")),
            |v| (StatusCode::OK, axum::Json(v)).into_response(),
        ),
        "PUT" => {
            if c.busy.is_some() {
                return busy();
            }
            let Ok(v) = serde_json::from_slice::<Value>(body) else {
                return arm_error(
                    StatusCode::BAD_REQUEST,
                    "InvalidRequestContent",
                    "The request content was invalid.",
                );
            };
            let mut p = v["properties"].clone();
            if !p.is_object() {
                return invalid("The agent pool has no properties.");
            }
            strip_read_only(&mut p);
            let old = c.pools.get(pool);
            if let Some(old) = old
                && p["orchestratorVersion"].is_null()
            {
                p["orchestratorVersion"] = old["orchestratorVersion"].clone();
            }
            if let Err(m) = check_pool(pool, &mut p, &cp) {
                return invalid(&m);
            }
            let state = match old {
                None => "Creating",
                Some(o) if o["orchestratorVersion"] != p["orchestratorVersion"] => "Upgrading",
                Some(o) if o["count"] != p["count"] => "Scaling",
                Some(_) => "Updating",
            };
            let created = old.is_none();
            if !created
                && old.is_some_and(|o| o["mode"] == "System")
                && p["mode"] != "System"
                && !c.pools.iter().any(|(n, o)| n != pool && o["mode"] == "System")
            {
                return arm_error(
                    StatusCode::BAD_REQUEST,
                    "MustDefineAtLeastOneSystemPool",
                    "Must define at least one system pool.",
                );
            }
            p["provisioningState"] = json!(state);
            c.pools.insert(pool.to_owned(), p);
            c.body["properties"]["provisioningState"] = json!(state);
            let id = s.start_op(Effect::PoolPut(pool.to_owned()), k, &location);
            let view = s.pool_view(rg, cluster, pool);
            let status = if created { StatusCode::CREATED } else { StatusCode::OK };
            started(s, status, view, &id, &location, api_version, false)
        }
        "DELETE" => {
            if !c.pools.contains_key(pool) {
                return StatusCode::NO_CONTENT.into_response();
            }
            if c.busy.is_some() {
                return busy();
            }
            let others_system = c.pools.iter().any(|(n, o)| n != pool && o["mode"] == "System");
            if c.pools[pool]["mode"] == "System" && !others_system {
                return arm_error(
                    StatusCode::BAD_REQUEST,
                    "MustDefineAtLeastOneSystemPool",
                    "Must define at least one system pool.",
                );
            }
            if let Some(p) = c.pools.get_mut(pool) {
                p["provisioningState"] = json!("Deleting");
            }
            let id = s.start_op(Effect::PoolDelete(pool.to_owned()), k, &location);
            started(s, StatusCode::ACCEPTED, None, &id, &location, api_version, true)
        }
        _ => arm_error(StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed", "Not supported here."),
    }
}
