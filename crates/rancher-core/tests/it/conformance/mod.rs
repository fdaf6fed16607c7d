//! The store conformance suite: the Kubernetes semantics every [`Store`] backend must keep.
//!
//! Each backend's test file builds a [`Fixture`] and expands [`conformance_suite!`], which makes one
//! `#[tokio::test]` per case so a failure names the case and the backend.

#![allow(dead_code, unreachable_pub)]

use std::any::Any;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use rancher_core::store::{
    Deleted, LabelSelector, ListOptions, Preconditions, Store, StoreError, WatchEvent, WatchOptions,
    WatchStream,
};
use serde_json::{Value, json};

/// A store under test, plus whatever keeps it alive (a temp dir, an etcd process).
pub struct Fixture {
    /// The store.
    pub store: Arc<dyn Store>,
    /// Makes versions up to the given one unavailable to watches (etcd: compaction). Local stores are
    /// built with a small history, so writing enough is compaction for them.
    pub compact: Box<dyn Fn(u64) -> BoxFuture<'static, ()> + Send + Sync>,
    /// Dropped at the end of the test.
    pub keep: Box<dyn Any + Send + Sync>,
}

/// How many changes local stores under test keep for replay.
pub const TEST_HISTORY: usize = 16;

/// Expands to one test per conformance case; `$make` is an async expression producing a [`Fixture`].
#[macro_export]
macro_rules! conformance_suite {
    ($make:expr) => {
        $crate::conformance_suite!(@cases $make;
            create_then_already_exists, get_missing_is_not_found, update_with_stale_version_conflicts,
            uid_and_creation_timestamp_are_immutable, generation_bumps_on_spec_change_only,
            finalizers_hold_a_delete_until_the_last_is_removed, delete_preconditions_are_checked,
            label_selectors_filter_lists, namespaces_scope_objects, paging_returns_every_item_once,
            garbage_continue_token_is_invalid, watch_from_version_replays_later_events_in_order,
            watch_without_version_sends_current_objects_then_follows, watch_from_compacted_version_is_gone,
            watch_filters_by_namespace_and_selector, invalid_writes_are_rejected_and_change_nothing,
            generate_name_completes_the_name, unchanged_update_keeps_the_version,
            an_immediate_watch_has_every_returned_write_ready);
    };
    (@cases $make:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let fixture: $crate::conformance::Fixture = $make.await;
                $crate::conformance::$case(&fixture).await;
            }
        )*
    };
}

const WAIT: Duration = Duration::from_secs(20);

fn obj(name: &str) -> Value {
    json!({"apiVersion": "management.cattle.io/v3", "kind": "Cluster", "metadata": {"name": name}, "spec": {"a": 1}})
}

fn nsobj(ns: &str, name: &str, labels: Value) -> Value {
    json!({"metadata": {"name": name, "namespace": ns, "labels": labels}, "spec": {}})
}

fn rv(v: &Value) -> String {
    v["metadata"]["resourceVersion"].as_str().expect("resourceVersion").to_owned()
}

fn rv_num(v: &Value) -> u64 {
    rv(v).parse().expect("decimal resourceVersion")
}

fn names(items: &[Value]) -> Vec<String> {
    items.iter().map(|v| v["metadata"]["name"].as_str().unwrap_or_default().to_owned()).collect()
}

async fn next(w: &mut WatchStream) -> WatchEvent {
    match tokio::time::timeout(WAIT, w.next()).await {
        Ok(Some(Ok(ev))) => ev,
        other => panic!("expected a watch event, got {other:?}"),
    }
}

fn event_name(ev: &WatchEvent) -> (&'static str, String) {
    let (kind, v) = match ev {
        WatchEvent::Added(v) => ("ADDED", v),
        WatchEvent::Modified(v) => ("MODIFIED", v),
        WatchEvent::Deleted(v) => ("DELETED", v),
        WatchEvent::Bookmark(_) => return ("BOOKMARK", String::new()),
    };
    (kind, v["metadata"]["name"].as_str().unwrap_or_default().to_owned())
}

/// Next non-bookmark event.
async fn next_change(w: &mut WatchStream) -> (&'static str, String, Value) {
    loop {
        let ev = next(w).await;
        let (k, n) = event_name(&ev);
        match ev {
            WatchEvent::Added(v) | WatchEvent::Modified(v) | WatchEvent::Deleted(v) => return (k, n, v),
            WatchEvent::Bookmark(_) => continue,
        }
    }
}

