//! The simulated kubelet's command line: the real kubelet's main flags, checked into a
//! [`KubeletConfig`] before anything talks to the API server, and the flags it accepts and ignores.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::core::v1::Taint;

use super::KubeletError;

/// `rancher-sim kubelet`'s flags, named as the real kubelet names them.
#[derive(Debug, Clone, clap::Args)]
pub struct KubeletArgs {
    /// Kubeconfig with the node's credentials (client certificate or token) for `system:node:<name>`.
    #[arg(long)]
    pub kubeconfig: PathBuf,
    /// The Node's name; the machine's host name when absent.
    #[arg(long)]
    pub hostname_override: Option<String>,
    /// The Node's InternalIP; the address the node name resolves to when absent.
    #[arg(long)]
    pub node_ip: Option<String>,
    /// Labels to register the Node with: `key=value,key2=value2`.
    #[arg(long, default_value = "")]
    pub node_labels: String,
    /// Taints to register the Node with: `key=value:Effect,key2:Effect`.
    #[arg(long, default_value = "")]
    pub register_with_taints: String,
    /// The number of pods the node takes (capacity `pods`).
    #[arg(long, default_value_t = 110)]
    pub max_pods: u32,
    /// How often the Node's status is reported, e.g. `10s`.
    #[arg(long, default_value = "10s")]
    pub node_status_update_frequency: String,
    /// The node Lease's duration in seconds; it is renewed every quarter of it.
    #[arg(long, default_value_t = 40)]
    pub node_lease_duration_seconds: u32,
    /// Simulated CPU capacity (a quantity: `4`, `3500m`).
    #[arg(long, default_value = "4")]
    pub sim_cpu: String,
    /// Simulated memory capacity (a quantity: `8Gi`).
    #[arg(long, default_value = "8Gi")]
    pub sim_memory: String,
    /// Simulated ephemeral-storage capacity (a quantity: `100Gi`).
    #[arg(long, default_value = "100Gi")]
    pub sim_ephemeral_storage: String,
}

/// A checked kubelet configuration.
#[derive(Debug, Clone)]
pub struct KubeletConfig {
    /// The kubeconfig file (its content is read at start and never logged).
    pub kubeconfig: PathBuf,
    /// The Node's name.
    pub node_name: String,
    /// The Node's InternalIP (`None`: resolved from the node name at start, loopback as a last resort).
    pub node_ip: Option<IpAddr>,
    /// Labels from `--node-labels`.
    pub labels: BTreeMap<String, String>,
    /// Taints from `--register-with-taints`.
    pub taints: Vec<Taint>,
    /// Capacity: `cpu`, `memory`, `ephemeral-storage`, `pods`.
    pub capacity: BTreeMap<String, String>,
    /// How often the Node's status is reported.
    pub status_every: Duration,
    /// The Lease's `leaseDurationSeconds`; renewed every quarter of it.
    pub lease_duration_seconds: u32,
}

