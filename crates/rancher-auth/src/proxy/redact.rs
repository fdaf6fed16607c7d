//! What the audit log must never hold: the bodies of requests that carry credentials or Secret data.
//! A body is recorded only when the request is plainly about a resource that holds no secrets
//! ([`may_record_body`], decided from the parsed [`RequestInfo`] before the body is read) and the
//! whole body is a JSON document in which no object is of a secret-bearing kind ([`check_body`]).
//! Anything the proxy cannot read with certainty — an oddly spelled path, a body cut short, YAML or
//! protobuf — is left out.

use serde::Serialize;
use serde_json::Value;

use super::request_info::RequestInfo;

/// Why a request body is not in its audit record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum BodyOmitted {
    /// The request is about a resource that holds secrets, or the body contains such an object.
    Sensitive,
    /// The path was not in normal form, so what it addresses is not certain.
    NonCanonicalPath,
    /// The request is not for an API resource.
    NotAResource,
    /// The body is not one JSON document.
    NotJson,
    /// The body is longer than the audit log keeps.
    TooLarge,
}

/// Resources whose request bodies carry secrets, in any API group: Secrets, TokenReviews (a bearer
/// token), TokenRequests, and Rancher's downstream token records.
const SENSITIVE_RESOURCES: &[&str] = &["secrets", "tokenreviews", "tokenrequests", "clusterauthtokens"];
/// Subresources whose request bodies carry or ask for credentials (`serviceaccounts/<n>/token`).
const SENSITIVE_SUBRESOURCES: &[&str] = &["token"];
/// Object kinds that carry secrets, wherever they appear in a body.
const SENSITIVE_KINDS: &[&str] = &["secret", "secretlist", "tokenreview", "tokenrequest", "clusterauthtoken"];

/// Whether the body of `info`'s request may be recorded, before it is read. Names are compared
/// without regard to case, so `SECRETS` is as sensitive as `secrets`.
///
/// ```
/// use http::Method;
/// use rancher_auth::proxy::{BodyOmitted, may_record_body};
/// use rancher_auth::proxy::RequestInfo;
///
/// let cm = RequestInfo::parse(&Method::POST, "/api/v1/namespaces/a/configmaps", None);
/// assert_eq!(may_record_body(&cm), Ok(()));
/// let odd = RequestInfo::parse(&Method::POST, "/api/v1/namespaces/a/./configmaps", None);
/// assert_eq!(may_record_body(&odd), Err(BodyOmitted::NonCanonicalPath));
/// ```
///
/// # Errors
/// Why not, as a [`BodyOmitted`].
pub fn may_record_body(info: &RequestInfo) -> Result<(), BodyOmitted> {
    let any = |names: &[&str], value: &str| names.iter().any(|n| n.eq_ignore_ascii_case(value));
    if any(SENSITIVE_RESOURCES, &info.resource) || any(SENSITIVE_SUBRESOURCES, &info.subresource) {
        return Err(BodyOmitted::Sensitive);
    }
    if !info.canonical_path {
        return Err(BodyOmitted::NonCanonicalPath);
    }
    if !info.is_resource_request {
        return Err(BodyOmitted::NotAResource);
    }
    Ok(())
}

/// Whether a captured body may be recorded: it is `complete`, it is one JSON document, and no object
/// in it (at any depth, e.g. the items of a `List`) has a secret-bearing `kind`.
///
/// # Errors
/// Why not, as a [`BodyOmitted`].
pub fn check_body(body: &[u8], complete: bool) -> Result<(), BodyOmitted> {
    if !complete {
        return Err(BodyOmitted::TooLarge);
    }
    let doc: Value = serde_json::from_slice(body).map_err(|_| BodyOmitted::NotJson)?;
    if holds_sensitive_kind(&doc) { Err(BodyOmitted::Sensitive) } else { Ok(()) }
}

fn holds_sensitive_kind(v: &Value) -> bool {
    match v {
        Value::Object(map) => {
            let kind = map.get("kind").and_then(Value::as_str).unwrap_or_default();
            SENSITIVE_KINDS.iter().any(|k| k.eq_ignore_ascii_case(kind))
                || map.values().any(holds_sensitive_kind)
        }
        Value::Array(items) => items.iter().any(holds_sensitive_kind),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use http::Method;

    use super::*;

    fn info(method: Method, path: &str) -> RequestInfo {
        RequestInfo::parse(&method, path, None)
    }

    #[test]
    fn secret_bearing_resources_in_any_spelling_are_sensitive() {
        for path in [
            "/api/v1/namespaces/a/secrets",
            "/api/v1/namespaces/a/secrets/s",
            "/api/v1/namespaces/a/SECRETS",
            "/api/v1/namespaces/a/./secrets",
            "/api/v1/namespaces%2Fa%2Fsecrets",
            "/apis/authentication.k8s.io/v1/tokenreviews",
            "/apis/Authentication.K8s.io/v1/TokenReviews",
            "/api/v1/namespaces/a/serviceaccounts/default/token",
            "/apis/cluster.cattle.io/v3/namespaces/cattle-system/clusterauthtokens",
            "/apis/external-secrets.io/v1/namespaces/a/secrets",
        ] {
            assert_eq!(may_record_body(&info(Method::POST, path)), Err(BodyOmitted::Sensitive), "{path}");
        }
    }

    #[test]
    fn odd_paths_and_non_resources_are_not_recorded() {
        let odd = info(Method::POST, "/api/v1/namespaces/a/configmaps/");
        assert_eq!(may_record_body(&odd), Err(BodyOmitted::NonCanonicalPath));
        let upper = info(Method::POST, "/API/V1/namespaces/a/secrets");
        assert_eq!(may_record_body(&upper), Err(BodyOmitted::NotAResource));
        let ok = info(Method::PUT, "/apis/apps/v1/namespaces/a/deployments/web");
        assert_eq!(may_record_body(&ok), Ok(()));
    }

    #[test]
    fn bodies_are_recorded_only_when_whole_json_without_secret_kinds() {
        assert_eq!(check_body(br#"{"kind":"ConfigMap","data":{"a":"b"}}"#, true), Ok(()));
        assert_eq!(
            check_body(br#"{"kind":"Secret","data":{"a":"Yg=="}}"#, true),
            Err(BodyOmitted::Sensitive)
        );
        assert_eq!(check_body(br#"{"kind":"secret"}"#, true), Err(BodyOmitted::Sensitive));
        let list = br#"{"kind":"List","items":[{"kind":"ConfigMap"},{"kind":"Secret"}]}"#;
        assert_eq!(check_body(list, true), Err(BodyOmitted::Sensitive));
        let review = br#"{"kind":"TokenReview","spec":{"token":"t"}}"#;
        assert_eq!(check_body(review, true), Err(BodyOmitted::Sensitive));
        assert_eq!(check_body(b"kind: Secret\ndata: {}\n", true), Err(BodyOmitted::NotJson));
        assert_eq!(check_body(br#"{"kind":"ConfigMap"}"#, false), Err(BodyOmitted::TooLarge));
        assert_eq!(check_body(b"", true), Err(BodyOmitted::NotJson));
    }
}
