//! `POST /v3/clusters/<id>?action=rotateCertificates`: asks for a certificate rotation of a cluster
//! built on hosts by setting `spec.rkeConfig.rotate_certificates` (Rancher's `rotateCertificates`),
//! stamped with the time of the request so that the provisioner carries it out once. The body is
//! Rancher's `{"caCertificates": bool, "services": "kubelet"}` (`services` may also be a list; no
//! body: every certificate, same CAs). Allowed to whoever may update the cluster; the changed spec
//! is checked like any update (422 naming the field).

use axum::Json;
use axum::body::Body;
use http::HeaderMap;
use rancher_core::model::{Cluster, RkeRotateCertificates};
use rancher_core::store::Api;
use serde_json::{Map, Value, json};

use super::body::json_object;
use super::crud::authorize_object;
use super::kind::{ApiKind as _, Ctx};
use crate::server::auth::Caller;
use crate::server::error::{ApiError, ApiResult};
use crate::server::state::AppState;

/// The action's name.
pub(crate) const ACTION: &str = "rotateCertificates";

/// The rotation the body asks for (`requested_at` left empty).
fn parse(body: &Map<String, Value>) -> ApiResult<RkeRotateCertificates> {
    let mut out = RkeRotateCertificates::default();
    for (key, value) in body {
        match (key.as_str(), value) {
            ("caCertificates", Value::Bool(b)) => out.ca_certificates = *b,
            ("caCertificates", Value::Null) => {}
            ("services", Value::String(s)) if s.is_empty() => {}
            ("services", Value::String(s)) => out.services = vec![s.clone()],
            ("services", Value::Array(items)) => {
                for (i, item) in items.iter().enumerate() {
                    let s = item.as_str().ok_or_else(|| {
                        ApiError::invalid_field(
                            &format!("services[{i}]"),
                            "must be a service name (a string)",
                        )
                    })?;
                    out.services.push(s.to_owned());
                }
            }
            ("services", Value::Null) => {}
            ("caCertificates", _) => {
                return Err(ApiError::invalid_field("caCertificates", "must be true or false"));
            }
            ("services", _) => {
                return Err(ApiError::invalid_field("services", "must be a service name or a list of them"));
            }
            ("type", _) => {} // Rancher's clients send the input's type name
            (other, _) => {
                return Err(ApiError::BadRequest(format!(
                    "unknown field {other:?} in a rotateCertificates request (known: caCertificates, services)"
                )));
            }
        }
    }
    Ok(out)
}

/// The body as a JSON object; no body at all is an empty one.
pub(super) async fn read_body(
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
) -> ApiResult<Map<String, Value>> {
    let length = headers.get(http::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok());
    if !headers.contains_key(http::header::CONTENT_TYPE) && matches!(length, None | Some("0")) {
        let bytes = axum::body::to_bytes(body, state.body_limit)
            .await
            .map_err(|_| ApiError::TooLarge { limit: state.body_limit })?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Map::new());
        }
        return Err(ApiError::UnsupportedMediaType(
            "the request has no Content-Type: send application/json".into(),
        ));
    }
    json_object(headers, body, state.body_limit).await
}

/// Serves the action on cluster `id`.
pub(crate) async fn rotate_certificates(
    state: &AppState,
    caller: &Caller,
    id: &str,
    headers: &HeaderMap,
    body: Body,
) -> ApiResult<Json<Value>> {
    authorize_object::<Cluster>(state, caller, "update", None, id).await?;
    let mut request = parse(&read_body(state, headers, body).await?)?;
    let clusters = Api::<Cluster>::all(state.store.clone());
    let old = clusters.get(id).await?;
    if old.metadata.deletion_timestamp.is_some() {
        return Err(ApiError::Conflict(format!("cluster {id:?} is being deleted")));
    }
    let mut new = old.clone();
    let Some(cfg) = new.spec.rke_config.as_mut() else {
        return Err(ApiError::Conflict(format!(
            "cluster {id:?} is not built on hosts (it has no rkeConfig): only the certificates of such \
             clusters are rotated by the server"
        )));
    };
    // A later time than any earlier request's, even within one clock tick.
    let mut now = jiff::Timestamp::now();
    if let Some(last) =
        cfg.rotate_certificates.as_ref().and_then(|r| r.requested_at.parse::<jiff::Timestamp>().ok())
        && last >= now
    {
        now = last + jiff::SignedDuration::from_micros(1);
    }
    request.requested_at = now.to_string();
    cfg.rotate_certificates = Some(request.clone());
    let cx = Ctx::new(state, caller);
    old.check_change(&cx).await?;
    new.prepare_update(&old, &cx).await?;
    clusters.update(&new).await?;
    tracing::info!(
        cluster = id,
        user = caller.user_id(),
        new_ca = request.ca_certificates,
        services = ?request.services,
        "certificate rotation requested"
    );
    let what = match (request.ca_certificates, request.services.is_empty()) {
        (true, _) => "every certificate, with new CAs (three rolls over the hosts)".to_owned(),
        (false, true) => "every certificate".to_owned(),
        (false, false) => format!("the certificates of {}", request.services.join(", ")),
    };
    Ok(Json(json!({
        "type": "rotateCertificateOutput",
        "message": format!("rotating {what} of cluster {id}"),
        "rotateCertificates": request,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn the_body_takes_rancher_s_shape_and_a_list() {
        let r = parse(&body(json!({"caCertificates": true, "type": "rotateCertificateInput"}))).unwrap();
        assert!(r.ca_certificates && r.services.is_empty());
        let r = parse(&body(json!({"services": "kubelet"}))).unwrap();
        assert_eq!(r.services, ["kubelet"]);
        let r =
            parse(&body(json!({"services": ["etcd", "kube-apiserver"], "caCertificates": false}))).unwrap();
        assert_eq!(r.services, ["etcd", "kube-apiserver"]);
        assert_eq!(parse(&Map::new()).unwrap(), RkeRotateCertificates::default());
        let err = parse(&body(json!({"services": [1]}))).unwrap_err().to_string();
        assert!(err.starts_with("services[0]:"), "{err}");
        let err = parse(&body(json!({"caCertificates": "yes"}))).unwrap_err().to_string();
        assert!(err.starts_with("caCertificates:"), "{err}");
        let err = parse(&body(json!({"newCa": true}))).unwrap_err().to_string();
        assert!(err.contains("unknown field \"newCa\""), "{err}");
    }
}
