//! Checking a `gkeConfig` before any Google call: GKE's naming rules, locations, CIDRs, versions,
//! node-pool sizes and the combinations GKE refuses (a private endpoint without private nodes).
//! Fields are named as JSON paths from the cluster (`spec.gkeConfig.nodePools[1].config.machineType`).

use std::collections::BTreeMap;
use std::net::IpAddr;

use rancher_core::model::{
    GkeConfig, GkeIpAllocationPolicy, GkeNodeConfig, GkeNodePool, GkePrivateClusterConfig,
};

use crate::ProvisionError;
use crate::rke::Cidr;
use crate::rke::names::{label_key, label_value};

const ROOT: &str = "spec.gkeConfig";

/// The taint effects GKE's `NodeTaint.effect` takes.
pub const TAINT_EFFECTS: [&str; 3] = ["NO_SCHEDULE", "PREFER_NO_SCHEDULE", "NO_EXECUTE"];
/// GKE's longest cluster and node-pool name.
pub const MAX_NAME_LEN: usize = 40;

fn bad(field: impl Into<String>, message: impl Into<String>) -> ProvisionError {
    ProvisionError::invalid_spec(field, message)
}

/// Checks `config` as GKE would, without calling it.
///
/// # Errors
/// [`ProvisionError::InvalidSpec`] naming the first bad field, e.g.
/// `spec.gkeConfig.nodePools[1].config.machineType: is required`.
pub fn validate(config: &GkeConfig) -> Result<(), ProvisionError> {
    if config.google_credential_secret.trim().is_empty() {
        return Err(bad(
            format!("{ROOT}.googleCredentialSecret"),
            "is required: the name of a CloudCredential holding a Google service-account key",
        ));
    }
    project_id(&config.project_id).map_err(|m| bad(format!("{ROOT}.projectID"), m))?;
    let region = location(config)?;
    gke_name(&config.cluster_name).map_err(|m| bad(format!("{ROOT}.clusterName"), m))?;
    for (i, zone) in config.locations.iter().enumerate() {
        let field = format!("{ROOT}.locations[{i}]");
        zone_name(zone).map_err(|m| bad(&field, m))?;
        if zone.rsplit_once('-').map(|(r, _)| r) != Some(region) {
            return Err(bad(field, format!("zone {zone:?} is not in the cluster's region {region:?}")));
        }
    }
    let master = match &config.kubernetes_version {
        Some(v) => Some(version(v).map_err(|m| bad(format!("{ROOT}.kubernetesVersion"), m))?),
        None if config.imported => None,
        None => return Err(bad(format!("{ROOT}.kubernetesVersion"), "is required to create a cluster")),
    };
    resource_labels(&config.labels, &format!("{ROOT}.labels"))?;
    for (field, value) in [("network", &config.network), ("subnetwork", &config.subnetwork)] {
        if let Some(v) = value {
            network_name(v).map_err(|m| bad(format!("{ROOT}.{field}"), m))?;
        }
    }
    if let Some(cidr) = &config.cluster_ipv4_cidr {
        range(cidr, false).map_err(|m| bad(format!("{ROOT}.clusterIpv4Cidr"), m))?;
    }
    let aliases = match &config.ip_allocation_policy {
        Some(p) => ip_allocation_policy(p, config)?,
        None => false,
    };
    if let Some(p) = &config.private_cluster_config {
        private_cluster(p, aliases)?;
    }
    if let Some(m) = &config.master_authorized_networks {
        if m.cidr_blocks.len() > 50 {
            return Err(bad(format!("{ROOT}.masterAuthorizedNetworks.cidrBlocks"), "at most 50 networks"));
        }
        for (i, b) in m.cidr_blocks.iter().enumerate() {
            let field = format!("{ROOT}.masterAuthorizedNetworks.cidrBlocks[{i}].cidrBlock");
            range(&b.cidr_block, false).map_err(|m| bad(field, m))?;
        }
    }
    service(&config.logging_service, "loggingService", "logging.googleapis.com")?;
    service(&config.monitoring_service, "monitoringService", "monitoring.googleapis.com")?;
    node_pools(config, master)
}

