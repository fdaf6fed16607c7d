//! The Kubernetes shapes we render — subjects, metadata, bindings — and how a live object is
//! compared with the wanted one.

use rancher_core::model::PolicyRule;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::{BINDING_ANNOTATION, BINDING_LABEL, MANAGED_BY_LABEL, MANAGED_BY_VALUE, RenderError};

pub(super) const RBAC_GROUP: &str = "rbac.authorization.k8s.io";
pub(super) const RBAC_VERSION: &str = "rbac.authorization.k8s.io/v1";

/// The value of [`BINDING_LABEL`] for a binding key: 16 hex digits of its SHA-256.
pub fn binding_key_hash(key: &str) -> String {
    short_hash(&[key])
}

pub(super) fn short_hash(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0u8]);
    }
    hex::encode(&h.finalize()[..8])
}

/// `s` when it is a valid label value, otherwise a hash of it.
pub(super) fn label_value(s: &str) -> String {
    let ok = s.len() <= 63
        && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && s.chars().next().is_none_or(|c| c.is_ascii_alphanumeric())
        && s.chars().last().is_none_or(|c| c.is_ascii_alphanumeric());
    if ok { s.to_owned() } else { format!("h-{}", short_hash(&[s])) }
}

pub(super) fn metadata(name: &str, namespace: Option<&str>, labels: Value, annotations: Value) -> Value {
    let mut m = json!({"name": name, "labels": labels});
    if let Some(ns) = namespace {
        m["namespace"] = json!(ns);
    }
    if annotations.as_object().is_some_and(|a| !a.is_empty()) {
        m["annotations"] = annotations;
    }
    m
}

pub(super) fn subject(
    user_name: &str,
    user_principal_name: &str,
    group_principal_name: &str,
    group_name: &str,
    service_account: &str,
) -> Result<Value, RenderError> {
    let group = if group_principal_name.is_empty() { group_name } else { group_principal_name };
    let set = [!user_name.is_empty(), !group.is_empty(), !service_account.is_empty()];
    match set {
        [true, false, false] => Ok(json!({"kind": "User", "apiGroup": RBAC_GROUP, "name": user_name})),
        [false, true, false] => Ok(json!({"kind": "Group", "apiGroup": RBAC_GROUP, "name": group})),
        [false, false, true] => {
            let (ns, name) = service_account
                .split_once(':')
                .filter(|(ns, name)| !ns.is_empty() && !name.is_empty())
                .ok_or_else(|| {
                    RenderError::Subject(format!("serviceAccount {service_account:?} is not namespace:name"))
                })?;
            Ok(json!({"kind": "ServiceAccount", "name": name, "namespace": ns}))
        }
        [false, false, false] if !user_principal_name.is_empty() => Err(RenderError::Subject(
            "userPrincipalName without userName: the user's id is needed downstream".into(),
        )),
        [false, false, false] => Err(RenderError::Subject("no user, group or service account".into())),
        _ => Err(RenderError::Subject("more than one of user, group and service account".into())),
    }
}

pub(super) fn binding_key(kind: &str, namespace: Option<&str>, name: &str) -> String {
    format!("{kind}:{}/{name}", namespace.unwrap_or_default())
}

pub(super) fn binding_object(
    kind: &str,
    name: &str,
    namespace: Option<&str>,
    key: &str,
    role: &str,
    subject: &Value,
) -> Value {
    let labels = json!({MANAGED_BY_LABEL: MANAGED_BY_VALUE, BINDING_LABEL: binding_key_hash(key)});
    json!({
        "apiVersion": RBAC_VERSION,
        "kind": kind,
        "metadata": metadata(name, namespace, labels, json!({BINDING_ANNOTATION: key})),
        "roleRef": {"apiGroup": RBAC_GROUP, "kind": "ClusterRole", "name": role},
        "subjects": [subject],
    })
}

/// Whether `live` (as read from the cluster) differs from `desired` in anything we manage: our
/// labels and annotations, `rules`, `subjects` or `roleRef`. Fields the API server adds are ignored.
pub fn differs(desired: &Value, live: &Value) -> bool {
    for field in ["labels", "annotations"] {
        if let Some(want) = desired["metadata"][field].as_object()
            && want.iter().any(|(k, v)| live["metadata"][field].get(k) != Some(v))
        {
            return true;
        }
    }
    let rules = |v: &Value| serde_json::from_value::<Vec<PolicyRule>>(v["rules"].clone()).unwrap_or_default();
    if desired.get("rules").is_some() && rules(desired) != rules(live) {
        return true;
    }
    let subjects = |v: &Value| -> Vec<(String, String, String, String)> {
        v["subjects"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|s| {
                        let f = |k: &str| s[k].as_str().unwrap_or_default().to_owned();
                        (f("kind"), f("apiGroup"), f("name"), f("namespace"))
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    if desired.get("subjects").is_some() && subjects(desired) != subjects(live) {
        return true;
    }
    desired.get("roleRef").is_some() && desired["roleRef"] != live["roleRef"]
}

/// Whether an object read from a cluster carries our [`MANAGED_BY_LABEL`].
pub fn is_managed(object: &Value) -> bool {
    object["metadata"]["labels"][MANAGED_BY_LABEL].as_str() == Some(MANAGED_BY_VALUE)
}
