//! The Kubernetes object rules every backend shares: validating what a client sends, and filling in
//! the fields the store owns (`uid`, `resourceVersion`, `generation`, timestamps, `generateName`).

use std::collections::BTreeMap;

use rand::Rng;
use serde_json::{Map, Value};

use super::{LabelSelector, StoreError, StoreResult};
use crate::validation::dns1123_label;

/// The identity of one object within a store.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct ObjectKey {
    /// The namespace, `None` for cluster-scoped objects.
    pub(crate) namespace: Option<String>,
    /// The name.
    pub(crate) name: String,
}

fn invalid(msg: impl Into<String>) -> StoreError {
    StoreError::Invalid(msg.into())
}

/// Checks a resource (plural) name: it becomes part of storage keys, so only `[a-z0-9.-]` pass.
pub(crate) fn check_resource(resource: &str) -> StoreResult<()> {
    let ok = !resource.is_empty()
        && resource.len() <= 253
        && resource.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
    if ok { Ok(()) } else { Err(invalid(format!("{resource:?} is not a valid resource name"))) }
}

/// Checks a namespace argument (`None` or a DNS-1123 label).
pub(crate) fn check_namespace(namespace: Option<&str>) -> StoreResult<()> {
    match namespace {
        None => Ok(()),
        Some(ns) => dns1123_label(ns).map_err(|e| invalid(format!("metadata.namespace: {e}"))),
    }
}

/// Checks a name argument.
pub(crate) fn check_name(name: &str) -> StoreResult<()> {
    dns1123_label(name).map_err(|e| invalid(format!("metadata.name: {e}")))
}

/// The object's `metadata`, which must be a JSON object.
pub(crate) fn metadata(object: &Value) -> StoreResult<&Map<String, Value>> {
    object.get("metadata").and_then(Value::as_object).ok_or_else(|| invalid("the object has no metadata"))
}

fn metadata_mut(object: &mut Value) -> StoreResult<&mut Map<String, Value>> {
    object
        .get_mut("metadata")
        .and_then(Value::as_object_mut)
        .ok_or_else(|| invalid("the object has no metadata"))
}

fn str_field<'a>(meta: &'a Map<String, Value>, field: &str) -> StoreResult<Option<&'a str>> {
    match meta.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(invalid(format!("metadata.{field} must be a string"))),
    }
}

/// The object's key as sent by a client (name and namespace validated).
pub(crate) fn key_of(object: &Value) -> StoreResult<ObjectKey> {
    let meta = metadata(object)?;
    let name = str_field(meta, "name")?.ok_or_else(|| invalid("metadata.name: a name is required"))?;
    check_name(name)?;
    let namespace = str_field(meta, "namespace")?;
    check_namespace(namespace)?;
    Ok(ObjectKey { namespace: namespace.map(str::to_owned), name: name.to_owned() })
}

/// The `metadata.resourceVersion` of a stored object, as a number.
pub(crate) fn revision_of(object: &Value) -> u64 {
    object
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// Parses a client-supplied resource version (`""` means none).
pub(crate) fn parse_version(rv: &str) -> StoreResult<Option<u64>> {
    if rv.is_empty() {
        return Ok(None);
    }
    rv.parse::<u64>().map(Some).map_err(|_| invalid(format!("resourceVersion {rv:?} is not a valid version")))
}

/// The object's labels (an empty map when absent).
pub(crate) fn labels_of(object: &Value) -> BTreeMap<String, String> {
    object
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
        .map(|m| m.iter().filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned()))).collect())
        .unwrap_or_default()
}