/// `region` or `zone`, exactly one; returns the region.
fn location(config: &GkeConfig) -> Result<&str, ProvisionError> {
    match (config.region.is_empty(), config.zone.is_empty()) {
        (true, true) => Err(bad(format!("{ROOT}.region"), "set region (regional cluster) or zone (zonal)")),
        (false, false) => Err(bad(format!("{ROOT}.zone"), "set region or zone, not both")),
        (false, true) => {
            region_name(&config.region).map_err(|m| bad(format!("{ROOT}.region"), m))?;
            Ok(&config.region)
        }
        (true, false) => {
            zone_name(&config.zone).map_err(|m| bad(format!("{ROOT}.zone"), m))?;
            Ok(config.zone.rsplit_once('-').map_or("", |(r, _)| r))
        }
    }
}

fn node_pools(config: &GkeConfig, master: Option<(u32, u32, u32)>) -> Result<(), ProvisionError> {
    if config.node_pools.is_empty() && !config.imported {
        return Err(bad(format!("{ROOT}.nodePools"), "a cluster needs at least one node pool"));
    }
    let mut seen = BTreeMap::new();
    for (i, pool) in config.node_pools.iter().enumerate() {
        let at = format!("{ROOT}.nodePools[{i}]");
        gke_name(&pool.name).map_err(|m| bad(format!("{at}.name"), m))?;
        if let Some(first) = seen.insert(pool.name.as_str(), i) {
            return Err(bad(
                format!("{at}.name"),
                format!("{:?} is also nodePools[{first}]'s name", pool.name),
            ));
        }
        node_pool(pool, &at, master, config.imported)?;
    }
    Ok(())
}

fn node_pool(
    pool: &GkeNodePool,
    at: &str,
    master: Option<(u32, u32, u32)>,
    imported: bool,
) -> Result<(), ProvisionError> {
    if let Some(v) = &pool.version {
        let mine = version(v).map_err(|m| bad(format!("{at}.version"), m))?;
        if let Some(master) = master
            && (mine.0, mine.1) > (master.0, master.1)
        {
            return Err(bad(
                format!("{at}.version"),
                format!(
                    "{v:?} is newer than the cluster's kubernetesVersion: nodes may not run ahead of the control plane"
                ),
            ));
        }
    }
    let autoscaling = pool.autoscaling.as_ref().filter(|a| a.enabled);
    if let Some(a) = autoscaling {
        if a.min_node_count < 0 {
            return Err(bad(format!("{at}.autoscaling.minNodeCount"), "must be 0 or more"));
        }
        if a.max_node_count < 1 || a.max_node_count > 1000 {
            return Err(bad(format!("{at}.autoscaling.maxNodeCount"), "must be between 1 and 1000"));
        }
        if a.min_node_count > a.max_node_count {
            return Err(bad(
                format!("{at}.autoscaling.minNodeCount"),
                format!("{} is more than maxNodeCount {}", a.min_node_count, a.max_node_count),
            ));
        }
    }
    match (pool.initial_node_count, autoscaling) {
        (Some(n), _) if n < 0 => return Err(bad(format!("{at}.initialNodeCount"), "must not be negative")),
        (Some(0) | None, None) if !imported => {
            return Err(bad(format!("{at}.initialNodeCount"), "must be at least 1 (or enable autoscaling)"));
        }
        (Some(n), Some(a)) if n > a.max_node_count => {
            return Err(bad(
                format!("{at}.initialNodeCount"),
                format!("{n} is more than autoscaling.maxNodeCount {}", a.max_node_count),
            ));
        }
        _ => {}
    }
    if let Some(n) = pool.max_pods_constraint
        && !(8..=256).contains(&n)
    {
        return Err(bad(format!("{at}.maxPodsConstraint"), "must be between 8 and 256"));
    }
    match &pool.config {
        Some(c) => node_config(c, &format!("{at}.config"), imported),
        None if imported => Ok(()),
        None => Err(bad(format!("{at}.config.machineType"), "is required")),
    }
}

