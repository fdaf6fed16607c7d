//! Restoring a built cluster's etcd from one of its snapshots, as the run carries it out once per
//! `rkeConfig.restore.requested_at`: every host gets its plan without etcd, the control plane and
//! the cluster agent, and once they stopped every member is restored from the same snapshot; the
//! members then start as a new cluster of all of them with the full plans, and once every host is
//! healthy the data set aside is removed. Each phase is saved before the next begins, so a run cut
//! short resumes where it stopped (the API is down from the first phase to the last: the restore's
//! declared downtime).

use std::collections::BTreeMap;
use std::time::Duration;

use rancher_core::model::{RkeConfig, RkeRestore};
use rancher_provision::ProvisionError;
use rancher_provision::bundle::Bundle;
use rancher_provision::plan::{NodePlan, NodeStatus};
use rancher_provision::rke::node_name;
use rancher_provision::rke_plans::{self, EtcdJoin};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::time::Instant;

use super::health;
use super::rollout::Rollout;
use super::snapshots::{self, SnapshotsError};
use super::state::{RkeState, Tracked};
use crate::server::provisioning::node_plans;

/// The processes a restore stops: etcd, the control plane, and the cluster agent (which would only
/// fail against a stopped API server).
const STOPPED: [&str; 5] =
    ["etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "cluster-agent"];
/// How long the hosts have to stop those processes, and then to run the full plans healthy.
const DEADLINE: Duration = Duration::from_secs(600);
/// How often the hosts are asked how they are.
const POLL: Duration = Duration::from_secs(1);

/// Where a restore is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) enum RestorePhase {
    /// etcd and the control plane are being stopped, then every member restored.
    Stopping,
    /// Every member holds the snapshot's data; the hosts are being brought back.
    Restored,
    /// The cluster runs on the restored data.
    Done,
}

/// The restore the state records: the request it carries out and how far it got.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RestoreProgress {
    /// The request's `requested_at`.
    pub(crate) requested_at: String,
    /// The snapshot restored.
    pub(crate) snapshot: String,
    /// How far it got.
    pub(crate) phase: RestorePhase,
}

/// Whether a restore is under way (the cluster's etcd is or may be stopped).
pub(crate) fn under_way(st: &RkeState) -> bool {
    st.restore.as_ref().is_some_and(|p| p.phase != RestorePhase::Done)
}

/// What the run does next about restores.
#[derive(Debug, PartialEq, Eq)]
enum Next {
    /// Nothing asked, or done.
    Nothing,
    /// Stop the hosts and restore every member from this request's snapshot (again, when a run
    /// was cut short while stopping).
    Restore(RkeRestore),
    /// Bring the hosts back with their full plans (after a restore, or when a restore that had
    /// not restored anything yet was withdrawn).
    BringBack,
}

fn next(progress: Option<&RestoreProgress>, request: Option<&RkeRestore>) -> Next {
    let request = request.filter(|r| r.restore);
    match (progress, request) {
        (Some(p), _) if p.phase == RestorePhase::Restored => Next::BringBack,
        (Some(p), Some(r)) if p.requested_at == r.requested_at && p.phase == RestorePhase::Done => {
            Next::Nothing
        }
        (_, Some(r)) => Next::Restore(r.clone()),
        (Some(p), None) if p.phase == RestorePhase::Stopping => Next::BringBack,
        (_, None) => Next::Nothing,
    }
}

/// Carries out the restore `r.cfg.restore` asks for, or finishes one under way; nothing when there
/// is none. Called by the run before it rolls anything else.
///
/// # Errors
/// [`ProvisionError::Permanent`] for a snapshot the state does not have, a bundle without
/// `etcdctl`, or a restore asked together with a change of the hosts; transient ones when a host
/// does not stop or come back in time, or the restore itself fails on a host.
pub(super) async fn carry_out(
    r: &Rollout<'_>,
    bundle: &Bundle,
    t: &mut Tracked,
) -> Result<(), ProvisionError> {
    loop {
        match next(t.st.restore.as_ref(), r.cfg.restore.as_ref()) {
            Next::Nothing => return Ok(()),
            Next::Restore(request) => {
                let Some(current) = t.st.current_config.clone() else {
                    // Nothing provisioned, nothing to restore: the request is spent.
                    tracing::warn!(cluster = %r.cluster.metadata.name, "a restore of a cluster never provisioned is ignored");
                    t.st.restore = Some(RestoreProgress {
                        requested_at: request.requested_at.clone(),
                        snapshot: request.snapshot_name.clone(),
                        phase: RestorePhase::Done,
                    });
                    return Ok(());
                };
                restore(r, bundle, t, &current, &request).await?;
            }
            Next::BringBack => bring_back(r, t).await?,
        }
    }
}

