//! Watch and list semantics a kube-rs user notices: objects entering and leaving a watch's label
//! selector arrive as ADDED and DELETED, lists honour `resourceVersion` / `resourceVersionMatch`, and
//! paged lists stay consistent with their first page.

use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use serde_json::{Value, json};

async fn client(yaml: &str) -> Client {
    rancher_test_support::install_crypto();
    let kc = Kubeconfig::from_yaml(yaml).expect("kubeconfig parses");
    let mut cfg = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await.expect("config");
    // kube-rs retries 504s (15 times, backing off): the future-version case asserts the first answer.
    cfg.default_retry = false;
    Client::try_from(cfg).expect("client")
}

fn cm(name: &str, app: &str, v: &str) -> ConfigMap {
    serde_json::from_value(json!({"metadata": {"name": name, "labels": {"app": app}}, "data": {"v": v}}))
        .expect("configmap")
}

async fn relabel(api: &Api<ConfigMap>, name: &str, app: &str) {
    let p = json!({"metadata": {"labels": {"app": app}}});
    api.patch(name, &PatchParams::default(), &Patch::Merge(&p)).await.expect("relabel");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn selector_transitions_are_added_and_deleted() {
    let sim = rancher_sim::Sim::builder().start().await.expect("sim");
    let client = client(&sim.kubeconfig_yaml()).await;
    let api: Api<ConfigMap> = Api::default_namespaced(client);
    let made = api.create(&PostParams::default(), &cm("moving", "a", "1")).await.expect("create");
    let rv = made.metadata.resource_version.clone().expect("rv");
    let mut events =
        api.watch(&WatchParams::default().labels("app=a").timeout(60), &rv).await.expect("watch").boxed();
    relabel(&api, "moving", "b").await;
    // A change while outside the selector is not seen at all.
    api.patch("moving", &PatchParams::default(), &Patch::Merge(&json!({"data": {"v": "2"}})))
        .await
        .expect("patch data");
    relabel(&api, "moving", "a").await;
    api.delete("moving", &Default::default()).await.expect("delete");
    let mut seen = vec![];
    while seen.len() < 3 {
        let e = tokio::time::timeout(Duration::from_secs(30), events.try_next())
            .await
            .expect("event in time")
            .expect("stream ok")
            .expect("stream open");
        match e {
            WatchEvent::Added(o) => seen.push(("ADDED", o)),
            WatchEvent::Modified(o) => seen.push(("MODIFIED", o)),
            WatchEvent::Deleted(o) => seen.push(("DELETED", o)),
            WatchEvent::Bookmark(_) => {}
            WatchEvent::Error(e) => panic!("watch error {e:?}"),
        }
    }
    let kinds: Vec<&str> = seen.iter().map(|(k, _)| *k).collect();
    assert_eq!(kinds, vec!["DELETED", "ADDED", "DELETED"]);
    // Leaving the selector shows the object as it last matched, at the version of the change.
    let left = &seen[0].1;
    assert_eq!(left.metadata.labels.as_ref().expect("labels")["app"], "a");
    assert_ne!(left.metadata.resource_version, made.metadata.resource_version);
    assert_eq!(seen[1].1.data.as_ref().expect("data")["v"], "2");
}

async fn get(client: &Client, path: &str) -> Result<Value, kube::Error> {
    client.request::<Value>(http::Request::get(path).body(vec![]).expect("request")).await
}

fn code(r: Result<Value, kube::Error>) -> u16 {
    match r {
        Err(kube::Error::Api(s)) => s.code,
        other => panic!("expected an API error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_honour_resource_versions_and_pages_stay_consistent() {
    let sim = rancher_sim::Sim::builder().watch_history(64).start().await.expect("sim");
    let client = client(&sim.kubeconfig_yaml()).await;
    let api: Api<ConfigMap> = Api::default_namespaced(client.clone());
    let first = api.create(&PostParams::default(), &cm("a", "x", "1")).await.expect("create a");
    let rv1 = first.metadata.resource_version.clone().expect("rv");
    api.create(&PostParams::default(), &cm("b", "x", "1")).await.expect("create b");
    api.patch("a", &PatchParams::default(), &Patch::Merge(&json!({"data": {"v": "2"}})))
        .await
        .expect("patch");
    // The namespace also holds kube-root-ca.crt: select ours.
    let base = "/api/v1/namespaces/default/configmaps?labelSelector=app%3Dx";

    // Exact: the list as it was at rv1 — only `a`, with its old data.
    let old = get(&client, &format!("{base}&resourceVersion={rv1}&resourceVersionMatch=Exact"))
        .await
        .expect("exact");
    assert_eq!(old["metadata"]["resourceVersion"], rv1.as_str());
    let items = old["items"].as_array().expect("items");
    assert_eq!(items.len(), 1, "{old}");
    assert_eq!(items[0]["data"]["v"], "1");
    // 0 and NotOlderThan: the current state.
    for q in ["resourceVersion=0", &format!("resourceVersion={rv1}&resourceVersionMatch=NotOlderThan")] {
        let now = get(&client, &format!("{base}&{q}")).await.expect("list");
        let items = now["items"].as_array().expect("items");
        assert_eq!(items.len(), 2, "{q}: {now}");
        assert_eq!(items[0]["data"]["v"], "2", "{q}");
    }
    // Option errors as the API server words them.
    assert_eq!(code(get(&client, &format!("{base}&resourceVersionMatch=NotOlderThan")).await), 422);
    assert_eq!(
        code(get(&client, &format!("{base}&resourceVersion=0&resourceVersionMatch=Exact")).await),
        422
    );
    assert_eq!(
        code(get(&client, &format!("{base}&resourceVersion=1&resourceVersionMatch=Newest")).await),
        422
    );
    // A version from before the sim's history: 410 Expired.
    assert_eq!(
        code(get(&client, &format!("{base}&resourceVersion=1&resourceVersionMatch=Exact")).await),
        410
    );
    // A version from the future that never arrives: 504 after a bounded wait.
    let future = rv1.parse::<u64>().expect("numeric rv") + 1_000_000;
    let r = get(&client, &format!("{base}&resourceVersion={future}&resourceVersionMatch=Exact")).await;
    assert_eq!(code(r), 504);

    // Pages: the second page is served from the first page's snapshot.
    let page1 = get(&client, &format!("{base}&limit=1")).await.expect("page 1");
    let token = page1["metadata"]["continue"].as_str().expect("continue token").to_string();
    api.create(&PostParams::default(), &cm("c", "x", "1")).await.expect("create c");
    api.delete("b", &Default::default()).await.expect("delete b");
    let page2 = get(&client, &format!("{base}&limit=5&continue={token}")).await.expect("page 2");
    let names: Vec<&str> = page2["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|o| o["metadata"]["name"].as_str())
        .collect();
    assert_eq!(names, vec!["b"], "{page2}");
    assert_eq!(page2["metadata"]["resourceVersion"], page1["metadata"]["resourceVersion"]);
    // Once the history no longer reaches back to the snapshot, the token has expired.
    for i in 0..80 {
        api.patch("c", &PatchParams::default(), &Patch::Merge(&json!({"data": {"v": i.to_string()}})))
            .await
            .expect("churn");
    }
    assert_eq!(code(get(&client, &format!("{base}&limit=5&continue={token}")).await), 410);
}
