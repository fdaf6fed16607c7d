//! The stand-in's HTTP surface: the token endpoint and Resource Manager paths (matched
//! case-insensitively, as ARM does), each answered under the state lock without awaiting.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::state::{Call, Cluster, Effect, Group, State, key};

type Shared = Arc<Mutex<State>>;

pub(super) fn router(state: Shared) -> axum::Router {
    axum::Router::new().fallback(handle).with_state(state)
}

async fn handle(
    axum::extract::State(state): axum::extract::State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let at = Instant::now();
    let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
    s.tick(at);
    let resp = answer(&mut s, &method, &uri, &headers, &body);
    s.calls.push(Call {
        method: method.to_string(),
        path: uri.path().to_owned(),
        at,
        status: resp.status().as_u16(),
    });
    resp
}

pub(super) fn arm_error(status: StatusCode, code: &str, message: &str) -> Response {
    (status, axum::Json(json!({ "error": { "code": code, "message": message } }))).into_response()
}

fn json_answer(status: StatusCode, v: Value) -> Response {
    (status, axum::Json(v)).into_response()
}

fn with_header(mut r: Response, name: &'static str, value: &str) -> Response {
    if let Ok(v) = HeaderValue::from_str(value) {
        r.headers_mut().insert(name, v);
    }
    r
}

