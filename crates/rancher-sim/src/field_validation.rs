//! Server-side field validation (`?fieldValidation=Strict|Warn|Ignore`) for the built-in kinds.
//!
//! The known fields of a kind come from its k8s-openapi type: the object is decoded into the typed
//! struct and encoded again, and every non-null key of the request that did not survive the round trip
//! is unknown. `Strict` fails the request with a 400 BadRequest worded like the API server's strict
//! decoder (`strict decoding error: unknown field "spec.foo"`, or for server-side apply
//! `.spec.foo: field not declared in schema`); `Warn` (the default when the parameter is absent) and
//! `Ignore` drop the unknown fields before storing, `Warn` adding one `Warning` header per field.
//! Duplicate keys in a JSON body are found while scanning the raw bytes.
//!
//! An object that does not decode into its typed struct (a number where a quantity string is
//! expected, a bad timestamp) skips the unknown-field check; objects of custom resources are not
//! checked.

use std::collections::HashSet;
use std::fmt;
use std::sync::Mutex;

use serde::de::{DeserializeOwned, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde::{Deserializer, Serialize};
use serde_json::Value;

use crate::resources::ResourceDef;
use crate::status::ApiError;

/// The `fieldValidation` directive of a write request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Drop unknown fields silently; the last duplicate wins.
    Ignore,
    /// Drop unknown fields and say so in `Warning` headers (the API server's default).
    Warn,
    /// Fail the request.
    Strict,
}

impl Mode {
    /// Parses the query value; absent means `Warn`, as on an API server since 1.27.
    pub(crate) fn parse(v: Option<&str>) -> Result<Self, ApiError> {
        match v {
            None | Some("") | Some("Warn") => Ok(Mode::Warn),
            Some("Ignore") => Ok(Mode::Ignore),
            Some("Strict") => Ok(Mode::Strict),
            Some(other) => Err(ApiError::bad_request(format!(
                "fieldValidation must be one of \"Ignore\", \"Warn\" or \"Strict\", got {other:?}"
            ))),
        }
    }
}

/// What field validation found in one request: duplicates seen in the raw body, and the warnings
/// to send back.
#[derive(Debug, Default)]
pub(crate) struct Findings {
    duplicates: Mutex<Vec<String>>,
    warnings: Mutex<Vec<String>>,
}