pub async fn create_then_already_exists(f: &Fixture) {
    let s = &f.store;
    let created = s.create("clusters", obj("c1")).await.unwrap();
    let meta = &created["metadata"];
    assert!(!meta["uid"].as_str().unwrap().is_empty());
    assert_eq!(meta["generation"], 1);
    assert!(meta["creationTimestamp"].as_str().unwrap().parse::<jiff::Timestamp>().is_ok());
    assert!(rv_num(&created) > 0);
    let again = s.create("clusters", obj("c1")).await;
    assert!(matches!(again, Err(StoreError::AlreadyExists { .. })), "{again:?}");
    assert_eq!(s.get("clusters", None, "c1").await.unwrap(), created);
    // The same name in another resource is a different object.
    s.create("projects", obj("c1")).await.unwrap();
}

pub async fn get_missing_is_not_found(f: &Fixture) {
    let r = f.store.get("clusters", None, "nope").await;
    assert!(matches!(r, Err(StoreError::NotFound { .. })), "{r:?}");
    assert_eq!(r.unwrap_err().to_status().code, 404);
    let r = f.store.update("clusters", obj("nope")).await;
    assert!(matches!(r, Err(StoreError::NotFound { .. })), "{r:?}");
    let r = f.store.delete("clusters", None, "nope", Preconditions::default()).await;
    assert!(matches!(r, Err(StoreError::NotFound { .. })), "{r:?}");
}

pub async fn update_with_stale_version_conflicts(f: &Fixture) {
    let s = &f.store;
    let v1 = s.create("clusters", obj("c1")).await.unwrap();
    let mut a = v1.clone();
    a["spec"]["a"] = json!(2);
    let v2 = s.update("clusters", a).await.unwrap();
    assert!(rv_num(&v2) > rv_num(&v1));
    let mut stale = v1.clone();
    stale["spec"]["a"] = json!(3);
    let r = s.update("clusters", stale).await;
    assert!(matches!(r, Err(StoreError::Conflict { .. })), "{r:?}");
    assert_eq!(s.get("clusters", None, "c1").await.unwrap()["spec"]["a"], 2);
    // An empty version updates unconditionally.
    let mut blind = v1.clone();
    blind["metadata"]["resourceVersion"] = json!("");
    blind["spec"]["a"] = json!(4);
    let v3 = s.update("clusters", blind).await.unwrap();
    assert_eq!(v3["spec"]["a"], 4);
    assert!(rv_num(&v3) > rv_num(&v2));
}

pub async fn uid_and_creation_timestamp_are_immutable(f: &Fixture) {
    let s = &f.store;
    let v1 = s.create("clusters", obj("c1")).await.unwrap();
    let mut changed_uid = v1.clone();
    changed_uid["metadata"]["uid"] = json!("another-uid");
    let r = s.update("clusters", changed_uid).await;
    assert!(matches!(r, Err(StoreError::Invalid(_))), "{r:?}");
    let mut changed_ts = v1.clone();
    changed_ts["metadata"]["creationTimestamp"] = json!("2001-01-01T00:00:00Z");
    changed_ts["metadata"]["labels"] = json!({"x": "y"});
    let v2 = s.update("clusters", changed_ts).await.unwrap();
    assert_eq!(v2["metadata"]["creationTimestamp"], v1["metadata"]["creationTimestamp"]);
    assert_eq!(v2["metadata"]["uid"], v1["metadata"]["uid"]);
    assert_eq!(v2["metadata"]["labels"]["x"], "y");
}

pub async fn generation_bumps_on_spec_change_only(f: &Fixture) {
    let s = &f.store;
    let v1 = s.create("clusters", obj("c1")).await.unwrap();
    let mut meta_only = v1.clone();
    meta_only["metadata"]["annotations"] = json!({"note": "x"});
    meta_only["status"] = json!({"phase": "ok"});
    let v2 = s.update("clusters", meta_only).await.unwrap();
    assert_eq!(v2["metadata"]["generation"], 1);
    let mut spec = v2.clone();
    spec["spec"]["a"] = json!(99);
    spec["metadata"]["generation"] = json!(50);
    let v3 = s.update("clusters", spec).await.unwrap();
    assert_eq!(v3["metadata"]["generation"], 2);
}

