//! kube-rs against the sim: typed get/list/create, a runtime watcher, exec and port-forward over
//! WebSocket.

use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Node, Pod};
use kube::api::{Api, AttachParams, ListParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Config};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn client(yaml: &str) -> Client {
    rancher_test_support::install_crypto();
    let kc = Kubeconfig::from_yaml(yaml).expect("kubeconfig parses");
    let cfg = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await.expect("config");
    Client::try_from(cfg).expect("client")
}

fn cm(name: &str, v: &str) -> ConfigMap {
    serde_json::from_value(serde_json::json!({"metadata": {"name": name}, "data": {"k": v}}))
        .expect("configmap")
}

async fn running_pod(client: &Client, name: &str) -> Api<Pod> {
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": name},
        "spec": {"containers": [{"name": "c", "image": "busybox:1.36"}]},
    }))
    .expect("pod");
    pods.create(&PostParams::default(), &pod).await.expect("create pod");
    for _ in 0..100 {
        let p = pods.get(name).await.expect("get pod");
        if p.status.and_then(|s| s.phase).as_deref() == Some("Running") {
            return pods;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("pod {name} never ran");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_api_and_watcher() {
    let sim = rancher_sim::Sim::builder().nodes(3).start().await.expect("sim");
    let client = client(&sim.kubeconfig_yaml()).await;
    let ns: Api<Namespace> = Api::all(client.clone());
    assert_eq!(
        ns.get("default").await.expect("default ns").status.and_then(|s| s.phase).as_deref(),
        Some("Active")
    );
    let nodes: Api<Node> = Api::all(client.clone());
    assert_eq!(nodes.list(&ListParams::default()).await.expect("nodes").items.len(), 3);
    let paged = nodes.list(&ListParams::default().limit(2)).await.expect("page");
    assert_eq!(paged.items.len(), 2);
    let rest = nodes
        .list(
            &ListParams::default()
                .limit(2)
                .continue_token(paged.metadata.continue_.as_deref().expect("continue")),
        )
        .await
        .expect("page 2");
    assert_eq!(rest.items.len(), 1);

    let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
    let events = watcher(cms.clone(), watcher::Config::default().labels("")).applied_objects();
    let mut events = Box::pin(events);
    cms.create(&PostParams::default(), &cm("watched", "one")).await.expect("create");
    let seen = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(o) = events.try_next().await.expect("watch event") {
            if o.metadata.name.as_deref() == Some("watched") {
                return o;
            }
        }
        panic!("watch ended");
    })
    .await
    .expect("watcher saw the configmap");
    assert_eq!(seen.data.expect("data")["k"], "one");
    let listed = cms.list(&ListParams::default().fields("metadata.name=watched")).await.expect("list");
    assert_eq!(listed.items.len(), 1);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_and_portforward_over_websocket() {
    let sim = rancher_sim::Sim::builder().start().await.expect("sim");
    let client = client(&sim.kubeconfig_yaml()).await;
    let pods = running_pod(&client, "ws").await;
    let mut p = pods
        .exec("ws", vec!["sh", "-c", "echo hi; exit 0"], &AttachParams::default().stderr(false))
        .await
        .expect("exec");
    let mut out = String::new();
    p.stdout().expect("stdout").read_to_string(&mut out).await.expect("read");
    let status = p.take_status().expect("status").await.expect("status value");
    assert_eq!(out, "hi\n");
    assert_eq!(status.status.as_deref(), Some("Success"));

    let mut pf = pods.portforward("ws", &[8080]).await.expect("portforward");
    let mut s = pf.take_stream(8080).expect("stream");
    s.write_all(b"echo me").await.expect("write");
    let mut buf = [0u8; 7];
    tokio::time::timeout(Duration::from_secs(20), s.read_exact(&mut buf))
        .await
        .expect("in time")
        .expect("read");
    assert_eq!(&buf, b"echo me");
    drop(s);
    let _ = pf.join().await;
    let _ = futures::stream::iter([0]).next().await;
    sim.shutdown().await;
}
