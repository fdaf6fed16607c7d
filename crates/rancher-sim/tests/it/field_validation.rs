//! Server-side field validation as kubectl and kube-rs users see it: `--validate=strict` (kubectl's
//! default) rejects unknown fields, `--validate=warn` prints a warning and drops them, `Ignore`
//! drops them silently, and duplicate JSON keys are caught.

use crate::common::*;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

const BAD_POD: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: strict-pod, namespace: default}
spec:
  foo: bar
  containers: [{name: c, image: busybox:1.36}]
"#;

const BAD_DEPLOYMENT: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: strict-web, namespace: default}
spec:
  replicas: 1
  selector: {matchLabels: {app: strict-web}}
  template:
    metadata: {labels: {app: strict-web}}
    spec: {containers: [{name: web, image: nginx:1.25, imagePullPolicyTwo: Always}]}
"#;

const BAD_ROLE: &str = r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: strict-role, namespace: default}
rules: [{apiGroups: [""], resources: [pods], verbs: [get], colour: blue}]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_strict_warn_and_ignore() {
    let sim = start_sim(1).await;
    let (_d, pod) = manifest(BAD_POD);
    let (_d2, deploy) = manifest(BAD_DEPLOYMENT);
    let (_d3, role) = manifest(BAD_ROLE);
    for v in VERSIONS {
        let k = Kubectl::new(v, &sim.kubeconfig_yaml());
        // Strict is kubectl's default: nothing is created.
        let err = k.fails(&["apply", "-f", &pod]).await.stderr;
        assert!(
            err.contains("BadRequest") && err.contains("strict decoding error: unknown field \"spec.foo\""),
            "{v}: {err}"
        );
        assert!(!k.run(&["get", "pod", "strict-pod"]).await.ok, "{v}: strict-pod was created");
        let err = k.fails(&["create", "-f", &deploy]).await.stderr;
        assert!(
            err.contains("unknown field \"spec.template.spec.containers[0].imagePullPolicyTwo\""),
            "{v}: {err}"
        );
        let err = k.fails(&["apply", "-f", &role]).await.stderr;
        assert!(err.contains("unknown field \"rules[0].colour\""), "{v}: {err}");
        // Server-side apply words it as a schema error.
        let err = k.fails(&["apply", "--server-side", "-f", &pod]).await.stderr;
        assert!(err.contains(".spec.foo: field not declared in schema"), "{v}: {err}");

        // Warn: created, the warning printed, the field dropped.
        let o = k.run(&["apply", "--validate=warn", "-f", &pod]).await;
        assert!(o.ok, "{v}: {}", o.stderr);
        assert!(o.stderr.contains("Warning: unknown field \"spec.foo\""), "{v}: {}", o.stderr);
        let stored = k.ok(&["get", "pod", "strict-pod", "-o", "json"]).await;
        assert!(!stored.contains("\"foo\""), "{v}: {stored}");
        // A well-formed re-apply under Strict passes: stored objects carry no unknown fields.
        let (_d4, good) = manifest(&BAD_POD.replace("  foo: bar\n", ""));
        k.ok(&["apply", "-f", &good]).await;

        // Ignore (`--validate=false`): created without a warning.
        let o = k.run(&["create", "--validate=false", "-f", &deploy]).await;
        assert!(o.ok, "{v}: {}", o.stderr);
        assert!(!o.stderr.contains("Warning"), "{v}: {}", o.stderr);
        let image_policy = k.ok(&["get", "deploy", "strict-web", "-o", "json"]).await;
        assert!(!image_policy.contains("imagePullPolicyTwo"), "{v}: {image_policy}");

        k.ok(&["delete", "pod", "strict-pod", "--grace-period=0", "--force"]).await;
        k.ok(&["delete", "deploy", "strict-web"]).await;
    }
}

async fn client(yaml: &str) -> Client {
    rancher_test_support::install_crypto();
    let kc = Kubeconfig::from_yaml(yaml).expect("kubeconfig parses");
    let cfg = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await.expect("config");
    Client::try_from(cfg).expect("client")
}

fn post(path: &str, body: &str) -> http::Request<Vec<u8>> {
    http::Request::post(path)
        .header("content-type", "application/json")
        .body(body.as_bytes().to_vec())
        .expect("request")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_bodies_duplicates_and_default_warn() {
    let sim = rancher_sim::Sim::builder().start().await.expect("sim");
    let client = client(&sim.kubeconfig_yaml()).await;
    let dup = r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"dup"},"data":{"a":"1","a":"2"}}"#;
    let err = client
        .request::<serde_json::Value>(post(
            "/api/v1/namespaces/default/configmaps?fieldValidation=Strict",
            dup,
        ))
        .await
        .expect_err("duplicate field must fail under Strict");
    match err {
        kube::Error::Api(s) => {
            assert_eq!(s.code, 400, "{s:?}");
            assert!(s.message.contains("duplicate field \"data.a\""), "{s:?}");
        }
        other => panic!("unexpected error {other:?}"),
    }
    // No directive means Warn: the request succeeds (last duplicate wins), the warning goes back.
    let resp = client
        .send(post("/api/v1/namespaces/default/configmaps", dup).map(Into::into))
        .await
        .expect("create under Warn");
    assert_eq!(resp.status(), 201);
    let warnings: Vec<String> =
        resp.headers().get_all("warning").iter().map(|v| v.to_str().unwrap_or("").to_string()).collect();
    assert_eq!(warnings, vec![r#"299 - "duplicate field \"data.a\"""#.to_string()]);
    let cm: serde_json::Value = client
        .request(http::Request::get("/api/v1/namespaces/default/configmaps/dup").body(vec![]).expect("req"))
        .await
        .expect("get");
    assert_eq!(cm["data"]["a"], "2");
    // An unknown directive is a bad request, not silently ignored.
    let err = client
        .request::<serde_json::Value>(post(
            "/api/v1/namespaces/default/configmaps?fieldValidation=strict",
            r#"{"metadata":{"name":"x"}}"#,
        ))
        .await
        .expect_err("bad directive");
    assert!(matches!(err, kube::Error::Api(ref s) if s.code == 400), "{err:?}");
    // A merge patch adding an unknown field is refused under Strict and leaves the object alone.
    let patch = http::Request::patch("/api/v1/namespaces/default/configmaps/dup?fieldValidation=Strict")
        .header("content-type", "application/merge-patch+json")
        .body(br#"{"bogus":{"x":1},"data":{"b":"3"}}"#.to_vec())
        .expect("req");
    let err = client.request::<serde_json::Value>(patch).await.expect_err("strict patch");
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.message.contains("unknown field \"bogus\"")),
        "{err:?}"
    );
    let cm: serde_json::Value = client
        .request(http::Request::get("/api/v1/namespaces/default/configmaps/dup").body(vec![]).expect("req"))
        .await
        .expect("get");
    assert!(cm["data"].get("b").is_none(), "{cm}");
}
