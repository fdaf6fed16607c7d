//! From a GKE cluster as Google has it to its `gkeConfig`: the next change to make ([`next_change`],
//! one at a time, in the order an upgrade must go: the control plane, then each node pool), and the
//! cluster in the config's terms ([`upstream_spec`]) for the status.

use rancher_core::model::{
    GkeConfig, GkeNodeConfig, GkeNodePool, GkeNodePoolAutoscaling, GkeNodePoolManagement, GkeNodeTaint,
};

use super::types::{Cluster, NodePool};

/// One change to a running GKE cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GkeChange {
    /// `clusters.updateMaster` to this version.
    UpgradeControlPlane {
        /// From.
        from: String,
        /// To.
        to: String,
    },
    /// `nodePools.update` of a pool's version.
    UpgradePool {
        /// The pool.
        pool: String,
        /// From.
        from: String,
        /// To.
        to: String,
    },
    /// `nodePools.create` of a pool the config has and the cluster has not.
    AddPool(String),
    /// `nodePools.setSize`.
    ResizePool {
        /// The pool.
        pool: String,
        /// From.
        from: u32,
        /// To.
        to: u32,
    },
    /// `nodePools.delete` of a pool the cluster has and the config has not.
    RemovePool(String),
    /// `clusters.setResourceLabels`.
    SetLabels,
}

impl std::fmt::Display for GkeChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GkeChange::UpgradeControlPlane { from, to } => {
                write!(f, "upgrading the control plane {from} → {to}")
            }
            GkeChange::UpgradePool { pool, from, to } => {
                write!(f, "upgrading node pool {pool} {from} → {to}")
            }
            GkeChange::AddPool(p) => write!(f, "adding node pool {p}"),
            GkeChange::ResizePool { pool, from, to } => write!(f, "resizing node pool {pool} {from} → {to}"),
            GkeChange::RemovePool(p) => write!(f, "removing node pool {p}"),
            GkeChange::SetLabels => f.write_str("setting the cluster's labels"),
        }
    }
}

/// Whether `have` is older than `want` at `want`'s precision: `1.30` is met by `1.30.5-gke.1`,
/// `1.30.6` is not. `latest`, `-` and an empty version ask for no particular version.
pub fn older_than(have: &str, want: &str) -> bool {
    if matches!(want, "" | "-" | "latest") {
        return false;
    }
    let (Ok(w), Ok(h)) = (super::version(want), super::version(have)) else { return false };
    let parts = want.split(['.', '-']).take(3).filter(|p| p.chars().all(|c| c.is_ascii_digit())).count();
    let cut = |v: (u32, u32, u32)| match parts {
        0..=2 => (v.0, v.1, 0),
        _ => v,
    };
    cut(h) < cut(w)
}

/// The version a pool of `config` asks for: its own, else the cluster's.
fn pool_version<'a>(config: &'a GkeConfig, pool: &'a GkeNodePool) -> &'a str {
    pool.version.as_deref().or(config.kubernetes_version.as_deref()).unwrap_or("")
}

/// The next change from `have` towards `config`, or `None` when they agree. The control plane is
/// upgraded before any pool, and pools one at a time (never newer than the control plane); then
/// pools are added, resized and removed, then the labels set. A pool with autoscaling keeps the
/// size the autoscaler gives it.
pub fn next_change(config: &GkeConfig, have: &Cluster) -> Option<GkeChange> {
    let want_master = config.kubernetes_version.as_deref().unwrap_or("");
    if older_than(&have.current_master_version, want_master) {
        return Some(GkeChange::UpgradeControlPlane {
            from: have.current_master_version.clone(),
            to: want_master.to_owned(),
        });
    }
    for pool in &config.node_pools {
        let Some(current) = have.node_pool(&pool.name) else { continue };
        let want = pool_version(config, pool);
        if older_than(&current.version, want) {
            return Some(GkeChange::UpgradePool {
                pool: pool.name.clone(),
                from: current.version.clone(),
                to: want.to_owned(),
            });
        }
    }
    if let Some(pool) = config.node_pools.iter().find(|p| have.node_pool(&p.name).is_none()) {
        return Some(GkeChange::AddPool(pool.name.clone()));
    }
    for pool in &config.node_pools {
        let Some(current) = have.node_pool(&pool.name) else { continue };
        let autoscaled = pool.autoscaling.as_ref().is_some_and(|a| a.enabled);
        let want = pool.initial_node_count.and_then(|n| u32::try_from(n).ok());
        let now = u32::try_from(current.initial_node_count).unwrap_or(0);
        if let Some(want) = want.filter(|w| !autoscaled && *w != now) {
            return Some(GkeChange::ResizePool { pool: pool.name.clone(), from: now, to: want });
        }
    }
    if let Some(extra) = have.node_pools.iter().find(|p| !config.node_pools.iter().any(|c| c.name == p.name))
    {
        return Some(GkeChange::RemovePool(extra.name.clone()));
    }
    if have.resource_labels != config.labels {
        return Some(GkeChange::SetLabels);
    }
    None
}

/// `have` in the terms of `config` (where it is and how it signs in are `config`'s): what Google
/// reports, for `status.gkeStatus.upstreamSpec`.
pub fn upstream_spec(config: &GkeConfig, have: &Cluster) -> GkeConfig {
    let some = |s: &str| (!s.is_empty()).then(|| s.to_owned());
    GkeConfig {
        google_credential_secret: config.google_credential_secret.clone(),
        project_id: config.project_id.clone(),
        region: config.region.clone(),
        zone: config.zone.clone(),
        cluster_name: have.name.clone(),
        imported: config.imported,
        kubernetes_version: some(&have.current_master_version),
        labels: have.resource_labels.clone(),
        network: some(&have.network),
        subnetwork: some(&have.subnetwork),
        cluster_ipv4_cidr: some(&have.cluster_ipv4_cidr),
        ip_allocation_policy: config.ip_allocation_policy.clone(),
        private_cluster_config: config.private_cluster_config.clone(),
        master_authorized_networks: config.master_authorized_networks.clone(),
        logging_service: some(&have.logging_service),
        monitoring_service: some(&have.monitoring_service),
        locations: have.locations.clone(),
        node_pools: have.node_pools.iter().map(upstream_pool).collect(),
    }
}

