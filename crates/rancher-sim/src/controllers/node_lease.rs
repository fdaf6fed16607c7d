//! The kubelets' heartbeat: every node the sim runs holds a `coordination.k8s.io/v1` Lease in
//! `kube-node-lease`, named after the node and renewed on the kubelet's schedule (every 10 s,
//! `leaseDurationSeconds: 40`), so `kubectl describe node` shows it and the node never looks lost.
//! At start each kubelet and the node controller report the node as a real cluster's do.

use serde_json::json;

use crate::meta;
use crate::state::SimState;

/// Namespace of node Leases.
pub(crate) const NAMESPACE: &str = "kube-node-lease";
const LEASES: &str = "leases.coordination.k8s.io";
/// What a kubelet writes in `spec.leaseDurationSeconds`.
const LEASE_DURATION_SECONDS: i64 = 40;

/// The events of a node coming up: `Starting` and `NodeReady` from its kubelet, `RegisteredNode`
/// from the node controller.
pub(crate) fn nodes_started(state: &SimState) {
    use crate::events::{Note, Reporter, record};
    let (nodes, _) = state.store.list("nodes", None);
    for node in nodes
        .iter()
        .filter(|n| n["spec"]["providerID"].as_str().is_some_and(|p| p.starts_with("rancher-sim://")))
    {
        let name = meta::name(node);
        record(state, node, Note::normal("Starting", "Starting kubelet."), Reporter::kubelet(name));
        let ready = format!("Node {name} status is now: NodeReady");
        record(state, node, Note::normal("NodeReady", ready), Reporter::kubelet(name));
        let registered = format!("Node {name} event: Registered Node {name} in Controller");
        record(
            state,
            node,
            Note::normal("RegisteredNode", registered),
            Reporter::controller("node-controller"),
        );
    }
}

/// Creates missing node Leases and renews every one (`renewTime` = now).
pub(crate) fn renew(state: &SimState) {
    if !super::namespace_active(state, NAMESPACE) {
        return;
    }
    let (nodes, _) = state.store.list("nodes", None);
    // Only nodes a simulated kubelet runs: a Node object created through the API has no kubelet.
    let ours = nodes.iter().filter(|n| {
        n["spec"]["providerID"].as_str().is_some_and(|p| p.starts_with("rancher-sim://"))
            && !meta::is_deleting(n)
    });
    let now = crate::events::micro_now();
    for node in ours {
        let name = meta::name(node);
        if state.store.get(LEASES, NAMESPACE, name).is_none() {
            let lease = json!({
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {
                    "name": name,
                    "namespace": NAMESPACE,
                    "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": name, "uid": meta::uid(node)}],
                },
                "spec": {"holderIdentity": name, "leaseDurationSeconds": LEASE_DURATION_SECONDS, "renewTime": now},
            });
            let _ = state.store.create(LEASES, lease);
            continue;
        }
        let _ = state.store.mutate(LEASES, NAMESPACE, name, |l| {
            l["spec"]["holderIdentity"] = json!(name);
            l["spec"]["leaseDurationSeconds"] = json!(LEASE_DURATION_SECONDS);
            l["spec"]["renewTime"] = json!(now);
            true
        });
    }
}
