//! From an EKS cluster and its node groups as AWS has them to the `eksConfig`: the next change to
//! make ([`next_change`], in the order an upgrade must go: the control plane, then each node group
//! one at a time) and the cluster in the config's terms ([`upstream_spec`]) for the status.

use rancher_core::model::{EksConfig, EksNodeGroup};

use super::types::{Cluster, Nodegroup, NodegroupStatus, Scaling};

/// One change to an active EKS cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EksChange {
    /// `UpdateClusterVersion`.
    UpgradeControlPlane {
        /// From.
        from: String,
        /// To.
        to: String,
    },
    /// `UpdateNodegroupVersion`.
    UpgradeNodegroup {
        /// The node group.
        name: String,
        /// From.
        from: String,
        /// To.
        to: String,
    },
    /// `CreateNodegroup` of a group the config has and AWS has not.
    CreateNodegroup(String),
    /// `UpdateNodegroupConfig` with a new scaling.
    Scale {
        /// The node group.
        name: String,
        /// The sizes wanted.
        scaling: Scaling,
    },
    /// `DeleteNodegroup` of a group AWS has and the config has not.
    DeleteNodegroup(String),
    /// `TagResource` with the config's tags.
    Tag,
}

impl std::fmt::Display for EksChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EksChange::UpgradeControlPlane { from, to } => {
                write!(f, "upgrading the control plane {from} → {to}")
            }
            EksChange::UpgradeNodegroup { name, from, to } => {
                write!(f, "upgrading node group {name} {from} → {to}")
            }
            EksChange::CreateNodegroup(n) => write!(f, "adding node group {n}"),
            EksChange::Scale { name, scaling } => write!(
                f,
                "scaling node group {name} to {} (min {}, max {})",
                scaling.desired_size.unwrap_or_default(),
                scaling.min_size.unwrap_or_default(),
                scaling.max_size.unwrap_or_default()
            ),
            EksChange::DeleteNodegroup(n) => write!(f, "removing node group {n}"),
            EksChange::Tag => f.write_str("tagging the cluster"),
        }
    }
}

/// Whether `have` (`1.29`) is older than `want` (`1.30`); unparsable versions never are.
fn older(have: Option<&str>, want: Option<&str>) -> bool {
    match (have.map(super::version), want.map(super::version)) {
        (Some(Ok(h)), Some(Ok(w))) => h < w,
        _ => false,
    }
}

fn int32(n: Option<i64>) -> Option<i32> {
    n.and_then(|n| i32::try_from(n).ok())
}

/// The scaling `group` asks for, where it differs from `have`'s.
fn scaling_wanted(group: &EksNodeGroup, have: &Scaling) -> Option<Scaling> {
    let want = Scaling {
        min_size: int32(group.min_size).or(have.min_size),
        max_size: int32(group.max_size).or(have.max_size),
        desired_size: int32(group.desired_size).or(have.desired_size),
    };
    (want != *have).then_some(want)
}

/// Whether a node group is in the middle of something (changes wait for it).
pub fn busy(group: &Nodegroup) -> bool {
    matches!(group.status, NodegroupStatus::Creating | NodegroupStatus::Updating | NodegroupStatus::Deleting)
}

/// The next change from `cluster` and its node groups `groups` towards `config`, or `None` when
/// they agree. The control plane is upgraded before any node group, node groups one at a time
/// (never newer than the control plane); then groups are added, scaled and removed, then the
/// cluster tagged (tags are added or changed, never removed: AWS and other tools add their own).
pub fn next_change(config: &EksConfig, cluster: &Cluster, groups: &[Nodegroup]) -> Option<EksChange> {
    let want = config.kubernetes_version.as_deref();
    if older(cluster.version.as_deref(), want) {
        return Some(EksChange::UpgradeControlPlane {
            from: cluster.version.clone().unwrap_or_default(),
            to: want.unwrap_or_default().to_owned(),
        });
    }
    let find = |name: &str| groups.iter().find(|g| g.name == name);
    for group in &config.node_groups {
        let Some(have) = find(&group.nodegroup_name) else { continue };
        let want = group.version.as_deref().or(cluster.version.as_deref());
        if older(have.version.as_deref(), want) {
            return Some(EksChange::UpgradeNodegroup {
                name: group.nodegroup_name.clone(),
                from: have.version.clone().unwrap_or_default(),
                to: want.unwrap_or_default().to_owned(),
            });
        }
    }
    if let Some(missing) = config.node_groups.iter().find(|g| find(&g.nodegroup_name).is_none()) {
        return Some(EksChange::CreateNodegroup(missing.nodegroup_name.clone()));
    }
    for group in &config.node_groups {
        let Some(have) = find(&group.nodegroup_name) else { continue };
        if let Some(scaling) = scaling_wanted(group, &have.scaling) {
            return Some(EksChange::Scale { name: group.nodegroup_name.clone(), scaling });
        }
    }
    if let Some(extra) =
        groups.iter().find(|g| !config.node_groups.iter().any(|c| c.nodegroup_name == g.name))
    {
        return Some(EksChange::DeleteNodegroup(extra.name.clone()));
    }
    if config.tags.iter().any(|(k, v)| cluster.tags.get(k) != Some(v)) {
        return Some(EksChange::Tag);
    }
    None
}

