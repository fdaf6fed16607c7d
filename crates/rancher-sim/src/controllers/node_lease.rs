//! The kubelets' heartbeat: every node the sim runs holds a `coordination.k8s.io/v1` Lease in
//! `kube-node-lease`, named after the node and renewed on the kubelet's schedule (every 10 s,
//! `leaseDurationSeconds: 40`), so `kubectl describe node` shows it and the node never looks lost.
//! At start each kubelet and the node controller report the node as a real cluster's do.

use serde_json::{Value, json};

use crate::meta;
use crate::state::SimState;
use crate::store::{Event, EventType};

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

/// Whether `e` is a Lease write that moved nothing but its spec (a renewal). No reconciler reads a
/// Lease's spec — the garbage collector reads every object's metadata — so a renewal is no work
/// for them.
pub(crate) fn only_renewed(e: &Event) -> bool {
    e.kind == EventType::Modified
        && &*e.resource == LEASES
        && e.prev.as_ref().is_some_and(|p| same_metadata(&p["metadata"], &e.object["metadata"]))
}

/// Whether two `metadata` agree but for what a write of the spec moves (`resourceVersion`,
/// `generation`, `managedFields`).
fn same_metadata(a: &Value, b: &Value) -> bool {
    let moved = |k: &String| matches!(k.as_str(), "resourceVersion" | "generation" | "managedFields");
    let kept = |o: &serde_json::Map<String, Value>| o.keys().filter(|k| !moved(k)).count();
    match (a.as_object(), b.as_object()) {
        (Some(a), Some(b)) => {
            kept(a) == kept(b) && a.iter().filter(|(k, _)| !moved(k)).all(|(k, v)| b.get(k) == Some(v))
        }
        _ => a == b,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{EVENT_LOG_CAPACITY, Store};

    fn lease(owner: &str) -> Value {
        json!({
            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": "n1", "namespace": NAMESPACE,
                         "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": "n1", "uid": owner}]},
            "spec": {"holderIdentity": "n1", "renewTime": "2026-12-06T10:00:00.000000Z"},
        })
    }

    /// What the writes after `rv` look like to the reconcile loop: is any of them work?
    fn wakes(s: &Store, rv: u64) -> bool {
        s.changed_since(rv, |e| !only_renewed(e)).0
    }

    #[test]
    fn a_renewal_wakes_no_reconciler_but_any_other_write_does() {
        let s = Store::new(EVENT_LOG_CAPACITY);
        let before = s.rv();
        s.create(LEASES, lease("u1")).unwrap();
        assert!(wakes(&s, before), "a new Lease is work (its owner may be gone)");

        let at = s.rv();
        s.mutate(LEASES, NAMESPACE, "n1", |l| {
            l["spec"]["renewTime"] = json!("2026-12-06T10:00:10.000000Z");
            true
        })
        .unwrap();
        assert!(s.rv() > at, "the renewal was written");
        assert!(!wakes(&s, at), "a renewal moves only the spec");

        let at = s.rv();
        s.mutate(LEASES, NAMESPACE, "n1", |l| {
            l["metadata"]["ownerReferences"][0]["uid"] = json!("gone");
            true
        })
        .unwrap();
        assert!(wakes(&s, at), "a new owner is the garbage collector's work");

        let at = s.rv();
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "default"}});
        s.create("configmaps", cm).unwrap();
        assert!(wakes(&s, at));

        let at = s.rv();
        s.delete(LEASES, NAMESPACE, "n1", None, None, None).unwrap();
        assert!(wakes(&s, at), "a deleted Lease is work");
        assert!(!wakes(&s, s.rv()), "nothing after the latest write");
    }

    #[test]
    fn a_forgotten_history_counts_as_work() {
        let s = Store::new(EVENT_LOG_CAPACITY);
        s.create(LEASES, lease("u1")).unwrap();
        let at = s.rv();
        s.mutate(LEASES, NAMESPACE, "n1", |l| {
            l["spec"]["renewTime"] = json!("2026-12-06T10:00:10.000000Z");
            true
        })
        .unwrap();
        s.compact();
        assert!(wakes(&s, at - 1), "the log no longer tells what changed");
    }
}