/// The object's finalizers.
pub(crate) fn finalizers_of(object: &Value) -> Vec<String> {
    object
        .pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

/// True when a delete was requested and finalizers hold the object.
pub(crate) fn is_terminating(object: &Value) -> bool {
    object.pointer("/metadata/deletionTimestamp").is_some_and(|v| !v.is_null())
}

/// Whether an object is covered by a namespace / selector filter.
pub(crate) fn matches(object: &Value, namespace: Option<&str>, selector: Option<&LabelSelector>) -> bool {
    if let Some(ns) = namespace
        && object.pointer("/metadata/namespace").and_then(Value::as_str) != Some(ns)
    {
        return false;
    }
    selector.is_none_or(|s| s.is_empty() || s.matches(&labels_of(object)))
}

/// Checks the client-writable metadata fields every write carries.
fn check_user_fields(meta: &Map<String, Value>) -> StoreResult<()> {
    for field in ["labels", "annotations"] {
        match meta.get(field) {
            None | Some(Value::Null) => {}
            Some(Value::Object(m)) => {
                for (k, v) in m {
                    if !v.is_string() {
                        return Err(invalid(format!("metadata.{field}[{k:?}] must be a string")));
                    }
                    if field == "labels" {
                        super::selector::check_key(k)
                            .and_then(|_| super::selector::check_value(v.as_str().unwrap_or_default()))
                            .map_err(|e| invalid(format!("metadata.labels: {e}")))?;
                    }
                }
            }
            Some(_) => return Err(invalid(format!("metadata.{field} must be a map of strings"))),
        }
    }
    match meta.get("finalizers") {
        None | Some(Value::Null) => Ok(()),
        Some(Value::Array(a)) if a.iter().all(|v| v.as_str().is_some_and(|s| !s.is_empty())) => Ok(()),
        Some(_) => Err(invalid("metadata.finalizers must be a list of non-empty strings")),
    }
}

const GENERATE_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// A name from `generateName`: the prefix plus five random characters, as Kubernetes does.
pub(crate) fn generated_name(prefix: &str) -> String {
    let mut rng = rand::rng();
    let prefix = &prefix[..prefix.len().min(58)];
    let suffix: String =
        (0..5).map(|_| GENERATE_ALPHABET[rng.random_range(0..GENERATE_ALPHABET.len())] as char).collect();
    format!("{prefix}{suffix}")
}

/// Now, to the second, in the RFC 3339 form Kubernetes uses.
pub(crate) fn now_timestamp() -> Value {
    let now = jiff::Timestamp::now();
    let secs = jiff::Timestamp::from_second(now.as_second()).unwrap_or(now);
    Value::String(secs.to_string())
}

/// Validates an object for create and completes its name from `generateName` when empty.
/// `exists` is asked whether a generated name is taken (a few attempts are made).
pub(crate) fn prepare_create(
    object: &mut Value,
    exists: &mut dyn FnMut(&ObjectKey) -> StoreResult<bool>,
) -> StoreResult<ObjectKey> {
    if !object.is_object() {
        return Err(invalid("the object must be a JSON object"));
    }
    let meta = metadata_mut(object)?;
    check_user_fields(meta)?;
    if str_field(meta, "name")?.is_none() {
        let prefix = str_field(meta, "generateName")?
            .ok_or_else(|| invalid("metadata.name: a name or generateName is required"))?
            .to_owned();
        let namespace = str_field(meta, "namespace")?.map(str::to_owned);
        let mut attempts = 0;
        loop {
            let name = generated_name(&prefix);
            check_name(&name)?;
            if !exists(&ObjectKey { namespace: namespace.clone(), name: name.clone() })? || attempts >= 8 {
                meta.insert("name".into(), Value::String(name));
                break;
            }
            attempts += 1;
        }
    }
    key_of(object)
}

/// Fills the store-owned fields of a new object.
pub(crate) fn stamp_created(object: &mut Value, revision: u64) -> StoreResult<()> {
    let meta = metadata_mut(object)?;
    meta.insert("uid".into(), Value::String(uuid::Uuid::new_v4().to_string()));
    meta.insert("resourceVersion".into(), Value::String(revision.to_string()));
    meta.insert("generation".into(), Value::from(1));
    meta.insert("creationTimestamp".into(), now_timestamp());
    meta.remove("deletionTimestamp");
    drop_empty_namespace(meta);
    Ok(())
}

fn drop_empty_namespace(meta: &mut Map<String, Value>) {
    if meta.get("namespace").is_some_and(|v| v.is_null() || v.as_str() == Some("")) {
        meta.remove("namespace");
    }
}

/// What an update turns into.
pub(crate) enum UpdatePlan {
    /// Nothing changed: the stored object stands, no new version.
    Unchanged,
    /// Store this object (its `resourceVersion` is still to be set).
    Write(Value),
    /// The last finalizer of a Terminating object was removed: delete it; this is its final state.
    Delete(Value),
}

/// Applies the update rules to `new` given the stored `old` object.
///
/// # Errors
/// `Conflict` on a stale `resourceVersion`, `Invalid` on a changed `uid` or bad fields.
pub(crate) fn plan_update(resource: &str, old: &Value, mut new: Value) -> StoreResult<UpdatePlan> {
    if !new.is_object() {
        return Err(invalid("the object must be a JSON object"));
    }
    let old_meta = metadata(old)?;
    let meta = metadata_mut(&mut new)?;
    check_user_fields(meta)?;
    let name = str_field(meta, "name")?.unwrap_or_default().to_owned();
    if let Some(rv) = parse_version(str_field(meta, "resourceVersion")?.unwrap_or_default())?
        && rv != revision_of(old)
    {
        return Err(StoreError::Conflict { resource: resource.to_owned(), name });
    }
    let old_uid = old_meta.get("uid").cloned().unwrap_or(Value::Null);
    match str_field(meta, "uid")? {
        Some(uid) if Some(uid) != old_uid.as_str() => {
            return Err(invalid(format!("metadata.uid: field is immutable (is {uid:?}, was {old_uid})")));
        }
        _ => {}
    }
    // Store-owned fields come from the stored object whatever the client sent.
    for field in ["uid", "creationTimestamp", "deletionTimestamp", "generation", "resourceVersion"] {
        match old_meta.get(field) {
            Some(v) => meta.insert(field.into(), v.clone()),
            None => meta.remove(field),
        };
    }
    drop_empty_namespace(meta);
    let spec_changed = old.get("spec") != new.get("spec");
    if spec_changed {
        let generation = old_meta.get("generation").and_then(Value::as_i64).unwrap_or(1) + 1;
        metadata_mut(&mut new)?.insert("generation".into(), Value::from(generation));
    }
    if is_terminating(&new) && finalizers_of(&new).is_empty() {
        return Ok(UpdatePlan::Delete(new));
    }
    if &new == old {
        return Ok(UpdatePlan::Unchanged);
    }
    Ok(UpdatePlan::Write(new))
}

/// Sets `metadata.resourceVersion`.
pub(crate) fn set_revision(object: &mut Value, revision: u64) {
    if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.insert("resourceVersion".into(), Value::String(revision.to_string()));
    }
}

