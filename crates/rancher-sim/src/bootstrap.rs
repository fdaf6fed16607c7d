//! The objects a fresh cluster starts with: system namespaces, nodes, the `kubernetes` service, and
//! the default RBAC roles and bindings (cluster-admin, admin, edit, view and the system roles).

use serde_json::{Value, json};

use crate::meta;
use crate::rbac::{CLUSTER_ROLE_BINDINGS, CLUSTER_ROLES};
use crate::state::SimState;

/// Node names in the style of kind: `<sim>-control-plane`, `<sim>-worker`, `<sim>-worker2`, ...
pub(crate) fn node_name(sim: &str, i: usize) -> String {
    match i {
        0 => format!("{sim}-control-plane"),
        1 => format!("{sim}-worker"),
        n => format!("{sim}-worker{n}"),
    }
}

fn node(state: &SimState, i: usize) -> Value {
    let name = node_name(&state.config.name, i);
    let mut labels = json!({
        "kubernetes.io/hostname": name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        "beta.kubernetes.io/os": "linux",
        "beta.kubernetes.io/arch": "amd64",
    });
    if i == 0 {
        labels["node-role.kubernetes.io/control-plane"] = json!("");
    }
    let now = meta::now();
    let cond = |t: &str, s: &str, reason: &str, msg: &str| json!({"type": t, "status": s, "reason": reason, "message": msg, "lastHeartbeatTime": now, "lastTransitionTime": now});
    let resources = json!({"cpu": "4", "memory": "16Gi", "pods": "110", "ephemeral-storage": "100Gi", "hugepages-2Mi": "0"});
    json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": labels, "annotations": {"node.alpha.kubernetes.io/ttl": "0"}},
        "spec": {"podCIDR": format!("10.244.{i}.0/24"), "podCIDRs": [format!("10.244.{i}.0/24")], "providerID": format!("rancher-sim://{name}")},
        "status": {
            "capacity": resources,
            "allocatable": resources,
            "conditions": [
                cond("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
                cond("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
                cond("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
                cond("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
            ],
            "addresses": [
                {"type": "InternalIP", "address": format!("172.18.0.{}", i + 2)},
                {"type": "Hostname", "address": name},
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {
                "machineID": format!("{:032x}", i + 1),
                "systemUUID": uuid::Uuid::new_v4().to_string(),
                "bootID": uuid::Uuid::new_v4().to_string(),
                "kernelVersion": "6.1.0-sim",
                "osImage": "rancher-sim Linux",
                "containerRuntimeVersion": "containerd://1.7.0-sim",
                "kubeletVersion": state.config.git_version,
                "kubeProxyVersion": state.config.git_version,
                "operatingSystem": "linux",
                "architecture": "amd64",
            },
        },
    })
}

fn rule(groups: &[&str], resources: &[&str], verbs: &[&str]) -> Value {
    json!({"apiGroups": groups, "resources": resources, "verbs": verbs})
}

const READ: &[&str] = &["get", "list", "watch"];
const WRITE: &[&str] = &["create", "delete", "deletecollection", "patch", "update"];

fn cluster_role(name: &str, labels: Value, rules: Vec<Value>, aggregate: Option<&str>) -> Value {
    let mut l = json!({"kubernetes.io/bootstrapping": "rbac-defaults"});
    crate::patch::merge(&mut l, &labels);
    let mut r = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": name, "labels": l, "annotations": {"rbac.authorization.kubernetes.io/autoupdate": "true"}},
        "rules": rules,
    });
    if let Some(a) = aggregate {
        r["aggregationRule"] = json!({"clusterRoleSelectors": [{"matchLabels": {format!("rbac.authorization.k8s.io/aggregate-to-{a}"): "true"}}]});
    }
    r
}

fn binding(name: &str, role: &str, subjects: Value) -> Value {
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": name, "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"}, "annotations": {"rbac.authorization.kubernetes.io/autoupdate": "true"}},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
        "subjects": subjects,
    })
}

