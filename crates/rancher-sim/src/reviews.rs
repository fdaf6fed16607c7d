//! The create-only review APIs (SelfSubjectAccessReview, SubjectAccessReview,
//! LocalSubjectAccessReview, SelfSubjectRulesReview, TokenReview, SelfSubjectReview) and
//! `serviceaccounts/<name>/token` (TokenRequest).

use std::collections::BTreeMap;

use base64::Engine;
use http::Response;
use serde_json::{Value, json};

use crate::api::ResourceRequest;
use crate::authn::UserInfo;
use crate::http_util::{Body, json_response, parse_object};
use crate::rbac::{self, Attributes};
use crate::state::SimState;
use crate::status::{ApiError, Cause};

fn attributes_of(spec: &Value, default_ns: &str) -> Option<Attributes> {
    if let Some(ra) = spec.get("resourceAttributes").filter(|v| v.is_object()) {
        let s = |k: &str| ra[k].as_str().unwrap_or("").to_string();
        let mut a =
            Attributes::resource(&s("verb"), &s("group"), &s("resource"), &s("namespace"), &s("name"));
        if a.namespace.is_empty() {
            a.namespace = default_ns.to_string();
        }
        a.subresource = s("subresource");
        return Some(a);
    }
    let nra = spec.get("nonResourceAttributes").filter(|v| v.is_object())?;
    Some(Attributes::non_resource(nra["verb"].as_str().unwrap_or(""), nra["path"].as_str().unwrap_or("")))
}

fn respond(d_kind: &str, api_version: &str, body: &Value, status: Value) -> Result<Response<Body>, ApiError> {
    let mut out = json!({"kind": d_kind, "apiVersion": api_version, "metadata": {"creationTimestamp": null}, "spec": body["spec"], "status": status});
    if let Some(md) = body.get("metadata").filter(|m| m.is_object()) {
        out["metadata"] = md.clone();
    }
    Ok(json_response(201, &out))
}

pub(crate) async fn handle(
    state: &SimState,
    user: &UserInfo,
    rr: &ResourceRequest,
    body: &[u8],
    content_type: &str,
) -> Result<Response<Body>, ApiError> {
    let mut obj = parse_object(body, content_type)?;
    crate::admission::check_type(&rr.def, &mut obj)?;
    let kind = rr.def.kind.clone();
    let av = rr.def.api_version();
    let invalid = |field: &str| ApiError::invalid(&rr.def.group, &kind, "", vec![Cause::required(field)]);
    match rr.def.plural.as_str() {
        "selfsubjectaccessreviews" | "subjectaccessreviews" | "localsubjectaccessreviews" => {
            let subject = if rr.def.plural == "selfsubjectaccessreviews" {
                user.clone()
            } else {
                let spec = &obj["spec"];
                let name = spec["user"].as_str().unwrap_or("");
                let groups = crate::meta::str_list(&spec["groups"]);
                if name.is_empty() && groups.is_empty() {
                    return Err(ApiError::invalid(
                        &rr.def.group,
                        &kind,
                        "",
                        vec![Cause::invalid(
                            "spec.user",
                            "\"\"",
                            "at least one of user or group must be specified",
                        )],
                    ));
                }
                let extra: BTreeMap<String, Vec<String>> = spec["extra"]
                    .as_object()
                    .map(|m| m.iter().map(|(k, v)| (k.clone(), crate::meta::str_list(v))).collect())
                    .unwrap_or_default();
                UserInfo { name: name.into(), uid: spec["uid"].as_str().unwrap_or("").into(), groups, extra }
            };
            let a = attributes_of(&obj["spec"], &rr.namespace)
                .ok_or_else(|| invalid("spec.resourceAttributes"))?;
            if rr.def.plural == "localsubjectaccessreviews" && a.namespace != rr.namespace {
                return Err(ApiError::bad_request(
                    "spec.resourceAttributes.namespace must match the namespace of the request",
                ));
            }
            let d = rbac::authorize(&state.store, &subject, &a);
            let mut status = json!({"allowed": d.allowed});
            if !d.reason.is_empty() {
                status["reason"] = json!(d.reason);
            }
            respond(&kind, &av, &obj, status)
        }
        "selfsubjectrulesreviews" => {
            let ns = obj["spec"]["namespace"].as_str().unwrap_or("").to_string();
            respond(&kind, &av, &obj, rbac::rules_review(&state.store, user, &ns))
        }
        "selfsubjectreviews" => respond(&kind, &av, &obj, json!({"userInfo": user.to_json()})),
        "tokenreviews" => {
            let token = obj["spec"]["token"].as_str().unwrap_or("").to_string();
            if token.is_empty() {
                return Err(invalid("spec.token"));
            }
            let found = crate::authn::authenticate_token(state, &token).await;
            let status = match found {
                Some(u) => {
                    json!({"authenticated": true, "user": u.to_json(), "audiences": obj["spec"]["audiences"]})
                }
                None => json!({"authenticated": false, "error": "invalid bearer token"}),
            };
            respond(&kind, &av, &obj, status)
        }
        _ => Err(ApiError::not_implemented(&rr.def.plural)),
    }
}

/// Issues a token for a service account (`kubectl create token`).
pub(crate) fn token_request(
    state: &SimState,
    rr: &ResourceRequest,
    body: &Value,
) -> Result<Response<Body>, ApiError> {
    let sa = state
        .store
        .get("serviceaccounts", &rr.namespace, &rr.name)
        .ok_or_else(|| ApiError::not_found("", "serviceaccounts", &rr.name))?;
    let expiration = body["spec"]["expirationSeconds"].as_i64().unwrap_or(3600);
    if expiration < 600 {
        return Err(ApiError::invalid(
            "authentication.k8s.io",
            "TokenRequest",
            &rr.name,
            vec![Cause::invalid(
                "spec.expirationSeconds",
                expiration,
                "may not specify a duration less than 10 minutes",
            )],
        ));
    }
    let now = jiff::Timestamp::now().as_second();
    let uid = crate::meta::uid(&sa).to_string();
    let b64 = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    let claims = json!({
        "aud": body["spec"]["audiences"].as_array().cloned().unwrap_or_else(|| vec![json!("https://kubernetes.default.svc")]),
        "exp": now + expiration,
        "iat": now,
        "iss": "https://kubernetes.default.svc",
        "kubernetes.io": {"namespace": rr.namespace, "serviceaccount": {"name": rr.name, "uid": uid}},
        "sub": format!("system:serviceaccount:{}:{}", rr.namespace, rr.name),
    });
    let mut sig = [0u8; 32];
    rand::Rng::fill(&mut rand::rng(), &mut sig[..]);
    let token = format!(
        "{}.{}.{}",
        b64(&json!({"alg": "RS256", "kid": "rancher-sim"})),
        b64(&claims),
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sig)
    );
    state.tokens.add_service_account(&token, &rr.namespace, &rr.name, &uid);
    let exp = jiff::Timestamp::from_second(now + expiration).map(|t| t.to_string()).unwrap_or_default();
    Ok(json_response(
        201,
        &json!({
            "kind": "TokenRequest",
            "apiVersion": "authentication.k8s.io/v1",
            "metadata": {"name": rr.name, "namespace": rr.namespace, "creationTimestamp": null},
            "spec": {"audiences": claims["aud"], "expirationSeconds": expiration, "boundObjectRef": body["spec"]["boundObjectRef"]},
            "status": {"token": token, "expirationTimestamp": exp},
        }),
    ))
}