fn node_config(c: &GkeNodeConfig, at: &str, imported: bool) -> Result<(), ProvisionError> {
    if c.machine_type.is_empty() {
        if !imported {
            return Err(bad(format!("{at}.machineType"), "is required (e.g. e2-medium)"));
        }
    } else if !c.machine_type.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') {
        return Err(bad(
            format!("{at}.machineType"),
            format!(
                "{:?} is not a machine type: lower case letters, digits and '-' (e.g. e2-medium)",
                c.machine_type
            ),
        ));
    }
    if c.disk_size_gb != 0 && !(10..=65_536).contains(&c.disk_size_gb) {
        return Err(bad(format!("{at}.diskSizeGb"), "must be between 10 and 65536"));
    }
    let disk_types = ["pd-standard", "pd-ssd", "pd-balanced", "pd-extreme", "hyperdisk-balanced"];
    if !c.disk_type.is_empty() && !disk_types.contains(&c.disk_type.as_str()) {
        return Err(bad(format!("{at}.diskType"), format!("must be one of {}", disk_types.join(", "))));
    }
    if !c.image_type.is_empty() && !c.image_type.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err(bad(format!("{at}.imageType"), "letters, digits and '_' (e.g. COS_CONTAINERD)"));
    }
    for (k, v) in &c.labels {
        label_key(k).map_err(|m| bad(format!("{at}.labels"), m))?;
        label_value(v).map_err(|m| bad(format!("{at}.labels.{k}"), m))?;
    }
    for (i, t) in c.taints.iter().enumerate() {
        let tat = format!("{at}.taints[{i}]");
        label_key(&t.key).map_err(|m| bad(format!("{tat}.key"), m))?;
        label_value(&t.value).map_err(|m| bad(format!("{tat}.value"), m))?;
        if !TAINT_EFFECTS.contains(&t.effect.as_str()) {
            return Err(bad(format!("{tat}.effect"), format!("must be one of {}", TAINT_EFFECTS.join(", "))));
        }
    }
    for (i, s) in c.oauth_scopes.iter().enumerate() {
        if !s.starts_with("https://") || s.contains(char::is_whitespace) {
            return Err(bad(
                format!("{at}.oauthScopes[{i}]"),
                format!(
                    "{s:?} is not a scope URL (e.g. https://www.googleapis.com/auth/devstorage.read_only)"
                ),
            ));
        }
    }
    Ok(())
}

/// Returns whether the cluster is VPC-native.
fn ip_allocation_policy(p: &GkeIpAllocationPolicy, config: &GkeConfig) -> Result<bool, ProvisionError> {
    let at = format!("{ROOT}.ipAllocationPolicy");
    let pairs = [
        (
            "clusterIpv4CidrBlock",
            &p.cluster_ipv4_cidr_block,
            "clusterSecondaryRangeName",
            &p.cluster_secondary_range_name,
        ),
        (
            "servicesIpv4CidrBlock",
            &p.services_ipv4_cidr_block,
            "servicesSecondaryRangeName",
            &p.services_secondary_range_name,
        ),
    ];
    for (block_field, block, name_field, name) in pairs {
        if block.is_empty() && name.is_empty() {
            continue;
        }
        if !p.use_ip_aliases {
            return Err(bad(
                format!("{at}.useIpAliases"),
                format!("must be true to set {block_field} or {name_field}"),
            ));
        }
        if !block.is_empty() && !name.is_empty() {
            return Err(bad(
                format!("{at}.{name_field}"),
                format!("set {block_field} or {name_field}, not both"),
            ));
        }
        if !block.is_empty() {
            range(block, true).map_err(|m| bad(format!("{at}.{block_field}"), m))?;
        } else {
            network_name(name).map_err(|m| bad(format!("{at}.{name_field}"), m))?;
            if config.subnetwork.is_none() {
                return Err(bad(format!("{ROOT}.subnetwork"), format!("is required to use {name_field}")));
            }
        }
    }
    if p.use_ip_aliases && config.cluster_ipv4_cidr.is_some() && !p.cluster_ipv4_cidr_block.is_empty() {
        return Err(bad(
            format!("{ROOT}.clusterIpv4Cidr"),
            "set clusterIpv4Cidr or ipAllocationPolicy.clusterIpv4CidrBlock, not both",
        ));
    }
    Ok(p.use_ip_aliases)
}

