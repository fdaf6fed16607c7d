//! The way in: over SSH, put the host's component binaries on it (checksums checked) and start its
//! node agent, which does everything else through its tunnel session.

use std::time::Duration;

use rancher_core::model::{RkeConfig, RkeNode};
use rancher_provision::bundle::{Bundle, ComponentSource};
use rancher_provision::rke;
use rancher_provision::ssh::{
    HostKeyPolicy, SshError, SshSession, SshTarget, UploadSource, sh_quote as shell_quote,
};

use super::layout::HostLayout;
use super::read_ssh_key;
use crate::server::secrets::Sealer;

/// How long one SSH connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Components every host runs.
const EVERY_HOST: [&str; 2] = ["node-agent", "kubelet"];
/// Components of etcd hosts (`etcdctl`, for restoring snapshots, only when the bundle has it: it is
/// optional, see [`rancher_provision::bundle::OPTIONAL_COMPONENTS`]).
const ETCD: [&str; 2] = ["etcd", "etcdctl"];
/// Components of control-plane hosts.
const CONTROLPLANE: [&str; 3] = ["kube-apiserver", "kube-controller-manager", "kube-scheduler"];

/// The components `node` needs, by its roles.
pub(super) fn components_of(node: &RkeNode) -> Vec<&'static str> {
    let has = |r: &str| node.role.iter().any(|x| x == r);
    let mut out = EVERY_HOST.to_vec();
    if has("etcd") {
        out.extend(ETCD);
    }
    if has("controlplane") {
        out.extend(CONTROLPLANE);
    }
    out
}

/// Where the node agent finds the server, and its credential.
pub(super) struct AgentBoot<'a> {
    /// The server's URL as hosts reach it.
    pub(super) server_url: &'a str,
    /// The SHA-256 of the server's CA.
    pub(super) ca_checksum: &'a str,
    /// The cluster's registration token.
    pub(super) token: &'a str,
}

/// Why a host could not be bootstrapped. Whether a retry may help is [`is_transient`]
/// (HostError::is_transient):
/// - transient: the host is unreachable, the connection timed out or was lost, a transfer arrived
///   garbled — the network may heal, so the run is retried with backoff;
/// - permanent: the key was refused, the host key changed, a bundle file is not what its manifest
///   says, a command failed on the host, the key is missing — the same attempt would fail the same
///   way, so provisioning stops until the cluster's spec changes (a refused key stays refused until
///   the config names another key or the host is given this one and the spec is touched).
#[derive(Debug, thiserror::Error)]
pub(crate) enum HostError {
    /// SSH failed (unreachable, wrong key, changed host key, connection lost …).
    #[error(transparent)]
    Ssh(#[from] SshError),
    /// A component binary could not be put on the host.
    #[error("{component}: {source}")]
    Component {
        /// The component.
        component: String,
        /// Why.
        #[source]
        source: SshError,
    },
    /// A component's file on the server does not hash to the checksum its bundle names.
    #[error(
        "{component}: checksum mismatch: the bundle {version} says sha256 {expected}, its file {file} \
         has {actual}"
    )]
    BundleMismatch {
        /// The bundle.
        version: String,
        /// The component.
        component: String,
        /// The component's source (a path on the server).
        file: String,
        /// The bundle's checksum.
        expected: String,
        /// What the file hashes to.
        actual: String,
    },
    /// The host has no usable SSH key.
    #[error("{reason}")]
    Key {
        /// Why.
        reason: String,
    },
    /// The bundle names a component it has no source for.
    #[error("the bundle {version} has no {component}")]
    MissingComponent {
        /// The bundle.
        version: String,
        /// The component.
        component: String,
    },
}

impl HostError {
    /// Worth retrying: the host may come back.
    pub(super) fn is_transient(&self) -> bool {
        match self {
            HostError::Ssh(e) | HostError::Component { source: e, .. } => e.is_transient(),
            HostError::BundleMismatch { .. } | HostError::Key { .. } | HostError::MissingComponent { .. } => {
                false
            }
        }
    }
}

