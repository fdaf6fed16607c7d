//! The plan: what one host should hold and run. The server renders a [`NodePlan`] per host and sends it
//! to the host's node agent through its tunnel session; the node agent writes the files, runs the
//! processes (restarting any that die, adopting those already running after it restarts itself) and
//! answers with a [`NodeStatus`].
//!
//! This is the one mechanism for node work (Rancher's system-agent idea); SSH only bootstraps the node
//! agent.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The tunnel destination (network `local`) under which a node agent serves its plan API in-process.
pub const PLAN_SERVICE: &str = "plan";

/// Everything one host should hold and run.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodePlan {
    /// An id of this plan's content (a hash); the node agent reports which plan it applied.
    pub revision: String,
    /// Files to write before any process starts.
    #[serde(default)]
    pub files: Vec<PlanFile>,
    /// Processes to keep running, started in this order.
    #[serde(default)]
    pub processes: Vec<PlanProcess>,
}

/// A file the node agent writes (atomically: temporary file, then rename).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlanFile {
    /// Absolute path on the host.
    pub path: String,
    /// The contents, base64.
    pub content: String,
    /// Unix mode (`0o600` for keys, `0o644` otherwise).
    pub mode: u32,
}

impl std::fmt::Debug for PlanFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Contents may be private keys: never printed.
        f.debug_struct("PlanFile")
            .field("path", &self.path)
            .field("content_len", &self.content.len())
            .field("mode", &format_args!("{:o}", self.mode))
            .finish()
    }
}

/// A process the node agent keeps running, detached from itself (its own session), so that the
/// node agent can stop or restart without taking it down.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlanProcess {
    /// Unique on the host: `etcd`, `kube-apiserver`, `kube-controller-manager`, `kube-scheduler`,
    /// `kubelet`, `cluster-agent`.
    pub name: String,
    /// Absolute path of the binary.
    pub binary: String,
    /// Arguments (without the binary).
    #[serde(default)]
    pub args: Vec<String>,
    /// Environment (added to a minimal `PATH`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// How the node agent decides the process is healthy; none means "running".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<HealthCheck>,
}

impl std::fmt::Debug for PlanProcess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The environment carries credentials (`CATTLE_TOKEN`): names only.
        f.debug_struct("PlanProcess")
            .field("name", &self.name)
            .field("binary", &self.binary)
            .field("args", &self.args)
            .field("env", &self.env.keys().collect::<Vec<_>>())
            .field("health", &self.health)
            .finish()
    }
}

/// How a process's health is checked.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "type")]
pub enum HealthCheck {
    /// A TCP connect to `address` (`host:port`) succeeds.
    Tcp {
        /// `host:port`.
        address: String,
    },
    /// An HTTPS (or HTTP) GET answers 200; with `caFile` the server's certificate must chain to it,
    /// with `certFile`/`keyFile` the node agent presents that client certificate.
    Http {
        /// The URL (`https://127.0.0.1:6443/healthz`).
        url: String,
        /// PEM CA on the host.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ca_file: Option<String>,
        /// PEM client certificate on the host.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cert_file: Option<String>,
        /// PEM client key on the host.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        key_file: Option<String>,
    },
}

/// What a node agent reports about its host.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeStatus {
    /// The revision of the plan applied last; empty before any.
    pub applied_revision: String,
    /// Why the last plan could not be applied (a file could not be written, a binary is missing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Each process of the applied plan.
    #[serde(default)]
    pub processes: Vec<ProcessStatus>,
}

impl NodeStatus {
    /// True when `revision` is applied without error and every process is running and healthy.
    pub fn is_healthy(&self, revision: &str) -> bool {
        self.applied_revision == revision && self.error.is_none() && self.processes.iter().all(|p| p.healthy)
    }
}

/// One process's state on a host.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProcessStatus {
    /// The plan's name for it.
    pub name: String,
    /// Its pid while running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// Running now.
    pub running: bool,
    /// Running and its health check passes.
    pub healthy: bool,
    /// How often the node agent restarted it.
    #[serde(default)]
    pub restarts: u32,
    /// When it started (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    /// The last failure (exit status, health check error, tail of its log).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_contents_never_show_in_debug_output() {
        let f = PlanFile {
            path: "/etc/kubernetes/ssl/kube-ca-key.pem".into(),
            content: "c2VjcmV0".into(),
            mode: 0o600,
        };
        let shown = format!("{f:?}");
        assert!(
            shown.contains("kube-ca-key.pem") && shown.contains("600") && !shown.contains("c2VjcmV0"),
            "{shown}"
        );
    }

    #[test]
    fn environment_values_never_show_in_debug_output() {
        let p = PlanProcess {
            name: "cluster-agent".into(),
            env: [("CATTLE_TOKEN".to_owned(), "tok-s3cr3t".to_owned())].into(),
            ..Default::default()
        };
        let shown = format!("{p:?}");
        assert!(shown.contains("CATTLE_TOKEN") && !shown.contains("tok-s3cr3t"), "{shown}");
    }

    #[test]
    fn health_checks_are_tagged_by_type_on_the_wire() {
        let h = HealthCheck::Tcp { address: "127.0.0.1:2379".into() };
        assert_eq!(
            serde_json::to_value(&h).unwrap(),
            serde_json::json!({"type": "tcp", "address": "127.0.0.1:2379"})
        );
        let status = NodeStatus {
            applied_revision: "r1".into(),
            error: None,
            processes: vec![ProcessStatus {
                name: "etcd".into(),
                running: true,
                healthy: true,
                ..Default::default()
            }],
        };
        assert!(status.is_healthy("r1") && !status.is_healthy("r2"));
    }
}
