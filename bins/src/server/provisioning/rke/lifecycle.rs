//! `reconcile` and `remove` of the `rke` provisioner: start or report the cluster's run, then wait
//! for the cluster agent (which the first control-plane host runs as part of its plan); on removal,
//! stop every host's processes and take away what the provisioner put there.

use std::sync::Arc;

use rancher_core::Conditions;
use rancher_core::model::{Cluster, RkeConfig, StepState};
use rancher_provision::bundle::Bundle;
use rancher_provision::plan::NodePlan;
use rancher_provision::rke::{is_abandoned, node_name};
use rancher_provision::{Progress, ProvisionContext, ProvisionError};

use super::hosts;
use super::layout::HostLayout;
use super::run::RunCtx;
use super::runs::{RunState, Runs};
use super::state;
use crate::server::provisioning::node_plans;

/// How often a run in progress is reported.
const REPORT_EVERY: std::time::Duration = std::time::Duration::from_secs(2);
/// How soon a run's failure is reported after the board it left.
const REPORT_FAILURE_AFTER: std::time::Duration = std::time::Duration::from_millis(200);

/// One `reconcile` of `cluster`.
pub(super) async fn reconcile(
    runs: &Runs,
    ctx: &Arc<RunCtx>,
    cluster: &Cluster,
    cfg: &RkeConfig,
    bundle: Arc<Bundle>,
    pctx: &ProvisionContext,
) -> Result<Progress, ProvisionError> {
    if pctx.cancel.is_cancelled() {
        return Err(ProvisionError::Cancelled);
    }
    match runs.poll(ctx, cluster, cfg, bundle) {
        RunState::Running(board) => {
            Ok(Progress::InProgress { progress: board.snapshot(), after: REPORT_EVERY })
        }
        RunState::Failing(board) => {
            Ok(Progress::InProgress { progress: board.snapshot(), after: REPORT_FAILURE_AFTER })
        }
        RunState::Failed(e) => Err(e),
        RunState::Provisioned(board) => {
            let connected = cluster.status.conditions.is_true("AgentDeployed");
            let reported = cluster.status.version.is_some();
            if connected && reported {
                return Ok(Progress::Done);
            }
            let state = if connected { StepState::Running } else { StepState::Pending };
            board.set(
                "cluster agent",
                state,
                if connected { "waiting for its first report" } else { "connecting" },
            );
            Ok(Progress::WaitingForAgent { progress: board.snapshot() })
        }
    }
}

/// One `remove` of `cluster`: stops its hosts' processes (an empty plan through each node agent that
/// is connected), then over SSH stops the node agents and removes the provisioner's directories.
pub(super) async fn remove(
    runs: &Runs,
    ctx: &Arc<RunCtx>,
    cluster: &Cluster,
) -> Result<Progress, ProvisionError> {
    runs.cancel(&cluster.metadata.uid);
    let Some(cfg) = cluster.spec.rke_config.as_ref() else { return Ok(Progress::Done) };
    let store = ctx.registration.store().clone();
    let known = state::load(store.as_ref(), &ctx.sealer, cluster).await.map_err(ProvisionError::transient)?;
    let (host_keys, current) = known.map(|(s, _)| (s.host_keys, s.current_config)).unwrap_or_default();
    let bastion = hosts::bastion_of(&ctx.sealer, cfg).await.map_err(ProvisionError::permanent)?;
    // The hosts of the spec, and those a rollout left running that the spec no longer names.
    let mut nodes = cfg.nodes.clone();
    for n in current.iter().flat_map(|c| &c.nodes) {
        if !nodes.iter().any(|m| node_name(m) == node_name(n)) {
            nodes.push(n.clone());
        }
    }
    let mut failures = Vec::new();
    for node in &nodes {
        let name = node_name(node);
        if let Err(e) = teardown_host(ctx, cluster, cfg, node, host_keys.get(&name), bastion.as_ref()).await {
            if is_abandoned(&cluster.metadata.annotations, &name) {
                tracing::warn!(cluster = %cluster.metadata.name, host = %name, error = %e, "host abandoned: what the provisioner put there stays");
                continue;
            }
            failures.push(format!("host {name}: {e}"));
        }
    }
    if !failures.is_empty() {
        return Err(ProvisionError::transient(failures.join("; ")));
    }
    state::delete(store.as_ref(), &cluster.metadata.name).await.map_err(ProvisionError::transient)?;
    Ok(Progress::Done)
}

/// Takes what the provisioner put on one host of `cluster` away: its processes stopped (an empty plan
/// through its node agent, if connected; a node agent that is away is caught over SSH all the same),
/// then over SSH its node agent stopped and the provisioner's directories removed. A host never
/// bootstrapped (no `pinned` key) has nothing to take away.
pub(super) async fn teardown_host(
    ctx: &RunCtx,
    cluster: &Cluster,
    cfg: &RkeConfig,
    node: &rancher_core::model::RkeNode,
    pinned: Option<&String>,
    bastion: Option<&rancher_provision::ssh::SshTarget>,
) -> Result<(), hosts::HostError> {
    let key = format!("{}:{}", cluster.metadata.name, node_name(node));
    if ctx.registration.tunnel().has_session(&key) {
        let empty = NodePlan { revision: "removed".into(), ..Default::default() };
        if node_plans::send_plan(ctx.registration.tunnel(), &key, &empty).await.is_ok() {
            let _ = wait_stopped(ctx, &key).await;
        }
    }
    let Some(pinned) = pinned else { return Ok(()) };
    let target = hosts::target_of(&ctx.sealer, cfg, node, Some(pinned)).await?;
    hosts::clean(&target, bastion, &HostLayout::new(&cfg.prefix_path)).await
}

/// Waits (briefly) until the node agent behind `key` runs no process.
async fn wait_stopped(ctx: &RunCtx, key: &str) -> Result<(), node_plans::NodePlanError> {
    for _ in 0..30 {
        let status = node_plans::node_status(ctx.registration.tunnel(), key).await?;
        if status.applied_revision == "removed" && status.processes.iter().all(|p| !p.running) {
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    Ok(())
}
