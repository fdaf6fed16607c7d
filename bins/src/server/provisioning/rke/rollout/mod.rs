//! Day two of a cluster built on hosts: the rollout from the cluster as provisioned to the cluster
//! as its spec says, move by move in the [`order`] worked out first. After each move the state is
//! saved (which hosts run which plan, which hosts may hold something of the cluster's, how each etcd
//! member joined), so a rollout cut short — a failed health check, a host that died, the server
//! restarted — resumes where it stopped and does nothing twice. A move that fails stops the rollout
//! and says where; the hosts not reached keep serving with their plans.

mod drain;
pub(crate) mod order;

use std::collections::BTreeMap;
use std::time::Duration;

use rancher_core::model::{Cluster, RkeConfig, RkeNode, StepState};
use rancher_provision::ProvisionError;
use rancher_provision::etcd_api::{self, MemberHealth};
use rancher_provision::plan::{NodePlan, NodeStatus};
use rancher_provision::rke::{is_abandoned, node_name};
use rancher_provision::ssh::SshTarget;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::board::Board;
use super::health;
use super::lifecycle::teardown_host;
use super::membership;
use super::run::RunCtx;
use super::state::{RkeState, Tracked};
use crate::server::provisioning::node_plans;
use order::{Move, Tier};

/// How long a host has to run its new plan healthy.
const HOST_DEADLINE: Duration = Duration::from_secs(300);
/// How long a drain may take (a PodDisruptionBudget that never allows an eviction stops it).
const DRAIN_DEADLINE: Duration = Duration::from_secs(120);
/// How long a host being rolled may not answer before the rollout stops at it.
const AGENT_SILENCE: Duration = Duration::from_secs(30);
/// How often the hosts being rolled are asked how they are.
const POLL: Duration = Duration::from_secs(1);

/// Renders every host's plan from a state (the PKI, the etcd members' join flags).
pub(super) type Render<'a> =
    dyn Fn(&RkeState) -> Result<BTreeMap<String, NodePlan>, ProvisionError> + Send + Sync + 'a;

/// One rollout of a cluster that was provisioned before.
pub(super) struct Rollout<'a> {
    pub(super) ctx: &'a RunCtx,
    pub(super) cluster: &'a Cluster,
    /// The desired config.
    pub(super) cfg: &'a RkeConfig,
    pub(super) render: &'a Render<'a>,
    pub(super) bastion: Option<&'a SshTarget>,
    pub(super) board: &'a Board,
    pub(super) cancel: &'a CancellationToken,
}

