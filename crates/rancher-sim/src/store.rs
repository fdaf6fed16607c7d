//! The in-memory object store of one sim: objects as JSON by resource, one global resourceVersion,
//! and a bounded event log that watches replay from.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::{Value, json};
use tokio::sync::watch;

use crate::meta;

/// How many past events a watch may resume from by default; older resourceVersions get 410 Gone.
pub(crate) const EVENT_LOG_CAPACITY: usize = 2048;

/// A store failure, turned into a `Status` by the handler that knows the resource.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum StoreError {
    /// No object with that namespace and name.
    #[error("not found")]
    NotFound,
    /// An object with that namespace and name exists already.
    #[error("already exists")]
    AlreadyExists,
    /// The caller's resourceVersion is not the stored one.
    #[error("conflict")]
    Conflict,
}

/// Watch event types, as they appear on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One change, kept in the log for watchers.
#[derive(Debug, Clone)]
pub(crate) struct Event {
    pub(crate) rv: u64,
    pub(crate) kind: EventType,
    pub(crate) resource: Arc<str>,
    pub(crate) object: Arc<Value>,
    /// The object before a MODIFIED or DELETED change (watches with selectors need it to tell an
    /// object that stopped matching from one that never did).
    pub(crate) prev: Option<Arc<Value>>,
}

/// Namespace ("" when cluster-scoped) and name: the key of an object within its resource.
pub(crate) type ObjKey = (String, String);

#[derive(Default)]
struct Inner {
    rv: u64,
    tables: HashMap<Arc<str>, BTreeMap<ObjKey, Arc<Value>>>,
    log: VecDeque<Event>,
    /// Events at or below this resourceVersion are no longer in the log.
    compacted: u64,
    capacity: usize,
}

/// Whether something still holds an object marked for deletion: its finalizers, or for a namespace the
/// `spec.finalizers` the namespace controller clears once the namespace is empty.
fn held(o: &Value) -> bool {
    !meta::finalizers(o).is_empty() || meta::spec_finalized(o) || meta::in_grace_period(o)
}

/// Why a list at an exact resourceVersion cannot be served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ListAtError {
    /// The event log no longer reaches back that far; the value is the oldest version it can serve.
    TooOld(u64),
    /// The version is newer than the store's; the value is the current version.
    TooLarge(u64),
}

/// Result of a delete: the object as last seen, and whether it is gone (or only marked for deletion).
pub(crate) struct Deleted {
    pub(crate) object: Arc<Value>,
    pub(crate) gone: bool,
}

/// The object store. Never hold its lock across an await: every method is synchronous.
pub(crate) struct Store {
    inner: Mutex<Inner>,
    changed: watch::Sender<u64>,
}

