//! One provisioning run of a cluster built on SSH hosts, in the background: certificates, then every
//! host bootstrapped over SSH in parallel, then plans through the node agents' sessions until every
//! host runs healthy. A `reconcile` call starts a run and reports its [`Board`]; the run itself never
//! blocks the controller.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use rancher_core::model::{Cluster, RkeConfig, RkeNode, StepState};
use rancher_provision::ProvisionError;
use rancher_provision::bundle::Bundle;
use rancher_provision::plan::{NodePlan, NodeStatus};
use rancher_provision::rke::node_name;
use rancher_provision::ssh::SshTarget;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::board::Board;
use super::hosts::{self, AgentBoot};
use super::layout::HostLayout;
use super::plans;
use super::state::{self, RkeState};
use crate::server::provisioning::node_plans;
use crate::server::registration::Registration;
use crate::server::secrets::Sealer;

/// How many hosts are bootstrapped at once.
const PARALLEL_HOSTS: usize = 4;
/// How long the node agents have to connect after their hosts were bootstrapped.
const AGENTS_DEADLINE: Duration = Duration::from_secs(120);
/// How long the processes have to become healthy once their plans are sent.
const HEALTHY_DEADLINE: Duration = Duration::from_secs(600);
/// How often node agents are asked how their hosts are.
const POLL: Duration = Duration::from_secs(1);

/// What a run works with.
pub(super) struct RunCtx {
    pub(super) registration: Arc<Registration>,
    pub(super) sealer: Arc<Sealer>,
}

/// The step of a host.
pub(super) fn host_step(name: &str) -> String {
    format!("host {name}")
}

/// The steps of a run, in order.
pub(super) fn steps(cfg: &RkeConfig) -> Vec<String> {
    let mut out = vec!["certificates".to_owned()];
    out.extend(cfg.nodes.iter().map(|n| host_step(&node_name(n))));
    out.extend(["node agents", "etcd", "control plane", "workers"].map(str::to_owned));
    out
}

/// Provisions `cluster` as its `rkeConfig` says; idempotent (what exists is kept).
pub(super) async fn provision(
    ctx: &RunCtx,
    cluster: &Cluster,
    cfg: &RkeConfig,
    bundle: &Bundle,
    board: &Board,
    cancel: &CancellationToken,
) -> Result<(), ProvisionError> {
    let store = ctx.registration.store().clone();
    // 1. The state: the PKI, made once and extended for new hosts.
    board.set("certificates", StepState::Running, "");
    let (mut st, mut rv) =
        match state::load(store.as_ref(), &ctx.sealer, cluster).await.map_err(ProvisionError::transient)? {
            Some((st, rv)) => (st, Some(rv)),
            None => (RkeState::default(), None),
        };
    let mut changed = st.pki.ensure(cfg).map_err(ProvisionError::permanent)?;
    if changed || rv.is_none() {
        rv = Some(
            state::save(store.as_ref(), &ctx.sealer, cluster, &st, rv.as_deref())
                .await
                .map_err(ProvisionError::transient)?,
        );
    }
    board.set("certificates", StepState::Done, "");

    // 2. Every host over SSH: binaries, then its node agent.
    let crt = ctx.registration.ensure_default_token(cluster).await.map_err(ProvisionError::transient)?;
    let token = ctx.registration.token_of(&crt);
    let boot = AgentBoot {
        server_url: ctx.registration.server_url(),
        ca_checksum: ctx.registration.ca_checksum(),
        token: &token,
    };
    let layout = HostLayout::new(&cfg.prefix_path);
    let bastion = hosts::bastion_of(&ctx.sealer, cfg).await.map_err(host_error)?;
    let bootstraps: Vec<_> = cfg
        .nodes
        .iter()
        .map(|node| bootstrap_host(ctx, cfg, node, bundle, &st, &layout, bastion.as_ref(), &boot, board))
        .collect();
    let results: Vec<(String, Result<String, hosts::HostError>)> =
        futures::stream::iter(bootstraps).buffer_unordered(PARALLEL_HOSTS).collect().await;
    let mut first_error = None;
    for (name, result) in results {
        match result {
            Ok(key) => {
                if st.host_keys.get(&name) != Some(&key) {
                    st.host_keys.insert(name, key);
                    changed = true;
                }
            }
            Err(e) => first_error = first_error.or(Some((name, e))),
        }
    }
    if changed {
        rv = Some(
            state::save(store.as_ref(), &ctx.sealer, cluster, &st, rv.as_deref())
                .await
                .map_err(ProvisionError::transient)?,
        );
    }
    if let Some((name, e)) = first_error {
        return Err(named_host_error(&name, e));
    }
    if cancel.is_cancelled() {
        return Err(ProvisionError::Cancelled);
    }

    // 3. The node agents' sessions.
    let names: Vec<String> = cfg.nodes.iter().map(node_name).collect();
    let key = |n: &str| format!("{}:{n}", cluster.metadata.name);
    board.set("node agents", StepState::Running, "");
    let deadline = Instant::now() + AGENTS_DEADLINE;
    loop {
        let missing: Vec<&String> =
            names.iter().filter(|n| !ctx.registration.tunnel().has_session(&key(n))).collect();
        if missing.is_empty() {
            break;
        }
        board.set("node agents", StepState::Running, format!("waiting for {}", join(&missing)));
        if Instant::now() >= deadline {
            let msg =
                format!("the node agents of {} did not connect within {AGENTS_DEADLINE:?}", join(&missing));
            board.set("node agents", StepState::Failed, msg.clone());
            return Err(ProvisionError::transient(msg));
        }
        sleep_or_cancel(POLL, cancel).await?;
    }
    board.set("node agents", StepState::Done, format!("{} connected", names.len()));

    // 4. Plans, and their health.
    let plans = plans::render(cfg, &st, &layout, &boot).map_err(ProvisionError::permanent)?;
    for (name, plan) in &plans {
        node_plans::send_plan(ctx.registration.tunnel(), &key(name), plan)
            .await
            .map_err(|e| ProvisionError::transient(format!("host {name}: {e}")))?;
    }
    let deadline = Instant::now() + HEALTHY_DEADLINE;
    loop {
        let mut statuses = BTreeMap::new();
        for name in &names {
            let status = node_plans::node_status(ctx.registration.tunnel(), &key(name)).await.ok();
            statuses.insert(name.clone(), status);
        }
        let all = report_health(cfg, &plans, &statuses, board);
        if all {
            break;
        }
        if Instant::now() >= deadline {
            let why = unhealthy(&plans, &statuses).unwrap_or_default();
            return Err(ProvisionError::transient(format!("not healthy after {HEALTHY_DEADLINE:?}: {why}")));
        }
        sleep_or_cancel(POLL, cancel).await?;
    }
    st.applied = plans.iter().map(|(n, p)| (n.clone(), p.revision.clone())).collect();
    st.current_config = Some(cfg.clone());
    state::save(store.as_ref(), &ctx.sealer, cluster, &st, rv.as_deref())
        .await
        .map_err(ProvisionError::transient)?;
    board.say("every host runs its plan; waiting for the cluster agent");
    Ok(())
}

