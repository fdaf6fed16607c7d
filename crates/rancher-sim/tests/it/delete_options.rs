//! DELETE with a `DeleteOptions` body, as JSON and as the protobuf client-go sends for built-in kinds
//! (`k8s\0` envelope around a `runtime.Unknown`): propagation, grace period, preconditions and
//! dry run are honoured either way.

use std::time::Duration;

use http::Request;
use kube::Client;
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde_json::{Value, json};

async fn client(yaml: &str) -> Client {
    rancher_test_support::install_crypto();
    let kc = Kubeconfig::from_yaml(yaml).expect("kubeconfig parses");
    let cfg = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await.expect("config");
    Client::try_from(cfg).expect("client")
}

// ---- protobuf wire format, by hand ----

fn varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn bytes_field(n: u64, b: &[u8], out: &mut Vec<u8>) {
    varint(n << 3 | 2, out);
    varint(b.len() as u64, out);
    out.extend_from_slice(b);
}

fn int_field(n: u64, v: i64, out: &mut Vec<u8>) {
    varint(n << 3, out);
    varint(v as u64, out);
}

/// `meta.v1.DeleteOptions` in the `k8s\0` + `runtime.Unknown` envelope.
#[derive(Default)]
struct Opts<'a> {
    grace: Option<i64>,
    uid: Option<&'a str>,
    propagation: Option<&'a str>,
    dry_run: &'a [&'a str],
}

fn protobuf_delete_options(o: &Opts<'_>) -> Vec<u8> {
    let mut msg = vec![];
    if let Some(g) = o.grace {
        int_field(1, g, &mut msg);
    }
    if let Some(uid) = o.uid {
        let mut pre = vec![];
        bytes_field(1, uid.as_bytes(), &mut pre);
        bytes_field(2, &pre, &mut msg);
    }
    if let Some(p) = o.propagation {
        bytes_field(4, p.as_bytes(), &mut msg);
    }
    for d in o.dry_run {
        bytes_field(5, d.as_bytes(), &mut msg);
    }
    envelope("v1", "DeleteOptions", &msg)
}

fn envelope(api_version: &str, kind: &str, raw: &[u8]) -> Vec<u8> {
    let mut type_meta = vec![];
    bytes_field(1, api_version.as_bytes(), &mut type_meta);
    bytes_field(2, kind.as_bytes(), &mut type_meta);
    let mut unknown = vec![];
    bytes_field(1, &type_meta, &mut unknown);
    bytes_field(2, raw, &mut unknown);
    bytes_field(3, b"", &mut unknown);
    bytes_field(4, b"", &mut unknown);
    let mut body = b"k8s\0".to_vec();
    body.extend_from_slice(&unknown);
    body
}

const PROTOBUF: &str = "application/vnd.kubernetes.protobuf";

/// Sends a request and returns (status code, JSON body).
async fn send(c: &Client, method: &str, path: &str, content_type: &str, body: Vec<u8>) -> (u16, Value) {
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", content_type)
        .header("accept", "application/json")
        .body(body)
        .expect("request");
    match c.request_text(req).await {
        Ok(text) => (200, serde_json::from_str(&text).unwrap_or(Value::Null)),
        Err(kube::Error::Api(s)) => (s.code, json!({"reason": s.reason, "message": s.message})),
        Err(e) => panic!("{method} {path}: {e}"),
    }
}

async fn create_cm(c: &Client, name: &str, owner: Option<&Value>) -> Value {
    let mut cm =
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"k": "v"}});
    if let Some(o) = owner {
        cm["metadata"]["ownerReferences"] = json!([{"apiVersion": "v1", "kind": "ConfigMap", "name": o["metadata"]["name"], "uid": o["metadata"]["uid"]}]);
    }
    let (code, v) = send(
        c,
        "POST",
        "/api/v1/namespaces/default/configmaps",
        "application/json",
        serde_json::to_vec(&cm).expect("json"),
    )
    .await;
    assert_eq!(code, 200, "create {name}: {v}");
    v
}

