//! Rejected requests get the Status a real API server returns, and nothing stored changes.

use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, PostParams, WatchEvent, WatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use serde_json::{Value, json};

async fn client(yaml: &str) -> Client {
    rancher_test_support::install_crypto();
    let kc = Kubeconfig::from_yaml(yaml).expect("kubeconfig");
    Client::try_from(Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await.expect("config"))
        .expect("client")
}

/// Sends a raw request; returns the Status of the failure (panics on success).
async fn fail(
    client: &Client,
    method: &str,
    path: &str,
    content_type: &str,
    accept: &str,
    body: &str,
) -> kube::core::Status {
    let req = http::Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", content_type)
        .header("accept", accept)
        .body(body.as_bytes().to_vec())
        .expect("request");
    match client.request_text(req).await {
        Err(kube::Error::Api(s)) => *s,
        other => panic!("{method} {path}: expected an API error, got {other:?}"),
    }
}

async fn get(client: &Client, path: &str) -> Value {
    let req = http::Request::get(path).body(vec![]).expect("request");
    serde_json::from_str(&client.request_text(req).await.expect("get")).expect("json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statuses_match_the_api_server_and_nothing_changes() {
    let sim = rancher_sim::Sim::builder().watch_history(16).start().await.expect("sim");
    let admin = client(&sim.kubeconfig_yaml()).await;
    let cms: Api<ConfigMap> = Api::default_namespaced(admin.clone());
    let cm: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "keep"}, "data": {"k": "v"}})).expect("cm");
    let stored = cms.create(&PostParams::default(), &cm).await.expect("create");
    let before = get(&admin, "/api/v1/namespaces/default/configmaps/keep").await;

    // Invalid, with field causes; the deployment is not stored.
    let deploy = json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "bad"},
        "spec": {"selector": {"matchLabels": {"app": "a"}}, "template": {"metadata": {"labels": {"app": "b"}}, "spec": {"containers": [{"name": "c", "image": ""}]}}},
    });
    let s = fail(
        &admin,
        "POST",
        "/apis/apps/v1/namespaces/default/deployments",
        "application/json",
        "application/json",
        &deploy.to_string(),
    )
    .await;
    assert_eq!((s.code, s.reason.as_str()), (422, "Invalid"));
    let fields: Vec<String> = s.details.expect("details").causes.into_iter().map(|c| c.field).collect();
    assert!(fields.contains(&"spec.template.metadata.labels".to_string()), "{fields:?}");
    assert!(fields.contains(&"spec.template.spec.containers[0].image".to_string()), "{fields:?}");
    let s =
        fail(&admin, "GET", "/apis/apps/v1/namespaces/default/deployments/bad", "", "application/json", "")
            .await;
    assert_eq!((s.code, s.reason.as_str()), (404, "NotFound"));
    assert_eq!(s.message, r#"deployments.apps "bad" not found"#);

    // AlreadyExists leaves the stored object alone.
    let dup = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "keep"}, "data": {"k": "other"}});
    let s = fail(
        &admin,
        "POST",
        "/api/v1/namespaces/default/configmaps",
        "application/json",
        "application/json",
        &dup.to_string(),
    )
    .await;
    assert_eq!((s.code, s.reason.as_str()), (409, "AlreadyExists"));

    // Conflict on a stale resourceVersion.
    let mut stale = serde_json::to_value(&stored).expect("json");
    stale["metadata"]["resourceVersion"] = json!("1");
    stale["data"]["k"] = json!("stale");
    let s = fail(
        &admin,
        "PUT",
        "/api/v1/namespaces/default/configmaps/keep",
        "application/json",
        "application/json",
        &stale.to_string(),
    )
    .await;
    assert_eq!((s.code, s.reason.as_str()), (409, "Conflict"));

    // Unsupported patch type, unacceptable Accept, namespace mismatch, bad JSON patch.
    let s = fail(
        &admin,
        "PATCH",
        "/api/v1/namespaces/default/configmaps/keep",
        "text/plain",
        "application/json",
        "k=v",
    )
    .await;
    assert_eq!((s.code, s.reason.as_str()), (415, "UnsupportedMediaType"));
    let s = fail(
        &admin,
        "GET",
        "/api/v1/namespaces/default/configmaps/keep",
        "",
        "application/vnd.kubernetes.protobuf",
        "",
    )
    .await;
    assert_eq!(s.code, 406);
    let other_ns = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x", "namespace": "kube-system"}});
    let s = fail(
        &admin,
        "POST",
        "/api/v1/namespaces/default/configmaps",
        "application/json",
        "application/json",
        &other_ns.to_string(),
    )
    .await;
    assert_eq!((s.code, s.reason.as_str()), (400, "BadRequest"));
    let s = fail(
        &admin,
        "PATCH",
        "/api/v1/namespaces/default/configmaps/keep",
        "application/json-patch+json",
        "application/json",
        r#"[{"op":"remove","path":"/data/missing"}]"#,
    )
    .await;
    assert_eq!(s.code, 400);
    let s = fail(
        &admin,
        "POST",
        "/api/v1/namespaces/nowhere/configmaps",
        "application/json",
        "application/json",
        &json!({"metadata": {"name": "x"}}).to_string(),
    )
    .await;
    assert_eq!((s.code, s.reason.as_str()), (404, "NotFound"));

    // Forbidden for a user without bindings, Unauthorized for an unknown token.
    sim.add_token("alice-token", "alice", &[]);
    let alice = client(&sim.kubeconfig_for_token("alice-token")).await;
    let s = fail(
        &alice,
        "DELETE",
        "/api/v1/namespaces/default/configmaps/keep",
        "application/json",
        "application/json",
        "",
    )
    .await;
    assert_eq!((s.code, s.reason.as_str()), (403, "Forbidden"));
    assert_eq!(
        s.message,
        r#"configmaps "keep" is forbidden: User "alice" cannot delete resource "configmaps" in API group "" in the namespace "default""#
    );
    let s = fail(&alice, "GET", "/api/v1/pods", "", "application/json", "").await;
    assert!(s.message.ends_with("at the cluster scope"), "{}", s.message);
    // Nothing any rejected request touched has changed.
    assert_eq!(get(&admin, "/api/v1/namespaces/default/configmaps/keep").await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthorized_gone_and_impersonation_denied() {
    let sim = rancher_sim::Sim::builder().watch_history(16).start().await.expect("sim");
    let admin = client(&sim.kubeconfig_yaml()).await;
    let nobody = client(&sim.kubeconfig_for_token("not-a-token")).await;
    let s = fail(&nobody, "GET", "/api/v1/namespaces", "", "application/json", "").await;
    assert_eq!((s.code, s.reason.as_str()), (401, "Unauthorized"));

    // Impersonation needs the impersonate verb.
    sim.add_token("bob-token", "bob", &[]);
    let req = http::Request::get("/api/v1/namespaces")
        .header("Impersonate-User", "admin")
        .body(vec![])
        .expect("req");
    let bob = client(&sim.kubeconfig_for_token("bob-token")).await;
    match bob.request_text(req).await {
        Err(kube::Error::Api(s)) => {
            assert_eq!(s.code, 403);
            assert!(s.message.contains(r#"cannot impersonate resource "users""#), "{}", s.message);
        }
        other => panic!("impersonation allowed: {other:?}"),
    }

    // A watch from a resourceVersion that left the history gets a 410 ERROR event.
    let cms: Api<ConfigMap> = Api::default_namespaced(admin.clone());
    for i in 0..20 {
        let cm: ConfigMap =
            serde_json::from_value(json!({"metadata": {"name": format!("c{i}")}})).expect("cm");
        cms.create(&PostParams::default(), &cm).await.expect("create");
    }
    let mut stream = cms.watch(&WatchParams::default(), "2").await.expect("watch starts").boxed();
    match stream.next().await.expect("an event").expect("decodes") {
        WatchEvent::Error(e) => assert_eq!((e.code, e.reason.as_str()), (410, "Expired")),
        other => panic!("expected 410, got {other:?}"),
    }
}