pub async fn finalizers_hold_a_delete_until_the_last_is_removed(f: &Fixture) {
    let s = &f.store;
    let mut o = obj("c1");
    o["metadata"]["finalizers"] = json!(["a.example/x", "b.example/y"]);
    let v1 = s.create("clusters", o).await.unwrap();
    let mut w = s
        .watch("clusters", &WatchOptions { resource_version: Some(rv(&v1)), ..Default::default() })
        .await
        .unwrap();
    let d = s.delete("clusters", None, "c1", Preconditions::default()).await.unwrap();
    let Deleted::Terminating(t) = d else { panic!("expected Terminating, got {d:?}") };
    assert!(t["metadata"]["deletionTimestamp"].is_string());
    assert_eq!(next_change(&mut w).await.0, "MODIFIED");
    // Still readable; a second delete changes nothing.
    let t = s.get("clusters", None, "c1").await.unwrap();
    assert!(matches!(
        s.delete("clusters", None, "c1", Preconditions::default()).await.unwrap(),
        Deleted::Terminating(_)
    ));
    // A client cannot clear deletionTimestamp.
    let mut undo = t.clone();
    undo["metadata"]["deletionTimestamp"] = Value::Null;
    undo["metadata"]["finalizers"] = json!(["b.example/y"]);
    let t2 = s.update("clusters", undo).await.unwrap();
    assert!(t2["metadata"]["deletionTimestamp"].is_string());
    assert_eq!(next_change(&mut w).await.0, "MODIFIED");
    let mut last = t2.clone();
    last["metadata"]["finalizers"] = json!([]);
    s.update("clusters", last).await.unwrap();
    let (kind, name, _) = next_change(&mut w).await;
    assert_eq!((kind, name.as_str()), ("DELETED", "c1"));
    assert!(matches!(s.get("clusters", None, "c1").await, Err(StoreError::NotFound { .. })));
}

pub async fn delete_preconditions_are_checked(f: &Fixture) {
    let s = &f.store;
    let v1 = s.create("clusters", obj("c1")).await.unwrap();
    let wrong_uid = Preconditions { uid: Some("not-it".into()), resource_version: None };
    let r = s.delete("clusters", None, "c1", wrong_uid).await;
    assert!(matches!(r, Err(StoreError::Conflict { .. })), "{r:?}");
    let mut m = v1.clone();
    m["spec"]["a"] = json!(5);
    let v2 = s.update("clusters", m).await.unwrap();
    let stale = Preconditions { uid: None, resource_version: Some(rv(&v1)) };
    let r = s.delete("clusters", None, "c1", stale).await;
    assert!(matches!(r, Err(StoreError::Conflict { .. })), "{r:?}");
    assert!(s.get("clusters", None, "c1").await.is_ok());
    let right = Preconditions {
        uid: Some(v1["metadata"]["uid"].as_str().unwrap().into()),
        resource_version: Some(rv(&v2)),
    };
    let gone = s.delete("clusters", None, "c1", right).await.unwrap();
    assert!(matches!(gone, Deleted::Gone(_)));
    assert!(rv_num(&gone.into_value()) > rv_num(&v2));
}

pub async fn label_selectors_filter_lists(f: &Fixture) {
    let s = &f.store;
    s.create("projects", nsobj("c-1", "p1", json!({"env": "prod", "tier": "web"}))).await.unwrap();
    s.create("projects", nsobj("c-1", "p2", json!({"env": "dev"}))).await.unwrap();
    s.create("projects", nsobj("c-2", "p3", json!({"env": "prod"}))).await.unwrap();
    let list = |sel: &str| {
        let opts =
            ListOptions { label_selector: Some(LabelSelector::parse(sel).unwrap()), ..Default::default() };
        let s = s.clone();
        async move { names(&s.list("projects", &opts).await.unwrap().items) }
    };
    assert_eq!(list("env=prod").await, ["p1", "p3"]);
    assert_eq!(list("env!=prod").await, ["p2"]);
    assert_eq!(list("env in (dev,prod),tier").await, ["p1"]);
    assert_eq!(list("!tier").await, ["p2", "p3"]);
    assert_eq!(list("").await, ["p1", "p2", "p3"]);
}

