//! The role labels of a cluster built on hosts: `node-role.kubernetes.io/<role>=true` for each of a
//! host's roles (`etcd`, `controlplane`, `worker`) on its Node, as RKE labels them — what
//! `kubectl get nodes` shows under ROLES. A kubelet may not set these on its own Node
//! (NodeRestriction), so the server does, through the cluster's tunnel, once the Node has registered;
//! a Node that loses one gets it back. Labels of roles a host no longer has are left alone (the day-two
//! work that changes roles owns them).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use kube::api::{Patch, PatchParams};
use rancher_core::model::Cluster;
use rancher_core::store::Store;
use rancher_provision::rke::node_name;
use tokio_util::sync::CancellationToken;

use crate::server::registration::Registration;
use crate::server::tenancy::SyncError;
use crate::server::tenancy::workers::{BoxFut, ClusterSync, ClusterWorkers};

pub(crate) use crate::protocol::report::ROLE_LABEL_PREFIX;
/// How often every cluster's labels are checked even when no Node changed.
const RESYNC: Duration = Duration::from_secs(300);

/// The labels each host's Node should carry, by node name.
fn wanted(cluster: &Cluster) -> BTreeMap<String, BTreeMap<String, String>> {
    let Some(cfg) = &cluster.spec.rke_config else { return BTreeMap::new() };
    cfg.nodes
        .iter()
        .map(|n| {
            let labels =
                n.role.iter().map(|r| (format!("{ROLE_LABEL_PREFIX}{r}"), "true".to_owned())).collect();
            (node_name(n), labels)
        })
        .collect()
}

/// The labels of `want` that `node` lacks (or carries with another value).
fn missing(node: &Node, want: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let have = node.metadata.labels.as_ref();
    want.iter()
        .filter(|(k, v)| have.and_then(|h| h.get(*k)) != Some(*v))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// Puts the role labels on the Nodes of clusters built on hosts.
pub(crate) struct NodeRoles;

impl NodeRoles {
    async fn label(&self, cluster: &Cluster, client: &kube::Client) -> Result<(), SyncError> {
        let nodes = kube::Api::<Node>::all(client.clone());
        for (name, want) in wanted(cluster) {
            let downstream = |action, source| SyncError::Downstream {
                action,
                kind: "Node".into(),
                name: name.clone(),
                source: Box::new(source),
            };
            // Not registered yet: the agent reports it as unlabelled when it registers.
            let Some(node) = nodes.get_opt(&name).await.map_err(|e| downstream("reading", e))? else {
                continue;
            };
            let add = missing(&node, &want);
            if add.is_empty() {
                continue;
            }
            let patch = serde_json::json!({"metadata": {"labels": add}});
            nodes
                .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .map_err(|e| downstream("labelling", e))?;
            tracing::info!(cluster = %cluster.metadata.name, node = %name, labels = ?add.keys(), "role labels set");
        }
        Ok(())
    }
}

impl ClusterSync for NodeRoles {
    fn name(&self) -> &'static str {
        "rke-node-roles"
    }

    fn sync<'a>(&'a self, cluster: &'a Cluster, client: kube::Client) -> BoxFut<'a, Result<(), SyncError>> {
        Box::pin(async move { self.label(cluster, &client).await })
    }

    /// A Node without any role label appeared or was changed (a new host registering, a label
    /// removed by hand), as the agent reports; the kubelets' status updates of labelled Nodes do not
    /// count.
    fn depends_on(&self) -> &'static [&'static str] {
        &[crate::protocol::report::UNLABELLED_NODES]
    }

    /// Clusters built on hosts (their `rkeConfig`, fixed with the driver at creation): an imported
    /// or hosted cluster's Nodes are labelled by whoever made them.
    fn applies_to(&self, cluster: &Cluster) -> bool {
        cluster.spec.rke_config.is_some()
    }
}

/// Runs the role labelling in every connected cluster built on hosts until `stop`.
pub(crate) async fn run(store: Arc<dyn Store>, registration: Arc<Registration>, stop: CancellationToken) {
    let workers = ClusterWorkers::new(store, registration, RESYNC);
    workers.run(Arc::new(NodeRoles), stop).await;
}

#[cfg(test)]
mod tests {
    use rancher_core::model::{ClusterSpec, RkeConfig, RkeNode};

    use super::*;

    #[test]
    fn each_host_wants_a_label_per_role_and_only_what_is_missing_is_added() {
        let node = |address: &str, name: &str, roles: &[&str]| RkeNode {
            address: address.into(),
            hostname_override: name.into(),
            role: roles.iter().map(|r| (*r).to_owned()).collect(),
            ..Default::default()
        };
        let cfg = RkeConfig {
            nodes: vec![node("10.0.0.1", "a", &["etcd", "controlplane"]), node("10.0.0.2", "", &["worker"])],
            ..Default::default()
        };
        let cluster =
            Cluster::new("c", ClusterSpec { rke_config: Some(Box::new(cfg)), ..Default::default() });
        let want = wanted(&cluster);
        assert_eq!(want.keys().collect::<Vec<_>>(), ["10.0.0.2", "a"]);
        assert_eq!(
            want["a"].keys().collect::<Vec<_>>(),
            ["node-role.kubernetes.io/controlplane", "node-role.kubernetes.io/etcd"]
        );
        let mut n = Node::default();
        n.metadata.labels = Some(BTreeMap::from([
            ("node-role.kubernetes.io/etcd".to_owned(), "true".to_owned()),
            ("node-role.kubernetes.io/controlplane".to_owned(), "false".to_owned()),
        ]));
        assert_eq!(
            missing(&n, &want["a"]).keys().collect::<Vec<_>>(),
            ["node-role.kubernetes.io/controlplane"]
        );
        // An imported cluster wants nothing.
        assert!(wanted(&Cluster::new("i", ClusterSpec::default())).is_empty());
    }
}
