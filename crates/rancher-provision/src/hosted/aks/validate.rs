//! Checks an `aksConfig` before anything is sent to Azure, naming the offending field
//! (`spec.aksConfig.nodePools[1].vmSize`), with Azure's documented naming rules and limits
//! (Managed Clusters / Agent Pools REST reference, "URI Parameters" patterns; AKS network concepts).

use std::collections::BTreeSet;
use std::net::IpAddr;

use rancher_core::model::{AksConfig, AksNodePool};

use super::net::{Cidr, parse_version};
use crate::ProvisionError;

const ROOT: &str = "spec.aksConfig";
/// The service range AKS uses when `serviceCidr` is left out.
const DEFAULT_SERVICE_CIDR: &str = "10.0.0.0/16";

fn bad(field: impl AsRef<str>, message: impl Into<String>) -> ProvisionError {
    ProvisionError::invalid_spec(format!("{ROOT}.{}", field.as_ref()), message)
}

fn present(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

/// Checks `config` against Azure's naming rules and AKS's limits.
///
/// # Errors
/// [`ProvisionError::InvalidSpec`] naming the first offending field, as a path from the cluster.
pub fn validate(config: &AksConfig) -> Result<(), ProvisionError> {
    if config.azure_credential_secret.trim().is_empty() {
        return Err(bad("azureCredentialSecret", "name the Azure cloud credential to use"));
    }
    check_location(&config.resource_location)?;
    check_resource_group("resourceGroup", &config.resource_group)?;
    check_cluster_name(&config.cluster_name)?;
    for (field, url) in [("baseUrl", &config.base_url), ("authBaseUrl", &config.auth_base_url)] {
        if let Some(u) = present(url) {
            check_https_url(field, u)?;
        }
    }
    if let Some(v) = present(&config.kubernetes_version) {
        parse_version(v)
            .ok_or_else(|| bad("kubernetesVersion", format!("{v:?} is not a version like 1.30 or 1.30.4")))?;
    }
    if let Some(p) = present(&config.dns_prefix) {
        check_dns_prefix(p)?;
    }
    check_tags(config)?;
    check_network(config)?;
    check_linux_profile(config)?;
    if let Some(g) = present(&config.node_resource_group) {
        check_resource_group("nodeResourceGroup", g)?;
    }
    if let Some(g) = present(&config.log_analytics_workspace_group) {
        check_resource_group("logAnalyticsWorkspaceGroup", g)?;
    }
    if let Some(n) = present(&config.log_analytics_workspace_name) {
        let ok = (4..=63).contains(&n.len())
            && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            && !n.starts_with('-')
            && !n.ends_with('-');
        if !ok {
            return Err(bad(
                "logAnalyticsWorkspaceName",
                "4 to 63 letters, digits and hyphens, not at either end",
            ));
        }
    }
    check_pools(config)
}

fn check_location(location: &str) -> Result<(), ProvisionError> {
    let l = location.trim();
    if l.is_empty() {
        return Err(bad("resourceLocation", "name the Azure region (for example eastus)"));
    }
    if !l.chars().all(|c| c.is_ascii_alphanumeric() || c == ' ') || l.len() > 64 {
        return Err(bad("resourceLocation", format!("{l:?} is not an Azure region name")));
    }
    Ok(())
}

/// Resource groups: 1–90 letters, digits, `_ - . ( )`, not ending in a period.
fn check_resource_group(field: &str, name: &str) -> Result<(), ProvisionError> {
    if name.is_empty() {
        return Err(bad(field, "name the resource group"));
    }
    let ok = name.len() <= 90
        && name.chars().all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | '(' | ')'))
        && !name.ends_with('.');
    if !ok {
        return Err(bad(
            field,
            format!(
                "{name:?}: 1 to 90 letters, digits, underscores, hyphens, periods and parentheses, not ending in a period"
            ),
        ));
    }
    Ok(())
}

/// `^[a-zA-Z0-9]$|^[a-zA-Z0-9][-_a-zA-Z0-9]{0,61}[a-zA-Z0-9]$`
fn check_cluster_name(name: &str) -> Result<(), ProvisionError> {
    let alnum = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    let ok = (1..=63).contains(&name.len())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        && alnum(name.chars().next())
        && alnum(name.chars().last());
    if !ok {
        return Err(bad(
            "clusterName",
            format!(
                "{name:?}: 1 to 63 letters, digits, hyphens and underscores, starting and ending with a letter or digit"
            ),
        ));
    }
    Ok(())
}