/// Stops etcd and the control plane on every host, restores every member, records the members'
/// joins as a new cluster; saved as [`RestorePhase::Restored`].
async fn restore(
    r: &Rollout<'_>,
    bundle: &Bundle,
    t: &mut Tracked,
    current: &RkeConfig,
    request: &RkeRestore,
) -> Result<(), ProvisionError> {
    let cluster = r.cluster.metadata.name.as_str();
    let name = request.snapshot_name.as_str();
    if !t.st.snapshots.iter().any(|s| s.name == name) {
        return Err(ProvisionError::permanent(SnapshotsError::UnknownSnapshot {
            cluster: cluster.to_owned(),
            name: name.to_owned(),
        }));
    }
    if !bundle.components.contains_key("etcdctl") {
        return Err(ProvisionError::permanent(SnapshotsError::NoEtcdctl { version: bundle.version.clone() }));
    }
    same_hosts(current, r.cfg)?;
    t.st.restore = Some(RestoreProgress {
        requested_at: request.requested_at.clone(),
        snapshot: name.to_owned(),
        phase: RestorePhase::Stopping,
    });
    save(r, t).await?;

    r.board.say(format!("restoring etcd from {name}: stopping etcd and the control plane on every host"));
    let plans = stopped_plans(&(r.render)(&t.st)?)?;
    send(r, &plans).await?;
    for (host, plan) in &plans {
        t.st.applied.insert(host.clone(), plan.revision.clone());
    }
    save(r, t).await?;
    wait(r, &plans, "stopping etcd and the control plane", |s, plan| {
        s.applied_revision == plan.revision && s.error.is_none()
    })
    .await?;

    r.board.say(format!("restoring etcd from {name}: restoring every member"));
    let scratch = super::backups::scratch_dir(cluster).map_err(ProvisionError::transient)?;
    let mut tries = 0;
    let report = loop {
        match snapshots::restore(&r.ctx.sealer, cluster, &t.st, bundle, name, &scratch).await {
            Ok(report) => break report,
            // The node agent reported the plan applied; etcd may take a moment to let go of its port.
            Err(SnapshotsError::Snapshot(
                rancher_provision::etcd_snapshots::SnapshotError::StillRunning { .. },
            )) if tries < 10 => {
                tries += 1;
                sleep_or_cancel(r, Duration::from_secs(1)).await?;
            }
            Err(e) if e.is_transient() => return Err(ProvisionError::transient(e)),
            Err(e) => return Err(ProvisionError::permanent(e)),
        }
    };
    tracing::info!(cluster, snapshot = name, copied_to = ?report.copied_to, "etcd restored from the snapshot");

    // The restored members form a new cluster of all of them (what `etcdctl snapshot restore` wrote
    // into their data); their flags say so from now on.
    let initial = rke_plans::etcd_initial_cluster(current).map_err(ProvisionError::permanent)?;
    for node in current.nodes.iter().filter(|n| n.role.iter().any(|x| x == "etcd")) {
        t.st.etcd_joins
            .insert(node_name(node), EtcdJoin { initial_cluster: initial.clone(), existing: false });
    }
    if let Some(p) = t.st.restore.as_mut() {
        p.phase = RestorePhase::Restored;
    }
    save(r, t).await
}

/// Sends every host its full plan, waits until every one runs it healthy, removes the data the
/// restore set aside; saved as [`RestorePhase::Done`].
async fn bring_back(r: &Rollout<'_>, t: &mut Tracked) -> Result<(), ProvisionError> {
    let cluster = r.cluster.metadata.name.as_str();
    r.board.say("restoring etcd: starting etcd and the control plane again");
    let plans = (r.render)(&t.st)?;
    let hosts: Vec<String> = t.st.current_config.iter().flat_map(|c| &c.nodes).map(node_name).collect();
    let plans: BTreeMap<String, NodePlan> = plans.into_iter().filter(|(n, _)| hosts.contains(n)).collect();
    send(r, &plans).await?;
    wait(r, &plans, "starting etcd and the control plane", |s, plan| s.is_healthy(&plan.revision)).await?;
    for (host, plan) in &plans {
        t.st.applied.insert(host.clone(), plan.revision.clone());
    }
    match snapshots::cleanup_restore(&r.ctx.sealer, cluster, &t.st).await {
        Ok(failed) => {
            for (node, why) in failed {
                tracing::warn!(cluster, node = %node, why = %why, "the etcd data set aside by the restore stays on the host");
            }
        }
        Err(e) => {
            tracing::warn!(cluster, error = %e, "the etcd data set aside by the restore stays on the hosts")
        }
    }
    if let Some(p) = t.st.restore.as_mut() {
        p.phase = RestorePhase::Done;
    }
    save(r, t).await?;
    r.board.say("etcd restored; every host runs its plan");
    Ok(())
}

