//! The first registered provisioner: `imported`. The cluster exists already; it is provisioned once
//! its agent has connected and reported (the registration token and manifest are made by the API and
//! [`Registration`](crate::server::registration::Registration) as before).

use async_trait::async_trait;
use rancher_core::Conditions;
use rancher_core::model::{Cluster, ProvisioningProgress, StepState};
use rancher_provision::{Progress, ProvisionContext, ProvisionError, Provisioner};

use crate::server::registration::IMPORTED_DRIVER;

/// Imported (registered) clusters: joined by applying the import manifest.
pub(crate) struct Imported;

#[async_trait]
impl Provisioner for Imported {
    fn driver(&self) -> &str {
        IMPORTED_DRIVER
    }

    async fn reconcile(
        &self,
        cluster: &Cluster,
        _ctx: &ProvisionContext,
    ) -> Result<Progress, ProvisionError> {
        // `AgentDeployed` stays true once the agent has connected (rancher-core's lifecycle), so a
        // cluster whose agent is away for a while stays provisioned.
        let connected = cluster.status.conditions.is_true("AgentDeployed");
        let reported = cluster.status.version.is_some();
        if connected && reported {
            return Ok(Progress::Done);
        }
        let state = |done: bool, running: bool| match (done, running) {
            (true, _) => StepState::Done,
            (false, true) => StepState::Running,
            (false, false) => StepState::Pending,
        };
        let message = if connected {
            "waiting for the cluster agent's first report"
        } else {
            "apply the import manifest (the cluster's registration token has the command) to connect the agent"
        };
        Ok(Progress::WaitingForAgent {
            progress: ProvisioningProgress::new(message)
                .step("registration token", StepState::Done, "")
                .step("agent connected", state(connected, true), "")
                .step("first report", state(reported, connected), ""),
        })
    }

    /// Nothing to take away: the clean-up controller has closed the agent's sessions and removed the
    /// server's objects downstream before this runs.
    async fn remove(&self, _cluster: &Cluster, _ctx: &ProvisionContext) -> Result<Progress, ProvisionError> {
        Ok(Progress::Done)
    }
}

#[cfg(test)]
mod tests {
    use rancher_core::ConditionStatus;
    use rancher_core::model::KubernetesVersion;

    use super::*;

    async fn steps(cluster: &Cluster) -> Option<Vec<StepState>> {
        match Imported.reconcile(cluster, &ProvisionContext::default()).await.unwrap() {
            Progress::WaitingForAgent { progress } => Some(progress.steps.iter().map(|s| s.state).collect()),
            Progress::Done => None,
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn provisioned_once_the_agent_has_connected_and_reported() {
        let mut c = Cluster::new("c-imp", Default::default());
        use StepState::{Done, Pending, Running};
        assert_eq!(steps(&c).await, Some(vec![Done, Running, Pending]));
        c.status.conditions.set_condition("AgentDeployed", ConditionStatus::True, "", "");
        assert_eq!(steps(&c).await, Some(vec![Done, Done, Running]));
        c.status.version = Some(KubernetesVersion { git_version: "v1.33.1".into(), ..Default::default() });
        assert_eq!(steps(&c).await, None, "done");
        c.status.conditions.set_condition("Connected", ConditionStatus::False, "", "");
        assert_eq!(steps(&c).await, None, "an agent away for a while does not unprovision the cluster");
    }
}