/// What a bootstrap did on a host.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Bootstrapped {
    /// The components uploaded (their checksum did not match what the host had).
    pub(super) uploaded: Vec<&'static str>,
    /// The components already on the host with the bundle's checksum.
    pub(super) present: usize,
    /// The node agent was started (false: one was running).
    pub(super) agent_started: bool,
}

impl Bootstrapped {
    /// One line for the host's step: what was uploaded and whether the node agent was started.
    pub(super) fn summary(&self) -> String {
        let agent = if self.agent_started { "node agent started" } else { "node agent running" };
        let uploaded = match self.uploaded.as_slice() {
            [] => "0 binaries uploaded".to_owned(),
            some => format!("{} binaries uploaded ({})", some.len(), some.join(", ")),
        };
        format!("{agent}; {uploaded}, {} already present", self.present)
    }
}

/// The SSH target of `node`, pinned to `known_key` when the host was seen before.
pub(super) async fn target_of(
    sealer: &Sealer,
    cfg: &RkeConfig,
    node: &RkeNode,
    known_key: Option<&String>,
) -> Result<SshTarget, HostError> {
    let host = node.address.clone();
    let key_error = |reason: String| HostError::Key { reason };
    let source =
        rke::ssh_key_source(cfg, node).ok_or_else(|| key_error("no ssh_key or ssh_key_path".into()))?;
    let key = read_ssh_key(sealer, source).await.map_err(|e| key_error(e.to_string()))?;
    let port = rke::ssh_port(&node.port).map_err(key_error)?;
    let host_key = match known_key {
        Some(k) => HostKeyPolicy::Pinned(vec![k.clone()]),
        None => HostKeyPolicy::TrustOnFirstUse,
    };
    Ok(SshTarget { address: host.clone(), port, user: rke::ssh_user(cfg, node).to_owned(), key, host_key })
}

/// The bastion's SSH target, if the cluster has one (trusted on first use: its key is not pinned).
pub(super) async fn bastion_of(sealer: &Sealer, cfg: &RkeConfig) -> Result<Option<SshTarget>, HostError> {
    let Some(b) = &cfg.bastion_host else { return Ok(None) };
    let key_error = |reason: String| HostError::Key { reason: format!("bastion {}: {reason}", b.address) };
    let source =
        rke::bastion_key_source(cfg, b).ok_or_else(|| key_error("the bastion host has no SSH key".into()))?;
    let key = read_ssh_key(sealer, source).await.map_err(|e| key_error(e.to_string()))?;
    let port = rke::ssh_port(&b.port).map_err(key_error)?;
    let anonymous = RkeNode::default();
    let user = if b.user.is_empty() { rke::ssh_user(cfg, &anonymous) } else { &b.user };
    Ok(Some(SshTarget {
        address: b.address.clone(),
        port,
        user: user.to_owned(),
        key,
        host_key: HostKeyPolicy::TrustOnFirstUse,
    }))
}

/// Puts `node`'s binaries on it (those whose checksum the host has already are kept) and starts its
/// node agent unless one runs. Returns the host's SSH key as soon as the session is up — also when
/// a later step fails, so that the key is pinned from the first contact on — and what was done.
/// `report` is told what happens.
pub(super) async fn bootstrap(
    target: &SshTarget,
    bastion: Option<&SshTarget>,
    node: &RkeNode,
    layout: &HostLayout,
    bundle: &Bundle,
    boot: &AgentBoot<'_>,
    report: &(dyn Fn(String) + Send + Sync),
) -> (Option<String>, Result<Bootstrapped, HostError>) {
    report("connecting over SSH".into());
    let ssh = match SshSession::connect(target, bastion, CONNECT_TIMEOUT).await {
        Ok(ssh) => ssh,
        Err(e) => return (None, Err(e.into())),
    };
    let host_key = ssh.host_key();
    let done = install(&ssh, node, layout, bundle, boot, report).await;
    // A session whose link died cannot say goodbye: do not wait on it.
    let _ = tokio::time::timeout(Duration::from_secs(5), ssh.close()).await;
    (Some(host_key), done)
}

