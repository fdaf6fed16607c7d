//! One provisioning run of a cluster built on SSH hosts, in the background: certificates, then every
//! host bootstrapped over SSH in parallel, then plans through the node agents' sessions until every
//! host runs healthy. A `reconcile` call starts a run and reports its [`Board`]; the run itself never
//! blocks the controller.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use rancher_core::model::{Cluster, RkeConfig, RkeNode, StepState};
use rancher_core::store::Api;
use rancher_provision::ProvisionError;
use rancher_provision::bundle::Bundle;
use rancher_provision::plan::{NodePlan, NodeStatus};
use rancher_provision::rke::node_name;
use rancher_provision::rke_plans::{self, EtcdJoin};
use rancher_provision::ssh::SshTarget;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::board::Board;
use super::health;
use super::hosts::{self, AgentBoot};
use super::layout::HostLayout;
use super::plans;
use super::rollout::Rollout;
use super::state::{RkeState, Tracked};
use super::{expiry, restore, rotation};
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

/// Provisions `cluster` as its `rkeConfig` says; idempotent (what exists is kept). The first time,
/// every host gets its plan at once; after that, a change is rolled out host by host (see
/// [`rollout`](super::rollout)).
pub(super) async fn provision(
    ctx: &RunCtx,
    cluster: &Cluster,
    cfg: &RkeConfig,
    bundle: &Bundle,
    board: &Board,
    cancel: &CancellationToken,
) -> Result<(), ProvisionError> {
    let store = ctx.registration.store().clone();
    let save = async |t: &mut Tracked| {
        t.save(store.as_ref(), &ctx.sealer, cluster).await.map_err(ProvisionError::transient)
    };
    // 1. The state: the PKI, made once and extended for new hosts.
    board.set("certificates", StepState::Running, "");
    let mut t =
        Tracked::load(store.as_ref(), &ctx.sealer, cluster).await.map_err(ProvisionError::transient)?;
    let mut changed = t.st.pki.ensure(cfg).map_err(ProvisionError::permanent)?;
    changed |= record_etcd_joins(&mut t.st).map_err(ProvisionError::permanent)?;
    if changed || !t.is_stored() {
        save(&mut t).await?;
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
    let bastion =
        hosts::bastion_of(&ctx.sealer, cfg).await.map_err(|e| host_error(&[("bastion".to_owned(), e)]))?;
    let work = HostWork { ctx, cfg, bundle, layout: &layout, bastion: bastion.as_ref() };
    let bootstraps: Vec<_> = cfg.nodes.iter().map(|node| work.bootstrap(node, &t.st, &boot, board)).collect();
    let results: Vec<(String, Option<String>, Result<(), hosts::HostError>)> =
        futures::stream::iter(bootstraps).buffer_unordered(PARALLEL_HOSTS).collect().await;
    let mut changed = false;
    let mut failures = Vec::new();
    for (name, seen_key, result) in results {
        // A host's key is pinned at first contact, even when a later step failed; a host whose key
        // changed never gets here (the connection is refused), so the pinned key stays.
        if let Some(key) = seen_key
            && !t.st.host_keys.contains_key(&name)
        {
            t.st.host_keys.insert(name.clone(), key);
            changed = true;
        }
        if let Err(e) = result {
            failures.push((name, e));
        }
    }
    if changed {
        save(&mut t).await?;
    }
    if !failures.is_empty() {
        failures.sort_by(|a, b| a.0.cmp(&b.0));
        return Err(host_error(&failures));
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

    // 4. Plans, and their health: all at once the first time, host by host after.
    let render =
        |st: &RkeState| plans::render(cfg, bundle, st, &layout, &boot).map_err(ProvisionError::permanent);
    let rollout = Rollout { ctx, cluster, cfg, render: &render, bastion: bastion.as_ref(), board, cancel };
    restore::carry_out(&rollout, bundle, &mut t).await?;
    if t.st.current_config.is_some() {
        if rollout.run(&mut t).await? {
            work.prune(&t.st).await;
        }
    } else {
        let plans = render(&t.st)?;
        first_plans(ctx, cluster, cfg, &plans, board, cancel).await?;
        t.st.applied = plans.iter().map(|(n, p)| (n.clone(), p.revision.clone())).collect();
    }
    t.st.current_config = Some(cfg.clone());
    record_etcd_joins(&mut t.st).map_err(ProvisionError::permanent)?;
    save(&mut t).await?;

    // 5. Certificate rotation, asked for or under way: each of its phases a change of the PKI rolled
    // over every host like any other (saved before any plan of it is sent, so that a restarted
    // server carries on with the same certificates).
    loop {
        if t.st.pki.rotation_phase().is_some() {
            agent_trusts_current_ca(ctx, cluster, &t.st, board, cancel).await?;
        }
        if !rotation::advance(&mut t.st, cfg).map_err(ProvisionError::permanent)? {
            break;
        }
        if let Some(m) = rotation::describe(&t.st) {
            board.say(m);
        }
        save(&mut t).await?;
        rollout.run(&mut t).await?;
    }
    expiry::write(&store, cluster, &t.st.pki).await.map_err(ProvisionError::transient)?;
    board.say("every host runs its plan; waiting for the cluster agent");
    Ok(())
}

/// How long the cluster agent may take to connect with a rotation phase's CAs.
const AGENT_TRUST_DEADLINE: Duration = Duration::from_secs(120);

/// Waits until the cluster agent's session carries the CAs the hosts trust now
/// ([`rotation::agent_trusts_current_ca`]); a transient error after [`AGENT_TRUST_DEADLINE`].
async fn agent_trusts_current_ca(
    ctx: &RunCtx,
    cluster: &Cluster,
    st: &RkeState,
    board: &Board,
    cancel: &CancellationToken,
) -> Result<(), ProvisionError> {
    let api = Api::<Cluster>::all(ctx.registration.store().clone());
    let name = &cluster.metadata.name;
    let deadline = Instant::now() + AGENT_TRUST_DEADLINE;
    loop {
        let stored = api.get(name).await.map_err(ProvisionError::transient)?;
        if rotation::agent_trusts_current_ca(st, &stored) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(ProvisionError::transient(format!(
                "the cluster agent has not connected with the new CAs within {AGENT_TRUST_DEADLINE:?}"
            )));
        }
        board.say("waiting for the cluster agent to connect with the CAs the hosts trust now");
        sleep_or_cancel(POLL, cancel).await?;
    }
}

/// What the work on a cluster's hosts over SSH shares: the run's context, the config and bundle,
/// where things go on a host, the bastion.
struct HostWork<'a> {
    ctx: &'a RunCtx,
    cfg: &'a RkeConfig,
    bundle: &'a Bundle,
    layout: &'a HostLayout,
    bastion: Option<&'a SshTarget>,
}

