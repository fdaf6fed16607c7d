//! Events: what the sim's controllers and kubelet report (`Scheduled`, `Pulled`, `Created`,
//! `Started`, `Killing`, `ScalingReplicaSet`, `SuccessfulCreate`, ...), repeated ones counted, and the
//! `core/v1` and `events.k8s.io/v1` views of the same objects kept in step. Events are bounded: older
//! than the TTL (one hour, as the API server's `--event-ttl`) or beyond the per-namespace limit, the
//! oldest go.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{Map, Value, json};

use crate::meta;
use crate::state::SimState;

/// Store key of `core/v1` events.
pub(crate) const CORE: &str = "events";
/// Store key of `events.k8s.io/v1` events.
pub(crate) const EVENTS_V1: &str = "events.events.k8s.io";

/// What happened: `Normal` or `Warning`, a CamelCase reason and a sentence.
pub(crate) struct Note<'a> {
    pub(crate) warning: bool,
    pub(crate) reason: &'a str,
    pub(crate) message: String,
    /// The part of the object it is about (`spec.containers{web}`).
    pub(crate) field_path: Option<String>,
}

impl<'a> Note<'a> {
    pub(crate) fn normal(reason: &'a str, message: impl Into<String>) -> Self {
        Note { warning: false, reason, message: message.into(), field_path: None }
    }
    pub(crate) fn at(mut self, field_path: impl Into<String>) -> Self {
        self.field_path = Some(field_path.into());
        self
    }
}

/// Who reports it: a controller (`deployment-controller`) or the kubelet of a node.
#[derive(Clone, Copy)]
pub(crate) struct Reporter<'a> {
    pub(crate) component: &'a str,
    pub(crate) host: Option<&'a str>,
}

impl<'a> Reporter<'a> {
    pub(crate) fn controller(component: &'a str) -> Self {
        Reporter { component, host: None }
    }
    pub(crate) fn kubelet(node: &'a str) -> Self {
        Reporter { component: "kubelet", host: Some(node) }
    }
}

/// `2026-01-02T03:04:05.123456Z`: a `MicroTime`.
pub(crate) fn micro_now() -> String {
    let t = jiff::Timestamp::now();
    let whole = jiff::Timestamp::from_second(t.as_second()).unwrap_or(t);
    format!("{}.{:06}Z", whole.strftime("%Y-%m-%dT%H:%M:%S"), t.subsec_microsecond())
}

/// Records an event about `obj` (a stored object with kind and apiVersion); a repeat of the same
/// reason and message by the same reporter bumps the count of the existing event instead.
pub(crate) fn record(state: &SimState, obj: &Value, note: Note<'_>, by: Reporter<'_>) {
    let ns = match meta::namespace(obj) {
        "" => "default",
        ns => ns,
    };
    if !crate::controllers::namespace_active(state, ns) {
        return;
    }
    let mut involved = json!({
        "kind": obj["kind"],
        "namespace": meta::namespace(obj),
        "name": meta::name(obj),
        "uid": meta::uid(obj),
        "apiVersion": obj["apiVersion"],
        "resourceVersion": meta::resource_version(obj),
    });
    if let Some(fp) = &note.field_path {
        involved["fieldPath"] = json!(fp);
    }
    if meta::namespace(obj).is_empty()
        && let Some(o) = involved.as_object_mut()
    {
        o.remove("namespace");
    }
    let now = meta::now();
    let micro = micro_now();
    let (items, _) = state.store.list(CORE, Some(ns));
    let same = items.iter().find(|e| {
        e["involvedObject"]["uid"] == involved["uid"]
            && e["involvedObject"]["fieldPath"] == involved["fieldPath"]
            && e["reason"] == note.reason
            && e["message"] == note.message.as_str()
            && e["source"]["component"] == by.component
    });
    if let Some(e) = same {
        let _ = state.store.mutate(CORE, ns, meta::name(e), |e| {
            let count = e["count"].as_i64().unwrap_or(1) + 1;
            e["count"] = json!(count);
            e["lastTimestamp"] = json!(now);
            e["series"] = json!({"count": count, "lastObservedTime": micro});
            true
        });
        return;
    }
    let instance = match by.host {
        Some(h) => format!("{}-{h}", by.component),
        None => format!("{}-{}", by.component, state.config.name),
    };
    let mut source = json!({"component": by.component});
    if let Some(h) = by.host {
        source["host"] = json!(h);
    }
    let nanos = jiff::Timestamp::now().as_nanosecond();
    let mut event = json!({
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": format!("{}.{:x}", meta::name(obj), nanos), "namespace": ns},
        "involvedObject": involved,
        "reason": note.reason,
        "message": note.message,
        "source": source,
        "firstTimestamp": now,
        "lastTimestamp": now,
        "eventTime": micro,
        "count": 1,
        "type": if note.warning { "Warning" } else { "Normal" },
        "reportingComponent": by.component,
        "reportingInstance": instance,
    });
    for attempt in 0..3u64 {
        if attempt > 0 {
            event["metadata"]["name"] = json!(format!("{}.{:x}", meta::name(obj), nanos + attempt as i128));
        }
        if state.store.create(CORE, event.clone()).is_ok() {
            break;
        }
    }
    prune(state, ns, state.config.events_per_namespace);
}