/// Bootstraps one host over SSH, reporting on its step; returns its name and its SSH key.
#[allow(clippy::too_many_arguments, reason = "one call site; the run's pieces")]
async fn bootstrap_host(
    ctx: &RunCtx,
    cfg: &RkeConfig,
    node: &RkeNode,
    bundle: &Bundle,
    st: &RkeState,
    layout: &HostLayout,
    bastion: Option<&SshTarget>,
    boot: &AgentBoot<'_>,
    board: &Board,
) -> (String, Result<String, hosts::HostError>) {
    let name = node_name(node);
    let step = host_step(&name);
    board.set(&step, StepState::Running, "");
    let report = |m: String| board.set(&step, StepState::Running, m);
    let result = async {
        let target = hosts::target_of(&ctx.sealer, cfg, node, st.host_keys.get(&name)).await?;
        hosts::bootstrap(&target, bastion, node, layout, bundle, boot, &report).await
    }
    .await;
    match &result {
        Ok(_) => board.set(&step, StepState::Done, "node agent started"),
        Err(e) => board.set(&step, StepState::Failed, e.to_string()),
    }
    (name, result)
}

/// Updates the role steps from the hosts' statuses; true when every host is healthy.
fn report_health(
    cfg: &RkeConfig,
    plans: &BTreeMap<String, NodePlan>,
    statuses: &BTreeMap<String, Option<NodeStatus>>,
    board: &Board,
) -> bool {
    let healthy = |name: &String| match (plans.get(name), statuses.get(name)) {
        (Some(plan), Some(Some(status))) => status.is_healthy(&plan.revision),
        _ => false,
    };
    let mut everything = true;
    for (step, role) in [("etcd", "etcd"), ("control plane", "controlplane"), ("workers", "worker")] {
        let members: Vec<String> =
            cfg.nodes.iter().filter(|n| n.role.iter().any(|r| r == role)).map(node_name).collect();
        let ok = members.iter().filter(|n| healthy(n)).count();
        let state = if ok == members.len() { StepState::Done } else { StepState::Running };
        everything &= ok == members.len();
        board.set(step, state, format!("{ok} of {} hosts healthy", members.len()));
    }
    match unhealthy(plans, statuses) {
        Some(why) => board.say(format!("waiting for {why}")),
        None => board.say("every host is healthy"),
    }
    everything
}

/// The first host and process that is not healthy, and why.
fn unhealthy(
    plans: &BTreeMap<String, NodePlan>,
    statuses: &BTreeMap<String, Option<NodeStatus>>,
) -> Option<String> {
    for (name, plan) in plans {
        match statuses.get(name) {
            Some(Some(s)) if s.applied_revision != plan.revision => {
                return Some(match &s.error {
                    Some(e) => format!("host {name}: the plan cannot be applied: {e}"),
                    None => format!("host {name}: applying its plan"),
                });
            }
            Some(Some(s)) => {
                if let Some(p) = s.processes.iter().find(|p| !p.healthy) {
                    let why = p.last_error.as_deref().unwrap_or(if p.running {
                        "not healthy yet"
                    } else {
                        "not running"
                    });
                    return Some(format!("host {name}: {} ({why})", p.name));
                }
            }
            _ => return Some(format!("host {name}: its node agent does not answer")),
        }
    }
    None
}

/// A host's failure as the cluster's condition shows it: which host (its step's name), then why.
fn named_host_error(name: &str, e: hosts::HostError) -> ProvisionError {
    let message = format!("{}: {e}", host_step(name));
    if e.is_transient() { ProvisionError::transient(message) } else { ProvisionError::permanent(message) }
}

fn host_error(e: hosts::HostError) -> ProvisionError {
    if e.is_transient() { ProvisionError::transient(e) } else { ProvisionError::permanent(e) }
}

fn join(names: &[&String]) -> String {
    names.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
}

async fn sleep_or_cancel(d: Duration, cancel: &CancellationToken) -> Result<(), ProvisionError> {
    tokio::select! {
        () = cancel.cancelled() => Err(ProvisionError::Cancelled),
        () = tokio::time::sleep(d) => Ok(()),
    }
}
