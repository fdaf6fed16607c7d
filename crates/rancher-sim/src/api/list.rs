//! list: selectors, `limit`/`continue` pages that stay consistent with the first page, and the
//! `resourceVersion` / `resourceVersionMatch` semantics of the API server (`0` = any, `NotOlderThan`,
//! `Exact` rebuilt from the event log, 410 Expired when the log no longer reaches back, 504 when a
//! version from the future does not arrive).

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use http::Response;
use serde_json::{Value, json};

use super::ResourceRequest;
use super::crud::{Filter, ns_filter};
use crate::http_util::{Body, Wants, json_response};
use crate::state::SimState;
use crate::status::{ApiError, Cause};
use crate::store::ListAtError;
use crate::{meta, table};

/// How long a list waits for a resourceVersion newer than the store's before answering 504, as the
/// API server's watch cache does.
const WAIT_FOR_RV: Duration = Duration::from_secs(3);

const CONTINUE_EXPIRED: &str = "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.";

fn list_options_invalid(field: &str, reason: &'static str, message: String) -> ApiError {
    ApiError::invalid("meta.k8s.io", "ListOptions", "", vec![Cause { reason, field: field.into(), message }])
}

fn parse_rv(v: &str) -> Result<u64, ApiError> {
    v.parse().map_err(|_| ApiError::bad_request(format!("invalid resource version: {v:?}")))
}

fn too_large(want: u64, current: u64) -> ApiError {
    ApiError::new(504, "Timeout", format!("Too large resource version: {want}, current: {current}"))
        .with_details(json!({
            "causes": [{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}],
            "retryAfterSeconds": 1
        }))
}

/// Waits (a bounded time) until the store has reached `rv`.
async fn wait_for(state: &SimState, rv: u64) -> Result<(), ApiError> {
    let mut rx = state.store.subscribe();
    let deadline = tokio::time::Instant::now() + WAIT_FOR_RV;
    loop {
        let current = state.store.rv();
        if current >= rv {
            return Ok(());
        }
        match tokio::time::timeout_at(deadline, rx.changed()).await {
            Ok(Ok(())) => {}
            _ => return Err(too_large(rv, current)),
        }
    }
}

/// The objects a list sees, the resourceVersion it reports, and where a continued list resumes.
struct Snapshot {
    items: Vec<Arc<Value>>,
    rv: u64,
    after: Option<(String, String)>,
}

async fn snapshot(state: &SimState, rr: &ResourceRequest) -> Result<Snapshot, ApiError> {
    let key = rr.def.key();
    let ns = ns_filter(rr);
    let rv_param = rr.query.get("resourceVersion").unwrap_or("");
    let rv_match = rr.query.get("resourceVersionMatch").unwrap_or("");
    if let Some(tok) = rr.query.get("continue").filter(|t| !t.is_empty()) {
        if !rv_match.is_empty() {
            return Err(list_options_invalid(
                "resourceVersionMatch",
                "FieldValueForbidden",
                "Forbidden: resourceVersionMatch is forbidden when continue is provided".into(),
            ));
        }
        if !rv_param.is_empty() && rv_param != "0" {
            return Err(ApiError::bad_request(
                "specifying resource version is not allowed when using continue",
            ));
        }
        let (rv, ns0, name0) = decode_continue(tok)?;
        let items = state.store.list_at(&key, ns, rv).map_err(|e| match e {
            ListAtError::TooOld(_) => ApiError::gone(CONTINUE_EXPIRED),
            ListAtError::TooLarge(_) => continue_invalid(),
        })?;
        return Ok(Snapshot { items, rv, after: Some((ns0, name0)) });
    }
    match rv_match {
        "" | "NotOlderThan" => {
            if rv_match == "NotOlderThan" && rv_param.is_empty() {
                return Err(list_options_invalid(
                    "resourceVersionMatch",
                    "FieldValueForbidden",
                    "Forbidden: resourceVersionMatch is forbidden unless resourceVersion is provided".into(),
                ));
            }
            if !rv_param.is_empty() {
                wait_for(state, parse_rv(rv_param)?).await?;
            }
            let (items, rv) = state.store.list(&key, ns);
            Ok(Snapshot { items, rv, after: None })
        }
        "Exact" => {
            if rv_param.is_empty() || rv_param == "0" {
                return Err(list_options_invalid(
                    "resourceVersionMatch",
                    "FieldValueForbidden",
                    format!(
                        "Forbidden: resourceVersionMatch \"Exact\" is forbidden for resourceVersion {rv_param:?}"
                    ),
                ));
            }
            let rv = parse_rv(rv_param)?;
            wait_for(state, rv).await?;
            let items = state.store.list_at(&key, ns, rv).map_err(|e| match e {
                ListAtError::TooOld(_) => {
                    ApiError::gone("The resourceVersion for the provided list is too old.")
                }
                ListAtError::TooLarge(current) => too_large(rv, current),
            })?;
            Ok(Snapshot { items, rv, after: None })
        }
        other => Err(list_options_invalid(
            "resourceVersionMatch",
            "FieldValueNotSupported",
            format!("Unsupported value: {other:?}: supported values: \"Exact\", \"NotOlderThan\", \"\""),
        )),
    }
}