/// Deletes an event in both views.
pub(crate) fn delete_both(state: &SimState, ns: &str, name: &str) {
    for key in [CORE, EVENTS_V1] {
        let _ = state.store.delete(key, ns, name, None, None, None);
    }
}

/// After a delete of an event through one API group, the other view goes too.
pub(crate) fn deleted(state: &SimState, key: &str, ns: &str, name: &str) {
    let twin = match key {
        CORE => EVENTS_V1,
        EVENTS_V1 => CORE,
        _ => return,
    };
    let _ = state.store.delete(twin, ns, name, None, None, None);
}

fn last_seen(e: &Value) -> &str {
    e["lastTimestamp"].as_str().or(e["eventTime"].as_str()).unwrap_or("")
}

/// Keeps at most `limit` events in `ns`, dropping the least recently seen.
fn prune(state: &SimState, ns: &str, limit: usize) {
    let (mut items, _) = state.store.list(CORE, Some(ns));
    if items.len() <= limit {
        return;
    }
    items.sort_by(|a, b| last_seen(a).cmp(last_seen(b)));
    let excess = items.len() - limit;
    for e in items.iter().take(excess) {
        delete_both(state, ns, meta::name(e));
    }
}

/// Removes events not seen for `ttl` (both views).
pub(crate) fn expire(state: &SimState) {
    let Ok(ttl) = jiff::SignedDuration::try_from(state.config.event_ttl) else { return };
    let cutoff = jiff::Timestamp::now() - ttl;
    for key in [CORE, EVENTS_V1] {
        let (items, _) = state.store.list(key, None);
        for e in items.iter() {
            let seen = e["lastTimestamp"]
                .as_str()
                .or(e["deprecatedLastTimestamp"].as_str())
                .or(e["series"]["lastObservedTime"].as_str())
                .or(e["eventTime"].as_str())
                .or(e["metadata"]["creationTimestamp"].as_str())
                .and_then(|t| t.parse::<jiff::Timestamp>().ok());
            if seen.is_some_and(|t| t < cutoff) {
                delete_both(state, meta::namespace(e), meta::name(e));
            }
        }
    }
}

// ---- the two views ----

/// (core/v1 field, events.k8s.io/v1 field) pairs; the other fields have the same name in both.
const RENAMED: &[(&str, &str)] = &[
    ("involvedObject", "regarding"),
    ("message", "note"),
    ("reportingComponent", "reportingController"),
    ("source", "deprecatedSource"),
    ("firstTimestamp", "deprecatedFirstTimestamp"),
    ("lastTimestamp", "deprecatedLastTimestamp"),
    ("count", "deprecatedCount"),
];
const SAME: &[&str] = &["reason", "type", "eventTime", "series", "action", "related", "reportingInstance"];

/// The fields of `e` seen through the other API group (`to_v1`: core → events.k8s.io).
fn convert(e: &Value, to_v1: bool) -> Map<String, Value> {
    let mut out = Map::new();
    for (core, v1) in RENAMED {
        let (from, to) = if to_v1 { (core, v1) } else { (v1, core) };
        if let Some(v) = e.get(*from).filter(|v| !v.is_null()) {
            out.insert(to.to_string(), v.clone());
        }
    }
    for f in SAME {
        if let Some(v) = e.get(*f).filter(|v| !v.is_null()) {
            out.insert(f.to_string(), v.clone());
        }
    }
    out
}

