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
/// Components of etcd hosts.
const ETCD: [&str; 1] = ["etcd"];
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

/// Why a host could not be bootstrapped.
#[derive(Debug, thiserror::Error)]
pub(super) enum HostError {
    /// SSH failed (unreachable, wrong key, changed host key, checksum mismatch …).
    #[error(transparent)]
    Ssh(#[from] SshError),
    /// The host has no usable SSH key.
    #[error("host {host}: {reason}")]
    Key {
        /// The node.
        host: String,
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
            HostError::Ssh(e) => e.is_transient(),
            HostError::Key { .. } | HostError::MissingComponent { .. } => false,
        }
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
    let key_error = |reason: String| HostError::Key { host: host.clone(), reason };
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
    let key_error = |reason: String| HostError::Key { host: b.address.clone(), reason };
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

/// Puts `node`'s binaries on it and starts its node agent unless one runs. Returns the host's SSH
/// key (to pin). `report` is told what happens.
pub(super) async fn bootstrap(
    target: &SshTarget,
    bastion: Option<&SshTarget>,
    node: &RkeNode,
    layout: &HostLayout,
    bundle: &Bundle,
    boot: &AgentBoot<'_>,
    report: &(dyn Fn(String) + Send + Sync),
) -> Result<String, HostError> {
    let node_name = rke::node_name(node);
    report("connecting over SSH".into());
    let ssh = SshSession::connect(target, bastion, CONNECT_TIMEOUT).await?;
    let host_key = ssh.host_key();
    ssh.run(&format!(
        "mkdir -p {bin} {state} {creds} && chmod 700 {state} {creds}",
        bin = shell_quote(&layout.bin_dir()),
        state = shell_quote(&layout.agent_state_dir()),
        creds = shell_quote(&layout.agent_credentials_dir()),
    ))
    .await?;
    for component in components_of(node) {
        let c = bundle.components.get(component).ok_or_else(|| HostError::MissingComponent {
            version: bundle.version.clone(),
            component: component.to_owned(),
        })?;
        let remote = layout.binary(component);
        let present = ssh.exec(&format!("sha256sum {} 2>/dev/null", shell_quote(&remote))).await?;
        if String::from_utf8_lossy(&present.stdout).split_whitespace().next() == Some(c.sha256.as_str()) {
            continue;
        }
        report(format!("uploading {component}"));
        match &c.source {
            ComponentSource::Path(local) => {
                ssh.upload_verified(local.as_path(), &remote, 0o755, &c.sha256).await?;
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
                .await?;
            }
        }
    }
    report("starting the node agent".into());
    let creds = layout.agent_credentials_dir();
    ssh.upload(UploadSource::Bytes(boot.server_url.as_bytes()), &format!("{creds}/url"), 0o600).await?;
    ssh.upload(UploadSource::Bytes(boot.token.as_bytes()), &format!("{creds}/token"), 0o600).await?;
    ssh.run(&start_agent_script(layout, &node_name, boot.ca_checksum)).await?;
    Ok(host_key)
}

/// A shell script that starts the node agent detached unless the one in the pid file still runs.
fn start_agent_script(layout: &HostLayout, node_name: &str, ca_checksum: &str) -> String {
    let pid = shell_quote(&layout.agent_pid_file());
    let bin = shell_quote(&layout.binary("node-agent"));
    format!(
        "if [ -s {pid} ] && kill -0 \"$(cat {pid})\" 2>/dev/null && grep -q node-agent /proc/\"$(cat {pid})\"/cmdline; \
         then exit 0; fi; \
         CATTLE_CA_CHECKSUM={checksum} setsid {bin} --node --node-name {name} --credentials-dir {creds} \
         --state-dir {state} --plan-root {root} </dev/null >>{log} 2>&1 & echo $! >{pid}",
        checksum = shell_quote(ca_checksum),
        name = shell_quote(node_name),
        creds = shell_quote(&layout.agent_credentials_dir()),
        state = shell_quote(&layout.agent_state_dir()),
        root = shell_quote(&layout.path("")),
        log = shell_quote(&layout.agent_log()),
    )
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
    fn each_role_gets_only_its_components() {
        let node = |roles: &[&str]| RkeNode {
            role: roles.iter().map(|r| (*r).to_owned()).collect(),
            ..Default::default()
        };
        assert_eq!(components_of(&node(&["worker"])), ["node-agent", "kubelet"]);
        assert_eq!(components_of(&node(&["etcd"])), ["node-agent", "kubelet", "etcd"]);
        assert_eq!(
            components_of(&node(&["etcd", "controlplane", "worker"])),
            ["node-agent", "kubelet", "etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler"]
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
    fn the_start_script_quotes_everything_and_is_idempotent() {
        let s = start_agent_script(&HostLayout::new("/srv/node"), "n1", "abc");
        assert!(s.starts_with("if [ -s '/srv/node/var/lib/rancher/node-agent.pid' ]"), "{s}");
        assert!(s.contains("then exit 0; fi;"), "{s}");
        assert!(s.contains("--node-name 'n1'") && s.contains("--plan-root '/srv/node/'"), "{s}");
    }
}