impl KubeletArgs {
    /// Checks every flag; the error names the flag and what is wrong with it.
    ///
    /// # Errors
    /// [`KubeletError::Flag`] for the first bad flag.
    pub fn into_config(self) -> Result<KubeletConfig, KubeletError> {
        let node_name = match self.hostname_override {
            Some(n) => n.trim().to_ascii_lowercase(),
            None => machine_hostname().ok_or_else(|| {
                flag("hostname-override", "not given, and the machine's host name cannot be read")
            })?,
        };
        check_dns_subdomain(&node_name)
            .map_err(|r| flag("hostname-override", format!("{node_name:?}: {r}")))?;
        let node_ip = self
            .node_ip
            .filter(|s| !s.is_empty())
            .map(|s| s.parse::<IpAddr>().map_err(|e| flag("node-ip", format!("{s:?}: {e}"))))
            .transpose()?;
        let labels = parse_labels(&self.node_labels).map_err(|r| flag("node-labels", r))?;
        let taints = parse_taints(&self.register_with_taints).map_err(|r| flag("register-with-taints", r))?;
        let mut capacity = BTreeMap::new();
        for (name, key, value) in [
            ("sim-cpu", "cpu", self.sim_cpu),
            ("sim-memory", "memory", self.sim_memory),
            ("sim-ephemeral-storage", "ephemeral-storage", self.sim_ephemeral_storage),
        ] {
            check_quantity(&value).map_err(|r| flag(name, format!("{value:?}: {r}")))?;
            capacity.insert(key.to_owned(), value);
        }
        if self.max_pods == 0 {
            return Err(flag("max-pods", "must be at least 1"));
        }
        capacity.insert("pods".into(), self.max_pods.to_string());
        let status_every = parse_duration(&self.node_status_update_frequency).map_err(|r| {
            flag("node-status-update-frequency", format!("{:?}: {r}", self.node_status_update_frequency))
        })?;
        if status_every < Duration::from_secs(1) {
            return Err(flag("node-status-update-frequency", "must be at least 1s"));
        }
        if self.node_lease_duration_seconds < 4 {
            return Err(flag("node-lease-duration-seconds", "must be at least 4"));
        }
        Ok(KubeletConfig {
            kubeconfig: self.kubeconfig,
            node_name,
            node_ip,
            labels,
            taints,
            capacity,
            status_every,
            lease_duration_seconds: self.node_lease_duration_seconds,
        })
    }
}

impl KubeletConfig {
    /// How often the Lease is renewed: a quarter of its duration, as the real kubelet does.
    pub fn lease_renew_every(&self) -> Duration {
        Duration::from_secs(u64::from(self.lease_duration_seconds)) / 4
    }
}

fn flag(name: &'static str, reason: impl Into<String>) -> KubeletError {
    KubeletError::Flag { flag: name, reason: reason.into() }
}

fn machine_hostname() -> Option<String> {
    let raw = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .ok()?;
    let name = raw.trim().to_ascii_lowercase();
    (!name.is_empty()).then_some(name)
}

// ---- flags the real kubelet has and the simulated one has no use for ----

/// Real kubelet flags that take a value and are accepted and ignored (with a warning).
const IGNORED_WITH_VALUE: &[&str] = &[
    "address",
    "anonymous-auth",
    "authentication-token-webhook",
    "authorization-mode",
    "bootstrap-kubeconfig",
    "cert-dir",
    "cgroup-driver",
    "cgroups-per-qos",
    "client-ca-file",
    "cloud-config",
    "cloud-provider",
    "cluster-dns",
    "cluster-domain",
    "cni-bin-dir",
    "cni-conf-dir",
    "config",
    "container-runtime",
    "container-runtime-endpoint",
    "enforce-node-allocatable",
    "event-qps",
    "eviction-hard",
    "fail-swap-on",
    "feature-gates",
    "healthz-bind-address",
    "image-gc-high-threshold",
    "image-gc-low-threshold",
    "kube-reserved",
    "make-iptables-util-chains",
    "network-plugin",
    "pod-infra-container-image",
    "port",
    "protect-kernel-defaults",
    "read-only-port",
    "resolv-conf",
    "root-dir",
    "rotate-certificates",
    "runtime-request-timeout",
    "serialize-image-pulls",
    "streaming-connection-idle-timeout",
    "system-reserved",
    "tls-cert-file",
    "tls-cipher-suites",
    "tls-private-key-file",
    "v",
    "volume-plugin-dir",
];

