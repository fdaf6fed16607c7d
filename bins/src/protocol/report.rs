//! The cluster report: what a cluster agent observes in its cluster, posted as JSON to
//! [`REPORT_PATH`] and recorded by the server in the cluster's status.

use std::collections::BTreeMap;

use rancher_core::model::KubernetesVersion;
use serde::{Deserialize, Serialize};

/// [`ClusterReport::digests`]: the namespaces in a project, and their project.
pub const NAMESPACES: &str = "namespaces";
/// [`ClusterReport::digests`]: the RBAC objects the server rendered, by kind, namespace and name.
pub const RBAC: &str = "rbac";
/// [`ClusterReport::digests`]: the authorized cluster endpoint's token records the server wrote
/// (the Secrets of [`ace::NAMESPACE`](super::ace::NAMESPACE) labelled
/// [`ace::ACE_LABEL`](super::ace::ACE_LABEL)), by name.
pub const ACE_RECORDS: &str = "aceRecords";
/// [`ClusterReport::digests`]: the nodes without a role label ([`ROLE_LABEL_PREFIX`]).
pub const UNLABELLED_NODES: &str = "unlabelledNodes";
/// The prefix of the node role labels (`node-role.kubernetes.io/etcd`, …).
pub const ROLE_LABEL_PREFIX: &str = "node-role.kubernetes.io/";

/// Where a cluster agent posts its [`ClusterReport`] (with the `X-API-Tunnel-Token` header).
pub const REPORT_PATH: &str = "/v3/connect/report";

/// What a cluster agent observes in its cluster, posted to [`REPORT_PATH`] on connect and whenever
/// it changes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterReport {
    /// The API server's `/version`.
    pub version: KubernetesVersion,
    /// Number of nodes.
    pub node_count: u32,
    /// Number of pods (all namespaces).
    pub pod_count: u32,
    /// Node capacity summed over nodes (`cpu`, `memory`, `pods`, …).
    #[serde(default)]
    pub capacity: BTreeMap<String, String>,
    /// Node allocatable summed over nodes.
    #[serde(default)]
    pub allocatable: BTreeMap<String, String>,
    /// Digests of what the server's downstream syncs depend on ([`NAMESPACES`], [`RBAC`],
    /// [`ACE_RECORDS`], [`UNLABELLED_NODES`]), each once the agent has listed it: the server syncs the cluster again
    /// when one changes, instead of watching every cluster through its tunnel.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub digests: BTreeMap<String, String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wire_shape_is_stable() {
        // Agents and servers of different builds talk to each other: this JSON is a contract.
        let report = ClusterReport {
            version: KubernetesVersion {
                git_version: "v1.33.1".into(),
                major: "1".into(),
                minor: "33".into(),
                platform: String::new(),
            },
            node_count: 2,
            pod_count: 7,
            capacity: BTreeMap::from([("cpu".into(), "4".into())]),
            allocatable: BTreeMap::new(),
            digests: BTreeMap::from([(NAMESPACES.into(), "0f".into())]),
        };
        let json = serde_json::to_string(&report).unwrap();
        let expected = concat!(
            r#"{"version":{"gitVersion":"v1.33.1","major":"1","minor":"33"},"#,
            r#""nodeCount":2,"podCount":7,"capacity":{"cpu":"4"},"allocatable":{},"#,
            r#""digests":{"namespaces":"0f"}}"#
        );
        assert_eq!(json, expected);
        assert_eq!(serde_json::from_str::<ClusterReport>(&json).unwrap(), report);
        // An agent from before the digests: its report still reads, with none.
        let old =
            r#"{"version":{"gitVersion":"v1.33.1","major":"1","minor":"33"},"nodeCount":2,"podCount":7}"#;
        assert!(serde_json::from_str::<ClusterReport>(old).unwrap().digests.is_empty());
    }
}
