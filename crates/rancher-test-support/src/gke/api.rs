//! The stand-in's `container/v1` paths: routing, checking requests as GKE does, and starting the
//! operations (`ops`) that carry the changes out.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use super::State;
use super::ops::{ClusterKey, Effect, Inner, fingerprint, pool_mut, pools_mut, refresh_derived};

/// Google's error answer.
pub(super) fn google_error(code: u16, status: &str, message: impl Into<String>) -> Response {
    let body = json!({"error": {"code": code, "message": message.into(), "status": status}});
    (StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR), axum::Json(body))
        .into_response()
}

pub(super) fn ok(v: Value) -> Response {
    axum::Json(v).into_response()
}

fn invalid(message: impl Into<String>) -> Response {
    google_error(400, "INVALID_ARGUMENT", message)
}

/// `1.29.4-gke.100` → (1, 29, 4).
pub(super) fn version_numbers(v: &str) -> Option<(u32, u32, u32)> {
    let n: Vec<u32> = v.split('-').next()?.split('.').map(|p| p.parse().ok()).collect::<Option<_>>()?;
    match n.as_slice() {
        [a, b, c] => Some((*a, *b, *c)),
        [a, b] => Some((*a, *b, 0)),
        _ => None,
    }
}

/// What GKE makes of a requested version: `latest`/`-`/empty → the default, `1.29` → a 1.29
/// release, `1.29.4` → `1.29.4-gke.100`.
pub(super) fn resolve_version(v: &str, default: &str) -> Result<String, Box<Response>> {
    let bad = || Box::new(invalid(format!("Version {v:?} is invalid.")));
    if v.is_empty() || v == "latest" || v == "-" {
        return Ok(default.to_owned());
    }
    let (numbers, suffix) = v.split_once('-').map_or((v, None), |(n, s)| (n, Some(s)));
    let parts: Vec<&str> = numbers.split('.').collect();
    if parts.iter().any(|p| p.parse::<u32>().is_err()) || parts.first() != Some(&"1") {
        return Err(bad());
    }
    match (parts.len(), suffix) {
        (2, None) if default.starts_with(&format!("{numbers}.")) => Ok(default.to_owned()),
        (2, None) => Ok(format!("{numbers}.5-gke.100")),
        (3, None) => Ok(format!("{numbers}-gke.100")),
        (3, Some(s)) if s.strip_prefix("gke.").is_some_and(|b| b.parse::<u64>().is_ok()) => Ok(v.to_owned()),
        _ => Err(bad()),
    }
}

fn minor(v: &str) -> (u32, u32) {
    version_numbers(v).map_or((0, 0), |(a, b, _)| (a, b))
}

fn gke_name_ok(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 40
        && n.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && n.starts_with(|c: char| c.is_ascii_lowercase())
        && !n.ends_with('-')
}

/// The answer to one authenticated `/v1/…` call.
pub(super) fn route(state: &State, inner: &mut Inner, method: &str, path: &str, body: &[u8]) -> Response {
    let not_found =
        || google_error(404, "NOT_FOUND", format!("Not found: {}.", path.trim_start_matches("/v1/")));
    let Some(rest) = path.strip_prefix("/v1/projects/") else { return not_found() };
    let segs: Vec<&str> = rest.split('/').collect();
    let [project, "locations", location, tail @ ..] = segs.as_slice() else { return not_found() };
    let body: Value = if body.is_empty() {
        Value::Null
    } else {
        match serde_json::from_slice(body) {
            Ok(v) => v,
            Err(e) => return invalid(format!("Invalid JSON payload received. {e}")),
        }
    };
    let split = |s: &str| -> (String, Option<String>) {
        match s.split_once(':') {
            Some((n, v)) => (n.to_owned(), Some(v.to_owned())),
            None => (s.to_owned(), None),
        }
    };
    let key = |name: &str| (project.to_string(), location.to_string(), name.to_owned());
    match (method, tail) {
        ("GET", ["clusters"]) => {
            let clusters: Vec<Value> = inner
                .clusters
                .iter()
                .filter(|((p, l, _), _)| p == project && (*location == "-" || l == location))
                .map(|(_, c)| c.clone())
                .collect();
            ok(if clusters.is_empty() { json!({}) } else { json!({"clusters": clusters}) })
        }
        ("POST", ["clusters"]) => create_cluster(state, inner, project, location, body),
        (_, ["clusters", c]) => {
            let (name, verb) = split(c);
            let key = key(&name);
            if !inner.clusters.contains_key(&key) {
                return not_found();
            }
            cluster_call(state, inner, method, verb.as_deref(), &key, body).unwrap_or_else(not_found)
        }
        (_, ["clusters", c, "nodePools", tail @ ..]) => {
            let key = key(c);
            let Some(cluster) = inner.clusters.get(&key) else { return not_found() };
            match (method, tail) {
                ("GET", []) => {
                    ok(json!({"nodePools": cluster.get("nodePools").cloned().unwrap_or_else(|| json!([]))}))
                }
                ("POST", []) => create_pool(state, inner, &key, body),
                (_, [p]) => {
                    let (pool, verb) = split(p);
                    if cluster["nodePools"]
                        .as_array()
                        .is_none_or(|a| !a.iter().any(|x| x["name"] == pool.as_str()))
                    {
                        return not_found();
                    }
                    pool_call(state, inner, method, verb.as_deref(), &key, &pool, body)
                        .unwrap_or_else(not_found)
                }
                _ => not_found(),
            }
        }
        ("GET", ["operations", name]) => inner.operation(project, location, name).map_or_else(not_found, ok),
        _ => not_found(),
    }
}