fn upstream_pool(pool: &NodePool) -> GkeNodePool {
    GkeNodePool {
        name: pool.name.clone(),
        version: (!pool.version.is_empty()).then(|| pool.version.clone()),
        initial_node_count: Some(i64::from(pool.initial_node_count)),
        max_pods_constraint: pool.max_pods_constraint.as_ref().map(|m| m.max_pods_per_node),
        autoscaling: pool.autoscaling.as_ref().map(|a| GkeNodePoolAutoscaling {
            enabled: a.enabled,
            min_node_count: i64::from(a.min_node_count),
            max_node_count: i64::from(a.max_node_count),
        }),
        config: pool.config.as_ref().map(|c| GkeNodeConfig {
            machine_type: c.machine_type.clone(),
            disk_size_gb: i64::from(c.disk_size_gb),
            disk_type: c.disk_type.clone(),
            image_type: c.image_type.clone(),
            labels: c.labels.clone(),
            taints: c
                .taints
                .iter()
                .map(|t| GkeNodeTaint {
                    key: t.key.clone(),
                    value: t.value.clone(),
                    effect: t.effect.clone(),
                })
                .collect(),
            oauth_scopes: c.oauth_scopes.clone(),
            preemptible: c.preemptible,
        }),
        management: pool
            .management
            .as_ref()
            .map(|m| GkeNodePoolManagement { auto_repair: m.auto_repair, auto_upgrade: m.auto_upgrade }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(name: &str, version: &str, count: i32) -> NodePool {
        NodePool {
            name: name.into(),
            version: version.into(),
            initial_node_count: count,
            ..Default::default()
        }
    }

    fn config(version: &str, pools: &[(&str, i64)]) -> GkeConfig {
        GkeConfig {
            kubernetes_version: Some(version.into()),
            node_pools: pools
                .iter()
                .map(|(n, c)| GkeNodePool {
                    name: (*n).into(),
                    initial_node_count: Some(*c),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn versions_compare_at_the_precision_asked_for() {
        assert!(!older_than("1.30.5-gke.1", "1.30"));
        assert!(older_than("1.29.4-gke.1043002", "1.30"));
        assert!(older_than("1.30.5-gke.1", "1.30.6"));
        assert!(!older_than("1.31.0", "1.30.6"), "never a downgrade");
        assert!(!older_than("1.29.4", "latest") && !older_than("1.29.4", "") && !older_than("1.29.4", "-"));
    }

    #[test]
    fn the_control_plane_first_then_each_pool_then_sizes_and_removals() {
        let mut have = Cluster {
            current_master_version: "1.29.4".into(),
            node_pools: vec![pool("a", "1.29.4", 1), pool("b", "1.29.4", 1), pool("old", "1.29.4", 1)],
            ..Default::default()
        };
        let want = config("1.30", &[("a", 3), ("b", 1), ("c", 1)]);
        let mut seen = Vec::new();
        while let Some(change) = next_change(&want, &have) {
            seen.push(change.to_string());
            // Play Google: apply the change.
            match change {
                GkeChange::UpgradeControlPlane { to, .. } => have.current_master_version = format!("{to}.2"),
                GkeChange::UpgradePool { pool: p, to, .. } => {
                    have.node_pools.iter_mut().find(|x| x.name == p).unwrap().version = format!("{to}.2");
                }
                GkeChange::AddPool(p) => have.node_pools.push(pool(&p, "1.30.2", 1)),
                GkeChange::ResizePool { pool: p, to, .. } => {
                    have.node_pools.iter_mut().find(|x| x.name == p).unwrap().initial_node_count = to as i32;
                }
                GkeChange::RemovePool(p) => have.node_pools.retain(|x| x.name != p),
                GkeChange::SetLabels => have.resource_labels = want.labels.clone(),
            }
            assert!(seen.len() < 10, "{seen:?}");
        }
        assert_eq!(
            seen,
            [
                "upgrading the control plane 1.29.4 → 1.30",
                "upgrading node pool a 1.29.4 → 1.30",
                "upgrading node pool b 1.29.4 → 1.30",
                "adding node pool c",
                "resizing node pool a 1 → 3",
                "removing node pool old",
            ]
        );
        let up = upstream_spec(&want, &have);
        assert_eq!(up.kubernetes_version.as_deref(), Some("1.30.2"));
        let sizes: Vec<_> = up.node_pools.iter().map(|p| (p.name.as_str(), p.initial_node_count)).collect();
        assert_eq!(sizes, [("a", Some(3)), ("b", Some(1)), ("c", Some(1))]);
    }

    #[test]
    fn an_autoscaled_pool_keeps_its_size() {
        let have = Cluster {
            current_master_version: "1.30.1".into(),
            node_pools: vec![pool("a", "1.30.1", 5)],
            ..Default::default()
        };
        let mut want = config("1.30", &[("a", 1)]);
        want.node_pools[0].autoscaling =
            Some(GkeNodePoolAutoscaling { enabled: true, min_node_count: 1, max_node_count: 9 });
        assert_eq!(next_change(&want, &have), None);
    }
}
