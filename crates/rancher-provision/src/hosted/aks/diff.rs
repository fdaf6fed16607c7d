//! What it takes to bring an existing managed cluster to `spec.aksConfig`, in the order AKS allows:
//! the control plane is upgraded before any pool (a pool may not be newer than it), pools are
//! created before others are deleted (a System pool must always remain), tags last.
//!
//! Only what the spec says is compared: a field left out (`None`) is Azure's to choose, which is
//! also how an imported cluster is adopted without changing it.

use rancher_core::model::{AksConfig, AksNodePool};

use super::net::parse_version;
use super::types::{AgentPoolProperties, ManagedCluster};

/// One step towards the spec.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AksChange {
    /// Upgrade the control plane ([`AksClient::upgrade_control_plane`](super::AksClient::upgrade_control_plane)).
    UpgradeControlPlane {
        /// The version Azure has.
        from: String,
        /// The spec's.
        to: String,
    },
    /// Create the pool ([`agent_pool`](super::spec::agent_pool) + `create_or_update_pool`).
    CreatePool {
        /// The pool's name.
        name: String,
    },
    /// Upgrade the pool's nodes ([`AksClient::upgrade_pool`](super::AksClient::upgrade_pool)).
    UpgradePool {
        /// The pool's name.
        name: String,
        /// The spec's version.
        to: String,
    },
    /// PUT the pool from the spec (count, autoscaling, labels, taints, mode, maxSurge differ).
    UpdatePool {
        /// The pool's name.
        name: String,
        /// The spec's fields that differ (`count`, `nodeTaints`, …).
        fields: Vec<&'static str>,
    },
    /// Delete the pool (not in the spec).
    DeletePool {
        /// The pool's name.
        name: String,
    },
    /// A field AKS cannot change on an existing pool differs: the user must make a new pool.
    ImmutablePoolField {
        /// The pool's name.
        name: String,
        /// The field (`vmSize`, `osDiskSizeGB`, …).
        field: &'static str,
    },
    /// Replace the cluster's tags ([`AksClient::update_tags`](super::AksClient::update_tags)).
    UpdateTags,
}

/// Whether `want` (`1.30` or `1.30.4`) names the version `have` runs.
fn same_version(want: &str, have: &str) -> bool {
    match (parse_version(want), parse_version(have)) {
        (Some((a, b, None)), Some((c, d, _))) => (a, b) == (c, d),
        (Some(w), Some(h)) => w == h,
        _ => want == have,
    }
}

fn differs<T: PartialEq>(want: &Option<T>, have: &Option<T>) -> bool {
    want.is_some() && want != have
}

fn pool_fields(want: &AksNodePool, have: &AgentPoolProperties) -> (Vec<&'static str>, Option<&'static str>) {
    let mut fields = Vec::new();
    let autoscaling = want.enable_auto_scaling == Some(true);
    if !autoscaling && differs(&want.count, &have.count) {
        fields.push("count");
    }
    if want.enable_auto_scaling.is_some()
        && want.enable_auto_scaling.unwrap_or(false) != have.enable_auto_scaling.unwrap_or(false)
    {
        fields.push("enableAutoScaling");
    }
    if autoscaling && (differs(&want.min_count, &have.min_count) || differs(&want.max_count, &have.max_count))
    {
        fields.push("minCount/maxCount");
    }
    if want.mode.as_deref().is_some_and(|m| !have.mode.as_deref().is_some_and(|h| h.eq_ignore_ascii_case(m)))
    {
        fields.push("mode");
    }
    if want.node_labels != have.node_labels && !(want.node_labels.is_empty() && have.node_labels.is_empty()) {
        fields.push("nodeLabels");
    }
    if want.node_taints != have.node_taints {
        fields.push("nodeTaints");
    }
    if want.max_surge.is_some()
        && want.max_surge != have.upgrade_settings.as_ref().and_then(|u| u.max_surge.clone())
    {
        fields.push("maxSurge");
    }
    let immutable = if differs(&want.vm_size, &have.vm_size) {
        Some("vmSize")
    } else if want.os_disk_size_gb.is_some_and(|g| g > 0)
        && differs(&want.os_disk_size_gb, &have.os_disk_size_gb)
    {
        Some("osDiskSizeGB")
    } else if differs(&want.os_disk_type, &have.os_disk_type) {
        Some("osDiskType")
    } else if differs(&want.max_pods, &have.max_pods) {
        Some("maxPods")
    } else if differs(&want.vnet_subnet_id, &have.vnet_subnet_id) {
        Some("vnetSubnetID")
    } else if want.availability_zones.as_ref().is_some_and(|z| Some(z) != have.availability_zones.as_ref()) {
        Some("availabilityZones")
    } else {
        None
    };
    (fields, immutable)
}