async fn install(
    ssh: &SshSession,
    node: &RkeNode,
    layout: &HostLayout,
    bundle: &Bundle,
    boot: &AgentBoot<'_>,
    report: &(dyn Fn(String) + Send + Sync),
) -> Result<Bootstrapped, HostError> {
    let node_name = rke::node_name(node);
    let mut done = Bootstrapped::default();
    // What an upload cut short left (its clean-up needs the session that was lost) goes first.
    ssh.run(&format!(
        "mkdir -p {bin} {state} {creds} && chmod 700 {state} {creds} && rm -f -- {bin}/*.part-* {bin}/*.download",
        bin = shell_quote(&layout.bin_dir()),
        state = shell_quote(&layout.agent_state_dir()),
        creds = shell_quote(&layout.agent_credentials_dir()),
    ))
    .await?;
    for component in components_of(node) {
        let optional = rancher_provision::bundle::OPTIONAL_COMPONENTS.contains(&component);
        let Some(c) = bundle.components.get(component) else {
            if optional {
                continue;
            }
            return Err(HostError::MissingComponent {
                version: bundle.version.clone(),
                component: component.to_owned(),
            });
        };
        let failed = |source: SshError| match source {
            SshError::SourceMismatch { expected, actual, .. } => HostError::BundleMismatch {
                version: bundle.version.clone(),
                component: component.to_owned(),
                file: match &c.source {
                    ComponentSource::Path(p) => p.display().to_string(),
                    ComponentSource::Url(u) => u.clone(),
                },
                expected,
                actual,
            },
            source => HostError::Component { component: component.to_owned(), source },
        };
        let remote = match component {
            "node-agent" => layout.binary(component),
            _ => layout.component_binary(component, &c.sha256),
        };
        let present = ssh.exec(&format!("sha256sum {} 2>/dev/null", shell_quote(&remote))).await?;
        if String::from_utf8_lossy(&present.stdout).split_whitespace().next() == Some(c.sha256.as_str()) {
            done.present += 1;
            continue;
        }
        report(format!("uploading {component}"));
        tracing::info!(host = %ssh.host(), component, "uploading");
        match &c.source {
            ComponentSource::Path(local) => {
                ssh.upload_verified(local.as_path(), &remote, 0o755, &c.sha256).await.map_err(failed)?;
            }
            ComponentSource::Url(url) => {
                let tmp = format!("{remote}.download");
                ssh.run(&format!(
                    "curl -fsSL -o {tmp} {url} && echo {sum}'  '{tmp} | sha256sum -c --quiet && chmod 755 {tmp} && mv {tmp} {remote}",
                    tmp = shell_quote(&tmp),
                    url = shell_quote(url),
                    sum = c.sha256,
                    remote = shell_quote(&remote),
                ))
                .await
                .map_err(failed)?;
            }
        }
        done.uploaded.push(component);
    }
    report("starting the node agent".into());
    let creds = layout.agent_credentials_dir();
    ssh.upload(UploadSource::Bytes(boot.server_url.as_bytes()), &format!("{creds}/url"), 0o600).await?;
    ssh.upload(UploadSource::Bytes(boot.token.as_bytes()), &format!("{creds}/token"), 0o600).await?;
    let started = ssh.run(&start_agent_script(layout, &node_name, boot.ca_checksum)).await?;
    done.agent_started = started.stdout_text().trim() == "started";
    Ok(done)
}

/// A shell script that starts the node agent detached unless the one in the pid file still runs.
fn start_agent_script(layout: &HostLayout, node_name: &str, ca_checksum: &str) -> String {
    let pid = shell_quote(&layout.agent_pid_file());
    let bin = shell_quote(&layout.binary("node-agent"));
    format!(
        "if [ -s {pid} ] && kill -0 \"$(cat {pid})\" 2>/dev/null && grep -q node-agent /proc/\"$(cat {pid})\"/cmdline; \
         then echo running; exit 0; fi; \
         CATTLE_CA_CHECKSUM={checksum} setsid {bin} --node --node-name {name} --credentials-dir {creds} \
         --state-dir {state} --plan-root {root} </dev/null >>{log} 2>&1 & echo $! >{pid}; echo started",
        checksum = shell_quote(ca_checksum),
        name = shell_quote(node_name),
        creds = shell_quote(&layout.agent_credentials_dir()),
        state = shell_quote(&layout.agent_state_dir()),
        root = shell_quote(&layout.path("")),
        log = shell_quote(&layout.agent_log()),
    )
}