/// A restore works on the hosts as provisioned; a change of the hosts waits for another run.
fn same_hosts(current: &RkeConfig, desired: &RkeConfig) -> Result<(), ProvisionError> {
    let hosts = |c: &RkeConfig| {
        let mut v: Vec<(String, Vec<String>)> =
            c.nodes.iter().map(|n| (node_name(n), n.role.clone())).collect();
        v.sort();
        v
    };
    if hosts(current) != hosts(desired) {
        return Err(ProvisionError::permanent(
            "a restore cannot be carried out together with a change of the hosts or their roles: \
             restore with the hosts as provisioned, then change them",
        ));
    }
    Ok(())
}

/// Each plan without etcd, the control plane and the cluster agent, with its new revision.
fn stopped_plans(plans: &BTreeMap<String, NodePlan>) -> Result<BTreeMap<String, NodePlan>, ProvisionError> {
    plans
        .iter()
        .map(|(host, plan)| {
            let mut p = NodePlan {
                revision: String::new(),
                files: plan.files.clone(),
                processes: plan
                    .processes
                    .iter()
                    .filter(|x| !STOPPED.contains(&x.name.as_str()))
                    .cloned()
                    .collect(),
            };
            let json = serde_json::to_vec(&p).map_err(ProvisionError::permanent)?;
            p.revision = hex::encode(Sha256::digest(&json));
            Ok((host.clone(), p))
        })
        .collect()
}

async fn send(r: &Rollout<'_>, plans: &BTreeMap<String, NodePlan>) -> Result<(), ProvisionError> {
    for (name, plan) in plans {
        node_plans::send_plan(r.ctx.registration.tunnel(), &key(r, name), plan)
            .await
            .map_err(|e| ProvisionError::transient(format!("restore: host {name}: {e}")))?;
    }
    Ok(())
}

/// Waits until `ok` holds for every host, failing after [`DEADLINE`] or when a process keeps dying.
async fn wait(
    r: &Rollout<'_>,
    plans: &BTreeMap<String, NodePlan>,
    what: &str,
    ok: impl Fn(&NodeStatus, &NodePlan) -> bool,
) -> Result<(), ProvisionError> {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let mut statuses = BTreeMap::new();
        for name in plans.keys() {
            let status = node_plans::node_status(r.ctx.registration.tunnel(), &key(r, name)).await.ok();
            statuses.insert(name.clone(), status);
        }
        let done =
            plans.iter().all(|(n, p)| statuses.get(n).and_then(Option::as_ref).is_some_and(|s| ok(s, p)));
        if done {
            return Ok(());
        }
        if let Some(why) = health::crash_looping(plans, &statuses) {
            return Err(ProvisionError::transient(format!("restore: {what}: {why}")));
        }
        if Instant::now() >= deadline {
            let why = health::unhealthy(plans, &statuses).unwrap_or_default();
            return Err(ProvisionError::transient(format!(
                "restore: {what}: not done after {DEADLINE:?}: {why}"
            )));
        }
        sleep_or_cancel(r, POLL).await?;
    }
}

fn key(r: &Rollout<'_>, name: &str) -> String {
    format!("{}:{name}", r.cluster.metadata.name)
}

async fn save(r: &Rollout<'_>, t: &mut Tracked) -> Result<(), ProvisionError> {
    let store = r.ctx.registration.store().clone();
    t.save(store.as_ref(), &r.ctx.sealer, r.cluster).await.map_err(ProvisionError::transient)
}

