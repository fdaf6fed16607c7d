//! The lifecycle rules, with no I/O: from what is known about a cluster (its spec, the `Connected`
//! condition the server's connection monitor writes, the agent's last report), the conditions that
//! summarise it.
//!
//! An imported cluster goes `pending` (nothing observed) → `waiting` (no agent yet, or no report
//! yet) → `active` (`Ready`), and `unavailable` (`Ready=False`, reason `Disconnected`) when its
//! agent is lost after having connected; it returns to `active` when the agent does.

use crate::model::Cluster;
use crate::{ConditionStatus, Conditions};

/// The message of the `Waiting` condition while no agent has connected.
pub const WAITING_FOR_AGENT: &str = "waiting for the cluster agent to connect";
/// The message of the `Waiting` condition between the agent connecting and its first report.
pub const WAITING_FOR_REPORT: &str = "waiting for the cluster agent's first report";
/// `Ready=False` reason when the agent is gone.
pub const REASON_DISCONNECTED: &str = "Disconnected";
/// The driver of imported (registered) clusters.
pub const IMPORTED: &str = "imported";

/// True for a cluster registered by importing it.
pub fn is_imported(cluster: &Cluster) -> bool {
    cluster.spec.imported_config.is_some() || cluster.status.driver == IMPORTED
}

/// Applies the lifecycle rules to `cluster`'s status. Returns true when anything changed (and
/// must be written).
pub fn derive(cluster: &mut Cluster) -> bool {
    if cluster.metadata.deletion_timestamp.is_some() {
        return false;
    }
    let imported = is_imported(cluster);
    let status = &mut cluster.status;
    let mut changed = false;
    if imported && status.driver.is_empty() {
        status.driver = IMPORTED.to_owned();
        changed = true;
    }
    let c = &mut status.conditions;
    if imported {
        // An imported cluster exists already: there is nothing to provision.
        changed |= c.set_condition("Provisioned", ConditionStatus::True, "", "");
    } else if c.is_empty() {
        // Other drivers: only the first step until their provisioners report.
        c.set_condition("Provisioned", ConditionStatus::Unknown, "", "");
        c.set_condition("Waiting", ConditionStatus::Unknown, "", WAITING_FOR_AGENT);
        return true;
    } else if !c.is_true("Provisioned") {
        return changed;
    }
    // Provisioned (imported, or made by its provisioner): the agent's connection drives the rest.
    let connected = c.get_condition("Connected").map(|c| (c.status, c.message.clone()));
    let ever_deployed = c.is_true("AgentDeployed");
    let reported = status.version.is_some();
    match connected {
        Some((ConditionStatus::True, _)) => {
            changed |= c.set_condition("AgentDeployed", ConditionStatus::True, "", "");
            if reported {
                changed |= c.set_condition("Waiting", ConditionStatus::False, "", "");
                changed |= c.set_condition("Ready", ConditionStatus::True, "", "");
            } else {
                changed |= c.set_condition("Waiting", ConditionStatus::Unknown, "", WAITING_FOR_REPORT);
                if c.get_condition("Ready").is_some() {
                    changed |= c.set_condition("Ready", ConditionStatus::Unknown, "", WAITING_FOR_REPORT);
                }
            }
        }
        Some((ConditionStatus::False, message)) if ever_deployed => {
            let message =
                if message.is_empty() { "Cluster agent is not connected".to_owned() } else { message };
            changed |= c.set_condition("Ready", ConditionStatus::False, REASON_DISCONNECTED, &message);
        }
        _ => {
            if !ever_deployed {
                changed |= c.set_condition("AgentDeployed", ConditionStatus::Unknown, "", WAITING_FOR_AGENT);
                changed |= c.set_condition("Waiting", ConditionStatus::Unknown, "", WAITING_FOR_AGENT);
            }
        }
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ClusterSpec, ClusterState, ImportedConfig, KubernetesVersion};

    fn imported() -> Cluster {
        Cluster::new(
            "c-imp",
            ClusterSpec { imported_config: Some(ImportedConfig::default()), ..Default::default() },
        )
    }

    fn connect(c: &mut Cluster, status: ConditionStatus) {
        c.status.conditions.set_condition("Connected", status, "", "");
    }

    #[test]
    fn imported_cluster_walks_pending_waiting_active_unavailable_active() {
        let mut c = imported();
        assert_eq!(c.state(), ClusterState::Pending);
        assert!(derive(&mut c));
        assert_eq!(c.status.driver, IMPORTED);
        assert_eq!(c.state(), ClusterState::Waiting);
        assert!(!derive(&mut c), "a second pass changes nothing");

        connect(&mut c, ConditionStatus::True);
        assert!(derive(&mut c));
        assert_eq!(c.state(), ClusterState::Waiting, "connected, but no report yet");
        assert!(c.status.conditions.is_true("AgentDeployed"));

        c.status.version = Some(KubernetesVersion { git_version: "v1.33.1".into(), ..Default::default() });
        assert!(derive(&mut c));
        assert_eq!(c.state(), ClusterState::Active);

        connect(&mut c, ConditionStatus::False);
        assert!(derive(&mut c));
        assert_eq!(c.state(), ClusterState::Unavailable);
        let ready = c.status.conditions.get_condition("Ready").unwrap();
        assert_eq!(ready.reason, REASON_DISCONNECTED);

        connect(&mut c, ConditionStatus::True);
        assert!(derive(&mut c));
        assert_eq!(c.state(), ClusterState::Active, "recovers when the agent returns");
    }

    #[test]
    fn a_cluster_whose_agent_never_came_stays_waiting_when_marked_disconnected() {
        let mut c = imported();
        derive(&mut c);
        connect(&mut c, ConditionStatus::False);
        derive(&mut c);
        assert_eq!(c.state(), ClusterState::Waiting);
    }

    #[test]
    fn other_clusters_only_get_the_first_step() {
        let mut c = Cluster::new("c-x", ClusterSpec::default());
        assert!(derive(&mut c));
        assert_eq!(c.state(), ClusterState::Waiting);
        assert!(c.status.driver.is_empty());
        assert!(!derive(&mut c));
    }

    #[test]
    fn a_provisioned_cluster_becomes_active_once_its_agent_connects_and_reports() {
        let mut c = Cluster::new("c-built", ClusterSpec { driver: "rke".into(), ..Default::default() });
        c.status.driver = "rke".into();
        derive(&mut c);
        connect(&mut c, ConditionStatus::True);
        assert!(!derive(&mut c), "nothing happens before the provisioner says Provisioned");
        assert_ne!(c.state(), ClusterState::Active);
        c.status.conditions.set_condition("Provisioned", ConditionStatus::True, "", "");
        c.status.version = Some(Default::default());
        assert!(derive(&mut c));
        assert!(c.status.conditions.is_true("AgentDeployed"));
        assert_eq!(c.state(), ClusterState::Active);
        // A change of its spec being rolled out (or retried): updating, and active again after.
        c.status.conditions.set_condition("Provisioned", ConditionStatus::Unknown, "Provisioning", "");
        derive(&mut c);
        assert_eq!(c.state(), ClusterState::Updating);
        assert_eq!(c.state().as_str(), "updating");
        c.status.conditions.set_condition("Provisioned", ConditionStatus::True, "", "");
        derive(&mut c);
        assert_eq!(c.state(), ClusterState::Active);
    }
}
