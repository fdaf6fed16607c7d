//! Whether a member may go (removed from the cluster, or its process stopped) without etcd losing
//! quorum: a pure check on the members and which of them are healthy, with a refusal that says
//! why.

/// One member as the quorum check sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberHealth {
    /// Its name (the node's).
    pub name: String,
    /// Whether it answers as healthy.
    pub healthy: bool,
    /// A learner does not vote, so it neither counts towards quorum nor needs it.
    pub learner: bool,
}

/// Why a member may not go.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum QuorumError {
    /// No member of that name.
    #[error("{0} is not an etcd member")]
    NotAMember(String),
    /// It is the last voting member.
    #[error("{0} is the last etcd member: etcd cannot remove it (delete the cluster instead)")]
    LastMember(String),
    /// The cluster already lacks quorum: no membership change can be committed.
    #[error("etcd has no quorum: {healthy} of {voters} members healthy, {needed} needed")]
    NoQuorum {
        /// Healthy voting members.
        healthy: usize,
        /// Voting members.
        voters: usize,
        /// The quorum.
        needed: usize,
    },
    /// Going would leave fewer healthy voting members than the quorum.
    #[error(
        "{verb} {name} would leave {healthy} of {voters} etcd members healthy; etcd needs {needed} for quorum"
    )]
    WouldLoseQuorum {
        /// `removing` or `stopping`.
        verb: &'static str,
        /// The member.
        name: String,
        /// Healthy voting members after.
        healthy: usize,
        /// Voting members after.
        voters: usize,
        /// The quorum after.
        needed: usize,
    },
}

fn quorum(voters: usize) -> usize {
    voters / 2 + 1
}

fn find<'a>(members: &'a [MemberHealth], name: &str) -> Result<&'a MemberHealth, QuorumError> {
    members.iter().find(|m| m.name == name).ok_or_else(|| QuorumError::NotAMember(name.to_owned()))
}

fn counts(members: &[MemberHealth]) -> (usize, usize) {
    let voters = members.iter().filter(|m| !m.learner).count();
    let healthy = members.iter().filter(|m| !m.learner && m.healthy).count();
    (voters, healthy)
}

/// Whether `name` may be removed from the cluster (`member remove`): the cluster must have quorum
/// now (to commit the change) and still have it after, with one voting member fewer.
///
/// # Errors
/// [`QuorumError`] saying why not, e.g. `removing node2 would leave 1 of 2 etcd members healthy;
/// etcd needs 2 for quorum`.
pub fn may_remove(members: &[MemberHealth], name: &str) -> Result<(), QuorumError> {
    let member = find(members, name)?;
    let (voters, healthy) = counts(members);
    if healthy < quorum(voters) {
        return Err(QuorumError::NoQuorum { healthy, voters, needed: quorum(voters) });
    }
    if member.learner {
        return Ok(());
    }
    if voters == 1 {
        return Err(QuorumError::LastMember(name.to_owned()));
    }
    let (voters_after, healthy_after) = (voters - 1, healthy - usize::from(member.healthy));
    if healthy_after < quorum(voters_after) {
        return Err(QuorumError::WouldLoseQuorum {
            verb: "removing",
            name: name.to_owned(),
            healthy: healthy_after,
            voters: voters_after,
            needed: quorum(voters_after),
        });
    }
    Ok(())
}

/// Whether `name`'s process may be stopped (for a restart, an upgrade) while staying a member: the
/// other healthy voting members must make a quorum on their own. A cluster of one or two voting
/// members has none to spare, so any restart of one of them loses quorum for its length: that is
/// the topology's downtime, allowed while every other member is healthy. A member already unhealthy
/// may always stop.
///
/// # Errors
/// [`QuorumError`] saying why not, e.g. `stopping node2 would leave 1 of 3 etcd members healthy;
/// etcd needs 2 for quorum`.
pub fn may_stop(members: &[MemberHealth], name: &str) -> Result<(), QuorumError> {
    let member = find(members, name)?;
    let (voters, healthy) = counts(members);
    if member.learner || !member.healthy || (voters <= 2 && healthy == voters) {
        return Ok(());
    }
    let healthy_after = healthy - 1;
    if healthy_after < quorum(voters) {
        return Err(QuorumError::WouldLoseQuorum {
            verb: "stopping",
            name: name.to_owned(),
            healthy: healthy_after,
            voters,
            needed: quorum(voters),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(spec: &[(&str, bool, bool)]) -> Vec<MemberHealth> {
        spec.iter()
            .map(|(n, healthy, learner)| MemberHealth {
                name: (*n).into(),
                healthy: *healthy,
                learner: *learner,
            })
            .collect()
    }

    #[test]
    fn removing_a_healthy_member_of_a_degraded_three_is_refused_with_the_numbers() {
        let m = members(&[("node1", true, false), ("node2", true, false), ("node3", false, false)]);
        let err = may_remove(&m, "node2").unwrap_err();
        assert_eq!(
            err.to_string(),
            "removing node2 would leave 1 of 2 etcd members healthy; etcd needs 2 for quorum"
        );
        // The dead one may go: two healthy of two.
        may_remove(&m, "node3").unwrap();
        let err = may_stop(&m, "node2").unwrap_err();
        assert_eq!(
            err.to_string(),
            "stopping node2 would leave 1 of 3 etcd members healthy; etcd needs 2 for quorum"
        );
        may_stop(&m, "node3").unwrap();
    }

    #[test]
    fn healthy_clusters_may_lose_one_and_learners_never_count() {
        let three = members(&[("a", true, false), ("b", true, false), ("c", true, false)]);
        may_remove(&three, "a").unwrap();
        may_stop(&three, "a").unwrap();
        let two = members(&[("a", true, false), ("b", true, false)]);
        may_remove(&two, "a").unwrap();
        // Two members have none to spare: a restart is their downtime, allowed while both are
        // healthy; not while the other is down.
        may_stop(&two, "a").unwrap();
        let degraded = members(&[("a", true, false), ("b", false, false)]);
        assert!(matches!(may_stop(&degraded, "a"), Err(QuorumError::WouldLoseQuorum { needed: 2, .. })));
        may_stop(&members(&[("a", true, false)]), "a").unwrap();
        let with_learner = members(&[("a", true, false), ("l", false, true)]);
        may_remove(&with_learner, "l").unwrap();
        may_stop(&with_learner, "a").unwrap();
        assert_eq!(may_remove(&with_learner, "a").unwrap_err(), QuorumError::LastMember("a".into()));
    }

    #[test]
    fn without_quorum_nothing_is_removed_and_unknown_names_are_named() {
        let m = members(&[("a", true, false), ("b", false, false), ("c", false, false)]);
        assert_eq!(
            may_remove(&m, "c").unwrap_err().to_string(),
            "etcd has no quorum: 1 of 3 members healthy, 2 needed"
        );
        assert_eq!(may_remove(&m, "z").unwrap_err().to_string(), "z is not an etcd member");
        assert_eq!(may_stop(&m, "z").unwrap_err(), QuorumError::NotAMember("z".into()));
    }
}