async fn exists(c: &Client, kind: &str, name: &str) -> Option<Value> {
    let (code, v) =
        send(c, "GET", &format!("/api/v1/namespaces/default/{kind}/{name}"), "application/json", vec![])
            .await;
    (code == 200).then_some(v)
}

async fn gone_within(c: &Client, kind: &str, name: &str, secs: u64) -> bool {
    for _ in 0..secs * 10 {
        if exists(c, kind, name).await.is_none() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

fn cm_path(name: &str) -> String {
    format!("/api/v1/namespaces/default/configmaps/{name}")
}

#[tokio::test]
async fn protobuf_delete_options_are_honoured() {
    let sim = rancher_sim::Sim::builder().start().await.expect("sim");
    let c = client(&sim.kubeconfig_yaml()).await;

    // Dry run: answered with the object, which stays.
    let cm = create_cm(&c, "dry", None).await;
    let body = protobuf_delete_options(&Opts { dry_run: &["All"], ..Default::default() });
    let (code, v) = send(&c, "DELETE", &cm_path("dry"), PROTOBUF, body).await;
    assert_eq!((code, &v["metadata"]["name"]), (200, &json!("dry")), "{v}");
    assert!(exists(&c, "configmaps", "dry").await.is_some(), "a dry-run delete removed the object");

    // A stale uid precondition is a conflict, and nothing is deleted; the right one deletes.
    let body = protobuf_delete_options(&Opts { uid: Some("not-the-uid"), ..Default::default() });
    let (code, v) = send(&c, "DELETE", &cm_path("dry"), PROTOBUF, body).await;
    assert_eq!(code, 409, "{v}");
    assert!(exists(&c, "configmaps", "dry").await.is_some());
    let uid = cm["metadata"]["uid"].as_str().expect("uid");
    let body = protobuf_delete_options(&Opts { uid: Some(uid), ..Default::default() });
    assert_eq!(send(&c, "DELETE", &cm_path("dry"), PROTOBUF, body).await.0, 200);
    assert!(exists(&c, "configmaps", "dry").await.is_none());

    // Orphan keeps the dependent; Background (the default) lets the collector remove it.
    let parent = create_cm(&c, "parent", None).await;
    create_cm(&c, "child", Some(&parent)).await;
    let body = protobuf_delete_options(&Opts { propagation: Some("Orphan"), ..Default::default() });
    assert_eq!(send(&c, "DELETE", &cm_path("parent"), PROTOBUF, body).await.0, 200);
    assert!(gone_within(&c, "configmaps", "parent", 10).await, "orphaning delete never finished");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let child = exists(&c, "configmaps", "child").await.expect("orphaned child kept");
    assert!(child["metadata"]["ownerReferences"].as_array().is_none_or(|a| a.is_empty()), "{child}");

    let parent = create_cm(&c, "parent2", None).await;
    create_cm(&c, "child2", Some(&parent)).await;
    let body = protobuf_delete_options(&Opts { propagation: Some("Background"), ..Default::default() });
    assert_eq!(send(&c, "DELETE", &cm_path("parent2"), PROTOBUF, body).await.0, 200);
    assert!(gone_within(&c, "configmaps", "child2", 10).await, "background delete left the dependent");

    // gracePeriodSeconds 0 removes a running pod at once instead of leaving it Terminating.
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}});
    let (code, _) = send(
        &c,
        "POST",
        "/api/v1/namespaces/default/pods",
        "application/json",
        serde_json::to_vec(&pod).expect("json"),
    )
    .await;
    assert_eq!(code, 200);
    for _ in 0..100 {
        if exists(&c, "pods", "p").await.is_some_and(|p| p["status"]["phase"] == "Running") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let body = protobuf_delete_options(&Opts { grace: Some(0), ..Default::default() });
    assert_eq!(send(&c, "DELETE", "/api/v1/namespaces/default/pods/p", PROTOBUF, body).await.0, 200);
    assert!(exists(&c, "pods", "p").await.is_none(), "grace 0 left the pod Terminating");

    // Bad bodies get a 400 and delete nothing.
    create_cm(&c, "kept", None).await;
    let mut truncated = protobuf_delete_options(&Opts { propagation: Some("Orphan"), ..Default::default() });
    truncated.truncate(truncated.len() - 8);
    assert_eq!(send(&c, "DELETE", &cm_path("kept"), PROTOBUF, truncated).await.0, 400);
    let not_options = envelope("v1", "ConfigMap", &[]);
    assert_eq!(send(&c, "DELETE", &cm_path("kept"), PROTOBUF, not_options).await.0, 400);
    let bad_policy = protobuf_delete_options(&Opts { propagation: Some("Sometimes"), ..Default::default() });
    assert_eq!(send(&c, "DELETE", &cm_path("kept"), PROTOBUF, bad_policy).await.0, 400);
    let bad_dry_run = protobuf_delete_options(&Opts { dry_run: &["Maybe"], ..Default::default() });
    assert_eq!(send(&c, "DELETE", &cm_path("kept"), PROTOBUF, bad_dry_run).await.0, 400);
    assert!(exists(&c, "configmaps", "kept").await.is_some());
    sim.shutdown().await;
}