/// The fields `convert` carries, as they are in `e` itself.
fn carried(e: &Value, v1: bool) -> Map<String, Value> {
    convert(&Value::Object(convert(e, !v1)), v1)
}

/// Keeps the two views of every event in step: an event written through one API group appears in
/// the other with the same name and uid; the newer write (higher resourceVersion) wins.
pub(crate) fn mirror(state: &SimState) {
    let (core, _) = state.store.list(CORE, None);
    let (v1, _) = state.store.list(EVENTS_V1, None);
    let index = |items: &[Arc<Value>]| -> HashMap<(String, String), Arc<Value>> {
        items
            .iter()
            .map(|e| ((meta::namespace(e).to_string(), meta::name(e).to_string()), e.clone()))
            .collect()
    };
    let (core_ix, v1_ix) = (index(&core), index(&v1));
    let rv = |e: &Value| meta::resource_version(e).parse::<u64>().unwrap_or(0);
    for (key, c) in &core_ix {
        match v1_ix.get(key) {
            None => create_twin(state, c, true),
            Some(v) if rv(c) > rv(v) => update_twin(state, c, v, true),
            Some(v) => update_twin(state, v, c, false),
        }
    }
    for (key, v) in &v1_ix {
        if !core_ix.contains_key(key) {
            create_twin(state, v, false);
        }
    }
}

fn create_twin(state: &SimState, src: &Value, to_v1: bool) {
    if meta::is_deleting(src) {
        return;
    }
    let mut twin = Value::Object(convert(src, to_v1));
    twin["apiVersion"] = json!(if to_v1 { "events.k8s.io/v1" } else { "v1" });
    twin["kind"] = json!("Event");
    let mut md = json!({"name": meta::name(src), "namespace": meta::namespace(src), "uid": meta::uid(src)});
    for k in ["labels", "annotations"] {
        if let Some(v) = src["metadata"].get(k) {
            md[k] = v.clone();
        }
    }
    twin["metadata"] = md;
    let _ = state.store.create(if to_v1 { EVENTS_V1 } else { CORE }, twin);
}

/// Rewrites `twin` (of the other group) from `src` when what they carry differs.
fn update_twin(state: &SimState, src: &Value, twin: &Value, src_is_core: bool) {
    let want = convert(src, src_is_core);
    let same_meta =
        ["labels", "annotations"].iter().all(|k| src["metadata"].get(*k) == twin["metadata"].get(*k));
    if want == carried(twin, src_is_core) && same_meta {
        return;
    }
    let key = if src_is_core { EVENTS_V1 } else { CORE };
    let _ = state.store.mutate(key, meta::namespace(twin), meta::name(twin), |t| {
        let Some(o) = t.as_object_mut() else { return false };
        for (core, v1) in RENAMED {
            o.remove(if src_is_core { *v1 } else { *core });
        }
        for f in SAME {
            o.remove(*f);
        }
        o.extend(want);
        for k in ["labels", "annotations"] {
            match src["metadata"].get(k) {
                Some(v) => meta::metadata_mut(t).insert(k.to_string(), v.clone()),
                None => meta::metadata_mut(t).remove(k),
            };
        }
        true
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn views_convert_both_ways() {
        let core = json!({
            "involvedObject": {"kind": "Pod", "name": "p"}, "message": "hi", "reason": "Started",
            "reportingComponent": "kubelet", "source": {"component": "kubelet"}, "count": 2,
            "firstTimestamp": "2026-01-01T00:00:00Z", "lastTimestamp": "2026-01-01T00:00:01Z",
            "eventTime": "2026-01-01T00:00:00.000001Z", "type": "Normal",
        });
        let v1 = Value::Object(convert(&core, true));
        assert_eq!(v1["regarding"]["name"], "p");
        assert_eq!(v1["note"], "hi");
        assert_eq!(v1["reportingController"], "kubelet");
        assert_eq!(v1["deprecatedCount"], 2);
        assert!(v1.get("involvedObject").is_none());
        let back = Value::Object(convert(&v1, false));
        assert_eq!(convert(&back, true), convert(&core, true));
        assert_eq!(carried(&core, false), convert(&v1, false));
    }

    #[test]
    fn micro_time_has_six_digits() {
        let t = micro_now();
        assert_eq!(t.len(), "2026-01-02T03:04:05.123456Z".len(), "{t}");
        assert!(t.parse::<jiff::Timestamp>().is_ok());
    }
}