/// Removes the builds of `node`'s components other than `bundle`'s from the host (those of an
/// earlier bundle, once every host runs this one).
pub(super) async fn prune_builds(
    target: &SshTarget,
    bastion: Option<&SshTarget>,
    node: &RkeNode,
    layout: &HostLayout,
    bundle: &Bundle,
) -> Result<(), HostError> {
    let ssh = SshSession::connect(target, bastion, CONNECT_TIMEOUT).await?;
    ssh.run(&prune_script(node, layout, bundle)).await?;
    let _ = tokio::time::timeout(Duration::from_secs(5), ssh.close()).await;
    Ok(())
}

/// For each versioned component of `node`: every `<component>-<16 hex>` in the binaries' directory
/// but the bundle's build removed.
fn prune_script(node: &RkeNode, layout: &HostLayout, bundle: &Bundle) -> String {
    let mut script = format!("cd {} || exit 0", shell_quote(&layout.bin_dir()));
    for component in components_of(node).into_iter().filter(|c| *c != "node-agent") {
        let Some(c) = bundle.components.get(component) else { continue };
        let keep = layout.component_binary(component, &c.sha256);
        let keep = keep.rsplit('/').next().unwrap_or_default();
        script.push_str(&format!(
            "; for f in {component}-????????????????; do [ \"$f\" = {keep} ] || rm -f -- \"$f\"; done",
            keep = shell_quote(keep),
        ));
    }
    script
}

/// Stops the node agent, then the processes it recorded (an empty plan sent through a connected
/// node agent stops them first; this catches those of a node agent that was away), and removes what
/// the provisioner put on the host.
pub(super) async fn clean(
    target: &SshTarget,
    bastion: Option<&SshTarget>,
    layout: &HostLayout,
) -> Result<(), HostError> {
    let ssh = SshSession::connect(target, bastion, CONNECT_TIMEOUT).await?;
    ssh.run(&clean_script(layout)).await?;
    Ok(())
}