/// 1–54 letters, digits and hyphens, starting and ending with a letter or digit.
fn check_dns_prefix(p: &str) -> Result<(), ProvisionError> {
    let alnum = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    let ok = p.len() <= 54
        && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        && alnum(p.chars().next())
        && alnum(p.chars().last());
    if !ok {
        return Err(bad(
            "dnsPrefix",
            format!("{p:?}: 1 to 54 letters, digits and hyphens, starting and ending with a letter or digit"),
        ));
    }
    Ok(())
}

fn check_https_url(field: &str, u: &str) -> Result<(), ProvisionError> {
    match url::Url::parse(u) {
        Ok(url) if url.scheme() == "https" && url.host_str().is_some_and(|h| !h.is_empty()) => Ok(()),
        Ok(_) => Err(bad(field, format!("{u:?} must be an https:// URL"))),
        Err(e) => Err(bad(field, format!("{u:?} is not a URL: {e}"))),
    }
}

/// Azure tags: at most 50; names up to 512 characters without `< > % & \ ? /`, values up to 256.
fn check_tags(config: &AksConfig) -> Result<(), ProvisionError> {
    if config.tags.len() > 50 {
        return Err(bad("tags", "Azure allows at most 50 tags on a resource"));
    }
    for (k, v) in &config.tags {
        if k.is_empty() || k.len() > 512 || k.chars().any(|c| "<>%&\\?/".contains(c)) {
            return Err(bad(format!("tags.{k}"), "tag names are 1 to 512 characters without < > % & \\ ? /"));
        }
        if v.len() > 256 {
            return Err(bad(format!("tags.{k}"), "tag values are at most 256 characters"));
        }
    }
    Ok(())
}

fn one_of(field: &str, value: &str, allowed: &[&str]) -> Result<(), ProvisionError> {
    if allowed.iter().any(|a| a.eq_ignore_ascii_case(value)) {
        Ok(())
    } else {
        Err(bad(field, format!("{value:?} is not one of {}", allowed.join(", "))))
    }
}

fn cidr(field: &str, v: &str) -> Result<Cidr, ProvisionError> {
    Cidr::parse(v).ok_or_else(|| bad(field, format!("{v:?} is not a CIDR range like 10.0.0.0/16")))
}

fn check_network(c: &AksConfig) -> Result<(), ProvisionError> {
    if let Some(p) = present(&c.network_plugin) {
        one_of("networkPlugin", p, &["kubenet", "azure"])?;
    }
    if let Some(p) = present(&c.network_policy) {
        one_of("networkPolicy", p, &["azure", "calico"])?;
    }
    if let Some(s) = present(&c.load_balancer_sku) {
        one_of("loadBalancerSku", s, &["basic", "standard"])?;
    }
    if let Some(o) = present(&c.outbound_type) {
        one_of(
            "outboundType",
            o,
            &["loadBalancer", "userDefinedRouting", "managedNATGateway", "userAssignedNATGateway"],
        )?;
    }
    let service = present(&c.service_cidr).map(|v| cidr("serviceCidr", v)).transpose()?;
    let pod = present(&c.pod_cidr).map(|v| cidr("podCidr", v)).transpose()?;
    let bridge = present(&c.docker_bridge_cidr).map(|v| cidr("dockerBridgeCidr", v)).transpose()?;
    if let (Some(s), Some(p)) = (&service, &pod)
        && s.overlaps(p)
    {
        return Err(bad("podCidr", "must not overlap serviceCidr"));
    }
    if let (Some(s), Some(b)) = (&service, &bridge)
        && s.overlaps(b)
    {
        return Err(bad("dockerBridgeCidr", "must not overlap serviceCidr"));
    }
    if let Some(ip) = present(&c.dns_service_ip) {
        let addr: IpAddr =
            ip.parse().map_err(|_| bad("dnsServiceIp", format!("{ip:?} is not an IP address")))?;
        let range = match &service {
            Some(s) => s.clone(),
            None => Cidr::parse(DEFAULT_SERVICE_CIDR).expect("the default service range parses"),
        };
        if !range.contains(addr) {
            return Err(bad("dnsServiceIp", format!("{ip} is not inside the service range {range}")));
        }
        if range.first_host() == Some(addr) {
            return Err(bad(
                "dnsServiceIp",
                format!("{ip} is the Kubernetes service's address; pick another in {range}"),
            ));
        }
    }
    match (present(&c.virtual_network), present(&c.subnet), present(&c.virtual_network_resource_group)) {
        (None, None, _) => {}
        (Some(_), Some(_), Some(g)) => check_resource_group("virtualNetworkResourceGroup", g)?,
        (Some(_), Some(_), None) => {
            return Err(bad("virtualNetworkResourceGroup", "name the virtual network's resource group"));
        }
        (Some(_), None, _) => return Err(bad("subnet", "a virtual network needs a subnet for the nodes")),
        (None, Some(_), _) => return Err(bad("virtualNetwork", "a subnet needs its virtual network")),
    }
    if c.private_cluster && !c.authorized_ip_ranges.is_empty() {
        return Err(bad(
            "authorizedIpRanges",
            "a private cluster's API server has no public address to restrict",
        ));
    }
    for (i, r) in c.authorized_ip_ranges.iter().enumerate() {
        if Cidr::parse(r).is_none() && r.parse::<IpAddr>().is_err() {
            return Err(bad(
                format!("authorizedIpRanges[{i}]"),
                format!("{r:?} is not an address or CIDR range"),
            ));
        }
    }
    Ok(())
}