/// Removes the real kubelet flags that the simulated one ignores from `args` (the arguments after
/// `kubelet`), in both the `--flag=value` and the `--flag value` form, and returns their names so the
/// caller can warn once logging is up. Boolean flags of the real kubelet are accepted bare too.
pub fn strip_ignored_flags(args: &mut Vec<String>) -> Vec<String> {
    let mut ignored = Vec::new();
    let mut kept = Vec::with_capacity(args.len());
    let mut it = std::mem::take(args).into_iter().peekable();
    while let Some(arg) = it.next() {
        let Some(body) = arg.strip_prefix("--") else {
            kept.push(arg);
            continue;
        };
        let (name, has_value) = match body.split_once('=') {
            Some((n, _)) => (n.to_owned(), true),
            None => (body.to_owned(), false),
        };
        if !IGNORED_WITH_VALUE.contains(&name.as_str()) {
            kept.push(arg);
            continue;
        }
        if !has_value && it.peek().is_some_and(|next| !next.starts_with("--")) {
            it.next();
        }
        ignored.push(name);
    }
    *args = kept;
    ignored
}

// ---- parsing and checking values ----

/// Label domains a kubelet may set itself (NodeRestriction refuses the rest of `kubernetes.io`).
const ALLOWED_KUBERNETES_LABELS: &[&str] = &[
    "kubernetes.io/hostname",
    "kubernetes.io/instance-type",
    "kubernetes.io/os",
    "kubernetes.io/arch",
    "beta.kubernetes.io/instance-type",
    "beta.kubernetes.io/os",
    "beta.kubernetes.io/arch",
    "failure-domain.beta.kubernetes.io/zone",
    "failure-domain.beta.kubernetes.io/region",
    "failure-domain.kubernetes.io/zone",
    "failure-domain.kubernetes.io/region",
    "topology.kubernetes.io/zone",
    "topology.kubernetes.io/region",
];
const ALLOWED_KUBERNETES_NAMESPACES: &[&str] = &["kubelet.kubernetes.io", "node.kubernetes.io"];

/// `key=value,key2=value2` (empty: no labels). A key in the `kubernetes.io` or `k8s.io` namespaces
/// must be one a kubelet may set, as the real kubelet checks at start.
pub(crate) fn parse_labels(s: &str) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let (k, v) = item.split_once('=').ok_or_else(|| format!("{item:?} is not key=value"))?;
        check_label_key(k).map_err(|r| format!("label key {k:?}: {r}"))?;
        check_label_value(v).map_err(|r| format!("label {k:?} value {v:?}: {r}"))?;
        let prefix = k.split_once('/').map(|(p, _)| p).unwrap_or("");
        let kube_ns = prefix == "kubernetes.io"
            || prefix.ends_with(".kubernetes.io")
            || prefix == "k8s.io"
            || prefix.ends_with(".k8s.io");
        let allowed = ALLOWED_KUBERNETES_LABELS.contains(&k)
            || ALLOWED_KUBERNETES_NAMESPACES
                .iter()
                .any(|ns| prefix == *ns || prefix.ends_with(&format!(".{ns}")));
        if kube_ns && !allowed {
            return Err(format!(
                "label {k:?} is in the kubernetes.io/k8s.io namespace and a kubelet may not set it \
                 (allowed: {}, or a key under kubelet.kubernetes.io/ or node.kubernetes.io/)",
                ALLOWED_KUBERNETES_LABELS.join(", ")
            ));
        }
        if out.insert(k.to_owned(), v.to_owned()).is_some() {
            return Err(format!("label {k:?} is given twice"));
        }
    }
    Ok(out)
}

