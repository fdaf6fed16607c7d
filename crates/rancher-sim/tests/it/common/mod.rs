//! Test helpers: start a sim in-process; the real kubectl binaries (`rancher_test_support::kubectl`)
//! run against it.
#![allow(dead_code, unreachable_pub, missing_docs)]

use std::time::Duration;

use rancher_sim::{Sim, SimHandle};
pub use rancher_test_support::kubectl::{Kubectl, VERSIONS, kubectl_path, read_until};
pub use rancher_test_support::within;

pub async fn start_sim(nodes: usize) -> SimHandle {
    Sim::builder().nodes(nodes).start().await.expect("sim starts")
}

pub const DEPLOYMENT: &str = r#"apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: default, labels: {app: web}}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: web, image: nginx:1.25, ports: [{containerPort: 80}], env: [{name: GREETING, value: hello}]}]}
"#;

/// Writes `content` to a file in a temp dir and returns (dir, path).
pub fn manifest(content: &str) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path().join("m.yaml");
    std::fs::write(&p, content).expect("write manifest");
    let s = p.to_string_lossy().into_owned();
    (dir, s)
}

/// Waits until `kubectl get pods -l <sel>` shows `n` Running pods.
pub async fn wait_running(k: &Kubectl, ns: &str, selector: &str, n: usize) {
    let ok = within(Duration::from_secs(60), || async {
        let o = k.run(&["get", "pods", "-n", ns, "-l", selector, "--no-headers"]).await;
        o.stdout.lines().filter(|l| l.contains("Running")).count() == n
    })
    .await;
    assert!(ok, "kubectl {}: {n} Running pods with {selector} never appeared", k.version);
}
