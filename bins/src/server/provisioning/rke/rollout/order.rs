//! The order of a day-two rollout, worked out before anything is touched: from the hosts as
//! provisioned (the state's current config and applied plan revisions) to the hosts as desired (the
//! spec and the plans rendered from it).
//!
//! etcd goes first and one member at a time — members leaving, then members joining, then members
//! whose plan changed — so that quorum is never at stake for more than one member; then the control
//! plane `max_unavailable_controlplane` hosts at a time; then the workers `max_unavailable_worker`
//! at a time; hosts leaving that hold no etcd member go last, once the hosts staying run their new
//! plans (a control plane moves before the old one goes).

use std::collections::BTreeMap;

use rancher_core::model::{RkeConfig, RkeNode};
use rancher_provision::plan::NodePlan;
use rancher_provision::rke::{
    self, DEFAULT_MAX_UNAVAILABLE_CONTROLPLANE, DEFAULT_MAX_UNAVAILABLE_WORKER, max_unavailable, node_name,
};

/// Where a host sits in the rollout: by its most demanding role.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Tier {
    /// Holds an etcd member.
    Etcd,
    /// Runs the control plane (and no etcd member).
    ControlPlane,
    /// A worker only.
    Worker,
}

impl Tier {
    /// The tier of `node`.
    pub(crate) fn of(node: &RkeNode) -> Tier {
        let has = |r: &str| node.role.iter().any(|x| x == r);
        if has(rke::ROLE_ETCD) {
            Tier::Etcd
        } else if has(rke::ROLE_CONTROLPLANE) {
            Tier::ControlPlane
        } else {
            Tier::Worker
        }
    }

    /// The name of its step on the cluster's progress board.
    pub(crate) fn step(self) -> &'static str {
        match self {
            Tier::Etcd => "etcd",
            Tier::ControlPlane => "control plane",
            Tier::Worker => "workers",
        }
    }
}

/// One move of a rollout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Move {
    /// Take this etcd host's member out of the cluster, then stop and clean the host.
    RemoveMember(RkeNode),
    /// Add this host's member to the cluster through the member API, then start it.
    AddMember(String),
    /// Send these hosts their new plans together and wait until they all run them healthy.
    Roll {
        /// Their tier.
        tier: Tier,
        /// The hosts, by node name.
        hosts: Vec<String>,
        /// The hosts among them that are new (nothing to drain).
        new: Vec<String>,
    },
    /// Drain this host (when it has a Node), delete its Node, stop and clean it.
    RemoveHost(RkeNode),
}

/// Why a change cannot be rolled out.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum OrderError {
    /// A host's roles changed.
    #[error(
        "host {host}: its roles changed from {from:?} to {to:?}; a host's roles cannot change in place: \
         remove it from the cluster, then add it again"
    )]
    RolesChanged {
        /// The host.
        host: String,
        /// Its roles as provisioned.
        from: Vec<String>,
        /// Its roles as desired.
        to: Vec<String>,
    },
}