/// `key=value:Effect,key2:Effect` (empty: no taints).
pub(crate) fn parse_taints(s: &str) -> Result<Vec<Taint>, String> {
    let mut out: Vec<Taint> = Vec::new();
    for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let (kv, effect) =
            item.rsplit_once(':').ok_or_else(|| format!("{item:?} is not key=value:Effect or key:Effect"))?;
        if !["NoSchedule", "PreferNoSchedule", "NoExecute"].contains(&effect) {
            return Err(format!(
                "{item:?}: effect {effect:?} is not NoSchedule, PreferNoSchedule or NoExecute"
            ));
        }
        let (key, value) = match kv.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (kv, None),
        };
        check_label_key(key).map_err(|r| format!("{item:?}: key {key:?}: {r}"))?;
        if let Some(v) = value {
            check_label_value(v).map_err(|r| format!("{item:?}: value {v:?}: {r}"))?;
        }
        if out.iter().any(|t| t.key == key && t.effect == effect) {
            return Err(format!("{item:?}: a taint with key {key:?} and effect {effect} is given twice"));
        }
        out.push(Taint {
            key: key.to_owned(),
            value: value.filter(|v| !v.is_empty()).map(str::to_owned),
            effect: effect.to_owned(),
            time_added: None,
        });
    }
    Ok(out)
}

fn check_name_part(s: &str) -> Result<(), String> {
    if s.is_empty() || s.len() > 63 {
        return Err("the name must be 1 to 63 characters".into());
    }
    let ok_inner = s.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    let ends = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    if !ok_inner || !ends(s.chars().next()) || !ends(s.chars().last()) {
        return Err(
            "the name must be alphanumerics, '-', '_' or '.', starting and ending alphanumeric".into()
        );
    }
    Ok(())
}

fn check_label_key(k: &str) -> Result<(), String> {
    match k.split_once('/') {
        Some((prefix, name)) => {
            check_dns_subdomain(prefix).map_err(|r| format!("prefix: {r}"))?;
            check_name_part(name)
        }
        None => check_name_part(k),
    }
}

fn check_label_value(v: &str) -> Result<(), String> {
    if v.is_empty() { Ok(()) } else { check_name_part(v) }
}

/// A DNS-1123 subdomain: what a Node name must be.
pub(crate) fn check_dns_subdomain(s: &str) -> Result<(), String> {
    if s.is_empty() || s.len() > 253 {
        return Err("must be 1 to 253 characters".into());
    }
    for label in s.split('.') {
        let ok = !label.is_empty()
            && label.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !ok {
            return Err("must be lower-case alphanumerics, '-' and '.', each part starting and ending \
                        alphanumeric (a DNS-1123 subdomain)"
                .into());
        }
    }
    Ok(())
}

/// A Kubernetes quantity as the sim reports it: a decimal number and an optional SI or binary suffix.
pub(crate) fn check_quantity(s: &str) -> Result<(), String> {
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    let (num, suffix) = s.split_at(split);
    let num_ok = !num.is_empty() && num.matches('.').count() <= 1 && num.chars().any(|c| c.is_ascii_digit());
    if !num_ok {
        return Err("not a quantity (a number with an optional suffix such as m, Mi, Gi)".into());
    }
    if !["", "m", "k", "M", "G", "T", "P", "E", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"].contains(&suffix) {
        return Err(format!("unknown suffix {suffix:?} (one of m, k, M, G, T, Ki, Mi, Gi, Ti, …)"));
    }
    if num.chars().all(|c| c == '0' || c == '.') {
        return Err("must be more than zero".into());
    }
    Ok(())
}