pub async fn namespaces_scope_objects(f: &Fixture) {
    let s = &f.store;
    s.create("projects", nsobj("c-1", "same", json!({}))).await.unwrap();
    s.create("projects", nsobj("c-2", "same", json!({}))).await.unwrap();
    s.create("projects", nsobj("c-10", "other", json!({}))).await.unwrap();
    let a = s.get("projects", Some("c-1"), "same").await.unwrap();
    let b = s.get("projects", Some("c-2"), "same").await.unwrap();
    assert_ne!(a["metadata"]["uid"], b["metadata"]["uid"]);
    assert!(matches!(s.get("projects", None, "same").await, Err(StoreError::NotFound { .. })));
    let in1 = s
        .list("projects", &ListOptions { namespace: Some("c-1".into()), ..Default::default() })
        .await
        .unwrap();
    assert_eq!(names(&in1.items), ["same"]);
    assert_eq!(s.list("projects", &ListOptions::default()).await.unwrap().items.len(), 3);
    s.delete("projects", Some("c-1"), "same", Preconditions::default()).await.unwrap();
    assert!(s.get("projects", Some("c-2"), "same").await.is_ok());
}

pub async fn paging_returns_every_item_once(f: &Fixture) {
    let s = &f.store;
    let mut expected = Vec::new();
    for i in 0..23 {
        let ns = format!("ns-{}", i % 3);
        let name = format!("o-{i:02}");
        let labels = if i % 2 == 0 { json!({"even": "yes"}) } else { json!({}) };
        s.create("things", nsobj(&ns, &name, labels)).await.unwrap();
        expected.push((ns, name));
    }
    expected.sort();
    for (limit, selector, want) in [(5, None, 23), (1, None, 23), (4, Some("even=yes"), 12), (100, None, 23)]
    {
        let mut opts = ListOptions {
            limit: Some(limit),
            label_selector: selector.map(|s| LabelSelector::parse(s).unwrap()),
            ..Default::default()
        };
        let mut seen = Vec::new();
        let mut first_rv = None;
        let mut pages = 0;
        loop {
            let page = s.list("things", &opts).await.unwrap();
            assert!(page.items.len() <= limit);
            pages += 1;
            assert!(pages < 100, "paging does not end");
            let rv = first_rv.get_or_insert_with(|| page.resource_version.clone());
            assert_eq!(&page.resource_version, rv, "every page reports the first page's version");
            for v in &page.items {
                seen.push((
                    v["metadata"]["namespace"].as_str().unwrap().to_owned(),
                    v["metadata"]["name"].as_str().unwrap().to_owned(),
                ));
            }
            // Writes between pages must not disturb paging.
            if pages == 2 {
                s.create("others", obj("x")).await.ok();
            }
            match page.continue_token {
                Some(t) => opts.continue_token = Some(t),
                None => break,
            }
        }
        let mut dedup = seen.clone();
        dedup.sort();
        dedup.dedup();
        assert_eq!(dedup.len(), seen.len(), "duplicates with limit {limit}: {seen:?}");
        assert_eq!(seen.len(), want, "limit {limit} selector {selector:?}");
        assert_eq!(
            seen,
            {
                let mut s = seen.clone();
                s.sort();
                s
            },
            "items come in namespace, name order"
        );
        if selector.is_none() {
            assert_eq!(seen, expected);
        }
    }
}

pub async fn garbage_continue_token_is_invalid(f: &Fixture) {
    let s = &f.store;
    for i in 0..3 {
        s.create("clusters", obj(&format!("c{i}"))).await.unwrap();
    }
    for bad in ["garbage", "eyJ2IjoxfQ", "!!!"] {
        let opts = ListOptions { continue_token: Some(bad.into()), limit: Some(1), ..Default::default() };
        let r = s.list("clusters", &opts).await;
        assert!(matches!(r, Err(StoreError::Invalid(_))), "{bad}: {r:?}");
    }
    // A token from one list cannot be used for another resource or namespace.
    let page = s.list("clusters", &ListOptions { limit: Some(1), ..Default::default() }).await.unwrap();
    let token = page.continue_token.expect("more pages");
    let elsewhere = ListOptions { continue_token: Some(token.clone()), ..Default::default() };
    assert!(matches!(s.list("projects", &elsewhere).await, Err(StoreError::Invalid(_))));
    let other_ns =
        ListOptions { continue_token: Some(token), namespace: Some("x".into()), ..Default::default() };
    assert!(matches!(s.list("clusters", &other_ns).await, Err(StoreError::Invalid(_))));
}

