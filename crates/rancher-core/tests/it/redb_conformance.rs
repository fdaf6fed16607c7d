//! The conformance suite against [`RedbStore`], plus restart behaviour.

use std::sync::Arc;

use crate::conformance::{Fixture, TEST_HISTORY};
use futures::{FutureExt, StreamExt};
use rancher_core::store::{ListOptions, RedbStore, Store, StoreError, WatchEvent, WatchOptions};
use serde_json::json;

async fn redb() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = RedbStore::open_with_history(dir.path().join("store.redb"), TEST_HISTORY).unwrap();
    Fixture { store: Arc::new(store), compact: Box::new(|_| async {}.boxed()), keep: Box::new(dir) }
}

conformance_suite!(redb());

#[tokio::test]
async fn reopening_keeps_objects_and_the_revision_and_old_watch_versions_are_gone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.redb");
    let store = RedbStore::open(&path).unwrap();
    let a = store.create("clusters", json!({"metadata": {"name": "a"}, "spec": {"x": 1}})).await.unwrap();
    let mut b = store.create("clusters", json!({"metadata": {"name": "b"}})).await.unwrap();
    b["spec"] = json!({"y": 2});
    let b = store.update("clusters", b).await.unwrap();
    let before = store.list("clusters", &ListOptions::default()).await.unwrap();
    drop(store);

    let store = RedbStore::open(&path).unwrap();
    let after = store.list("clusters", &ListOptions::default()).await.unwrap();
    assert_eq!(after, before, "objects and the list version survive a restart");
    assert_eq!(store.get("clusters", None, "b").await.unwrap(), b);
    // The counter continues: no version is handed out twice.
    let c = store.create("clusters", json!({"metadata": {"name": "c"}})).await.unwrap();
    let rv =
        |v: &serde_json::Value| v["metadata"]["resourceVersion"].as_str().unwrap().parse::<u64>().unwrap();
    assert_eq!(rv(&c), before.resource_version.parse::<u64>().unwrap() + 1);
    // History starts empty after a restart: older versions are Gone, the list version works.
    let old = WatchOptions { resource_version: Some(rv(&a).to_string()), ..Default::default() };
    assert!(matches!(store.watch("clusters", &old).await, Err(StoreError::Gone { .. })));
    let from_list = WatchOptions { resource_version: Some(before.resource_version), ..Default::default() };
    let mut w = store.watch("clusters", &from_list).await.unwrap();
    match w.next().await {
        Some(Ok(WatchEvent::Added(v))) => assert_eq!(v["metadata"]["name"], "c"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_file_held_by_another_store_or_not_a_database_is_a_backend_error() {
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.redb");
    std::fs::write(&junk, b"this is not a redb file at all, just some bytes").unwrap();
    assert!(matches!(RedbStore::open(&junk), Err(StoreError::Backend(_))));
}
