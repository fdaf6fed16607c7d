//! Accessors for `metadata` of objects held as JSON, and small helpers shared by handlers.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

pub(crate) fn name(o: &Value) -> &str {
    o["metadata"]["name"].as_str().unwrap_or("")
}
pub(crate) fn namespace(o: &Value) -> &str {
    o["metadata"]["namespace"].as_str().unwrap_or("")
}
pub(crate) fn uid(o: &Value) -> &str {
    o["metadata"]["uid"].as_str().unwrap_or("")
}
pub(crate) fn resource_version(o: &Value) -> &str {
    o["metadata"]["resourceVersion"].as_str().unwrap_or("")
}
pub(crate) fn is_deleting(o: &Value) -> bool {
    o["metadata"].get("deletionTimestamp").is_some_and(|v| !v.is_null())
}
pub(crate) fn finalizers(o: &Value) -> Vec<String> {
    str_list(&o["metadata"]["finalizers"])
}
/// A namespace whose `spec.finalizers` is not empty yet (the API server removes a deleted namespace
/// only once those, and `metadata.finalizers`, are all gone).
pub(crate) fn spec_finalized(o: &Value) -> bool {
    o["kind"] == "Namespace" && !str_list(&o["spec"]["finalizers"]).is_empty()
}
pub(crate) fn labels(o: &Value) -> BTreeMap<String, String> {
    str_map(&o["metadata"]["labels"])
}
pub(crate) fn str_list(v: &Value) -> Vec<String> {
    v.as_array().map(|a| a.iter().filter_map(|x| x.as_str().map(String::from)).collect()).unwrap_or_default()
}
pub(crate) fn str_map(v: &Value) -> BTreeMap<String, String> {
    v.as_object()
        .map(|m| m.iter().filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_string()))).collect())
        .unwrap_or_default()
}

/// `metadata` as a mutable map, creating it (and replacing a non-object) as needed.
pub(crate) fn metadata_mut(o: &mut Value) -> &mut Map<String, Value> {
    if !o.is_object() {
        *o = json!({});
    }
    let md = o.as_object_mut().map(|m| m.entry("metadata").or_insert_with(|| json!({})));
    let md = md.expect("object");
    if !md.is_object() {
        *md = json!({});
    }
    md.as_object_mut().expect("metadata object")
}

/// The owner references of an object: (uid, kind, name, blockOwnerDeletion).
pub(crate) fn owner_uids(o: &Value) -> Vec<String> {
    o["metadata"]["ownerReferences"]
        .as_array()
        .map(|a| a.iter().filter_map(|r| r["uid"].as_str().map(String::from)).collect())
        .unwrap_or_default()
}

/// Whether `o` is controlled by the object with uid `owner`.
pub(crate) fn owned_by(o: &Value, owner: &str) -> bool {
    owner_uids(o).iter().any(|u| u == owner)
}

/// An owner reference pointing at `owner` with controller=true.
pub(crate) fn controller_ref(owner: &Value) -> Value {
    json!({
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": name(owner),
        "uid": uid(owner),
        "controller": true,
        "blockOwnerDeletion": true,
    })
}

/// Now, as the API server writes timestamps (RFC 3339, seconds).
pub(crate) fn now() -> String {
    jiff::Timestamp::now().round(jiff::Unit::Second).map(|t| t.to_string()).unwrap_or_default()
}

/// The RFC 3339 time `secs` seconds from now.
pub(crate) fn after_seconds(secs: i64) -> String {
    let t = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(secs);
    t.round(jiff::Unit::Second).map(|t| t.to_string()).unwrap_or_default()
}

/// A pod marked for graceful deletion whose grace period has not run out yet.
pub(crate) fn in_grace_period(o: &Value) -> bool {
    o["kind"] == "Pod"
        && o["metadata"]["deletionGracePeriodSeconds"].as_i64().is_some_and(|g| g > 0)
        && o["metadata"]["deletionTimestamp"]
            .as_str()
            .and_then(|t| t.parse::<jiff::Timestamp>().ok())
            .is_some_and(|t| t > jiff::Timestamp::now())
}

/// A random suffix from the alphabet Kubernetes uses for generateName.
pub(crate) fn random_suffix(n: usize) -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut rng = rand::rng();
    (0..n).map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char).collect()
}

/// Whether `s` is a DNS-1123 label (namespaces, services, container names).
pub(crate) fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// Whether `s` is a DNS-1123 subdomain (most object names).
pub(crate) fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(is_dns_label)
}

/// Whether `s` is a path segment name (RBAC objects accept `system:...` names).
pub(crate) fn is_path_segment_name(s: &str) -> bool {
    !s.is_empty() && s != "." && s != ".." && !s.contains('/') && !s.contains('%')
}