pub async fn watch_from_version_replays_later_events_in_order(f: &Fixture) {
    let s = &f.store;
    let a = s.create("clusters", obj("a")).await.unwrap();
    let from = rv(&a);
    let b = s.create("clusters", obj("b")).await.unwrap();
    let mut a2 = a.clone();
    a2["spec"]["a"] = json!(7);
    s.update("clusters", a2).await.unwrap();
    s.create("projects", obj("noise")).await.unwrap();
    s.delete("clusters", None, "b", Preconditions::default()).await.unwrap();
    let mut w = s
        .watch("clusters", &WatchOptions { resource_version: Some(from.clone()), ..Default::default() })
        .await
        .unwrap();
    let mut got = Vec::new();
    let mut last = from.parse::<u64>().unwrap();
    for _ in 0..3 {
        let (k, n, v) = next_change(&mut w).await;
        assert!(rv_num(&v) > last, "versions increase");
        last = rv_num(&v);
        got.push(format!("{k} {n}"));
    }
    assert_eq!(got, ["ADDED b", "MODIFIED a", "DELETED b"]);
    assert!(rv_num(&b) > from.parse::<u64>().unwrap());
    // Then it follows.
    s.create("clusters", obj("c")).await.unwrap();
    let (k, n, _) = next_change(&mut w).await;
    assert_eq!((k, n.as_str()), ("ADDED", "c"));
}

pub async fn watch_without_version_sends_current_objects_then_follows(f: &Fixture) {
    let s = &f.store;
    s.create("clusters", obj("a")).await.unwrap();
    s.create("clusters", obj("b")).await.unwrap();
    let list = s.list("clusters", &ListOptions::default()).await.unwrap();
    let mut w = s.watch("clusters", &WatchOptions::default()).await.unwrap();
    let mut first = [next_change(&mut w).await, next_change(&mut w).await];
    first.sort_by(|x, y| x.1.cmp(&y.1));
    assert_eq!(
        first.iter().map(|e| (e.0, e.1.as_str())).collect::<Vec<_>>(),
        [("ADDED", "a"), ("ADDED", "b")]
    );
    s.delete("clusters", None, "a", Preconditions::default()).await.unwrap();
    let (k, n, _) = next_change(&mut w).await;
    assert_eq!((k, n.as_str()), ("DELETED", "a"));
    // A list's version is a valid watch start: it replays exactly the delete.
    let mut w2 = s
        .watch(
            "clusters",
            &WatchOptions { resource_version: Some(list.resource_version), ..Default::default() },
        )
        .await
        .unwrap();
    let (k, n, _) = next_change(&mut w2).await;
    assert_eq!((k, n.as_str()), ("DELETED", "a"));
}

pub async fn watch_from_compacted_version_is_gone(f: &Fixture) {
    let s = &f.store;
    let first = s.create("clusters", obj("a")).await.unwrap();
    let mut cur = first.clone();
    for i in 0..(TEST_HISTORY as i64 * 2 + 4) {
        cur["spec"]["a"] = json!(i + 10);
        cur = s.update("clusters", cur).await.unwrap();
    }
    (f.compact)(rv_num(&cur)).await;
    let opts = WatchOptions { resource_version: Some(rv(&first)), ..Default::default() };
    let r: Result<(), StoreError> = match s.watch("clusters", &opts).await {
        Err(e) => Err(e),
        // A backend may report Gone as the stream's first item.
        Ok(mut w) => match tokio::time::timeout(WAIT, w.next()).await {
            Ok(Some(Err(e))) => Err(e),
            other => panic!("expected Gone, got {other:?}"),
        },
    };
    let e = r.unwrap_err();
    assert!(matches!(e, StoreError::Gone { .. }), "{e:?}");
    assert_eq!(e.to_status().code, 410);
    // The current version still works.
    let mut w = s
        .watch("clusters", &WatchOptions { resource_version: Some(rv(&cur)), ..Default::default() })
        .await
        .unwrap();
    s.create("clusters", obj("b")).await.unwrap();
    assert_eq!(next_change(&mut w).await.1, "b");
}