fn query_param(uri: &Uri, name: &str) -> Option<String> {
    uri.query()?.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k.eq_ignore_ascii_case(name)).then(|| percent_decode(v))
    })
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                match u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("zz"), 16) {
                    Ok(v) => {
                        out.push(v);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn answer(s: &mut State, method: &Method, uri: &Uri, headers: &HeaderMap, body: &[u8]) -> Response {
    let segs: Vec<&str> = uri.path().trim_matches('/').split('/').collect();
    let lower: Vec<String> = segs.iter().map(|x| x.to_ascii_lowercase()).collect();
    let l: Vec<&str> = lower.iter().map(String::as_str).collect();
    if let [tenant, "oauth2", "v2.0", "token"] = l.as_slice() {
        return token(s, method, tenant, body);
    }
    // Resource Manager: throttling, then authentication, then the api-version.
    if let Some((n, secs)) = s.throttle {
        s.throttle = if n > 1 { Some((n - 1, secs)) } else { None };
        let r = arm_error(
            StatusCode::TOO_MANY_REQUESTS,
            "SubscriptionRequestsThrottled",
            "Number of requests for this subscription exceeded the limit. Retry after the time in Retry-After.",
        );
        return with_header(r, "retry-after", &secs.to_string());
    }
    let bearer =
        headers.get("authorization").and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    match bearer {
        None => {
            return arm_error(
                StatusCode::UNAUTHORIZED,
                "AuthenticationFailed",
                "Authentication failed. The 'Authorization' header is missing.",
            );
        }
        Some(t) if !s.tokens.contains(t) => {
            return arm_error(
                StatusCode::UNAUTHORIZED,
                "InvalidAuthenticationToken",
                "The access token is invalid.",
            );
        }
        Some(_) => {}
    }
    let Some(api_version) = query_param(uri, "api-version") else {
        return arm_error(
            StatusCode::BAD_REQUEST,
            "MissingApiVersionParameter",
            "The api-version query parameter (?api-version=) is required for all requests.",
        );
    };
    let sub = s.config.subscription_id.to_ascii_lowercase();
    if l.first() != Some(&"subscriptions") || l.get(1).is_none() {
        return arm_error(StatusCode::NOT_FOUND, "InvalidResourceType", "No route for this path.");
    }
    if l[1] != sub {
        return arm_error(
            StatusCode::NOT_FOUND,
            "SubscriptionNotFound",
            &format!("The subscription '{}' could not be found.", segs[1]),
        );
    }
    let cs = "microsoft.containerservice";
    let m = method.as_str();
    match (&l[2..], m) {
        (["resourcegroups", _], _) => group(s, m, segs[3], body),
        (["operationresults", id], "GET") => location_poll(s, id),
        (["providers", p, "managedclusters"], "GET") if *p == cs => list_clusters(s, None, uri, &api_version),
        (["providers", p, "locations", _, "operations", id], "GET") if *p == cs => match s.op_status(id) {
            Some(v) => poll_answer(s, json_answer(StatusCode::OK, v), v_done(s, id)),
            None => arm_error(StatusCode::NOT_FOUND, "NotFound", "No such operation."),
        },
        (["providers", p, "locations", _, "operationresults", id], "GET") if *p == cs => location_poll(s, id),
        (["resourcegroups", _, "providers", p, "managedclusters"], "GET") if *p == cs => {
            list_clusters(s, Some(segs[3]), uri, &api_version)
        }
        (["resourcegroups", _, "providers", p, "managedclusters", _, rest @ ..], _) if *p == cs => {
            let (rg, name) = (segs[3], segs[7]);
            if !s.groups.contains_key(&rg.to_ascii_lowercase()) {
                return arm_error(
                    StatusCode::NOT_FOUND,
                    "ResourceGroupNotFound",
                    &format!("Resource group '{rg}' could not be found."),
                );
            }
            match (rest, m) {
                ([], _) => super::arm_clusters::cluster(s, m, rg, name, body, &api_version),
                (["listclusteradmincredential"], "POST") => match s.admin_kubeconfig(rg, name) {
                    Some(v) => json_answer(
                        StatusCode::OK,
                        json!({"kubeconfigs": [{"name": "clusterAdmin", "value": v}]}),
                    ),
                    None => not_found(rg, name),
                },
                (["agentpools"], "GET") => match s.clusters.get(&key(rg, name)) {
                    Some(c) => {
                        let names: Vec<String> = c.pools.keys().cloned().collect();
                        let value: Vec<Value> =
                            names.iter().filter_map(|p| s.pool_view(rg, name, p)).collect();
                        json_answer(StatusCode::OK, json!({ "value": value }))
                    }
                    None => not_found(rg, name),
                },
                (["agentpools", _], _) => {
                    super::arm_clusters::pool(s, m, rg, name, segs[9], body, &api_version)
                }
                _ => arm_error(StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed", "Not supported here."),
            }
        }
        _ => arm_error(StatusCode::NOT_FOUND, "InvalidResourceType", "No route for this path."),
    }
}

fn v_done(s: &State, id: &str) -> bool {
    s.ops.get(id).is_some_and(|o| o.done)
}

/// Adds `Retry-After` to an answer about a running operation, when the stand-in is told to.
fn poll_answer(s: &State, r: Response, done: bool) -> Response {
    match (done, s.config.poll_retry_after) {
        (false, Some(secs)) => with_header(r, "retry-after", &secs.to_string()),
        _ => r,
    }
}

fn location_poll(s: &State, id: &str) -> Response {
    let Some(o) = s.ops.get(id) else {
        return arm_error(StatusCode::NOT_FOUND, "NotFound", "No such operation.");
    };
    match (&o.fail, o.done) {
        (_, false) => poll_answer(s, StatusCode::ACCEPTED.into_response(), false),
        (None, true) => StatusCode::NO_CONTENT.into_response(),
        (Some((code, message)), true) => arm_error(StatusCode::BAD_REQUEST, code, message),
    }
}

pub(super) fn not_found(rg: &str, name: &str) -> Response {
    arm_error(
        StatusCode::NOT_FOUND,
        "ResourceNotFound",
        &format!(
            "The Resource 'Microsoft.ContainerService/managedClusters/{name}' under resource group '{rg}' was not found."
        ),
    )
}

fn parse_form(body: &[u8]) -> Vec<(String, String)> {
    String::from_utf8_lossy(body)
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (percent_decode(k), percent_decode(v)))
        .collect()
}

fn token(s: &mut State, method: &Method, tenant: &str, body: &[u8]) -> Response {
    let err = |status: StatusCode, error: &str, description: &str| {
        (status, axum::Json(json!({ "error": error, "error_description": description, "error_codes": [] })))
            .into_response()
    };
    if method != Method::POST {
        return err(
            StatusCode::METHOD_NOT_ALLOWED,
            "invalid_request",
            "AADSTS900561: The endpoint only accepts POST requests.",
        );
    }
    let form = parse_form(body);
    let get = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str()).unwrap_or("");
    if *tenant != s.config.tenant_id.to_ascii_lowercase() {
        return err(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            &format!("AADSTS90002: Tenant '{tenant}' not found."),
        );
    }
    if get("grant_type") != "client_credentials" {
        return err(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "AADSTS70003: The app requested an unsupported grant type.",
        );
    }
    if get("client_id") != s.config.client_id {
        return err(
            StatusCode::BAD_REQUEST,
            "unauthorized_client",
            &format!(
                "AADSTS700016: Application with identifier '{}' was not found in the directory.",
                get("client_id")
            ),
        );
    }
    if s.secret_revoked || get("client_secret") != s.config.client_secret {
        return err(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in the request is the client secret value.",
        );
    }
    let want_scope = format!("{}/.default", s.base_url);
    if get("scope") != want_scope {
        return err(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            &format!("AADSTS70011: The provided value for scope {} is not valid.", get("scope")),
        );
    }
    let t = s.issue_token();
    let life = s.config.token_lifetime;
    json_answer(
        StatusCode::OK,
        json!({ "token_type": "Bearer", "expires_in": life, "ext_expires_in": life, "access_token": t }),
    )
}

fn group(s: &mut State, method: &str, rg: &str, body: &[u8]) -> Response {
    let k = rg.to_ascii_lowercase();
    let view = |g: &Group, sub: &str| {
        json!({
            "id": format!("/subscriptions/{sub}/resourceGroups/{}", g.name), "name": g.name, "type": "Microsoft.Resources/resourceGroups",
            "location": g.location, "tags": g.tags, "properties": {"provisioningState": "Succeeded"}
        })
    };
    let sub = s.config.subscription_id.clone();
    match method {
        "GET" | "HEAD" => match s.groups.get(&k) {
            Some(g) if method == "GET" => json_answer(StatusCode::OK, view(g, &sub)),
            Some(_) => StatusCode::NO_CONTENT.into_response(),
            None => arm_error(
                StatusCode::NOT_FOUND,
                "ResourceGroupNotFound",
                &format!("Resource group '{rg}' could not be found."),
            ),
        },
        "PUT" => {
            let Ok(v) = serde_json::from_slice::<Value>(body) else {
                return arm_error(
                    StatusCode::BAD_REQUEST,
                    "InvalidRequestContent",
                    "The request content was invalid.",
                );
            };
            let Some(location) = v["location"].as_str().filter(|l| !l.is_empty()) else {
                return arm_error(
                    StatusCode::BAD_REQUEST,
                    "LocationRequired",
                    "The location property is required for this definition.",
                );
            };
            let created = !s.groups.contains_key(&k);
            let g = Group { name: rg.to_owned(), location: location.to_owned(), tags: v["tags"].clone() };
            let out = view(&g, &sub);
            s.groups.insert(k, g);
            json_answer(if created { StatusCode::CREATED } else { StatusCode::OK }, out)
        }
        "DELETE" => {
            if !s.groups.contains_key(&k) {
                return arm_error(
                    StatusCode::NOT_FOUND,
                    "ResourceGroupNotFound",
                    &format!("Resource group '{rg}' could not be found."),
                );
            }
            let id = s.start_op(Effect::GroupDelete, (k, String::new()), "");
            let url =
                format!("{}/subscriptions/{sub}/operationresults/{id}?api-version=2021-04-01", s.base_url);
            let r = with_header(StatusCode::ACCEPTED.into_response(), "location", &url);
            poll_answer(s, r, false)
        }
        _ => arm_error(StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed", "Not supported here."),
    }
}

/// `{value, nextLink}`, two clusters a page, so that clients are made to follow `nextLink`.
fn list_clusters(s: &State, rg: Option<&str>, uri: &Uri, api_version: &str) -> Response {
    let skip: usize = query_param(uri, "$skipToken").and_then(|v| v.parse().ok()).unwrap_or(0);
    let all: Vec<&Cluster> =
        s.clusters.values().filter(|c| rg.is_none_or(|rg| c.rg.eq_ignore_ascii_case(rg))).collect();
    let value: Vec<Value> =
        all.iter().skip(skip).take(2).filter_map(|c| s.cluster_view(&c.rg, &c.name)).collect();
    let mut out = json!({ "value": value });
    if skip + 2 < all.len() {
        out["nextLink"] =
            json!(format!("{}{}?api-version={api_version}&$skipToken={}", s.base_url, uri.path(), skip + 2));
    }
    json_answer(StatusCode::OK, out)
}

/// The answer to a PUT or DELETE that started operation `id`.
pub(super) fn started(
    s: &State,
    status: StatusCode,
    body: Option<Value>,
    id: &str,
    location: &str,
    api_version: &str,
    with_location: bool,
) -> Response {
    let base = format!(
        "{}/subscriptions/{}/providers/Microsoft.ContainerService/locations/{location}",
        s.base_url, s.config.subscription_id
    );
    let mut r = match body {
        Some(b) => json_answer(status, b),
        None => status.into_response(),
    };
    r = with_header(r, "azure-asyncoperation", &format!("{base}/operations/{id}?api-version={api_version}"));
    if with_location {
        r = with_header(r, "location", &format!("{base}/operationresults/{id}?api-version={api_version}"));
    }
    poll_answer(s, r, false)
}
