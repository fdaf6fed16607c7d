//! [`EtcdStore`] over a three-member etcd cluster on loopback. The leader is SIGKILLed mid-run: writes
//! keep succeeding through the other endpoints, no acknowledged write is lost, and the member comes back
//! with its data directory and catches up. A watch opened before the failure (on the store's shared etcd
//! watch) sees every acknowledged write. Two members gone (no quorum): writes are `Unavailable`, reads
//! answer from the member that is left, and writes come back with a member.
#![cfg(feature = "etcd")]

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use rancher_core::store::{EtcdStore, ListOptions, Store, StoreError, WatchEvent, WatchOptions};
use serde_json::json;

async fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_survive_losing_the_leader_and_the_member_catches_up() {
    let mut etcd = rancher_test_support::etcd::Etcd::start(3).await;
    let store = Arc::new(EtcdStore::connect(&etcd.endpoints()).await.unwrap());

    let seen: Arc<Mutex<HashSet<String>>> = Default::default();
    let watch_error: Arc<Mutex<Option<String>>> = Default::default();
    let mut watch = store.watch("items", &WatchOptions::default()).await.unwrap();
    let watcher = {
        let (seen, watch_error) = (seen.clone(), watch_error.clone());
        tokio::spawn(async move {
            while let Some(ev) = watch.next().await {
                match ev {
                    Ok(WatchEvent::Added(v)) => {
                        seen.lock().unwrap().insert(v["metadata"]["name"].as_str().unwrap().to_owned());
                    }
                    Ok(_) => {}
                    Err(e) => {
                        *watch_error.lock().unwrap() = Some(e.to_string());
                        return;
                    }
                }
            }
            *watch_error.lock().unwrap() = Some("watch ended".into());
        })
    };

    let acked: Arc<Mutex<Vec<String>>> = Default::default();
    let errors: Arc<Mutex<Vec<String>>> = Default::default();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (store, acked, errors, stop) = (store.clone(), acked.clone(), errors.clone(), stop.clone());
        tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(Ordering::SeqCst) {
                let name = format!("o-{i}");
                match store.create("items", json!({"metadata": {"name": name}, "spec": {"i": i}})).await {
                    Ok(_) => {}
                    // An earlier attempt that failed ambiguously was applied: that is an ack too.
                    Err(StoreError::AlreadyExists { .. }) => {}
                    Err(e) => {
                        errors.lock().unwrap().push(e.to_string());
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                }
                acked.lock().unwrap().push(name);
                i += 1;
            }
        })
    };
    let count = |a: &Arc<Mutex<Vec<String>>>| a.lock().unwrap().len();
    wait_for("writes before the failure", Duration::from_secs(60), || count(&acked) >= 30).await;

    let leader = crate::etcd_support::leader(&etcd).await;
    etcd.members[leader].kill();
    let at_kill = count(&acked);
    wait_for("writes after losing the leader", Duration::from_secs(60), || count(&acked) >= at_kill + 50)
        .await;

    etcd.members[leader].restart();
    etcd.wait_ready(leader).await;
    wait_for("writes with the member back", Duration::from_secs(60), || count(&acked) >= at_kill + 80).await;
    stop.store(true, Ordering::SeqCst);
    writer.await.unwrap();

    let acked = acked.lock().unwrap().clone();
    for name in &acked {
        store.get("items", None, name).await.unwrap_or_else(|e| panic!("acknowledged {name} lost: {e}"));
    }
    wait_for("the watch to see every acknowledged write", Duration::from_secs(60), || {
        let seen = seen.lock().unwrap();
        assert_eq!(*watch_error.lock().unwrap(), None, "watch broke");
        acked.iter().all(|n| seen.contains(n))
    })
    .await;
    watcher.abort();
    let listed = store.list("items", &ListOptions::default()).await.unwrap().items.len();
    assert_eq!(listed, acked.len());

    // The restarted member has every object in its own copy (a serializable read answers locally).
    let url = etcd.members[leader].client_url.clone();
    let member = etcd_client::Client::connect([url.as_str()], None).await.unwrap();
    let local_count = || {
        let mut member = member.clone();
        async move {
            let opts = etcd_client::GetOptions::new().with_prefix().with_serializable().with_count_only();
            member.get("/rancher/items/", Some(opts)).await.map(|r| r.count()).unwrap_or(-1)
        }
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let n = local_count().await;
        if n == acked.len() as i64 {
            break;
        }
        assert!(Instant::now() < deadline, "restarted member has {n} of {} objects", acked.len());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "acked {} writes ({} after the kill); {} transient errors",
        acked.len(),
        acked.len() - at_kill,
        errors.lock().unwrap().len()
    );
}

/// Two of three members gone: the store's writes fail with `Unavailable` (a 503 for API clients) within
/// etcd's request timeout instead of hanging, its reads keep answering from the remaining member's copy,
/// and once a member is back writes work again by themselves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_quorum_reads_answer_and_writes_are_unavailable_until_it_is_back() {
    let mut etcd = rancher_test_support::etcd::Etcd::start(3).await;
    // The store reaches the member that stays (a replica next to it, cut off from the others).
    let store = EtcdStore::connect(&[etcd.members[0].client_url.clone()]).await.unwrap();
    for i in 0..5 {
        store
            .create("items", json!({"metadata": {"name": format!("o-{i}")}, "spec": {"i": i}}))
            .await
            .unwrap();
    }
    etcd.members[1].kill();
    etcd.members[2].kill();

    let started = Instant::now();
    let refused = store.create("items", json!({"metadata": {"name": "while-cut"}})).await.unwrap_err();
    let took = started.elapsed();
    assert!(matches!(refused, StoreError::Unavailable(_)), "{refused}");
    let status = refused.to_status();
    assert_eq!((status.code, status.reason.as_str()), (503, "ServiceUnavailable"), "{status}");
    assert!(took < Duration::from_secs(15), "a write without quorum took {took:?} to fail");
    eprintln!("a write without quorum failed after {took:?}");
    let mut changed = store.get("items", None, "o-1").await.unwrap();
    changed["spec"]["i"] = json!(100);
    let refused = store.update("items", changed).await.unwrap_err();
    assert!(matches!(refused, StoreError::Unavailable(_)), "{refused}");

    // Reads: what the member holds, and after the first one found no quorum, without waiting for it.
    assert_eq!(store.get("items", None, "o-3").await.unwrap()["spec"]["i"], 3);
    let started = Instant::now();
    let listed = store.list("items", &ListOptions::default()).await.unwrap();
    assert_eq!(listed.items.len(), 5);
    assert!(store.get("items", None, "nope").await.is_err_and(|e| matches!(e, StoreError::NotFound { .. })));
    assert!(started.elapsed() < Duration::from_secs(1), "reads waited {:?}", started.elapsed());

    etcd.members[1].restart();
    etcd.wait_ready(1).await;
    rancher_test_support::eventually(Duration::from_secs(60), "writes to come back", || async {
        match store.create("items", json!({"metadata": {"name": "after"}})).await {
            Ok(_) | Err(StoreError::AlreadyExists { .. }) => Some(()),
            Err(_) => None,
        }
    })
    .await;
    let mut changed = store.get("items", None, "o-1").await.unwrap();
    changed["spec"]["i"] = json!(100);
    assert_eq!(store.update("items", changed).await.unwrap()["spec"]["i"], 100);
}