impl Findings {
    /// Records the duplicate keys of a raw request body (JSON only; other encodings are not scanned).
    pub(crate) fn scan_body(&self, body: &[u8], content_type: &str) {
        let media = content_type.split(';').next().unwrap_or("").trim();
        if !matches!(media, "" | "application/json" | "*/*") {
            return;
        }
        let found = duplicate_fields(body);
        lock(&self.duplicates).extend(found);
    }
    /// The warnings collected so far, in order.
    pub(crate) fn warnings(&self) -> Vec<String> {
        lock(&self.warnings).clone()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Checks `obj` (the object about to be stored) against its kind's known fields. Unknown keys that
/// are also present in `stored` at the same place are left alone: they were not sent by this request.
pub(crate) fn check(
    d: &ResourceDef,
    mode: Mode,
    findings: &Findings,
    obj: &mut Value,
    stored: Option<&Value>,
    apply: bool,
) -> Result<(), ApiError> {
    let duplicates = std::mem::take(&mut *lock(&findings.duplicates));
    let mut unknown = vec![];
    if let Some(typed) = roundtrip(d, obj) {
        prune(obj, &typed, stored, "", &mut unknown);
    }
    if unknown.is_empty() && duplicates.is_empty() {
        return Ok(());
    }
    match mode {
        Mode::Ignore => Ok(()),
        Mode::Warn => {
            let mut w = lock(&findings.warnings);
            w.extend(unknown.iter().map(|f| format!("unknown field \"{f}\"")));
            w.extend(duplicates.iter().map(|f| format!("duplicate field \"{f}\"")));
            Ok(())
        }
        Mode::Strict if apply && !unknown.is_empty() => {
            let paths: Vec<String> =
                unknown.iter().map(|f| format!(".{f}: field not declared in schema")).collect();
            Err(ApiError::bad_request(format!(
                "failed to create typed patch object ({}, Kind={}): {}",
                gv(d),
                d.kind,
                paths.join(", ")
            )))
        }
        Mode::Strict => {
            let errs: Vec<String> = unknown
                .iter()
                .map(|f| format!("unknown field \"{f}\""))
                .chain(duplicates.iter().map(|f| format!("duplicate field \"{f}\"")))
                .collect();
            Err(ApiError::bad_request(format!(
                "{} in version \"{}\" cannot be handled as a {}: strict decoding error: {}",
                d.kind,
                d.version,
                d.kind,
                errs.join(", ")
            )))
        }
    }
}

fn gv(d: &ResourceDef) -> String {
    if d.group.is_empty() { format!("/{}", d.version) } else { format!("{}/{}", d.group, d.version) }
}

fn rt<T: DeserializeOwned + Serialize>(obj: Value) -> Option<Value> {
    let typed: T = serde_json::from_value(obj).ok()?;
    serde_json::to_value(typed).ok()
}

/// Decodes `obj` into the k8s-openapi type of its kind and encodes it again; `None` for kinds
/// without a compiled-in type and for objects that do not decode.
fn roundtrip(d: &ResourceDef, obj: &Value) -> Option<Value> {
    use k8s_openapi::api::{
        apps, batch, coordination, core, discovery, events, networking, policy, rbac, storage,
    };
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1 as apiext;
    let mut o = obj.clone();
    o["apiVersion"] = Value::String(d.api_version());
    o["kind"] = Value::String(d.kind.clone());
    match (d.group.as_str(), d.kind.as_str()) {
        ("", "Namespace") => rt::<core::v1::Namespace>(o),
        ("", "Node") => rt::<core::v1::Node>(o),
        ("", "Pod") => rt::<core::v1::Pod>(o),
        ("", "Service") => rt::<core::v1::Service>(o),
        ("", "Endpoints") => rt::<core::v1::Endpoints>(o),
        ("", "ConfigMap") => rt::<core::v1::ConfigMap>(o),
        ("", "Secret") => rt::<core::v1::Secret>(o),
        ("", "ServiceAccount") => rt::<core::v1::ServiceAccount>(o),
        ("", "Event") => rt::<core::v1::Event>(o),
        ("", "LimitRange") => rt::<core::v1::LimitRange>(o),
        ("", "ResourceQuota") => rt::<core::v1::ResourceQuota>(o),
        ("", "PersistentVolumeClaim") => rt::<core::v1::PersistentVolumeClaim>(o),
        ("", "PersistentVolume") => rt::<core::v1::PersistentVolume>(o),
        ("", "ReplicationController") => rt::<core::v1::ReplicationController>(o),
        ("apps", "Deployment") => rt::<apps::v1::Deployment>(o),
        ("apps", "ReplicaSet") => rt::<apps::v1::ReplicaSet>(o),
        ("apps", "DaemonSet") => rt::<apps::v1::DaemonSet>(o),
        ("apps", "StatefulSet") => rt::<apps::v1::StatefulSet>(o),
        ("apps", "ControllerRevision") => rt::<apps::v1::ControllerRevision>(o),
        ("batch", "Job") => rt::<batch::v1::Job>(o),
        ("batch", "CronJob") => rt::<batch::v1::CronJob>(o),
        ("coordination.k8s.io", "Lease") => rt::<coordination::v1::Lease>(o),
        ("events.k8s.io", "Event") => rt::<events::v1::Event>(o),
        ("networking.k8s.io", "Ingress") => rt::<networking::v1::Ingress>(o),
        ("networking.k8s.io", "NetworkPolicy") => rt::<networking::v1::NetworkPolicy>(o),
        ("discovery.k8s.io", "EndpointSlice") => rt::<discovery::v1::EndpointSlice>(o),
        ("storage.k8s.io", "StorageClass") => rt::<storage::v1::StorageClass>(o),
        ("policy", "PodDisruptionBudget") => rt::<policy::v1::PodDisruptionBudget>(o),
        ("rbac.authorization.k8s.io", "Role") => rt::<rbac::v1::Role>(o),
        ("rbac.authorization.k8s.io", "RoleBinding") => rt::<rbac::v1::RoleBinding>(o),
        ("rbac.authorization.k8s.io", "ClusterRole") => rt::<rbac::v1::ClusterRole>(o),
        ("rbac.authorization.k8s.io", "ClusterRoleBinding") => rt::<rbac::v1::ClusterRoleBinding>(o),
        ("apiextensions.k8s.io", "CustomResourceDefinition") => rt::<apiext::CustomResourceDefinition>(o),
        _ => None,
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() { key.to_string() } else { format!("{path}.{key}") }
}

/// Removes from `obj` the keys `typed` lacks, recording their paths (`spec.containers[0].foo`).
fn prune(obj: &mut Value, typed: &Value, stored: Option<&Value>, path: &str, out: &mut Vec<String>) {
    match (obj, typed) {
        (Value::Object(m), Value::Object(t)) => {
            let keys: Vec<String> = m.keys().cloned().collect();
            for k in keys {
                let st = stored.and_then(|s| s.get(&k));
                match t.get(&k) {
                    Some(tv) => {
                        if let Some(v) = m.get_mut(&k) {
                            prune(v, tv, st, &join(path, &k), out);
                        }
                    }
                    None if m[&k].is_null() || st.is_some() => {}
                    None => {
                        m.remove(&k);
                        out.push(join(path, &k));
                    }
                }
            }
        }
        (Value::Array(a), Value::Array(t)) if a.len() == t.len() => {
            for (i, (v, tv)) in a.iter_mut().zip(t).enumerate() {
                let st = stored.and_then(|s| s.get(i));
                prune(v, tv, st, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

/// Paths of keys that occur twice in one JSON object of `body` (`metadata.name`). Bodies that are not
/// valid JSON yield nothing here; the decoder reports them.
pub(crate) fn duplicate_fields(body: &[u8]) -> Vec<String> {
    let mut out = vec![];
    let mut de = serde_json::Deserializer::from_slice(body);
    let _ = Scan { path: String::new(), out: &mut out }.deserialize(&mut de);
    out
}

struct Scan<'a> {
    path: String,
    out: &'a mut Vec<String>,
}

impl<'de> DeserializeSeed<'de> for Scan<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Scan<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut i = 0;
        while seq
            .next_element_seed(Scan { path: format!("{}[{i}]", self.path), out: &mut *self.out })?
            .is_some()
        {
            i += 1;
        }
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = HashSet::new();
        while let Some(k) = map.next_key::<String>()? {
            let p = join(&self.path, &k);
            if !seen.insert(k) {
                self.out.push(p.clone());
            }
            map.next_value_seed(Scan { path: p, out: &mut *self.out })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn def(kind: &str) -> ResourceDef {
        crate::resources::builtins().iter().find(|d| d.kind == kind).cloned().expect("builtin")
    }

    #[test]
    fn unknown_pod_fields_are_found_and_pruned() {
        let mut pod = json!({"metadata": {"name": "p", "bogus": 1}, "spec": {"containers": [
            {"name": "c", "image": "nginx", "imagePullPolicyTwo": "Always"}], "foo": "bar", "nodeName": null}});
        let f = Findings::default();
        check(&def("Pod"), Mode::Warn, &f, &mut pod, None, false).unwrap();
        assert_eq!(
            f.warnings(),
            vec![
                "unknown field \"metadata.bogus\"",
                "unknown field \"spec.containers[0].imagePullPolicyTwo\"",
                "unknown field \"spec.foo\""
            ]
        );
        assert!(pod["spec"].get("foo").is_none());
        assert!(pod["spec"]["containers"][0].get("imagePullPolicyTwo").is_none());
        assert_eq!(pod["spec"]["containers"][0]["image"], "nginx");
    }

    #[test]
    fn strict_rejects_with_the_decoder_message() {
        let mut cm = json!({"metadata": {"name": "c"}, "data": {"a": "b"}, "extra": true});
        let e =
            check(&def("ConfigMap"), Mode::Strict, &Findings::default(), &mut cm, None, false).unwrap_err();
        assert_eq!(e.code, 400);
        assert_eq!(
            e.message,
            "ConfigMap in version \"v1\" cannot be handled as a ConfigMap: strict decoding error: unknown field \"extra\""
        );
        let mut ok = json!({"metadata": {"name": "c"}, "data": {"a": "b"}});
        check(&def("ConfigMap"), Mode::Strict, &Findings::default(), &mut ok, None, false).unwrap();
    }

    #[test]
    fn fields_already_stored_are_not_blamed_on_the_request() {
        let stored = json!({"metadata": {"name": "c"}, "legacy": 1});
        let mut next = json!({"metadata": {"name": "c"}, "legacy": 1});
        check(&def("ConfigMap"), Mode::Strict, &Findings::default(), &mut next, Some(&stored), false)
            .unwrap();
    }

    #[test]
    fn duplicates_carry_their_path() {
        let body = br#"{"metadata":{"name":"a","name":"b"},"spec":{"ports":[{"port":1,"port":2}]}}"#;
        assert_eq!(duplicate_fields(body), vec!["metadata.name", "spec.ports[0].port"]);
        assert!(duplicate_fields(b"{\"a\":1}").is_empty());
        assert!(duplicate_fields(b"not json").is_empty());
    }

    #[test]
    fn modes_parse() {
        assert_eq!(Mode::parse(None).unwrap(), Mode::Warn);
        assert_eq!(Mode::parse(Some("Strict")).unwrap(), Mode::Strict);
        assert_eq!(Mode::parse(Some("strict")).unwrap_err().code, 400);
    }
}