fn private_cluster(p: &GkePrivateClusterConfig, aliases: bool) -> Result<(), ProvisionError> {
    let at = format!("{ROOT}.privateClusterConfig");
    if p.enable_private_endpoint && !p.enable_private_nodes {
        return Err(bad(format!("{at}.enablePrivateNodes"), "must be true for a private endpoint"));
    }
    if !p.enable_private_nodes {
        return Ok(());
    }
    if !aliases {
        return Err(bad(
            format!("{ROOT}.ipAllocationPolicy.useIpAliases"),
            "must be true: a private cluster is VPC-native",
        ));
    }
    let field = format!("{at}.masterIpv4CidrBlock");
    if p.master_ipv4_cidr_block.is_empty() {
        return Err(bad(
            field,
            "is required for private nodes: a /28 for the control plane (e.g. 172.16.0.0/28)",
        ));
    }
    let cidr = range(&p.master_ipv4_cidr_block, false).map_err(|m| bad(&field, m))?;
    if cidr.prefix() != 28 {
        return Err(bad(field, format!("{:?} must be a /28", p.master_ipv4_cidr_block)));
    }
    Ok(())
}

fn service(value: &Option<String>, field: &str, google: &str) -> Result<(), ProvisionError> {
    let Some(v) = value else { return Ok(()) };
    let allowed = [format!("{google}/kubernetes"), google.to_owned(), "none".to_owned()];
    if !allowed.contains(v) {
        return Err(bad(format!("{ROOT}.{field}"), format!("must be one of {}", allowed.join(", "))));
    }
    Ok(())
}

/// An IPv4 CIDR; with `prefix_only`, also a bare prefix length (`/14`) that GKE places itself.
fn range(s: &str, prefix_only: bool) -> Result<Cidr, String> {
    if prefix_only && let Some(p) = s.strip_prefix('/') {
        return match p.parse::<u8>() {
            Ok(n) if (8..=29).contains(&n) => format!("0.0.0.0/{n}").parse().map_err(|e| format!("{e}")),
            _ => Err(format!("{s:?}: a prefix length from /8 to /29")),
        };
    }
    let cidr: Cidr = s.parse().map_err(|e| format!("{e}"))?;
    if !matches!(cidr.network(), IpAddr::V4(_)) {
        return Err(format!("{s:?} is not an IPv4 network"));
    }
    Ok(cidr)
}

/// GKE's cluster and node-pool names: lower case letters, digits and `-`, starting with a letter and
/// ending with a letter or digit, at most 40 characters.
pub fn gke_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && !name.ends_with('-');
    if ok {
        return Ok(());
    }
    Err(format!(
        "{name:?} is not a GKE name: lower case letters, digits and '-', starting with a letter and ending \
         with a letter or digit, at most {MAX_NAME_LEN} characters"
    ))
}

fn project_id(id: &str) -> Result<(), String> {
    let ok = (6..=30).contains(&id.len())
        && id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && id.starts_with(|c: char| c.is_ascii_lowercase())
        && !id.ends_with('-');
    if ok {
        return Ok(());
    }
    Err(format!(
        "{id:?} is not a project ID: 6 to 30 lower case letters, digits and '-', starting with a letter"
    ))
}