fn check_linux_profile(c: &AksConfig) -> Result<(), ProvisionError> {
    match (present(&c.linux_admin_username), present(&c.ssh_public_key)) {
        (None, None) => Ok(()),
        (Some(_), None) => Err(bad("sshPublicKey", "linuxAdminUsername needs an SSH public key")),
        (None, Some(_)) => Err(bad("linuxAdminUsername", "sshPublicKey needs an administrator user name")),
        (Some(user), Some(key)) => {
            let ok = user.len() <= 32
                && user.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
                && user.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
            if !ok {
                return Err(bad(
                    "linuxAdminUsername",
                    "1 to 32 letters, digits, hyphens and underscores, starting with a letter",
                ));
            }
            if !(key.starts_with("ssh-") || key.starts_with("ecdsa-")) || key.split_whitespace().count() < 2 {
                return Err(bad("sshPublicKey", "an OpenSSH public key (ssh-rsa AAAA…)"));
            }
            Ok(())
        }
    }
}

fn check_pools(c: &AksConfig) -> Result<(), ProvisionError> {
    if c.node_pools.is_empty() {
        if c.imported {
            return Ok(());
        }
        return Err(bad("nodePools", "a new cluster needs at least one node pool in System mode"));
    }
    let cp_version = present(&c.kubernetes_version).and_then(parse_version);
    let mut names = BTreeSet::new();
    for (i, pool) in c.node_pools.iter().enumerate() {
        check_pool(i, pool, cp_version, c.imported)?;
        if !names.insert(pool.name.as_str()) {
            return Err(bad(format!("nodePools[{i}].name"), format!("{:?} names two pools", pool.name)));
        }
    }
    let system =
        c.node_pools.iter().any(|p| p.mode.as_deref().is_some_and(|m| m.eq_ignore_ascii_case("System")));
    if !c.imported && !system {
        return Err(bad(
            "nodePools",
            "at least one pool must have mode System (it runs the cluster's own pods)",
        ));
    }
    Ok(())
}