pub async fn watch_filters_by_namespace_and_selector(f: &Fixture) {
    let s = &f.store;
    let opts = WatchOptions {
        namespace: Some("c-1".into()),
        label_selector: Some(LabelSelector::parse("env=prod").unwrap()),
        resource_version: Some(s.list("projects", &ListOptions::default()).await.unwrap().resource_version),
    };
    let mut w = s.watch("projects", &opts).await.unwrap();
    s.create("projects", nsobj("c-2", "wrong-ns", json!({"env": "prod"}))).await.unwrap();
    s.create("projects", nsobj("c-1", "wrong-label", json!({"env": "dev"}))).await.unwrap();
    let p = s.create("projects", nsobj("c-1", "match", json!({"env": "prod"}))).await.unwrap();
    assert_eq!(next_change(&mut w).await.1, "match");
    // Relabelled out of the selection: the watch sees it leave.
    let mut out = p.clone();
    out["metadata"]["labels"] = json!({"env": "dev"});
    s.update("projects", out).await.unwrap();
    let (k, n, _) = next_change(&mut w).await;
    assert_eq!((k, n.as_str()), ("DELETED", "match"));
    s.create("projects", nsobj("c-1", "last", json!({"env": "prod"}))).await.unwrap();
    assert_eq!(next_change(&mut w).await.1, "last");
}

pub async fn invalid_writes_are_rejected_and_change_nothing(f: &Fixture) {
    let s = &f.store;
    let v1 = s.create("clusters", obj("good")).await.unwrap();
    let before = s.list("clusters", &ListOptions::default()).await.unwrap();
    let bad_objects = [
        obj("Bad_Name"),
        obj("-x"),
        obj(&"x".repeat(64)),
        json!({"metadata": {}}),
        json!({"no": "metadata"}),
        json!([1, 2]),
        json!({"metadata": {"name": "ok", "namespace": "Not Valid"}}),
        json!({"metadata": {"name": "ok", "labels": {"a": 1}}}),
        json!({"metadata": {"name": "ok", "finalizers": "nope"}}),
    ];
    for bad in bad_objects {
        let r = s.create("clusters", bad.clone()).await;
        assert!(matches!(r, Err(StoreError::Invalid(_))), "{bad}: {r:?}");
        assert_eq!(r.unwrap_err().to_status().code, 422);
    }
    let mut bad_update = v1.clone();
    bad_update["metadata"]["labels"] = json!({"bad key!": "v"});
    assert!(matches!(s.update("clusters", bad_update).await, Err(StoreError::Invalid(_))));
    let mut bad_rv = v1.clone();
    bad_rv["metadata"]["resourceVersion"] = json!("abc");
    assert!(matches!(s.update("clusters", bad_rv).await, Err(StoreError::Invalid(_))));
    assert!(matches!(s.get("clusters", None, "../etc").await, Err(StoreError::Invalid(_))));
    assert!(matches!(s.create("bad/resource", obj("x")).await, Err(StoreError::Invalid(_))));
    let bad_watch = WatchOptions { resource_version: Some("nope".into()), ..Default::default() };
    assert!(matches!(s.watch("clusters", &bad_watch).await, Err(StoreError::Invalid(_))));
    let after = s.list("clusters", &ListOptions::default()).await.unwrap();
    assert_eq!(after, before, "a rejected write changed the store");
}

pub async fn generate_name_completes_the_name(f: &Fixture) {
    let s = &f.store;
    let mut names = std::collections::HashSet::new();
    for _ in 0..5 {
        let v = s.create("tokens", json!({"metadata": {"generateName": "token-"}})).await.unwrap();
        let name = v["metadata"]["name"].as_str().unwrap().to_owned();
        assert!(name.starts_with("token-") && name.len() == "token-".len() + 5, "{name}");
        assert_eq!(s.get("tokens", None, &name).await.unwrap(), v);
        names.insert(name);
    }
    assert_eq!(names.len(), 5);
}

pub async fn unchanged_update_keeps_the_version(f: &Fixture) {
    let s = &f.store;
    let v1 = s.create("clusters", obj("c1")).await.unwrap();
    let v2 = s.update("clusters", v1.clone()).await.unwrap();
    assert_eq!(rv(&v2), rv(&v1));
}

/// A store that says its watches are immediate ([`Store::watch_is_immediate`]) has each write ready
/// on an open watch by the time the write returns — polled once, with no wait. (etcd says it is not.)
pub async fn an_immediate_watch_has_every_returned_write_ready(f: &Fixture) {
    if !f.store.watch_is_immediate() {
        return;
    }
    let mut w = f.store.watch("things", &WatchOptions::default()).await.unwrap();
    for i in 0..50 {
        let name = format!("t-{i}");
        f.store.create("things", obj(&name)).await.unwrap();
        let ready = tokio::task::unconstrained(w.next()).now_or_never();
        match ready {
            Some(Some(Ok(WatchEvent::Added(v)))) => assert_eq!(v["metadata"]["name"], name),
            other => panic!("write {i}: the watch had {other:?} ready"),
        }
    }
}