impl HostWork<'_> {
    /// Bootstraps one host over SSH, reporting on its step; returns its name, its SSH key if a
    /// session was made, and how the bootstrap went.
    async fn bootstrap(
        &self,
        node: &RkeNode,
        st: &RkeState,
        boot: &AgentBoot<'_>,
        board: &Board,
    ) -> (String, Option<String>, Result<(), hosts::HostError>) {
        let name = node_name(node);
        let step = host_step(&name);
        board.set(&step, StepState::Running, "");
        let report = |m: String| board.set(&step, StepState::Running, m);
        let (key, result) = match hosts::target_of(&self.ctx.sealer, self.cfg, node, st.host_keys.get(&name))
            .await
        {
            Ok(target) => {
                hosts::bootstrap(&target, self.bastion, node, self.layout, self.bundle, boot, &report).await
            }
            Err(e) => (None, Err(e)),
        };
        let result = match result {
            Ok(done) => {
                tracing::info!(host = %name, "{}", done.summary());
                board.set(&step, StepState::Done, done.summary());
                Ok(())
            }
            Err(e) => {
                board.set(&step, StepState::Failed, e.to_string());
                Err(e)
            }
        };
        (name, key, result)
    }

    /// Removes the builds of earlier bundles from every host, now that every host runs this
    /// bundle's; a host that cannot be reached keeps them until the next rollout (they only take
    /// room).
    async fn prune(&self, st: &RkeState) {
        let prunes: Vec<_> = self.cfg.nodes.iter().map(|node| self.prune_host(node, st)).collect();
        futures::stream::iter(prunes).buffer_unordered(PARALLEL_HOSTS).collect::<Vec<()>>().await;
    }

    async fn prune_host(&self, node: &RkeNode, st: &RkeState) {
        let name = node_name(node);
        let pruned = async {
            let target = hosts::target_of(&self.ctx.sealer, self.cfg, node, st.host_keys.get(&name)).await?;
            hosts::prune_builds(&target, self.bastion, node, self.layout, self.bundle).await
        };
        if let Err(e) = pruned.await {
            tracing::warn!(host = %name, error = %e, "the builds of earlier bundles stay on the host");
        }
    }
}