pub(super) async fn serve(
    state: &Arc<SimState>,
    rr: &ResourceRequest,
    wants: Wants,
) -> Result<Response<Body>, ApiError> {
    let filter = Filter::from_query(rr)?;
    let limit = rr.query.int("limit")?;
    let Snapshot { items, rv, after } = snapshot(state, rr).await?;
    let mut items: Vec<Arc<Value>> = items.into_iter().filter(|o| filter.matches(o)).collect();
    if let Some((ns0, name0)) = &after {
        items.retain(|o| (meta::namespace(o), meta::name(o)) > (ns0.as_str(), name0.as_str()));
    }
    let mut continue_token = None;
    let mut remaining = None;
    if let Some(limit) = limit.filter(|l| *l > 0) {
        let limit = limit as usize;
        if items.len() > limit {
            remaining = Some(items.len() - limit);
            items.truncate(limit);
            let last = items.last().map(|o| (meta::namespace(o).to_string(), meta::name(o).to_string()));
            continue_token = last.map(|(ns, name)| encode_continue(rv, &ns, &name));
        }
    }
    let rv = rv.to_string();
    if wants == Wants::Table {
        let mut t = table::render(&rr.def, &items, &rv, rr.query.get("includeObject"), true);
        if let Some(c) = &continue_token {
            t["metadata"]["continue"] = json!(c);
        }
        return Ok(json_response(200, &t));
    }
    let mut md = json!({"resourceVersion": rv});
    if let Some(c) = continue_token {
        md["continue"] = json!(c);
        md["remainingItemCount"] = json!(remaining.unwrap_or(0));
    }
    Ok(json_response(
        200,
        &json!({"kind": format!("{}List", rr.def.kind), "apiVersion": rr.def.api_version(), "metadata": md, "items": items.iter().map(|o| &**o).collect::<Vec<&Value>>()}),
    ))
}

fn encode_continue(rv: u64, ns: &str, name: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(json!({"rv": rv, "ns": ns, "name": name}).to_string())
}

fn continue_invalid() -> ApiError {
    ApiError::bad_request(
        "continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)",
    )
}

fn decode_continue(tok: &str) -> Result<(u64, String, String), ApiError> {
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(tok).map_err(|_| continue_invalid())?;
    let v: Value = serde_json::from_slice(&raw).map_err(|_| continue_invalid())?;
    Ok((
        v["rv"].as_u64().ok_or_else(continue_invalid)?,
        v["ns"].as_str().ok_or_else(continue_invalid)?.to_string(),
        v["name"].as_str().ok_or_else(continue_invalid)?.to_string(),
    ))
}
