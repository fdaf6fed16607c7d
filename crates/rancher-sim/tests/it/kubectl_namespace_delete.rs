//! `kubectl delete ns X --wait` removes what was inside X: recreating X starts empty. kubectl sends
//! `spec: {}` on create, and the sim must still hold the namespace with `spec.finalizers: [kubernetes]`
//! until its contents are gone (a regression the acceptance script caught).

use crate::common::{Kubectl, kubectl_path, start_sim};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_namespace_removes_its_contents_for_every_kubectl() {
    let sim = start_sim(1).await;
    for version in ["1.27", "1.33"] {
        assert!(kubectl_path(version).exists(), "kubectl {version} is not installed");
        let k = Kubectl::new(version, &sim.kubeconfig_yaml());
        k.ok(&["create", "ns", "bar-ns"]).await;
        let spec = k.ok(&["get", "ns", "bar-ns", "-o", "jsonpath={.spec.finalizers}"]).await;
        assert!(spec.contains("kubernetes"), "kubectl {version}: spec.finalizers = {spec:?}");
        k.ok(&["create", "role", "r1", "--verb=get,list", "--resource=pods", "-n", "bar-ns"]).await;
        k.ok(&["create", "rolebinding", "rb1", "--role=r1", "--user=alice", "-n", "bar-ns"]).await;
        k.ok(&["create", "configmap", "c1", "--from-literal=a=b", "-n", "bar-ns"]).await;
        k.ok(&["delete", "ns", "bar-ns", "--wait=true", "--timeout=30s"]).await;
        // Recreated, the namespace is empty: the same names can be created again.
        k.ok(&["create", "ns", "bar-ns"]).await;
        let left = k.ok(&["get", "roles,rolebindings", "-n", "bar-ns", "-o", "name"]).await;
        assert!(left.trim().is_empty(), "kubectl {version}: left behind: {left}");
        k.ok(&["delete", "ns", "bar-ns", "--wait=true", "--timeout=30s"]).await;
    }
}