/// The moves from `current` (the config as provisioned, whose hosts each ran the plan revision in
/// `applied`) to `desired` (whose hosts get `plans`); empty when there is nothing to do.
pub(crate) fn moves(
    current: &RkeConfig,
    applied: &BTreeMap<String, String>,
    desired: &RkeConfig,
    plans: &BTreeMap<String, NodePlan>,
) -> Result<Vec<Move>, OrderError> {
    let before: BTreeMap<String, &RkeNode> = current.nodes.iter().map(|n| (node_name(n), n)).collect();
    let after: BTreeMap<String, &RkeNode> = desired.nodes.iter().map(|n| (node_name(n), n)).collect();
    for (name, node) in &after {
        if let Some(was) = before.get(name) {
            let (mut from, mut to) = (was.role.clone(), node.role.clone());
            from.sort();
            to.sort();
            if from != to {
                return Err(OrderError::RolesChanged { host: name.clone(), from, to });
            }
        }
    }
    let leaving: Vec<&RkeNode> =
        current.nodes.iter().filter(|n| !after.contains_key(&node_name(n))).collect();
    // A host joins until it first ran a plan healthy (a join cut short is taken up again); it
    // changes when it runs another plan than its own.
    let joining = |name: &String| !applied.contains_key(name);
    let changed = |name: &String| {
        applied.get(name).is_some_and(|rev| plans.get(name).is_some_and(|p| &p.revision != rev))
    };

    let mut out = Vec::new();
    // etcd: leaving, joining, changed — one member at a time.
    for n in leaving.iter().filter(|n| Tier::of(n) == Tier::Etcd) {
        out.push(Move::RemoveMember((*n).clone()));
    }
    let in_tier = |tier: Tier| desired.nodes.iter().filter(move |n| Tier::of(n) == tier).map(node_name);
    for name in in_tier(Tier::Etcd).filter(|n| joining(n)) {
        out.push(Move::AddMember(name));
    }
    for name in in_tier(Tier::Etcd).filter(|n| changed(n)) {
        out.push(Move::Roll { tier: Tier::Etcd, hosts: vec![name], new: vec![] });
    }
    // The control plane, then the workers, in batches; new hosts ride along with the first batch.
    let strategy = desired.upgrade_strategy.clone().unwrap_or_default();
    for (tier, value, default) in [
        (Tier::ControlPlane, &strategy.max_unavailable_controlplane, DEFAULT_MAX_UNAVAILABLE_CONTROLPLANE),
        (Tier::Worker, &strategy.max_unavailable_worker, DEFAULT_MAX_UNAVAILABLE_WORKER),
    ] {
        let all: Vec<String> = in_tier(tier).collect();
        let new: Vec<String> = all.iter().filter(|n| joining(n)).cloned().collect();
        let rolling: Vec<String> = all.iter().filter(|n| changed(n)).cloned().collect();
        let batch = max_unavailable(value, default, all.len());
        let mut batches: Vec<Vec<String>> = rolling.chunks(batch).map(<[String]>::to_vec).collect();
        if !new.is_empty() {
            match batches.first_mut() {
                Some(first) => first.extend(new.iter().cloned()),
                None => batches.push(new.clone()),
            }
        }
        for hosts in batches {
            let new = hosts.iter().filter(|h| new.contains(h)).cloned().collect();
            out.push(Move::Roll { tier, hosts, new });
        }
    }
    for n in leaving.iter().filter(|n| Tier::of(n) != Tier::Etcd) {
        out.push(Move::RemoveHost((*n).clone()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, roles: &[&str]) -> RkeNode {
        RkeNode {
            address: format!("10.0.0.{}", name.trim_start_matches(char::is_alphabetic)),
            hostname_override: name.into(),
            role: roles.iter().map(|r| (*r).to_owned()).collect(),
            ..Default::default()
        }
    }

    fn config(nodes: &[(&str, &[&str])]) -> RkeConfig {
        RkeConfig { nodes: nodes.iter().map(|(n, r)| node(n, r)).collect(), ..Default::default() }
    }

    fn plans(cfg: &RkeConfig, revision: &str) -> BTreeMap<String, NodePlan> {
        cfg.nodes
            .iter()
            .map(|n| (node_name(n), NodePlan { revision: revision.into(), ..Default::default() }))
            .collect()
    }

    const E: &[&str] = &["etcd"];
    const C: &[&str] = &["controlplane"];
    const W: &[&str] = &["worker"];

    fn three_two_two() -> RkeConfig {
        config(&[("n1", E), ("n2", E), ("n3", E), ("n4", C), ("n5", C), ("n6", W), ("n7", W)])
    }

    fn roll(tier: Tier, hosts: &[&str], new: &[&str]) -> Move {
        let v = |s: &[&str]| s.iter().map(|h| (*h).to_owned()).collect();
        Move::Roll { tier, hosts: v(hosts), new: v(new) }
    }

    #[test]
    fn nothing_changed_means_no_moves() {
        let c = three_two_two();
        let applied = plans(&c, "r1").into_iter().map(|(n, p)| (n, p.revision)).collect();
        assert_eq!(moves(&c, &applied, &c, &plans(&c, "r1")).unwrap(), []);
    }

    #[test]
    fn an_upgrade_goes_etcd_one_by_one_then_the_control_plane_then_the_workers() {
        let c = three_two_two();
        let applied = plans(&c, "r1").into_iter().map(|(n, p)| (n, p.revision)).collect();
        let got = moves(&c, &applied, &c, &plans(&c, "r2")).unwrap();
        assert_eq!(
            got,
            [
                roll(Tier::Etcd, &["n1"], &[]),
                roll(Tier::Etcd, &["n2"], &[]),
                roll(Tier::Etcd, &["n3"], &[]),
                roll(Tier::ControlPlane, &["n4"], &[]),
                roll(Tier::ControlPlane, &["n5"], &[]),
                // 10 % of 2 workers rounds down to 0: at least one.
                roll(Tier::Worker, &["n6"], &[]),
                roll(Tier::Worker, &["n7"], &[]),
            ]
        );
        // The strategy sets the batch sizes.
        let mut wide = c.clone();
        wide.upgrade_strategy = Some(rancher_core::model::RkeUpgradeStrategy {
            max_unavailable_worker: "100%".into(),
            max_unavailable_controlplane: "2".into(),
            drain: false,
        });
        let got = moves(&c, &applied, &wide, &plans(&c, "r2")).unwrap();
        assert_eq!(
            got[3..],
            [roll(Tier::ControlPlane, &["n4", "n5"], &[]), roll(Tier::Worker, &["n6", "n7"], &[])]
        );
    }

    #[test]
    fn members_leave_before_members_join_and_other_hosts_leave_last() {
        let c = three_two_two();
        let applied: BTreeMap<String, String> =
            plans(&c, "r1").into_iter().map(|(n, p)| (n, p.revision)).collect();
        // n3 (etcd) and n7 (worker) go; n8 (etcd) and n9 (worker) come; the API servers' plans
        // change (their --etcd-servers), the staying workers' do not.
        let mut d = config(&[("n1", E), ("n2", E), ("n8", E), ("n4", C), ("n5", C), ("n6", W), ("n9", W)]);
        d.upgrade_strategy = None;
        let mut p = plans(&d, "r1");
        for h in ["n4", "n5", "n8", "n9"] {
            p.get_mut(h).unwrap().revision = "r2".into();
        }
        let got = moves(&c, &applied, &d, &p).unwrap();
        assert_eq!(
            got,
            [
                Move::RemoveMember(node("n3", E)),
                Move::AddMember("n8".into()),
                roll(Tier::ControlPlane, &["n4"], &[]),
                roll(Tier::ControlPlane, &["n5"], &[]),
                roll(Tier::Worker, &["n9"], &["n9"]),
                Move::RemoveHost(node("n7", W)),
            ]
        );
    }

    #[test]
    fn a_host_whose_roles_changed_is_refused_with_what_to_do() {
        let c = three_two_two();
        let mut d = c.clone();
        d.nodes[5].role = vec!["worker".into(), "controlplane".into()];
        let e = moves(&c, &BTreeMap::new(), &d, &plans(&d, "r1")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "host n6: its roles changed from [\"worker\"] to [\"controlplane\", \"worker\"]; a host's roles \
             cannot change in place: remove it from the cluster, then add it again"
        );
    }
}