/// Records how the etcd members of the current config that have no record joined: with the
/// members of that config, as a new cluster (they started it). True when it recorded one.
fn record_etcd_joins(st: &mut RkeState) -> Result<bool, rancher_provision::rke_plans::RenderError> {
    let Some(current) = &st.current_config else { return Ok(false) };
    let etcd: Vec<String> =
        current.nodes.iter().filter(|n| n.role.iter().any(|r| r == "etcd")).map(node_name).collect();
    if etcd.iter().all(|n| st.etcd_joins.contains_key(n)) {
        return Ok(false);
    }
    let initial = rke_plans::etcd_initial_cluster(current)?;
    for name in etcd {
        st.etcd_joins
            .entry(name)
            .or_insert_with(|| EtcdJoin { initial_cluster: initial.clone(), existing: false });
    }
    Ok(true)
}

/// The first plans: sent to every host at once, then followed until every host runs its plan healthy.
async fn first_plans(
    ctx: &RunCtx,
    cluster: &Cluster,
    cfg: &RkeConfig,
    plans: &BTreeMap<String, NodePlan>,
    board: &Board,
    cancel: &CancellationToken,
) -> Result<(), ProvisionError> {
    let key = |n: &str| format!("{}:{n}", cluster.metadata.name);
    for (name, plan) in plans {
        node_plans::send_plan(ctx.registration.tunnel(), &key(name), plan)
            .await
            .map_err(|e| ProvisionError::transient(format!("host {name}: {e}")))?;
    }
    let deadline = Instant::now() + HEALTHY_DEADLINE;
    loop {
        let mut statuses = BTreeMap::new();
        for name in plans.keys() {
            let status = node_plans::node_status(ctx.registration.tunnel(), &key(name)).await.ok();
            statuses.insert(name.clone(), status);
        }
        if report_health(cfg, plans, &statuses, board) {
            return Ok(());
        }
        if let Some(why) = health::crash_looping(plans, &statuses) {
            // The node agent keeps restarting it; the cause is on the host (a port in use, a bad
            // flag, a full disk), so the run stops and is retried with backoff: the plan stays, and
            // the retry finds the process healthy once the cause is gone.
            return Err(ProvisionError::transient(why));
        }
        if Instant::now() >= deadline {
            let why = health::unhealthy(plans, &statuses).unwrap_or_default();
            return Err(ProvisionError::transient(format!("not healthy after {HEALTHY_DEADLINE:?}: {why}")));
        }
        sleep_or_cancel(POLL, cancel).await?;
    }
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
    match health::unhealthy(plans, statuses) {
        Some(why) => board.say(format!("waiting for {why}")),
        None => board.say("every host is healthy"),
    }
    everything
}

/// The run's error for the hosts that failed (`host NAME: why`, one per host): permanent when one
/// of them is (a person has to act anyway), else transient.
fn host_error(failures: &[(String, hosts::HostError)]) -> ProvisionError {
    let message = failures.iter().map(|(name, e)| format!("host {name}: {e}")).collect::<Vec<_>>().join("; ");
    if failures.iter().all(|(_, e)| e.is_transient()) {
        ProvisionError::transient(message)
    } else {
        ProvisionError::permanent(message)
    }
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

#[cfg(test)]
mod tests {
    use rancher_provision::ssh::SshError;

    use super::*;

    #[test]
    fn host_failures_name_every_host_and_are_permanent_when_one_is() {
        let lost = |h: &str| hosts::HostError::from(SshError::Disconnected { host: format!("{h}:22") });
        let e = host_error(&[("n1".into(), lost("10.0.0.1")), ("n2".into(), lost("10.0.0.2"))]);
        assert!(e.is_transient());
        assert_eq!(
            e.to_string(),
            "host n1: 10.0.0.1:22: the SSH connection was lost; host n2: 10.0.0.2:22: the SSH connection was lost"
        );
        let refused =
            hosts::HostError::from(SshError::Auth { host: "10.0.0.2:22".into(), user: "root".into() });
        let e = host_error(&[("n1".into(), lost("10.0.0.1")), ("n2".into(), refused)]);
        assert!(!e.is_transient());
        assert!(
            e.to_string()
                .ends_with("host n2: authentication failed for root@10.0.0.2:22: the host refused the key")
        );
    }
}