fn create_cluster(state: &State, inner: &mut Inner, project: &str, location: &str, body: Value) -> Response {
    let mut c = body["cluster"].clone();
    let name = c["name"].as_str().unwrap_or_default().to_owned();
    if !gke_name_ok(&name) {
        return invalid(format!(
            "Invalid value for field \"cluster.name\": {name:?}. Must match regex '(?:[a-z](?:[-a-z0-9]{{0,38}}[a-z0-9])?)'."
        ));
    }
    let key = (project.to_owned(), location.to_owned(), name.clone());
    if inner.clusters.contains_key(&key) {
        return google_error(
            409,
            "ALREADY_EXISTS",
            format!("Already exists: projects/{project}/locations/{location}/clusters/{name}."),
        );
    }
    let default = &state.options.default_version;
    let master = match resolve_version(c["initialClusterVersion"].as_str().unwrap_or_default(), default) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    let self_link = format!("{}/v1/projects/{project}/locations/{location}/clusters/{name}", state.base_url);
    if pools_mut(&mut c).is_empty() {
        return invalid("Cluster.initial_node_count must be greater than zero.");
    }
    let mut seen = Vec::new();
    for p in pools_mut(&mut c) {
        if let Err(r) = check_new_pool(p, &master, default, &self_link, &seen) {
            return *r;
        }
        seen.push(p["name"].as_str().unwrap_or_default().to_owned());
    }
    let labels = if c["resourceLabels"].is_object() { c["resourceLabels"].clone() } else { json!({}) };
    for (k, v) in [
        ("location", json!(location)),
        ("zone", json!(location)),
        ("selfLink", json!(self_link)),
        ("status", json!("PROVISIONING")),
        ("createTime", json!(jiff::Timestamp::now().to_string())),
        ("currentMasterVersion", json!(master)),
        ("labelFingerprint", json!(fingerprint(&labels))),
        ("resourceLabels", labels),
    ] {
        c[k] = v;
    }
    refresh_derived(&mut c);
    inner.clusters.insert(key.clone(), c);
    inner.start(state, &key, "CREATE_CLUSTER", self_link, Effect::CreateCluster)
}

/// Checks a pool of a create request and fills in what GKE does (status, version, link).
fn check_new_pool(
    p: &mut Value,
    master: &str,
    default: &str,
    cluster_link: &str,
    taken: &[String],
) -> Result<(), Box<Response>> {
    let name = p["name"].as_str().unwrap_or_default().to_owned();
    if !gke_name_ok(&name) {
        return Err(Box::new(invalid(format!("Invalid value for field \"node_pool.name\": {name:?}."))));
    }
    if taken.contains(&name) {
        return Err(Box::new(google_error(
            409,
            "ALREADY_EXISTS",
            format!("Node pool {name} already exists."),
        )));
    }
    let autoscaling = p["autoscaling"]["enabled"].as_bool().unwrap_or(false);
    if p["initialNodeCount"].as_i64().unwrap_or(0) < 1 && !autoscaling {
        return Err(Box::new(invalid(format!(
            "Node pool {name}: initial_node_count must be greater than zero."
        ))));
    }
    let version = match p["version"].as_str() {
        Some(v) => resolve_version(v, default)?,
        None => master.to_owned(),
    };
    if minor(&version) > minor(master) {
        return Err(Box::new(invalid(format!(
            "Node version {version} must not be newer than the master version {master}."
        ))));
    }
    p["version"] = json!(version);
    p["status"] = json!("PROVISIONING");
    p["selfLink"] = json!(format!("{cluster_link}/nodePools/{name}"));
    Ok(())
}

