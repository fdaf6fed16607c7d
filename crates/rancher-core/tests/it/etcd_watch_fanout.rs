//! [`EtcdStore`] watches share one etcd watch per resource: many watchers cost etcd one watcher, and a
//! version older than the shared history still replays (through a watch of its own).
#![cfg(feature = "etcd")]

use std::time::Duration;

use futures::StreamExt;
use rancher_core::store::{EtcdStore, Store, WatchEvent, WatchOptions, WatchStream};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const WAIT: Duration = Duration::from_secs(30);

/// etcd's own count of open watchers, from its metrics endpoint.
async fn etcd_watchers(client_url: &str) -> u64 {
    let addr = client_url.trim_start_matches("http://");
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    conn.write_all(req.as_bytes()).await.unwrap();
    let mut body = String::new();
    conn.read_to_string(&mut body).await.unwrap();
    let line = body
        .lines()
        .find(|l| l.starts_with("etcd_debugging_mvcc_watcher_total "))
        .expect("watcher gauge in etcd metrics");
    line.rsplit(' ').next().unwrap().parse::<f64>().unwrap() as u64
}

fn rv(v: &Value) -> String {
    v["metadata"]["resourceVersion"].as_str().unwrap().to_owned()
}

async fn next(w: &mut WatchStream) -> WatchEvent {
    tokio::time::timeout(WAIT, w.next()).await.expect("watch event in time").expect("stream open").unwrap()
}

fn modified_spec(ev: WatchEvent) -> i64 {
    match ev {
        WatchEvent::Modified(v) => v["spec"]["i"].as_i64().unwrap(),
        other => panic!("expected MODIFIED, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_watchers_share_one_etcd_watch() {
    let etcd = rancher_test_support::etcd::Etcd::start(1).await;
    let store = EtcdStore::connect(&etcd.endpoints()).await.unwrap();
    let mut cur =
        store.create("clusters", json!({"metadata": {"name": "a"}, "spec": {"i": 0}})).await.unwrap();
    let mut watches = Vec::new();
    for i in 0..100 {
        // Half from the current version, half listing first.
        let rv = (i % 2 == 0).then(|| rv(&cur));
        let mut w = store
            .watch("clusters", &WatchOptions { resource_version: rv.clone(), ..Default::default() })
            .await
            .unwrap();
        if rv.is_none() {
            assert!(matches!(next(&mut w).await, WatchEvent::Added(_)));
        }
        watches.push(w);
    }
    assert_eq!(etcd_watchers(&etcd.members[0].client_url).await, 1, "one etcd watch for 100 watchers");
    for i in 1..=3 {
        cur["spec"]["i"] = json!(i);
        cur = store.update("clusters", cur).await.unwrap();
    }
    for w in &mut watches {
        for i in 1..=3 {
            assert_eq!(modified_spec(next(w).await), i);
        }
    }
    // Another resource gets a feed of its own.
    let _other = store.watch("projects", &WatchOptions::default()).await.unwrap();
    assert_eq!(etcd_watchers(&etcd.members[0].client_url).await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_older_than_the_shared_history_replays_from_etcd() {
    let etcd = rancher_test_support::etcd::Etcd::start(1).await;
    let store = EtcdStore::connect(&etcd.endpoints()).await.unwrap();
    let first = store.create("clusters", json!({"metadata": {"name": "a"}, "spec": {"i": 0}})).await.unwrap();
    let mut cur = first.clone();
    for i in 1..=3 {
        cur["spec"]["i"] = json!(i);
        cur = store.update("clusters", cur).await.unwrap();
    }
    // Starts the shared feed after those writes: its history does not reach back to `first`.
    let mut shared = store.watch("clusters", &WatchOptions::default()).await.unwrap();
    assert!(matches!(next(&mut shared).await, WatchEvent::Added(_)));
    let mut old = store
        .watch("clusters", &WatchOptions { resource_version: Some(rv(&first)), ..Default::default() })
        .await
        .unwrap();
    for i in 1..=3 {
        assert_eq!(modified_spec(next(&mut old).await), i);
    }
    assert_eq!(etcd_watchers(&etcd.members[0].client_url).await, 2, "the shared feed and the old one");
    cur["spec"]["i"] = json!(4);
    store.update("clusters", cur).await.unwrap();
    assert_eq!(modified_spec(next(&mut old).await), 4);
    assert_eq!(modified_spec(next(&mut shared).await), 4);
}

/// Answers larger than gRPC's default 4 MiB are read: a page of a list (500 objects of 10 KB), and a
/// watch replaying 600 such changes from etcd (which sends them in one message).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_over_four_mebibytes_are_read() {
    let etcd = rancher_test_support::etcd::Etcd::start(1).await;
    let store = EtcdStore::connect(&etcd.endpoints()).await.unwrap();
    let filler = "x".repeat(10_000);
    let mut first = None;
    for i in 0..600 {
        let made = store
            .create(
                "clusters",
                json!({"metadata": {"name": format!("c-{i:03}")}, "spec": {"filler": filler}}),
            )
            .await
            .unwrap();
        first.get_or_insert(made);
    }
    let list = store.list("clusters", &Default::default()).await.unwrap();
    assert_eq!(list.items.len(), 600);

    // A store that has not watched yet replays an older version from etcd itself.
    let fresh = EtcdStore::connect(&etcd.endpoints()).await.unwrap();
    let from = rv(&first.unwrap());
    let mut w = fresh
        .watch("clusters", &WatchOptions { resource_version: Some(from), ..Default::default() })
        .await
        .unwrap();
    for i in 1..600 {
        match next(&mut w).await {
            WatchEvent::Added(v) => assert_eq!(v["metadata"]["name"], format!("c-{i:03}")),
            other => panic!("expected ADDED, got {other:?}"),
        }
    }
}