impl Rollout<'_> {
    /// Runs every move from `t`'s current config to the desired one; `t` is saved after each. True
    /// when there was something to do.
    pub(super) async fn run(&self, t: &mut Tracked) -> Result<bool, ProvisionError> {
        let current = t.st.current_config.clone().unwrap_or_default();
        let plans = (self.render)(&t.st)?;
        let moves =
            order::moves(&current, &t.st.applied, self.cfg, &plans).map_err(ProvisionError::permanent)?;
        if moves.is_empty() {
            return Ok(false);
        }
        tracing::info!(cluster = %self.cluster.metadata.name, moves = moves.len(), "rolling out");
        for tier in [Tier::Etcd, Tier::ControlPlane, Tier::Worker] {
            if !moves.iter().any(|m| matches!(m, Move::Roll { tier: t, .. } if *t == tier)) {
                continue;
            }
            self.board.set(tier.step(), StepState::Pending, "waiting for its turn");
        }
        let total = moves.len();
        for (i, mv) in moves.into_iter().enumerate() {
            if self.cancel.is_cancelled() {
                return Err(ProvisionError::Cancelled);
            }
            let at = format!("{} of {total}", i + 1);
            match mv {
                Move::Roll { tier, hosts, new } => self.roll(t, tier, &hosts, &new, &at).await?,
                Move::AddMember(name) => self.add_member(t, &name, &at).await?,
                Move::RemoveMember(node) => self.remove_member(t, &node, &at).await?,
                Move::RemoveHost(node) => self.remove_host(t, &node, &at).await?,
            }
        }
        for step in ["etcd", "control plane", "workers"] {
            if self.board.snapshot().steps.iter().any(|s| s.name == step && s.state != StepState::Done) {
                self.board.set(step, StepState::Done, "every host runs its plan");
            }
        }
        Ok(true)
    }

    async fn save(&self, t: &mut Tracked) -> Result<(), ProvisionError> {
        let store = self.ctx.registration.store().clone();
        t.save(store.as_ref(), &self.ctx.sealer, self.cluster).await.map_err(ProvisionError::transient)
    }

    fn key(&self, name: &str) -> String {
        format!("{}:{name}", self.cluster.metadata.name)
    }

    fn desired_node(&self, name: &str) -> Result<&RkeNode, ProvisionError> {
        self.cfg
            .nodes
            .iter()
            .find(|n| node_name(n) == name)
            .ok_or_else(|| ProvisionError::permanent(format!("host {name} is not in the spec")))
    }

    /// Puts `name` into the state's current config (it may run something of the cluster's from now
    /// on) with its desired settings.
    fn track(&self, t: &mut Tracked, name: &str) -> Result<(), ProvisionError> {
        let node = self.desired_node(name)?.clone();
        let current = t.st.current_config.get_or_insert_with(RkeConfig::default);
        match current.nodes.iter_mut().find(|n| node_name(n) == name) {
            Some(n) => *n = node,
            None => current.nodes.push(node),
        }
        Ok(())
    }

    /// Forgets a host that is clean.
    fn forget(t: &mut Tracked, name: &str) {
        if let Some(c) = t.st.current_config.as_mut() {
            c.nodes.retain(|n| node_name(n) != name);
        }
        t.st.applied.remove(name);
        t.st.etcd_joins.remove(name);
        t.st.host_keys.remove(name);
    }

    async fn statuses(&self, names: &[String]) -> BTreeMap<String, Option<NodeStatus>> {
        let mut out = BTreeMap::new();
        for name in names {
            let status = node_plans::node_status(self.ctx.registration.tunnel(), &self.key(name)).await.ok();
            out.insert(name.clone(), status);
        }
        out
    }

    /// The etcd hosts of the current config and whether each one's etcd is healthy now.
    async fn etcd_health(&self, t: &Tracked) -> Vec<MemberHealth> {
        let names: Vec<String> =
            t.st.current_config
                .iter()
                .flat_map(|c| &c.nodes)
                .filter(|n| Tier::of(n) == Tier::Etcd)
                .map(node_name)
                .collect();
        let statuses = self.statuses(&names).await;
        names
            .into_iter()
            .map(|n| {
                let healthy = statuses
                    .get(&n)
                    .and_then(Option::as_ref)
                    .is_some_and(|s| s.processes.iter().any(|p| p.name == "etcd" && p.healthy));
                // A learner is promoted within its join: a member the rollout meets votes.
                MemberHealth { name: n, healthy, learner: false }
            })
            .collect()
    }

    /// Sends `hosts` their plans together and waits until every one of them runs it healthy;
    /// drains the hosts that had workloads first when the upgrade strategy says so.
    async fn roll(
        &self,
        t: &mut Tracked,
        tier: Tier,
        hosts: &[String],
        new: &[String],
        at: &str,
    ) -> Result<(), ProvisionError> {
        let step = tier.step();
        let names = hosts.join(", ");
        if tier == Tier::Etcd {
            // Stopped together: each counts as down for the next one's check.
            let mut members = self.etcd_health(t).await;
            for h in hosts {
                let Some(i) = members.iter().position(|m| m.name == *h) else { continue };
                etcd_api::may_stop(&members, h)
                    .map_err(|why| self.stopped(step, format!("rolling {names}: {why}")))?;
                members[i].healthy = false;
            }
        }
        for h in hosts {
            self.track(t, h)?;
        }
        self.save(t).await?;
        let drain = self.cfg.upgrade_strategy.as_ref().is_some_and(|s| s.drain);
        let drained: Vec<&String> =
            if drain { hosts.iter().filter(|h| !new.contains(h)).collect() } else { vec![] };
        if !drained.is_empty() {
            self.board.set(step, StepState::Running, format!("draining {} ({at})", join(&drained)));
            let client = self.client()?;
            for h in &drained {
                drain::drain(&client, h, DRAIN_DEADLINE)
                    .await
                    .map_err(|e| self.stopped(step, e.to_string()))?;
            }
        }
        let plans = (self.render)(&t.st)?;
        self.board.set(step, StepState::Running, format!("{names}: new plan ({at})"));
        self.send_and_wait(step, hosts, &plans).await?;
        if !drained.is_empty() {
            let client = self.client()?;
            for h in &drained {
                drain::cordon(&client, h, false).await.map_err(|e| self.stopped(step, e.to_string()))?;
            }
        }
        for h in hosts {
            t.st.applied.insert(h.clone(), plans[h].revision.clone());
        }
        self.save(t).await?;
        self.board.set(step, StepState::Running, format!("{names}: healthy ({at})"));
        Ok(())
    }

    /// Sends each of `hosts` its plan and waits until all run it healthy, or says where it stopped.
    async fn send_and_wait(
        &self,
        step: &str,
        hosts: &[String],
        plans: &BTreeMap<String, NodePlan>,
    ) -> Result<(), ProvisionError> {
        let mine: BTreeMap<String, NodePlan> =
            hosts.iter().filter_map(|h| Some((h.clone(), plans.get(h)?.clone()))).collect();
        for (name, plan) in &mine {
            node_plans::send_plan(self.ctx.registration.tunnel(), &self.key(name), plan)
                .await
                .map_err(|e| self.stopped(step, format!("host {name}: {e}")))?;
        }
        let deadline = Instant::now() + HOST_DEADLINE;
        let mut answered = Instant::now();
        loop {
            let statuses = self.statuses(hosts).await;
            // A host whose node agent stays silent is down (or cut off): no use waiting it out.
            let silent: Vec<&String> = statuses.iter().filter(|(_, s)| s.is_none()).map(|(n, _)| n).collect();
            if silent.is_empty() {
                answered = Instant::now();
            } else if answered.elapsed() >= AGENT_SILENCE {
                let why =
                    format!("host {}: its node agent has not answered for {AGENT_SILENCE:?}", join(&silent));
                return Err(self.stopped(step, why));
            }
            let healthy = mine.iter().all(|(n, p)| {
                statuses.get(n).and_then(Option::as_ref).is_some_and(|s| s.is_healthy(&p.revision))
            });
            if healthy {
                return Ok(());
            }
            if let Some(why) = health::crash_looping(&mine, &statuses) {
                return Err(self.stopped(step, why));
            }
            if Instant::now() >= deadline {
                let why = health::unhealthy(&mine, &statuses).unwrap_or_default();
                return Err(self.stopped(step, format!("not healthy after {HOST_DEADLINE:?}: {why}")));
            }
            tokio::select! {
                () = self.cancel.cancelled() => return Err(ProvisionError::Cancelled),
                () = tokio::time::sleep(POLL) => {}
            }
        }
    }

    /// Adds `name`'s etcd member through the member API of a healthy member, records how it joined,
    /// starts it, and promotes it to a voting member once it has caught up.
    async fn add_member(&self, t: &mut Tracked, name: &str, at: &str) -> Result<(), ProvisionError> {
        let step = Tier::Etcd.step();
        self.track(t, name)?;
        self.save(t).await?;
        self.board.set(step, StepState::Running, format!("{name}: joining etcd ({at})"));
        let members = self.etcd_health(t).await;
        let via = self.member_host(t, &members, name)?;
        let node = self.desired_node(name)?;
        let admin = membership::Admin::connect(self.ctx, &t.st, self.cfg, via, self.bastion)
            .await
            .map_err(|e| self.stopped(step, e.to_string()))?;
        let joined = admin.join(node).await.map_err(|e| self.stopped(step, e.to_string()))?;
        if t.st.etcd_joins.get(name) != Some(&joined.join) {
            t.st.etcd_joins.insert(name.to_owned(), joined.join.clone());
            self.save(t).await?;
        }
        let plans = (self.render)(&t.st)?;
        self.send_and_wait(step, &[name.to_owned()], &plans).await?;
        admin.promote(joined.id, HOST_DEADLINE).await.map_err(|e| self.stopped(step, e.to_string()))?;
        t.st.applied.insert(name.to_owned(), plans[name].revision.clone());
        self.save(t).await?;
        self.board.set(step, StepState::Running, format!("{name}: a voting member ({at})"));
        Ok(())
    }

    /// Takes `node`'s member out of etcd (when quorum allows), then stops and cleans the host.
    async fn remove_member(&self, t: &mut Tracked, node: &RkeNode, at: &str) -> Result<(), ProvisionError> {
        let step = Tier::Etcd.step();
        let name = node_name(node);
        let members = self.etcd_health(t).await;
        etcd_api::may_remove(&members, &name)
            .map_err(|why| self.stopped(step, format!("removing {name}: {why}")))?;
        self.board.set(step, StepState::Running, format!("{name}: leaving etcd ({at})"));
        let via = self.member_host(t, &members, &name)?;
        let admin = membership::Admin::connect(self.ctx, &t.st, self.cfg, via, self.bastion)
            .await
            .map_err(|e| self.stopped(step, e.to_string()))?;
        admin.leave(node).await.map_err(|e| self.stopped(step, e.to_string()))?;
        self.remove_host(t, node, at).await
    }

    /// Drains the host's Node (when the cluster can be reached and it has one), deletes it, then
    /// stops and cleans the host and forgets it.
    async fn remove_host(&self, t: &mut Tracked, node: &RkeNode, at: &str) -> Result<(), ProvisionError> {
        let step = "removing hosts";
        let name = node_name(node);
        // A host gone for good: nothing there to drain (its pods go with its Node) or to wait for.
        let abandoned = is_abandoned(&self.cluster.metadata.annotations, &name);
        let client = self.client()?;
        if !abandoned {
            self.board.set(step, StepState::Running, format!("{name}: draining ({at})"));
            drain::drain(&client, &name, DRAIN_DEADLINE)
                .await
                .map_err(|e| self.stopped(step, e.to_string()))?;
        }
        drain::delete_node(&client, &name).await.map_err(|e| self.stopped(step, e.to_string()))?;
        self.board.set(step, StepState::Running, format!("{name}: cleaning ({at})"));
        // The host is reached with the settings it was provisioned with.
        let current = t.st.current_config.clone().unwrap_or_default();
        match teardown_host(self.ctx, self.cluster, &current, node, t.st.host_keys.get(&name), self.bastion)
            .await
        {
            Ok(()) => {}
            Err(e) if abandoned => {
                tracing::warn!(cluster = %self.cluster.metadata.name, host = %name, error = %e, "host abandoned: what the provisioner put there stays");
            }
            Err(e) => return Err(self.stopped(step, format!("host {name}: {e}"))),
        }
        Self::forget(t, &name);
        self.save(t).await?;
        self.board.set(step, StepState::Done, format!("{name} removed"));
        Ok(())
    }

    /// A healthy etcd host other than `not` that runs its plan, to talk to etcd through.
    fn member_host<'t>(
        &self,
        t: &'t Tracked,
        members: &[MemberHealth],
        not: &str,
    ) -> Result<&'t RkeNode, ProvisionError> {
        let nodes = t.st.current_config.iter().flat_map(|c| &c.nodes);
        let mut healthy =
            members.iter().filter(|m| m.healthy && m.name != not && t.st.applied.contains_key(&m.name));
        healthy.find_map(|m| nodes.clone().find(|node| node_name(node) == m.name)).ok_or_else(|| {
            self.stopped(Tier::Etcd.step(), "no healthy etcd member to talk to etcd through".into())
        })
    }

    fn client(&self) -> Result<kube::Client, ProvisionError> {
        self.ctx
            .registration
            .cluster_client(&self.cluster.metadata.name)
            .map_err(|e| ProvisionError::transient(format!("the cluster's API: {e}")))
    }

    /// The rollout's error for a move that failed: the board's step shows it; retried with backoff.
    fn stopped(&self, step: &str, why: String) -> ProvisionError {
        self.board.set(step, StepState::Failed, why.clone());
        ProvisionError::transient(format!("the rollout stopped: {why}"))
    }
}

fn join(names: &[&String]) -> String {
    names.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
}