fn cluster_call(
    state: &State,
    inner: &mut Inner,
    method: &str,
    verb: Option<&str>,
    key: &ClusterKey,
    body: Value,
) -> Option<Response> {
    let link = inner.clusters[key]["selfLink"].as_str().unwrap_or_default().to_owned();
    if method == "GET" && verb.is_none() {
        return Some(ok(inner.clusters[key].clone()));
    }
    if let Some(busy) = inner.busy(key) {
        return Some(busy);
    }
    let default = state.options.default_version.clone();
    let current = inner.clusters[key]["currentMasterVersion"].as_str().unwrap_or_default().to_owned();
    let c = inner.clusters.get_mut(key).expect("checked");
    let (kind, effect) = match (method, verb) {
        ("DELETE", None) => {
            c["status"] = json!("STOPPING");
            ("DELETE_CLUSTER", Effect::DeleteCluster)
        }
        ("PUT", None) => {
            let update = body["update"].clone();
            if !update.is_object() || update.as_object().is_some_and(Map::is_empty) {
                return Some(invalid("Update must be set."));
            }
            c["status"] = json!("RECONCILING");
            ("UPDATE_CLUSTER", Effect::UpdateCluster(update))
        }
        ("POST", Some("updateMaster")) => {
            let asked = body["masterVersion"].as_str().unwrap_or_default();
            if asked.is_empty() {
                return Some(invalid("master_version must be set."));
            }
            let v = match resolve_version(asked, &default) {
                Ok(v) => v,
                Err(r) => return Some(*r),
            };
            let (now, to) = (minor(&current), minor(&v));
            if to < now || to.1 > now.1 + 1 {
                return Some(invalid(format!(
                    "Master cannot be upgraded from {current} to {v}: one minor version at a time, never down."
                )));
            }
            c["status"] = json!("RECONCILING");
            ("UPGRADE_MASTER", Effect::UpgradeMaster(v))
        }
        ("POST", Some("setResourceLabels")) => {
            if body["labelFingerprint"] != c["labelFingerprint"] {
                return Some(google_error(
                    400,
                    "FAILED_PRECONDITION",
                    "Labels could not be set due to fingerprint mismatch. Get the cluster and try again.",
                ));
            }
            let labels =
                if body["resourceLabels"].is_object() { body["resourceLabels"].clone() } else { json!({}) };
            c["status"] = json!("RECONCILING");
            ("SET_LABELS", Effect::SetLabels(labels))
        }
        _ => return None,
    };
    Some(inner.start(state, key, kind, link, effect))
}

fn create_pool(state: &State, inner: &mut Inner, key: &ClusterKey, body: Value) -> Response {
    if let Some(busy) = inner.busy(key) {
        return busy;
    }
    let default = state.options.default_version.clone();
    let c = inner.clusters.get_mut(key).expect("checked");
    let master = c["currentMasterVersion"].as_str().unwrap_or_default().to_owned();
    let link = c["selfLink"].as_str().unwrap_or_default().to_owned();
    let taken: Vec<String> =
        pools_mut(c).iter().filter_map(|p| p["name"].as_str().map(str::to_owned)).collect();
    let mut pool = body["nodePool"].clone();
    if let Err(r) = check_new_pool(&mut pool, &master, &default, &link, &taken) {
        return *r;
    }
    let name = pool["name"].as_str().unwrap_or_default().to_owned();
    let pool_link = pool["selfLink"].as_str().unwrap_or_default().to_owned();
    pools_mut(c).push(pool);
    refresh_derived(c);
    inner.start(state, key, "CREATE_NODE_POOL", pool_link, Effect::CreatePool(name))
}

fn pool_call(
    state: &State,
    inner: &mut Inner,
    method: &str,
    verb: Option<&str>,
    key: &ClusterKey,
    pool: &str,
    body: Value,
) -> Option<Response> {
    if method == "GET" && verb.is_none() {
        return Some(ok(pool_mut(inner.clusters.get_mut(key)?, pool)?.clone()));
    }
    if let Some(busy) = inner.busy(key) {
        return Some(busy);
    }
    let default = state.options.default_version.clone();
    let c = inner.clusters.get_mut(key)?;
    let master = c["currentMasterVersion"].as_str().unwrap_or_default().to_owned();
    let p = pool_mut(c, pool)?;
    let link = p["selfLink"].as_str().unwrap_or_default().to_owned();
    let (kind, effect) = match (method, verb) {
        ("DELETE", None) => {
            p["status"] = json!("STOPPING");
            ("DELETE_NODE_POOL", Effect::DeletePool(pool.to_owned()))
        }
        ("POST", Some("setSize")) => {
            let Some(n) = body["nodeCount"].as_i64().filter(|n| *n >= 0) else {
                return Some(invalid("node_count must be a number, 0 or more."));
            };
            p["status"] = json!("RECONCILING");
            ("SET_NODE_POOL_SIZE", Effect::SetSize(pool.to_owned(), n))
        }
        ("PUT", None) => {
            let asked = body["nodeVersion"].as_str().unwrap_or_default();
            if asked.is_empty() {
                return Some(invalid("node_version must be set."));
            }
            let v = if asked == "-" {
                master.clone()
            } else {
                match resolve_version(asked, &default) {
                    Ok(v) => v,
                    Err(r) => return Some(*r),
                }
            };
            if minor(&v) > minor(&master) {
                return Some(invalid(format!(
                    "Node version {v} must not be newer than the master version {master}."
                )));
            }
            let image = body["imageType"].as_str().filter(|s| !s.is_empty()).map(str::to_owned);
            p["status"] = json!("RECONCILING");
            ("UPGRADE_NODES", Effect::UpdatePool(pool.to_owned(), v, image))
        }
        _ => return None,
    };
    Some(inner.start(state, key, kind, link, effect))
}
