//! Cluster housekeeping: a `default` ServiceAccount and `kube-root-ca.crt` ConfigMap in every active
//! namespace, Endpoints for services with selectors, and aggregated ClusterRoles.

use serde_json::{Value, json};

use super::namespace_active;
use crate::meta;
use crate::rbac::CLUSTER_ROLES;
use crate::selectors::LabelSelector;
use crate::state::SimState;

/// Marks Endpoints this controller manages.
const MANAGED: &str = "rancher-sim/managed-endpoints";

pub(super) fn reconcile(state: &SimState) {
    namespaces(state);
    endpoints(state);
    aggregate_cluster_roles(state);
}

fn namespaces(state: &SimState) {
    let (namespaces, _) = state.store.list("namespaces", None);
    for ns in namespaces.iter().filter(|n| !meta::is_deleting(n)) {
        let name = meta::name(ns);
        if state.store.get("serviceaccounts", name, "default").is_none() {
            let _ = state.store.create(
                "serviceaccounts",
                json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default", "namespace": name}}),
            );
        }
        if state.store.get("configmaps", name, "kube-root-ca.crt").is_none() {
            let _ = state.store.create(
                "configmaps",
                json!({
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "metadata": {"name": "kube-root-ca.crt", "namespace": name, "annotations": {"kubernetes.io/description": "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters."}},
                    "data": {"ca.crt": state.pki.ca_pem},
                }),
            );
        }
    }
}

fn endpoints(state: &SimState) {
    let (services, _) = state.store.list("services", None);
    let (pods, _) = state.store.list("pods", None);
    for svc in services.iter() {
        let Some(sel) = svc["spec"]["selector"].as_object().filter(|s| !s.is_empty()) else { continue };
        let ns = meta::namespace(svc);
        if !namespace_active(state, ns) {
            continue;
        }
        let sel = LabelSelector::from_structured(&json!({"matchLabels": sel})).unwrap_or_default();
        let ready: Vec<&std::sync::Arc<Value>> = pods
            .iter()
            .filter(|p| meta::namespace(p) == ns && sel.matches_object(p) && !meta::is_deleting(p))
            .filter(|p| p["status"]["podIP"].is_string() && p["status"]["phase"] == "Running")
            .collect();
        let addresses: Vec<Value> = ready
            .iter()
            .map(|p| json!({"ip": p["status"]["podIP"], "nodeName": p["spec"]["nodeName"], "targetRef": {"kind": "Pod", "namespace": ns, "name": meta::name(p), "uid": meta::uid(p)}}))
            .collect();
        let ports: Vec<Value> = svc["spec"]["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| {
                let port = p["targetPort"].as_i64().or(p["port"].as_i64()).unwrap_or(0);
                let mut v = json!({"port": port, "protocol": p["protocol"]});
                if let Some(n) = p["name"].as_str() {
                    v["name"] = json!(n);
                }
                v
            })
            .collect();
        let subsets =
            if addresses.is_empty() { json!([]) } else { json!([{"addresses": addresses, "ports": ports}]) };
        let name = meta::name(svc);
        match state.store.get("endpoints", ns, name) {
            None => {
                let _ = state.store.create(
                    "endpoints",
                    json!({"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": name, "namespace": ns, "labels": meta::labels(svc), "annotations": {MANAGED: "true"}}, "subsets": subsets}),
                );
            }
            Some(ep) if ep["subsets"] != subsets => {
                let _ = state.store.mutate("endpoints", ns, name, |e| {
                    e["subsets"] = subsets;
                    true
                });
            }
            Some(_) => {}
        }
    }
    let (eps, _) = state.store.list("endpoints", None);
    for ep in eps.iter().filter(|e| e["metadata"]["annotations"][MANAGED] == "true") {
        if state.store.get("services", meta::namespace(ep), meta::name(ep)).is_none() {
            let _ = state.store.delete("endpoints", meta::namespace(ep), meta::name(ep), None, None, None);
        }
    }
}

fn aggregate_cluster_roles(state: &SimState) {
    let (roles, _) = state.store.list(CLUSTER_ROLES, None);
    for r in roles.iter() {
        let Some(selectors) = r["aggregationRule"]["clusterRoleSelectors"].as_array() else { continue };
        let sels: Vec<LabelSelector> = selectors.iter().filter_map(LabelSelector::from_structured).collect();
        let mut rules: Vec<Value> = vec![];
        for other in roles.iter().filter(|o| meta::name(o) != meta::name(r)) {
            if sels.iter().any(|s| !s.is_empty() && s.matches_object(other)) {
                for rule in other["rules"].as_array().into_iter().flatten() {
                    if !rules.contains(rule) {
                        rules.push(rule.clone());
                    }
                }
            }
        }
        let rules = json!(rules);
        if r["rules"] != rules {
            let _ = state.store.mutate(CLUSTER_ROLES, "", meta::name(r), |v| {
                v["rules"] = rules;
                true
            });
        }
    }
}