impl Store {
    /// A store whose watch history keeps `capacity` events.
    pub(crate) fn new(capacity: usize) -> Self {
        let inner = Inner { rv: 1, capacity: capacity.max(1), ..Default::default() };
        Store { inner: Mutex::new(inner), changed: watch::channel(1).0 }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A receiver that changes whenever anything is written.
    pub(crate) fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// The current global resourceVersion.
    pub(crate) fn rv(&self) -> u64 {
        self.lock().rv
    }

    pub(crate) fn get(&self, resource: &str, ns: &str, name: &str) -> Option<Arc<Value>> {
        let inner = self.lock();
        inner.tables.get(resource)?.get(&(ns.to_string(), name.to_string())).cloned()
    }

    /// Objects of a resource (in one namespace, or all when `ns` is None), sorted by namespace and name.
    pub(crate) fn list(&self, resource: &str, ns: Option<&str>) -> (Vec<Arc<Value>>, u64) {
        let inner = self.lock();
        let items = match inner.tables.get(resource) {
            None => Vec::new(),
            Some(t) => match ns {
                Some(ns) => t
                    .range((ns.to_string(), String::new())..)
                    .take_while(|((n, _), _)| n == ns)
                    .map(|(_, v)| v.clone())
                    .collect(),
                None => t.values().cloned().collect(),
            },
        };
        (items, inner.rv)
    }

    /// Objects of a resource as they were at resourceVersion `rv` (sorted like [`Store::list`]),
    /// rebuilt by undoing the logged events after it. `Err(ListAtError::TooOld(oldest))` when the log no
    /// longer reaches back to `rv`; `Err(ListAtError::TooLarge(current))` when `rv` is in the future.
    pub(crate) fn list_at(
        &self,
        resource: &str,
        ns: Option<&str>,
        rv: u64,
    ) -> Result<Vec<Arc<Value>>, ListAtError> {
        let inner = self.lock();
        if rv > inner.rv {
            return Err(ListAtError::TooLarge(inner.rv));
        }
        if rv < inner.compacted {
            return Err(ListAtError::TooOld(inner.compacted + 1));
        }
        let mut table = inner.tables.get(resource).cloned().unwrap_or_default();
        for e in inner.log.iter().rev().take_while(|e| e.rv > rv) {
            if &*e.resource != resource {
                continue;
            }
            let key = (meta::namespace(&e.object).to_string(), meta::name(&e.object).to_string());
            match (e.kind, &e.prev) {
                (EventType::Added, _) | (_, None) => {
                    table.remove(&key);
                }
                (_, Some(prev)) => {
                    table.insert(key, prev.clone());
                }
            }
        }
        Ok(table.into_iter().filter(|((n, _), _)| ns.is_none_or(|ns| ns == n)).map(|(_, v)| v).collect())
    }

    /// Every resource that has at least one object in `ns`.
    pub(crate) fn resources_in_namespace(&self, ns: &str) -> Vec<(Arc<str>, Vec<String>)> {
        let inner = self.lock();
        inner
            .tables
            .iter()
            .filter_map(|(res, t)| {
                let names: Vec<String> = t
                    .range((ns.to_string(), String::new())..)
                    .take_while(|((n, _), _)| n == ns)
                    .map(|((_, name), _)| name.clone())
                    .collect();
                (!names.is_empty()).then(|| (res.clone(), names))
            })
            .collect()
    }

    /// Every object of every resource; for controllers that look across kinds (garbage collection).
    pub(crate) fn all_objects(&self) -> Vec<(Arc<str>, Arc<Value>)> {
        let inner = self.lock();
        inner.tables.iter().flat_map(|(r, t)| t.values().map(move |v| (r.clone(), v.clone()))).collect()
    }

    fn record(
        &self,
        inner: &mut Inner,
        kind: EventType,
        resource: &Arc<str>,
        object: Arc<Value>,
        prev: Option<Arc<Value>>,
    ) {
        let rv = inner.rv;
        inner.log.push_back(Event { rv, kind, resource: resource.clone(), object, prev });
        while inner.log.len() > inner.capacity {
            if let Some(e) = inner.log.pop_front() {
                inner.compacted = e.rv;
            }
        }
        self.changed.send_replace(rv);
    }

    fn table_key(inner: &Inner, resource: &str) -> Arc<str> {
        inner.tables.get_key_value(resource).map(|(k, _)| k.clone()).unwrap_or_else(|| Arc::from(resource))
    }

    /// Stores a new object. Sets uid (unless the sim gave one), creationTimestamp, resourceVersion and (for objects with a spec)
    /// generation.
    pub(crate) fn create(&self, resource: &str, mut obj: Value) -> Result<Arc<Value>, StoreError> {
        let mut inner = self.lock();
        let key = (meta::namespace(&obj).to_string(), meta::name(&obj).to_string());
        let res = Self::table_key(&inner, resource);
        if inner.tables.get(&res).is_some_and(|t| t.contains_key(&key)) {
            return Err(StoreError::AlreadyExists);
        }
        inner.rv += 1;
        let md = meta::metadata_mut(&mut obj);
        // A uid given by the sim itself is kept (the two views of one Event share it); the API
        // handlers strip client-sent uids before they get here.
        if md.get("uid").and_then(Value::as_str).is_none_or(str::is_empty) {
            md.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
        }
        md.entry("creationTimestamp").or_insert_with(|| json!(meta::now()));
        md.insert("resourceVersion".into(), json!(inner.rv.to_string()));
        md.remove("deletionTimestamp");
        if obj.get("spec").is_some() {
            meta::metadata_mut(&mut obj).insert("generation".into(), json!(1));
        }
        let obj = Arc::new(obj);
        inner.tables.entry(res.clone()).or_default().insert(key, obj.clone());
        self.record(&mut inner, EventType::Added, &res, obj.clone(), None);
        Ok(obj)
    }

    /// Replaces a stored object. When `obj` carries a resourceVersion it must match (optimistic
    /// concurrency). uid and creationTimestamp are kept from the stored object; generation moves when
    /// the spec changes. An object marked for deletion whose finalizers are now empty is removed.
    pub(crate) fn update(&self, resource: &str, mut obj: Value) -> Result<Arc<Value>, StoreError> {
        let mut inner = self.lock();
        let key = (meta::namespace(&obj).to_string(), meta::name(&obj).to_string());
        let res = Self::table_key(&inner, resource);
        let old = inner.tables.get(&res).and_then(|t| t.get(&key)).cloned().ok_or(StoreError::NotFound)?;
        let given_rv = meta::resource_version(&obj);
        if !given_rv.is_empty() && given_rv != meta::resource_version(&old) {
            return Err(StoreError::Conflict);
        }
        if *old == obj {
            return Ok(old);
        }
        let mut generation = old["metadata"]["generation"].as_i64();
        if old.get("spec") != obj.get("spec") {
            generation = Some(generation.unwrap_or(0) + 1);
        }
        let md = meta::metadata_mut(&mut obj);
        for k in ["uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds"] {
            match old["metadata"].get(k) {
                Some(v) => md.insert(k.into(), v.clone()),
                None => md.remove(k),
            };
        }
        if let Some(g) = generation {
            md.insert("generation".into(), json!(g));
        }
        let mut changed_copy = obj.clone();
        meta::metadata_mut(&mut changed_copy)
            .insert("resourceVersion".into(), old["metadata"]["resourceVersion"].clone());
        if changed_copy == *old {
            return Ok(old);
        }
        inner.rv += 1;
        meta::metadata_mut(&mut obj).insert("resourceVersion".into(), json!(inner.rv.to_string()));
        let finished = meta::is_deleting(&obj) && !held(&obj);
        let obj = Arc::new(obj);
        if finished {
            if let Some(t) = inner.tables.get_mut(&res) {
                t.remove(&key);
            }
            self.record(&mut inner, EventType::Deleted, &res, obj.clone(), Some(old.clone()));
        } else {
            if let Some(t) = inner.tables.get_mut(&res) {
                t.insert(key, obj.clone());
            }
            self.record(&mut inner, EventType::Modified, &res, obj.clone(), Some(old.clone()));
        }
        Ok(obj)
    }

    /// Reads, changes and writes one object under the lock-free optimistic protocol: `f` returns false
    /// to leave the object alone. Used by controllers.
    pub(crate) fn mutate(
        &self,
        resource: &str,
        ns: &str,
        name: &str,
        f: impl FnOnce(&mut Value) -> bool,
    ) -> Result<Option<Arc<Value>>, StoreError> {
        let cur = self.get(resource, ns, name).ok_or(StoreError::NotFound)?;
        let mut next = (*cur).clone();
        if !f(&mut next) || next == *cur {
            return Ok(None);
        }
        self.update(resource, next).map(Some)
    }

    /// Deletes an object. With finalizers (or `extra_finalizer`, used for foreground/orphan
    /// propagation) it is only marked with a deletionTimestamp; otherwise it is removed.
    /// `precondition_uid`/`precondition_rv` are checked when given.
    pub(crate) fn delete(
        &self,
        resource: &str,
        ns: &str,
        name: &str,
        extra_finalizer: Option<&str>,
        precondition_uid: Option<&str>,
        precondition_rv: Option<&str>,
    ) -> Result<Deleted, StoreError> {
        let mut inner = self.lock();
        let key = (ns.to_string(), name.to_string());
        let res = Self::table_key(&inner, resource);
        let old = inner.tables.get(&res).and_then(|t| t.get(&key)).cloned().ok_or(StoreError::NotFound)?;
        if precondition_uid.is_some_and(|u| u != meta::uid(&old))
            || precondition_rv.is_some_and(|r| r != meta::resource_version(&old))
        {
            return Err(StoreError::Conflict);
        }
        let mut finalizers = meta::finalizers(&old);
        if let Some(f) = extra_finalizer
            && !meta::is_deleting(&old)
            && !finalizers.iter().any(|x| x == f)
        {
            finalizers.push(f.to_string());
        }
        inner.rv += 1;
        let rv = inner.rv.to_string();
        if finalizers.is_empty() && !meta::spec_finalized(&old) {
            let mut obj = (*old).clone();
            meta::metadata_mut(&mut obj).insert("resourceVersion".into(), json!(rv));
            let obj = Arc::new(obj);
            if let Some(t) = inner.tables.get_mut(&res) {
                t.remove(&key);
            }
            self.record(&mut inner, EventType::Deleted, &res, obj.clone(), Some(old.clone()));
            return Ok(Deleted { object: obj, gone: true });
        }
        if meta::is_deleting(&old) && meta::finalizers(&old) == finalizers {
            inner.rv -= 1;
            return Ok(Deleted { object: old, gone: false });
        }
        let mut obj = (*old).clone();
        let md = meta::metadata_mut(&mut obj);
        md.entry("deletionTimestamp").or_insert_with(|| json!(meta::now()));
        md.entry("deletionGracePeriodSeconds").or_insert(json!(0));
        md.insert("finalizers".into(), json!(finalizers));
        md.insert("resourceVersion".into(), json!(rv));
        let obj = Arc::new(obj);
        if let Some(t) = inner.tables.get_mut(&res) {
            t.insert(key, obj.clone());
        }
        self.record(&mut inner, EventType::Modified, &res, obj.clone(), Some(old.clone()));
        Ok(Deleted { object: obj, gone: false })
    }

    /// Marks an object for graceful deletion: `deletionTimestamp` = now + `grace` seconds and
    /// `deletionGracePeriodSeconds` = `grace`; it stays (Terminating) until deleted again once its
    /// owner (the simulated kubelet) is done. An object already marked is returned unchanged.
    pub(crate) fn mark_graceful(
        &self,
        resource: &str,
        ns: &str,
        name: &str,
        grace: i64,
        precondition_uid: Option<&str>,
        precondition_rv: Option<&str>,
    ) -> Result<Arc<Value>, StoreError> {
        let mut inner = self.lock();
        let key = (ns.to_string(), name.to_string());
        let res = Self::table_key(&inner, resource);
        let old = inner.tables.get(&res).and_then(|t| t.get(&key)).cloned().ok_or(StoreError::NotFound)?;
        if precondition_uid.is_some_and(|u| u != meta::uid(&old))
            || precondition_rv.is_some_and(|r| r != meta::resource_version(&old))
        {
            return Err(StoreError::Conflict);
        }
        if meta::is_deleting(&old) {
            return Ok(old);
        }
        inner.rv += 1;
        let mut obj = (*old).clone();
        let md = meta::metadata_mut(&mut obj);
        md.insert("deletionTimestamp".into(), json!(meta::after_seconds(grace)));
        md.insert("deletionGracePeriodSeconds".into(), json!(grace));
        md.insert("resourceVersion".into(), json!(inner.rv.to_string()));
        let obj = Arc::new(obj);
        if let Some(t) = inner.tables.get_mut(&res) {
            t.insert(key, obj.clone());
        }
        self.record(&mut inner, EventType::Modified, &res, obj.clone(), Some(old));
        Ok(obj)
    }

    /// Forgets the event history (watches from older versions get 410): used once a fresh sim is
    /// populated, so the bootstrap churn does not stay in memory.
    pub(crate) fn compact(&self) {
        let mut inner = self.lock();
        inner.log = std::collections::VecDeque::new();
        inner.compacted = inner.rv;
    }

    /// Whether a change after `rv` satisfies `matters` (true when the log no longer reaches back to
    /// `rv`), and the current resourceVersion.
    pub(crate) fn changed_since(&self, rv: u64, matters: impl Fn(&Event) -> bool) -> (bool, u64) {
        let inner = self.lock();
        if rv < inner.compacted {
            return (true, inner.rv);
        }
        let start = inner.log.partition_point(|e| e.rv <= rv);
        (inner.log.range(start..).any(matters), inner.rv)
    }

    /// Events after `rv` for `resource`, and the current resourceVersion. `Err(oldest)` when `rv` is
    /// older than the log keeps.
    pub(crate) fn events_since(&self, resource: &str, rv: u64) -> Result<(Vec<Event>, u64), u64> {
        let inner = self.lock();
        if rv < inner.compacted {
            return Err(inner.compacted + 1);
        }
        let start = inner.log.partition_point(|e| e.rv <= rv);
        Ok((inner.log.range(start..).filter(|e| &*e.resource == resource).cloned().collect(), inner.rv))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cm(name: &str) -> Value {
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": "default"}})
    }

    #[test]
    fn list_at_rebuilds_past_versions() {
        let s = Store::new(EVENT_LOG_CAPACITY);
        s.create("configmaps", cm("a")).unwrap();
        let at_a = s.rv();
        let mut b = cm("b");
        b["data"] = json!({"v": "1"});
        s.create("configmaps", b.clone()).unwrap();
        let at_b = s.rv();
        b["data"] = json!({"v": "2"});
        s.update("configmaps", b).unwrap();
        s.delete("configmaps", "default", "a", None, None, None).unwrap();
        let names = |v: Vec<Arc<Value>>| v.iter().map(|o| meta::name(o).to_string()).collect::<Vec<_>>();
        assert_eq!(names(s.list_at("configmaps", None, at_a).unwrap()), vec!["a"]);
        let past = s.list_at("configmaps", Some("default"), at_b).unwrap();
        assert_eq!(names(past.clone()), vec!["a", "b"]);
        assert_eq!(past[1]["data"]["v"], "1");
        assert_eq!(names(s.list_at("configmaps", None, s.rv()).unwrap()), vec!["b"]);
        assert_eq!(s.list_at("configmaps", None, s.rv() + 1), Err(ListAtError::TooLarge(s.rv())));
        s.compact();
        assert!(matches!(s.list_at("configmaps", None, at_b), Err(ListAtError::TooOld(_))));
    }

    #[test]
    fn create_conflicts_and_versions() {
        let s = Store::new(EVENT_LOG_CAPACITY);
        let a = s.create("configmaps", cm("a")).unwrap();
        assert_eq!(s.create("configmaps", cm("a")).unwrap_err(), StoreError::AlreadyExists);
        let mut stale = (*a).clone();
        stale["data"] = json!({"k": "v"});
        let b = s.update("configmaps", stale.clone()).unwrap();
        assert_ne!(meta::resource_version(&a), meta::resource_version(&b));
        // The first writer's resourceVersion is now stale.
        assert_eq!(s.update("configmaps", stale).unwrap_err(), StoreError::Conflict);
        assert_eq!(s.get("configmaps", "default", "a").unwrap()["data"]["k"], "v");
    }

    #[test]
    fn finalizers_hold_deletion_and_events_replay() {
        let s = Store::new(EVENT_LOG_CAPACITY);
        let start = s.rv();
        let mut o = cm("f");
        o["metadata"]["finalizers"] = json!(["x/y"]);
        s.create("configmaps", o).unwrap();
        let d = s.delete("configmaps", "default", "f", None, None, None).unwrap();
        assert!(!d.gone);
        let mut cur = (*s.get("configmaps", "default", "f").unwrap()).clone();
        cur["metadata"]["finalizers"] = json!([]);
        s.update("configmaps", cur).unwrap();
        assert!(s.get("configmaps", "default", "f").is_none());
        let kinds: Vec<_> = s.events_since("configmaps", start).unwrap().0.iter().map(|e| e.kind).collect();
        assert_eq!(kinds, vec![EventType::Added, EventType::Modified, EventType::Deleted]);
    }

    #[test]
    fn old_versions_are_gone() {
        let s = Store::new(EVENT_LOG_CAPACITY);
        for i in 0..(EVENT_LOG_CAPACITY + 10) {
            s.create("configmaps", cm(&format!("c{i}"))).unwrap();
        }
        assert!(s.events_since("configmaps", 2).is_err());
        assert!(s.events_since("configmaps", s.rv() - 5).is_ok());
    }
}