/// `cluster` and `groups` in the terms of `config` (where it is and how it signs in are `config`'s):
/// what AWS reports, for `status.eksStatus.upstreamSpec`.
pub fn upstream_spec(config: &EksConfig, cluster: &Cluster, groups: &[Nodegroup]) -> EksConfig {
    EksConfig {
        amazon_credential_secret: config.amazon_credential_secret.clone(),
        display_name: cluster.name.clone(),
        region: config.region.clone(),
        imported: config.imported,
        kubernetes_version: cluster.version.clone(),
        tags: cluster.tags.clone(),
        public_access: cluster.public_access,
        private_access: cluster.private_access,
        public_access_sources: cluster.public_access_sources.clone(),
        logging_types: cluster.logging_types.clone(),
        subnets: cluster.subnets.clone(),
        security_groups: cluster.security_groups.clone(),
        service_role: cluster.role_arn.clone(),
        node_groups: groups
            .iter()
            .map(|g| EksNodeGroup {
                nodegroup_name: g.name.clone(),
                instance_type: g.instance_types.first().cloned(),
                disk_size: g.disk_size.map(i64::from),
                desired_size: g.scaling.desired_size.map(i64::from),
                min_size: g.scaling.min_size.map(i64::from),
                max_size: g.scaling.max_size.map(i64::from),
                labels: g.labels.clone(),
                tags: g.tags.clone(),
                version: g.version.clone(),
                node_role: g.node_role.clone(),
                ..Default::default()
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(name: &str, version: &str, desired: i32) -> Nodegroup {
        Nodegroup {
            name: name.into(),
            status: NodegroupStatus::Active,
            version: Some(version.into()),
            scaling: Scaling { min_size: Some(1), max_size: Some(5), desired_size: Some(desired) },
            ..Default::default()
        }
    }

    fn wanted(name: &str, desired: i64) -> EksNodeGroup {
        EksNodeGroup { nodegroup_name: name.into(), desired_size: Some(desired), ..Default::default() }
    }

    #[test]
    fn the_control_plane_first_then_each_group_then_sizes_removals_and_tags() {
        let mut cluster = Cluster { name: "c".into(), version: Some("1.29".into()), ..Default::default() };
        let mut groups = vec![group("a", "1.29", 1), group("b", "1.29", 1), group("old", "1.29", 1)];
        let config = EksConfig {
            kubernetes_version: Some("1.30".into()),
            tags: [("team".to_owned(), "platform".to_owned())].into(),
            node_groups: vec![wanted("a", 3), wanted("b", 1), wanted("c", 1)],
            ..Default::default()
        };
        let mut seen = Vec::new();
        while let Some(change) = next_change(&config, &cluster, &groups) {
            seen.push(change.to_string());
            match change {
                EksChange::UpgradeControlPlane { to, .. } => cluster.version = Some(to),
                EksChange::UpgradeNodegroup { name, to, .. } => {
                    groups.iter_mut().find(|g| g.name == name).unwrap().version = Some(to);
                }
                EksChange::CreateNodegroup(n) => groups.push(group(&n, "1.30", 1)),
                EksChange::Scale { name, scaling } => {
                    groups.iter_mut().find(|g| g.name == name).unwrap().scaling = scaling
                }
                EksChange::DeleteNodegroup(n) => groups.retain(|g| g.name != n),
                EksChange::Tag => cluster.tags = config.tags.clone(),
            }
            assert!(seen.len() < 10, "{seen:?}");
        }
        assert_eq!(
            seen,
            [
                "upgrading the control plane 1.29 → 1.30",
                "upgrading node group a 1.29 → 1.30",
                "upgrading node group b 1.29 → 1.30",
                "adding node group c",
                "scaling node group a to 3 (min 1, max 5)",
                "removing node group old",
                "tagging the cluster",
            ]
        );
        let up = upstream_spec(&config, &cluster, &groups);
        assert_eq!(up.kubernetes_version.as_deref(), Some("1.30"));
        assert_eq!(
            up.node_groups.iter().map(|g| g.desired_size).collect::<Vec<_>>(),
            [Some(3), Some(1), Some(1)]
        );
    }

    #[test]
    fn no_downgrade_and_sizes_left_out_stay() {
        let cluster = Cluster { name: "c".into(), version: Some("1.30".into()), ..Default::default() };
        let groups = vec![group("a", "1.30", 2)];
        let config = EksConfig {
            kubernetes_version: Some("1.29".into()),
            node_groups: vec![EksNodeGroup { nodegroup_name: "a".into(), ..Default::default() }],
            ..Default::default()
        };
        assert_eq!(next_change(&config, &cluster, &groups), None);
    }
}
