//! Namespace deletion as the API server does it: held by `spec.finalizers: ["kubernetes"]` (not a
//! metadata finalizer) until the namespace controller has emptied it, and released at once when a
//! client clears `spec.finalizers` through the `finalize` subresource.

use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use serde_json::json;

async fn client(yaml: &str) -> Client {
    rancher_test_support::install_crypto();
    let kc = Kubeconfig::from_yaml(yaml).expect("kubeconfig parses");
    let cfg = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await.expect("config");
    Client::try_from(cfg).expect("client")
}

async fn until<T>(what: &str, mut f: impl AsyncFnMut() -> Option<T>) -> T {
    for _ in 0..300 {
        if let Some(v) = f().await {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spec_finalizers_hold_a_deleted_namespace() {
    let sim = rancher_sim::Sim::builder().start().await.expect("sim");
    let client = client(&sim.kubeconfig_yaml()).await;
    let nss: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": "held"}})).expect("ns");
    let made = nss.create(&PostParams::default(), &ns).await.expect("create ns");
    assert_eq!(made.spec.and_then(|s| s.finalizers), Some(vec!["kubernetes".to_string()]));
    // A configmap that its own finalizer keeps: the namespace cannot be emptied.
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "held");
    let cm: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "stuck", "finalizers": ["example.com/keep"]}}))
            .expect("cm");
    cms.create(&PostParams::default(), &cm).await.expect("create cm");

    nss.delete("held", &DeleteParams::default()).await.expect("delete ns");
    let terminating = nss.get("held").await.expect("still there");
    assert!(terminating.metadata.deletion_timestamp.is_some());
    assert_eq!(terminating.status.and_then(|s| s.phase).as_deref(), Some("Terminating"));
    assert!(terminating.metadata.finalizers.unwrap_or_default().is_empty(), "no metadata finalizer");
    assert_eq!(terminating.spec.and_then(|s| s.finalizers), Some(vec!["kubernetes".to_string()]));
    // The controller has asked the configmap to go; it is held, so the namespace stays.
    until("the configmap to be marked for deletion", async || {
        cms.get("stuck").await.ok().filter(|c| c.metadata.deletion_timestamp.is_some())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(nss.get("held").await.is_ok(), "namespace went while content remained");

    // Clearing spec.finalizers through /finalize releases the namespace at once.
    let body = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "held"}, "spec": {"finalizers": []}});
    let req = http::Request::put("/api/v1/namespaces/held/finalize")
        .header("content-type", "application/json")
        .body(serde_json::to_vec(&body).expect("json"))
        .expect("request");
    client.request::<serde_json::Value>(req).await.expect("finalize");
    assert!(matches!(nss.get("held").await, Err(kube::Error::Api(ref s)) if s.code == 404));

    // The ordinary path: an emptied namespace loses its spec finalizer and is removed, unless a
    // metadata finalizer still holds it.
    let ns: Namespace =
        serde_json::from_value(json!({"metadata": {"name": "second", "finalizers": ["example.com/hold"]}}))
            .expect("ns");
    nss.create(&PostParams::default(), &ns).await.expect("create second");
    nss.delete("second", &DeleteParams::default()).await.expect("delete second");
    let drained = until("spec.finalizers to be cleared", async || {
        nss.get("second")
            .await
            .ok()
            .filter(|n| n.spec.as_ref().and_then(|s| s.finalizers.as_ref()).is_some_and(|f| f.is_empty()))
    })
    .await;
    assert_eq!(drained.metadata.finalizers, Some(vec!["example.com/hold".to_string()]));
    let p = json!({"metadata": {"finalizers": null}});
    nss.patch("second", &PatchParams::default(), &Patch::Merge(&p)).await.expect("release");
    assert!(matches!(nss.get("second").await, Err(kube::Error::Api(ref s)) if s.code == 404));
}
