//! etcd membership of a cluster built on hosts: whether quorum allows a member to stop or leave, and
//! the member API calls that add a host's member (as a learner, promoted once it caught up) or take
//! one out — through a healthy member, reached over SSH.

use std::time::Duration;

use rancher_core::model::{RkeConfig, RkeNode};
use rancher_provision::rke_plans::EtcdJoin;
use rancher_provision::ssh::SshTarget;

use super::run::RunCtx;
use super::state::RkeState;

/// The votes etcd needs out of `members`.
fn quorum(members: usize) -> usize {
    members / 2 + 1
}

/// Whether the etcd members (name, healthy now) keep quorum while `stopping` are down.
///
/// # Errors
/// Why not: `stopping node2 would leave 1 of 3 etcd members healthy; etcd needs 2 for quorum`.
pub(super) fn may_stop(members: &[(String, bool)], stopping: &[String]) -> Result<(), String> {
    let healthy = members.iter().filter(|(n, ok)| *ok && !stopping.contains(n)).count();
    let need = quorum(members.len());
    if healthy < need {
        return Err(format!(
            "stopping {} would leave {healthy} of {} etcd members healthy; etcd needs {need} for quorum",
            stopping.join(", "),
            members.len()
        ));
    }
    Ok(())
}

/// Whether quorum holds once `leaving` is taken out of the etcd members (name, healthy now).
///
/// # Errors
/// Why not: the last member, or too few healthy members left.
pub(super) fn may_remove(members: &[(String, bool)], leaving: &str) -> Result<(), String> {
    let after = members.iter().filter(|(n, _)| n != leaving).count();
    if after == 0 {
        return Err(format!("{leaving} is the cluster's last etcd member"));
    }
    let healthy = members.iter().filter(|(n, ok)| *ok && n != leaving).count();
    let need = quorum(after);
    if healthy < need {
        return Err(format!(
            "removing it would leave {healthy} of {after} etcd members healthy; etcd needs {need} for quorum"
        ));
    }
    Ok(())
}

/// A member that joined: its id and the flags it starts with.
pub(super) struct Joined {
    /// Its member id.
    pub(super) id: u64,
    /// Its `--initial-cluster` flags.
    pub(super) join: EtcdJoin,
}

/// Why a member API call failed.
#[derive(Debug, thiserror::Error)]
pub(super) enum MemberError {
    /// Not built yet.
    #[error("not implemented: {0}")]
    NotImplemented(&'static str),
}

/// The member API of a cluster's etcd, through one of its members.
pub(super) struct Admin {
    _private: (),
}

impl Admin {
    /// Connects to the etcd member on `via`, with the cluster's etcd client certificate.
    pub(super) async fn connect(
        _ctx: &RunCtx,
        _st: &RkeState,
        _cfg: &RkeConfig,
        _via: &RkeNode,
        _bastion: Option<&SshTarget>,
    ) -> Result<Admin, MemberError> {
        Err(MemberError::NotImplemented("the etcd member API client"))
    }

    /// Adds `node`'s member as a learner unless it is a member already (a join cut short).
    pub(super) async fn join(&self, _node: &RkeNode) -> Result<Joined, MemberError> {
        Err(MemberError::NotImplemented("etcd member add"))
    }

    /// Promotes the learner `id` once it has caught up (retried until `within` has passed).
    pub(super) async fn promote(&self, _id: u64, _within: Duration) -> Result<(), MemberError> {
        Err(MemberError::NotImplemented("etcd member promote"))
    }

    /// Takes `node`'s member out (nothing to do when it is not a member).
    pub(super) async fn leave(&self, _node: &RkeNode) -> Result<(), MemberError> {
        Err(MemberError::NotImplemented("etcd member remove"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(health: &[(&str, bool)]) -> Vec<(String, bool)> {
        health.iter().map(|(n, ok)| ((*n).to_owned(), *ok)).collect()
    }

    #[test]
    fn one_member_of_three_may_stop_or_leave_but_not_when_another_is_down() {
        let all = members(&[("n1", true), ("n2", true), ("n3", true)]);
        assert_eq!(may_stop(&all, &["n2".into()]), Ok(()));
        assert_eq!(may_remove(&all, "n2"), Ok(()));
        let one_down = members(&[("n1", true), ("n2", true), ("n3", false)]);
        assert_eq!(
            may_stop(&one_down, &["n2".into()]).unwrap_err(),
            "stopping n2 would leave 1 of 3 etcd members healthy; etcd needs 2 for quorum"
        );
        assert_eq!(
            may_remove(&one_down, "n2").unwrap_err(),
            "removing it would leave 1 of 2 etcd members healthy; etcd needs 2 for quorum"
        );
        // The dead member itself may go: two healthy of two.
        assert_eq!(may_remove(&one_down, "n3"), Ok(()));
        assert_eq!(
            may_remove(&members(&[("n1", true)]), "n1").unwrap_err(),
            "n1 is the cluster's last etcd member"
        );
    }
}