fn check_pool(
    i: usize,
    p: &AksNodePool,
    cp_version: Option<(u64, u64, Option<u64>)>,
    imported: bool,
) -> Result<(), ProvisionError> {
    let f = |name: &str| format!("nodePools[{i}].{name}");
    let windows = p.os_type.as_deref().is_some_and(|o| o.eq_ignore_ascii_case("Windows"));
    let max_len = if windows { 6 } else { 12 };
    let name_ok = (1..=max_len).contains(&p.name.len())
        && p.name.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && p.name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if !name_ok {
        return Err(bad(
            f("name"),
            format!("{:?}: 1 to {max_len} lowercase letters and digits, starting with a letter", p.name),
        ));
    }
    if let Some(m) = present(&p.mode) {
        one_of(&f("mode"), m, &["System", "User"])?;
    }
    if let Some(o) = present(&p.os_type) {
        one_of(&f("osType"), o, &["Linux", "Windows"])?;
        if windows && p.mode.as_deref().is_some_and(|m| m.eq_ignore_ascii_case("System")) {
            return Err(bad(f("osType"), "System pools run Linux"));
        }
    }
    match present(&p.vm_size) {
        Some(s) if s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') => {}
        Some(s) => return Err(bad(f("vmSize"), format!("{s:?} is not an Azure VM size (Standard_DS2_v2)"))),
        None if !imported => return Err(bad(f("vmSize"), "name the VM size (for example Standard_DS2_v2)")),
        None => {}
    }
    if let Some(d) = present(&p.os_disk_type) {
        one_of(&f("osDiskType"), d, &["Managed", "Ephemeral"])?;
    }
    if let Some(gb) = p.os_disk_size_gb
        && gb != 0
        && !(30..=2048).contains(&gb)
    {
        return Err(bad(f("osDiskSizeGB"), "between 30 and 2048 (0 for the VM size's default)"));
    }
    if let Some(m) = p.max_pods
        && !(10..=250).contains(&m)
    {
        return Err(bad(f("maxPods"), "between 10 and 250"));
    }
    let system = p.mode.as_deref().is_some_and(|m| m.eq_ignore_ascii_case("System"));
    let floor = i32::from(system);
    if let Some(n) = p.count
        && !(floor..=1000).contains(&n)
    {
        return Err(bad(f("count"), format!("between {floor} and 1000")));
    }
    if p.count.is_none() && !imported {
        return Err(bad(f("count"), "say how many nodes the pool starts with"));
    }
    check_autoscaling(&f, p, floor)?;
    if let Some(v) = present(&p.orchestrator_version) {
        let pv = parse_version(v)
            .ok_or_else(|| bad(f("orchestratorVersion"), format!("{v:?} is not a version like 1.30.4")))?;
        if let Some(cp) = cp_version
            && (pv.0, pv.1) > (cp.0, cp.1)
        {
            return Err(bad(
                f("orchestratorVersion"),
                "a pool may not run a newer Kubernetes than the control plane",
            ));
        }
    }
    if let Some(zones) = &p.availability_zones {
        for (z, zone) in zones.iter().enumerate() {
            if !matches!(zone.as_str(), "1" | "2" | "3") {
                return Err(bad(
                    f(&format!("availabilityZones[{z}]")),
                    format!("{zone:?}: zones are 1, 2 or 3"),
                ));
            }
        }
    }
    if let Some(s) = present(&p.max_surge) {
        let n = s.strip_suffix('%').unwrap_or(s).parse::<u32>().ok();
        let ok = match (s.ends_with('%'), n) {
            (true, Some(pct)) => (1..=100).contains(&pct),
            (false, Some(n)) => n >= 1,
            _ => false,
        };
        if !ok {
            return Err(bad(f("maxSurge"), format!("{s:?}: a node count (1) or a percentage (33%)")));
        }
    }
    if let Some(id) = present(&p.vnet_subnet_id)
        && !id.to_ascii_lowercase().starts_with("/subscriptions/")
    {
        return Err(bad(f("vnetSubnetID"), "a subnet resource id (/subscriptions/…/subnets/…)"));
    }
    for k in p.node_labels.keys() {
        if k.is_empty() || k.len() > 317 || k.chars().any(char::is_whitespace) {
            return Err(bad(f(&format!("nodeLabels.{k}")), "not a Kubernetes label key"));
        }
    }
    for (t, taint) in p.node_taints.iter().enumerate() {
        check_taint(taint).map_err(|m| bad(f(&format!("nodeTaints[{t}]")), m))?;
    }
    Ok(())
}

fn check_autoscaling(f: &dyn Fn(&str) -> String, p: &AksNodePool, floor: i32) -> Result<(), ProvisionError> {
    let (min, max) = (p.min_count, p.max_count);
    if p.enable_auto_scaling == Some(true) {
        let min = min.ok_or_else(|| bad(f("minCount"), "autoscaling needs minCount"))?;
        let max = max.ok_or_else(|| bad(f("maxCount"), "autoscaling needs maxCount"))?;
        if min < floor {
            return Err(bad(f("minCount"), format!("at least {floor}")));
        }
        if max > 1000 {
            return Err(bad(f("maxCount"), "at most 1000"));
        }
        if min > max {
            return Err(bad(f("minCount"), format!("minCount {min} is above maxCount {max}")));
        }
        if let Some(n) = p.count
            && !(min..=max).contains(&n)
        {
            return Err(bad(f("count"), format!("{n} is outside minCount..maxCount ({min}..{max})")));
        }
    } else if let (Some(min), Some(max)) = (min, max)
        && min > max
    {
        return Err(bad(f("minCount"), format!("minCount {min} is above maxCount {max}")));
    }
    Ok(())
}

/// `key=value:Effect` (or `key:Effect`), Effect one of Kubernetes's three.
fn check_taint(t: &str) -> Result<(), String> {
    let shape = || format!("{t:?} is not key=value:Effect (NoSchedule, PreferNoSchedule or NoExecute)");
    let (kv, effect) = t.rsplit_once(':').ok_or_else(shape)?;
    if !matches!(effect, "NoSchedule" | "PreferNoSchedule" | "NoExecute") {
        return Err(shape());
    }
    let key = kv.split_once('=').map_or(kv, |(k, _)| k);
    let key_ok = !key.is_empty()
        && key.len() <= 253
        && key.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'));
    if !key_ok {
        return Err(shape());
    }
    Ok(())
}

#[cfg(test)]
#[path = "validate_tests.rs"]
mod tests;