/// The steps from `have` (Azure's cluster) to `config`, in the order to take them.
pub fn changes(config: &AksConfig, have: &ManagedCluster) -> Vec<AksChange> {
    let mut out = Vec::new();
    let p = &have.properties;
    let running =
        p.current_kubernetes_version.as_deref().or(p.kubernetes_version.as_deref()).unwrap_or_default();
    if let Some(want) = config.kubernetes_version.as_deref().filter(|v| !v.is_empty())
        && !same_version(want, running)
    {
        out.push(AksChange::UpgradeControlPlane { from: running.to_owned(), to: want.to_owned() });
    }
    let mut updates = Vec::new();
    for want in &config.node_pools {
        let Some(existing) = p.agent_pool_profiles.iter().find(|a| a.name == want.name) else {
            out.push(AksChange::CreatePool { name: want.name.clone() });
            continue;
        };
        let have = &existing.properties;
        let have_version = have
            .current_orchestrator_version
            .as_deref()
            .or(have.orchestrator_version.as_deref())
            .unwrap_or_default();
        if let Some(v) = want.orchestrator_version.as_deref().filter(|v| !v.is_empty())
            && !same_version(v, have_version)
        {
            out.push(AksChange::UpgradePool { name: want.name.clone(), to: v.to_owned() });
        }
        let (fields, immutable) = pool_fields(want, have);
        if let Some(field) = immutable {
            out.push(AksChange::ImmutablePoolField { name: want.name.clone(), field });
        }
        if !fields.is_empty() {
            updates.push(AksChange::UpdatePool { name: want.name.clone(), fields });
        }
    }
    out.extend(updates);
    if !config.imported || !config.node_pools.is_empty() {
        for a in &p.agent_pool_profiles {
            if !config.node_pools.iter().any(|w| w.name == a.name) {
                out.push(AksChange::DeletePool { name: a.name.clone() });
            }
        }
    }
    if !config.tags.is_empty() && config.tags != have.tags {
        out.push(AksChange::UpdateTags);
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::hosted::aks::types::AgentPoolProfile;

    fn azure_pool(name: &str, count: i32, version: &str) -> AgentPoolProfile {
        AgentPoolProfile {
            name: name.into(),
            properties: AgentPoolProperties {
                count: Some(count),
                vm_size: Some("Standard_DS2_v2".into()),
                mode: Some("System".into()),
                orchestrator_version: Some(version.into()),
                current_orchestrator_version: Some(version.into()),
                ..Default::default()
            },
        }
    }

    fn want_pool(name: &str, count: i32) -> AksNodePool {
        AksNodePool {
            name: name.into(),
            count: Some(count),
            vm_size: Some("Standard_DS2_v2".into()),
            mode: Some("System".into()),
            ..Default::default()
        }
    }

    #[test]
    fn steps_in_the_order_aks_allows() {
        let mut have = ManagedCluster::default();
        have.properties.current_kubernetes_version = Some("1.30.4".into());
        have.properties.agent_pool_profiles =
            vec![azure_pool("system", 1, "1.30.4"), azure_pool("old", 1, "1.30.4")];
        let mut config = AksConfig {
            kubernetes_version: Some("1.30".into()),
            node_pools: vec![want_pool("system", 1)],
            ..Default::default()
        };
        assert_eq!(changes(&config, &have), [AksChange::DeletePool { name: "old".into() }], "1.30 is 1.30.4");

        config.kubernetes_version = Some("1.31.1".into());
        config.node_pools[0].orchestrator_version = Some("1.31.1".into());
        config.node_pools[0].count = Some(3);
        config.node_pools.push(want_pool("new", 2));
        config.tags = BTreeMap::from([("a".into(), "b".into())]);
        assert_eq!(
            changes(&config, &have),
            [
                AksChange::UpgradeControlPlane { from: "1.30.4".into(), to: "1.31.1".into() },
                AksChange::UpgradePool { name: "system".into(), to: "1.31.1".into() },
                AksChange::CreatePool { name: "new".into() },
                AksChange::UpdatePool { name: "system".into(), fields: vec!["count"] },
                AksChange::DeletePool { name: "old".into() },
                AksChange::UpdateTags,
            ]
        );
    }

    #[test]
    fn autoscaled_counts_and_immutable_fields() {
        let mut have = ManagedCluster::default();
        have.properties.agent_pool_profiles = vec![azure_pool("system", 4, "1.30.4")];
        let mut want = want_pool("system", 1);
        want.enable_auto_scaling = Some(true);
        want.min_count = Some(1);
        want.max_count = Some(5);
        want.vm_size = Some("Standard_D4s_v3".into());
        let config = AksConfig { node_pools: vec![want], imported: true, ..Default::default() };
        assert_eq!(
            changes(&config, &have),
            [
                AksChange::ImmutablePoolField { name: "system".into(), field: "vmSize" },
                AksChange::UpdatePool {
                    name: "system".into(),
                    fields: vec!["enableAutoScaling", "minCount/maxCount"]
                },
            ],
            "the autoscaler owns count"
        );
        let adopt = AksConfig { imported: true, ..Default::default() };
        assert!(
            changes(&adopt, &have).is_empty(),
            "an imported cluster with no pools in its spec is left alone"
        );
    }
}