/// `us-central1`, `europe-west10`.
fn region_name(r: &str) -> Result<(), String> {
    let ok = r.split_once('-').is_some_and(|(area, rest)| {
        !area.is_empty()
            && area.bytes().all(|b| b.is_ascii_lowercase())
            && rest.trim_end_matches(|c: char| c.is_ascii_digit()).len() < rest.len()
            && rest.trim_end_matches(|c: char| c.is_ascii_digit()).bytes().all(|b| b.is_ascii_lowercase())
            && !rest.starts_with(|c: char| c.is_ascii_digit())
    });
    if ok { Ok(()) } else { Err(format!("{r:?} is not a Google Cloud region (e.g. us-central1)")) }
}

/// `us-central1-a`.
fn zone_name(z: &str) -> Result<(), String> {
    let ok = z.rsplit_once('-').is_some_and(|(region, letter)| {
        region_name(region).is_ok() && letter.len() == 1 && letter.bytes().all(|b| b.is_ascii_lowercase())
    });
    if ok { Ok(()) } else { Err(format!("{z:?} is not a Google Cloud zone (e.g. us-central1-a)")) }
}

/// A network or subnetwork: a name, or a resource path (`projects/p/regions/r/subnetworks/s`).
fn network_name(n: &str) -> Result<(), String> {
    let name_ok = |s: &str| {
        !s.is_empty()
            && s.len() <= 63
            && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && s.starts_with(|c: char| c.is_ascii_lowercase())
            && !s.ends_with('-')
    };
    if n.split('/').all(name_ok) {
        return Ok(());
    }
    Err(format!("{n:?} is not a network name: lower case letters, digits and '-', starting with a letter"))
}

/// Google resource labels: keys start with a lower case letter; keys and values up to 63 lower case
/// letters, digits, `_` and `-`; at most 64.
fn resource_labels(labels: &BTreeMap<String, String>, at: &str) -> Result<(), ProvisionError> {
    if labels.len() > 64 {
        return Err(bad(at, "at most 64 labels"));
    }
    let chars_ok = |s: &str| {
        s.len() <= 63
            && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
    };
    for (k, v) in labels {
        if k.is_empty() || !k.starts_with(|c: char| c.is_ascii_lowercase()) || !chars_ok(k) {
            return Err(bad(
                at,
                format!(
                    "{k:?} is not a label key: up to 63 lower case letters, digits, '_' and '-', starting with a letter"
                ),
            ));
        }
        if !chars_ok(v) {
            return Err(bad(
                format!("{at}.{k}"),
                format!("{v:?} is not a label value: up to 63 lower case letters, digits, '_' and '-'"),
            ));
        }
    }
    Ok(())
}

/// A GKE version: `latest`, `-` (the default), `1.29`, `1.29.4` or `1.29.4-gke.1043002`. Returns the
/// numbers to compare (`latest` and `-` compare as newest).
pub fn version(v: &str) -> Result<(u32, u32, u32), String> {
    if v == "latest" || v == "-" {
        return Ok((u32::MAX, u32::MAX, u32::MAX));
    }
    let err =
        || format!("{v:?} is not a GKE version: latest, 1.29, 1.29.4 or 1.29.4-gke.1043002 (no leading 'v')");
    let (numbers, suffix) = match v.split_once('-') {
        Some((n, s)) => (n, Some(s)),
        None => (v, None),
    };
    if let Some(s) = suffix {
        let build = s.strip_prefix("gke.").ok_or_else(err)?;
        if build.is_empty() || !build.bytes().all(|b| b.is_ascii_digit()) {
            return Err(err());
        }
    }
    let parts: Vec<u32> =
        numbers.split('.').map(|p| p.parse::<u32>().map_err(|_| err())).collect::<Result<_, _>>()?;
    match (parts.as_slice(), suffix) {
        ([1, minor], None) => Ok((1, *minor, u32::MAX)),
        ([1, minor, patch], _) => Ok((1, *minor, *patch)),
        _ => Err(err()),
    }
}

#[cfg(test)]
#[path = "validate_tests.rs"]
mod tests;