#[tokio::test]
async fn json_delete_options_are_honoured() {
    let sim = rancher_sim::Sim::builder().start().await.expect("sim");
    let c = client(&sim.kubeconfig_yaml()).await;
    let cm = create_cm(&c, "dry", None).await;
    let json_body = |v: Value| serde_json::to_vec(&v).expect("json");

    let (code, _) =
        send(&c, "DELETE", &cm_path("dry"), "application/json", json_body(json!({"dryRun": ["All"]}))).await;
    assert_eq!(code, 200);
    assert!(exists(&c, "configmaps", "dry").await.is_some(), "a dry-run delete removed the object");

    let stale =
        json!({"kind": "DeleteOptions", "apiVersion": "v1", "preconditions": {"resourceVersion": "1"}});
    assert_eq!(send(&c, "DELETE", &cm_path("dry"), "application/json", json_body(stale)).await.0, 409);
    let rv = cm["metadata"]["resourceVersion"].clone();
    let fresh = json!({"preconditions": {"resourceVersion": rv, "uid": cm["metadata"]["uid"]}});
    assert_eq!(send(&c, "DELETE", &cm_path("dry"), "application/json", json_body(fresh)).await.0, 200);
    assert!(exists(&c, "configmaps", "dry").await.is_none());

    let parent = create_cm(&c, "parent", None).await;
    create_cm(&c, "child", Some(&parent)).await;
    let orphan = json!({"propagationPolicy": "Orphan"});
    assert_eq!(send(&c, "DELETE", &cm_path("parent"), "application/json", json_body(orphan)).await.0, 200);
    assert!(gone_within(&c, "configmaps", "parent", 10).await);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(exists(&c, "configmaps", "child").await.is_some(), "Orphan deleted the dependent");

    create_cm(&c, "kept", None).await;
    for bad in [
        json!({"dryRun": "All"}),
        json!({"dryRun": ["Maybe"]}),
        json!([1]),
        json!({"gracePeriodSeconds": -1}),
    ] {
        let (code, v) =
            send(&c, "DELETE", &cm_path("kept"), "application/json", json_body(bad.clone())).await;
        assert_eq!(code, 400, "{bad} → {v}");
    }
    assert_eq!(send(&c, "DELETE", &cm_path("kept"), "application/json", b"{not json".to_vec()).await.0, 400);
    assert!(exists(&c, "configmaps", "kept").await.is_some());
    sim.shutdown().await;
}