/// A Go-style duration of one unit: `500ms`, `10s`, `1m`, `1h`.
pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().map_err(|_| "not a duration such as 10s, 500ms or 1m".to_owned())?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        "h" => Ok(Duration::from_secs(n * 3600)),
        _ => Err(format!("unit {unit:?} is not ms, s, m or h")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> KubeletArgs {
        KubeletArgs {
            kubeconfig: "/k".into(),
            hostname_override: Some("Node-1".into()),
            node_ip: None,
            node_labels: String::new(),
            register_with_taints: String::new(),
            max_pods: 110,
            node_status_update_frequency: "10s".into(),
            node_lease_duration_seconds: 40,
            sim_cpu: "4".into(),
            sim_memory: "8Gi".into(),
            sim_ephemeral_storage: "100Gi".into(),
        }
    }

    fn err(a: KubeletArgs) -> String {
        a.into_config().expect_err("bad flags").to_string()
    }

    #[test]
    fn defaults_are_checked_and_the_name_lower_cased() {
        let c = args().into_config().unwrap();
        assert_eq!(c.node_name, "node-1");
        assert_eq!(c.capacity["pods"], "110");
        assert_eq!(c.capacity["memory"], "8Gi");
        assert_eq!(c.lease_renew_every(), Duration::from_secs(10));
    }

    #[test]
    fn labels_parse_and_bad_ones_are_named() {
        let l = parse_labels("a=b, example.com/role=db ,node.kubernetes.io/pool=x,e=").unwrap();
        assert_eq!(l.len(), 4);
        assert_eq!(l["example.com/role"], "db");
        assert!(parse_labels("novalue").unwrap_err().contains("\"novalue\" is not key=value"));
        assert!(parse_labels("a=b,a=c").unwrap_err().contains("given twice"));
        assert!(parse_labels("bad key=x").unwrap_err().contains("label key \"bad key\""));
        let e = parse_labels("node-role.kubernetes.io/worker=true").unwrap_err();
        assert!(e.contains("a kubelet may not set it"), "{e}");
        let mut a = args();
        a.node_labels = "x=-bad".into();
        assert!(err(a).starts_with("--node-labels: label \"x\" value \"-bad\""));
    }

    #[test]
    fn taints_parse_and_bad_ones_are_named() {
        let t = parse_taints("dedicated=db:NoSchedule,gpu:PreferNoSchedule").unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!(
            (t[0].key.as_str(), t[0].value.as_deref(), t[0].effect.as_str()),
            ("dedicated", Some("db"), "NoSchedule")
        );
        assert_eq!(t[1].value, None);
        assert!(parse_taints("a=b").unwrap_err().contains("is not key=value:Effect"));
        assert!(parse_taints("a=b:Never").unwrap_err().contains("effect \"Never\""));
        assert!(parse_taints("a:NoSchedule,a=x:NoSchedule").unwrap_err().contains("given twice"));
    }

    #[test]
    fn bad_values_name_their_flag() {
        let mut a = args();
        a.hostname_override = Some("under_score".into());
        assert!(err(a).starts_with("--hostname-override: \"under_score\""));
        let mut a = args();
        a.node_ip = Some("10.0.0".into());
        assert!(err(a).starts_with("--node-ip: \"10.0.0\""));
        let mut a = args();
        a.sim_memory = "8Gb".into();
        assert!(err(a).starts_with("--sim-memory: \"8Gb\": unknown suffix"));
        let mut a = args();
        a.sim_cpu = "0".into();
        assert!(err(a).contains("more than zero"));
        let mut a = args();
        a.node_status_update_frequency = "10".into();
        assert!(err(a).starts_with("--node-status-update-frequency"));
        let mut a = args();
        a.max_pods = 0;
        assert!(err(a).starts_with("--max-pods"));
    }

    #[test]
    fn ignored_flags_are_stripped_in_both_forms() {
        let mut v: Vec<String> = [
            "--kubeconfig=/k",
            "--v=2",
            "--cluster-dns",
            "10.43.0.10",
            "--fail-swap-on",
            "--node-labels",
            "a=b",
            "--read-only-port=0",
        ]
        .map(String::from)
        .to_vec();
        let ignored = strip_ignored_flags(&mut v);
        assert_eq!(ignored, ["v", "cluster-dns", "fail-swap-on", "read-only-port"]);
        assert_eq!(v, ["--kubeconfig=/k", "--node-labels", "a=b"]);
    }

    #[test]
    fn quantities_and_durations() {
        for ok in ["4", "3500m", "1.5", "16Gi", "100G"] {
            check_quantity(ok).unwrap();
        }
        for bad in ["", "Gi", "1..5", "4x", "-1"] {
            assert!(check_quantity(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert!(parse_duration("1d").is_err());
    }
}