fn default_rbac() -> (Vec<Value>, Vec<Value>) {
    let view_core = &[
        "pods",
        "pods/log",
        "pods/status",
        "services",
        "services/status",
        "endpoints",
        "configmaps",
        "persistentvolumeclaims",
        "persistentvolumeclaims/status",
        "replicationcontrollers",
        "replicationcontrollers/scale",
        "replicationcontrollers/status",
        "serviceaccounts",
        "events",
        "limitranges",
        "resourcequotas",
        "resourcequotas/status",
        "namespaces",
        "namespaces/status",
        "bindings",
    ];
    let apps = &[
        "deployments",
        "deployments/scale",
        "deployments/status",
        "replicasets",
        "replicasets/scale",
        "replicasets/status",
        "daemonsets",
        "daemonsets/status",
        "statefulsets",
        "statefulsets/scale",
        "statefulsets/status",
        "controllerrevisions",
    ];
    let agg = |a: &str| json!({format!("rbac.authorization.k8s.io/aggregate-to-{a}"): "true"});
    let mut admin_labels = agg("admin");
    let mut edit_labels = agg("admin");
    crate::patch::merge(&mut edit_labels, &agg("edit"));
    let mut view_labels = edit_labels.clone();
    crate::patch::merge(&mut view_labels, &agg("view"));
    crate::patch::merge(&mut admin_labels, &json!({}));
    let roles = vec![
        cluster_role(
            "cluster-admin",
            json!({}),
            vec![
                json!({"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}),
                json!({"nonResourceURLs": ["*"], "verbs": ["*"]}),
            ],
            None,
        ),
        cluster_role("admin", json!({"kubernetes.io/bootstrapping": "rbac-defaults"}), vec![], Some("admin")),
        cluster_role("edit", agg("admin"), vec![], Some("edit")),
        cluster_role("view", edit_labels.clone(), vec![], Some("view")),
        cluster_role(
            "system:aggregate-to-admin",
            admin_labels,
            vec![
                rule(
                    &["rbac.authorization.k8s.io"],
                    &["roles", "rolebindings"],
                    &["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"],
                ),
                rule(&["authorization.k8s.io"], &["localsubjectaccessreviews"], &["create"]),
            ],
            None,
        ),
        cluster_role(
            "system:aggregate-to-edit",
            edit_labels,
            vec![
                rule(
                    &[""],
                    &[
                        "pods/attach",
                        "pods/exec",
                        "pods/portforward",
                        "pods/proxy",
                        "secrets",
                        "services/proxy",
                    ],
                    READ,
                ),
                rule(&[""], &["serviceaccounts"], &["impersonate"]),
                rule(
                    &[""],
                    &["pods", "pods/attach", "pods/exec", "pods/portforward", "pods/proxy"],
                    &["create", "delete", "deletecollection", "patch", "update"],
                ),
                rule(&[""], &["pods/eviction"], &["create"]),
                rule(
                    &[""],
                    &[
                        "configmaps",
                        "events",
                        "persistentvolumeclaims",
                        "replicationcontrollers",
                        "replicationcontrollers/scale",
                        "secrets",
                        "serviceaccounts",
                        "services",
                        "services/proxy",
                    ],
                    WRITE,
                ),
                rule(&[""], &["serviceaccounts/token"], &["create"]),
                rule(
                    &["apps"],
                    &[
                        "daemonsets",
                        "deployments",
                        "deployments/rollback",
                        "deployments/scale",
                        "replicasets",
                        "replicasets/scale",
                        "statefulsets",
                        "statefulsets/scale",
                    ],
                    WRITE,
                ),
                rule(&["batch"], &["cronjobs", "jobs"], WRITE),
                rule(&["networking.k8s.io"], &["ingresses", "networkpolicies"], WRITE),
                rule(&["policy"], &["poddisruptionbudgets"], WRITE),
                rule(&["coordination.k8s.io"], &["leases"], WRITE),
            ],
            None,
        ),
        cluster_role(
            "system:aggregate-to-view",
            view_labels,
            vec![
                rule(&[""], view_core, READ),
                rule(&["apps"], apps, READ),
                rule(&["batch"], &["cronjobs", "cronjobs/status", "jobs", "jobs/status"], READ),
                rule(&["networking.k8s.io"], &["ingresses", "ingresses/status", "networkpolicies"], READ),
                rule(&["policy"], &["poddisruptionbudgets", "poddisruptionbudgets/status"], READ),
                rule(&["discovery.k8s.io"], &["endpointslices"], READ),
                rule(&["coordination.k8s.io"], &["leases"], READ),
            ],
            None,
        ),
        cluster_role(
            "system:discovery",
            json!({}),
            vec![
                json!({"nonResourceURLs": ["/api", "/api/*", "/apis", "/apis/*", "/healthz", "/livez", "/openapi", "/openapi/*", "/readyz", "/version", "/version/"], "verbs": ["get"]}),
            ],
            None,
        ),
        cluster_role(
            "system:public-info-viewer",
            json!({}),
            vec![
                json!({"nonResourceURLs": ["/healthz", "/livez", "/readyz", "/version", "/version/"], "verbs": ["get"]}),
            ],
            None,
        ),
        cluster_role(
            "system:basic-user",
            json!({}),
            vec![
                rule(
                    &["authorization.k8s.io"],
                    &["selfsubjectaccessreviews", "selfsubjectrulesreviews"],
                    &["create"],
                ),
                rule(&["authentication.k8s.io"], &["selfsubjectreviews"], &["create"]),
            ],
            None,
        ),
    ];
    let group = |g: &str| json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": g});
    let bindings = vec![
        binding("cluster-admin", "cluster-admin", json!([group("system:masters")])),
        binding("system:discovery", "system:discovery", json!([group("system:authenticated")])),
        binding("system:basic-user", "system:basic-user", json!([group("system:authenticated")])),
        binding(
            "system:public-info-viewer",
            "system:public-info-viewer",
            json!([group("system:authenticated"), group("system:unauthenticated")]),
        ),
    ];
    (roles, bindings)
}

/// Creates the initial objects of a sim.
pub(crate) fn populate(state: &SimState, listen: std::net::SocketAddr) {
    let s = &state.store;
    for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        let _ = s.create(
            "namespaces",
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "labels": {"kubernetes.io/metadata.name": ns}}, "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}}),
        );
    }
    for i in 0..state.config.nodes {
        let _ = s.create("nodes", node(state, i));
    }
    let (roles, bindings) = default_rbac();
    for r in roles {
        let _ = s.create(CLUSTER_ROLES, r);
    }
    for b in bindings {
        let _ = s.create(CLUSTER_ROLE_BINDINGS, b);
    }
    let _ = s.create(
        "services",
        json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "kubernetes", "namespace": "default", "labels": {"component": "apiserver", "provider": "kubernetes"}},
            "spec": {"type": "ClusterIP", "clusterIP": "10.96.0.1", "clusterIPs": ["10.96.0.1"], "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": listen.port()}], "sessionAffinity": "None"},
            "status": {"loadBalancer": {}},
        }),
    );
    let _ = s.create(
        "endpoints",
        json!({
            "apiVersion": "v1", "kind": "Endpoints",
            "metadata": {"name": "kubernetes", "namespace": "default", "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
            "subsets": [{"addresses": [{"ip": listen.ip().to_string()}], "ports": [{"name": "https", "port": listen.port(), "protocol": "TCP"}]}],
        }),
    );
    // Two passes settle the aggregated roles, service accounts and endpoints before anyone watches.
    crate::controllers::reconcile(state);
    crate::controllers::reconcile(state);
    s.compact();
}