/// The node agent first (it would restart what is stopped), waiting up to 10 s for it to go; then
/// its recorded processes, by the node agent's binary (which identifies them by pid and start time);
/// then the directories. Fails, keeping everything, when the processes cannot be stopped.
fn clean_script(layout: &HostLayout) -> String {
    let pid = shell_quote(&layout.agent_pid_file());
    let bin = shell_quote(&layout.binary("node-agent"));
    let dirs: Vec<String> = layout.owned_dirs().iter().map(|d| shell_quote(d)).collect();
    format!(
        "p=\"$(cat {pid} 2>/dev/null)\"; \
         if [ -n \"$p\" ] && grep -q node-agent /proc/\"$p\"/cmdline 2>/dev/null; then \
         kill \"$p\"; i=0; \
         while grep -q node-agent /proc/\"$p\"/cmdline 2>/dev/null && [ $i -lt 10 ]; do sleep 1; i=$((i+1)); done; \
         kill -9 \"$p\" 2>/dev/null; fi; \
         if [ -x {bin} ]; then {bin} --node --state-dir {state} --stop-processes || exit 1; fi; \
         rm -rf {dirs}",
        state = shell_quote(&layout.agent_state_dir()),
        dirs = dirs.join(" "),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn network_faults_are_retried_and_refusals_are_not() {
        let host = || "10.0.0.1:22".to_owned();
        let lost = HostError::Component {
            component: "etcd".into(),
            source: SshError::Disconnected { host: host() },
        };
        assert!(lost.is_transient());
        assert_eq!(lost.to_string(), "etcd: 10.0.0.1:22: the SSH connection was lost");
        assert!(!HostError::from(SshError::Auth { host: host(), user: "root".into() }).is_transient());
        let lying = HostError::BundleMismatch {
            version: "v1.20.2".into(),
            component: "etcd".into(),
            file: "/usr/bin/etcd".into(),
            expected: "aa".into(),
            actual: "bb".into(),
        };
        assert!(!lying.is_transient());
        assert_eq!(
            lying.to_string(),
            "etcd: checksum mismatch: the bundle v1.20.2 says sha256 aa, its file /usr/bin/etcd has bb"
        );
    }

    #[test]
    fn the_summary_says_what_was_uploaded_and_whether_the_agent_was_started() {
        let first = Bootstrapped { uploaded: vec!["node-agent", "etcd"], present: 1, agent_started: true };
        assert_eq!(
            first.summary(),
            "node agent started; 2 binaries uploaded (node-agent, etcd), 1 already present"
        );
        let again = Bootstrapped { uploaded: vec![], present: 3, agent_started: false };
        assert_eq!(again.summary(), "node agent running; 0 binaries uploaded, 3 already present");
    }

    #[test]
    fn each_role_gets_only_its_components() {
        let node = |roles: &[&str]| RkeNode {
            role: roles.iter().map(|r| (*r).to_owned()).collect(),
            ..Default::default()
        };
        assert_eq!(components_of(&node(&["worker"])), ["node-agent", "kubelet"]);
        assert_eq!(components_of(&node(&["etcd"])), ["node-agent", "kubelet", "etcd", "etcdctl"]);
        assert_eq!(
            components_of(&node(&["etcd", "controlplane", "worker"])),
            [
                "node-agent",
                "kubelet",
                "etcd",
                "etcdctl",
                "kube-apiserver",
                "kube-controller-manager",
                "kube-scheduler"
            ]
        );
    }

    #[test]
    fn the_clean_script_stops_the_agent_then_its_processes_then_removes_the_directories() {
        let s = clean_script(&HostLayout::new("/srv/my node"));
        let agent = s.find("kill \"$p\"").unwrap();
        let processes = s.find("'/srv/my node/opt/rke/bin/node-agent' --node --state-dir").unwrap();
        let removal = s.find("rm -rf '/srv/my node/opt/rke'").unwrap();
        assert!(agent < processes && processes < removal, "{s}");
        assert!(s.contains("--stop-processes || exit 1;"), "{s}");
    }

    #[test]
    fn pruning_keeps_the_bundles_build_of_each_component_the_host_runs() {
        let sum = |c: char| c.to_string().repeat(64);
        let bundle = Bundle {
            version: "v1.20.2".into(),
            components: ["etcd", "kubelet", "node-agent"]
                .iter()
                .zip(['a', 'b', 'c'])
                .map(|(n, c)| {
                    let source = ComponentSource::Path("/x".into());
                    (
                        (*n).to_owned(),
                        rancher_provision::bundle::BundleComponent {
                            source,
                            sha256: sum(c),
                            args: Default::default(),
                        },
                    )
                })
                .collect(),
        };
        let node = RkeNode { role: vec!["etcd".into()], ..Default::default() };
        let s = prune_script(&node, &HostLayout::new("/srv/n"), &bundle);
        assert!(s.starts_with("cd '/srv/n/opt/rke/bin' || exit 0;"), "{s}");
        assert!(s.contains("for f in kubelet-????????????????; do [ \"$f\" = 'kubelet-bbbbbbbbbbbbbbbb' ] || rm -f -- \"$f\"; done"), "{s}");
        assert!(s.contains("'etcd-aaaaaaaaaaaaaaaa'") && !s.contains("node-agent"), "{s}");
    }

    #[test]
    fn the_start_script_quotes_everything_and_is_idempotent() {
        let s = start_agent_script(&HostLayout::new("/srv/node"), "n1", "abc");
        assert!(s.starts_with("if [ -s '/srv/node/var/lib/rancher/node-agent.pid' ]"), "{s}");
        assert!(s.contains("then echo running; exit 0; fi;") && s.ends_with("echo started"), "{s}");
        assert!(s.contains("--node-name 'n1'") && s.contains("--plan-root '/srv/node/'"), "{s}");
    }
}