async fn sleep_or_cancel(r: &Rollout<'_>, d: Duration) -> Result<(), ProvisionError> {
    tokio::select! {
        () = r.cancel.cancelled() => Err(ProvisionError::Cancelled),
        () = tokio::time::sleep(d) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use rancher_provision::plan::PlanProcess;

    use super::*;

    fn request(at: &str) -> RkeRestore {
        RkeRestore { restore: true, snapshot_name: "c1-manual-1".into(), requested_at: at.into() }
    }

    fn progress(at: &str, phase: RestorePhase) -> RestoreProgress {
        RestoreProgress { requested_at: at.into(), snapshot: "c1-manual-1".into(), phase }
    }

    #[test]
    fn each_request_is_carried_out_once_and_a_cut_short_one_resumes() {
        use RestorePhase::*;
        let (a, b) = ("2026-12-03T10:00:00Z", "2026-12-03T11:00:00Z");
        assert_eq!(next(None, None), Next::Nothing);
        assert_eq!(next(None, Some(&request(a))), Next::Restore(request(a)));
        let off = RkeRestore { restore: false, ..request(a) };
        assert_eq!(next(None, Some(&off)), Next::Nothing, "restore: false asks nothing");
        // Cut short while stopping: restored again (the same snapshot; the data set aside twice).
        assert_eq!(next(Some(&progress(a, Stopping)), Some(&request(a))), Next::Restore(request(a)));
        // Restored: brought back whatever the spec says now.
        assert_eq!(next(Some(&progress(a, Restored)), Some(&request(a))), Next::BringBack);
        assert_eq!(next(Some(&progress(a, Restored)), Some(&request(b))), Next::BringBack);
        assert_eq!(next(Some(&progress(a, Restored)), None), Next::BringBack);
        // Done: not again; a new request (a new time) is.
        assert_eq!(next(Some(&progress(a, Done)), Some(&request(a))), Next::Nothing);
        assert_eq!(next(Some(&progress(a, Done)), Some(&request(b))), Next::Restore(request(b)));
        assert_eq!(next(Some(&progress(a, Done)), None), Next::Nothing);
        // Withdrawn while stopping: the hosts come back with the data they had.
        assert_eq!(next(Some(&progress(a, Stopping)), None), Next::BringBack);
        assert_eq!(next(Some(&progress(a, Stopping)), Some(&request(b))), Next::Restore(request(b)));
        let st = RkeState { restore: Some(progress(a, Stopping)), ..Default::default() };
        assert!(under_way(&st));
        assert!(!under_way(&RkeState { restore: Some(progress(a, Done)), ..Default::default() }));
    }

    #[test]
    fn the_stopped_plan_keeps_the_kubelet_and_the_files_and_has_its_own_revision() {
        let process = |name: &str| PlanProcess {
            name: name.into(),
            binary: format!("/opt/{name}"),
            ..Default::default()
        };
        let full = NodePlan {
            revision: "r1".into(),
            files: vec![],
            processes: [
                "etcd",
                "kube-apiserver",
                "kube-controller-manager",
                "kube-scheduler",
                "kubelet",
                "cluster-agent",
            ]
            .map(process)
            .to_vec(),
        };
        let stopped = stopped_plans(&BTreeMap::from([("cp1".to_owned(), full)])).unwrap();
        let p = &stopped["cp1"];
        assert_eq!(p.processes.iter().map(|x| x.name.as_str()).collect::<Vec<_>>(), ["kubelet"]);
        let mut bare = p.clone();
        bare.revision.clear();
        assert_eq!(p.revision, hex::encode(Sha256::digest(serde_json::to_vec(&bare).unwrap())));
    }

    #[test]
    fn a_restore_refuses_a_change_of_the_hosts() {
        use rancher_core::model::RkeNode;
        let node = |a: &str, roles: &[&str]| RkeNode {
            address: a.into(),
            role: roles.iter().map(|r| (*r).to_owned()).collect(),
            ..Default::default()
        };
        let current =
            RkeConfig { nodes: vec![node("n1", &["etcd"]), node("n2", &["worker"])], ..Default::default() };
        let reordered =
            RkeConfig { nodes: vec![node("n2", &["worker"]), node("n1", &["etcd"])], ..Default::default() };
        same_hosts(&current, &reordered).unwrap();
        let grown = RkeConfig {
            nodes: vec![node("n1", &["etcd"]), node("n2", &["worker", "etcd"])],
            ..Default::default()
        };
        let err = same_hosts(&current, &grown).unwrap_err().to_string();
        assert!(err.contains("together with a change of the hosts"), "{err}");
    }
}