/// Marks an object Terminating (sets `deletionTimestamp`).
pub(crate) fn mark_terminating(object: &mut Value) {
    if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.insert("deletionTimestamp".into(), now_timestamp());
        meta.insert("deletionGracePeriodSeconds".into(), Value::from(0));
    }
}

/// Checks delete preconditions against the stored object.
pub(crate) fn check_preconditions(
    resource: &str,
    name: &str,
    stored: &Value,
    preconditions: &super::Preconditions,
) -> StoreResult<()> {
    let conflict = || StoreError::Conflict { resource: resource.to_owned(), name: name.to_owned() };
    if let Some(uid) = &preconditions.uid
        && stored.pointer("/metadata/uid").and_then(Value::as_str) != Some(uid.as_str())
    {
        return Err(conflict());
    }
    if let Some(rv) = &preconditions.resource_version
        && let Some(rv) = parse_version(rv)?
        && rv != revision_of(stored)
    {
        return Err(conflict());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn generate_name_completes_a_valid_name() {
        let mut obj = json!({"metadata": {"generateName": "c-"}});
        let key = prepare_create(&mut obj, &mut |_| Ok(false)).unwrap();
        assert!(key.name.starts_with("c-") && key.name.len() == 7, "{}", key.name);
    }

    #[test]
    fn update_keeps_store_owned_fields_and_bumps_generation_on_spec_only() {
        let old = json!({"metadata": {"name": "a", "uid": "u1", "resourceVersion": "5", "generation": 1,
            "creationTimestamp": "2020-01-01T00:00:00Z"}, "spec": {"x": 1}});
        let new = json!({"metadata": {"name": "a", "resourceVersion": "5", "creationTimestamp": "2030-01-01T00:00:00Z",
            "labels": {"a": "b"}}, "spec": {"x": 1}});
        let UpdatePlan::Write(w) = plan_update("r", &old, new).unwrap() else { panic!() };
        assert_eq!(w["metadata"]["uid"], "u1");
        assert_eq!(w["metadata"]["creationTimestamp"], "2020-01-01T00:00:00Z");
        assert_eq!(w["metadata"]["generation"], 1);
        let new = json!({"metadata": {"name": "a"}, "spec": {"x": 2}});
        let UpdatePlan::Write(w) = plan_update("r", &old, new).unwrap() else { panic!() };
        assert_eq!(w["metadata"]["generation"], 2);
        let stale = json!({"metadata": {"name": "a", "resourceVersion": "4"}});
        assert!(matches!(plan_update("r", &old, stale), Err(StoreError::Conflict { .. })));
    }
}
