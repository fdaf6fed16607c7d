//! Where the provisioner puts things on a host, under the cluster's `prefix_path`.

/// Paths on one host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct HostLayout {
    prefix: String,
}

impl HostLayout {
    /// The layout under `prefix` (`/` when empty).
    pub(super) fn new(prefix: &str) -> Self {
        let prefix = prefix.trim_end_matches('/');
        HostLayout { prefix: prefix.to_owned() }
    }

    /// `<prefix>/<rest>` (`rest` without a leading slash).
    pub(super) fn path(&self, rest: &str) -> String {
        format!("{}/{}", self.prefix, rest.trim_start_matches('/'))
    }

    /// Where component binaries go.
    pub(super) fn bin_dir(&self) -> String {
        self.path("opt/rke/bin")
    }

    /// A component binary.
    pub(super) fn binary(&self, component: &str) -> String {
        format!("{}/{component}", self.bin_dir())
    }

    /// A component binary of one build (`<bin>/<component>-<first 16 hex of its sha256>`): a new
    /// bundle's binary goes beside the one that runs, so that it changes the plan (which restarts the
    /// process when the rollout reaches its host) and a process restarted before then still finds
    /// its own. The node agent, which starts itself, is [`binary`](Self::binary)`("node-agent")`.
    pub(super) fn component_binary(&self, component: &str, sha256: &str) -> String {
        let short = sha256.get(..16).unwrap_or(sha256);
        format!("{}/{component}-{short}", self.bin_dir())
    }

    /// The node agent's state directory (its plan, process records, logs).
    pub(super) fn agent_state_dir(&self) -> String {
        self.path("var/lib/rancher/node-agent")
    }

    /// The node agent's credentials directory (files `url` and `token`, 0600).
    pub(super) fn agent_credentials_dir(&self) -> String {
        self.path("var/lib/rancher/node-agent-credentials")
    }

    /// The node agent's pid file (written by the bootstrap shell).
    pub(super) fn agent_pid_file(&self) -> String {
        self.path("var/lib/rancher/node-agent.pid")
    }

    /// The node agent's log.
    pub(super) fn agent_log(&self) -> String {
        self.path("var/lib/rancher/node-agent.log")
    }

    /// What the provisioner creates under the prefix, removed when the cluster goes.
    pub(super) fn owned_dirs(&self) -> Vec<String> {
        ["opt/rke", "etc/kubernetes", "var/lib/etcd", "var/lib/rancher"]
            .iter()
            .map(|d| self.path(d))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_sit_under_the_prefix_whatever_its_slashes() {
        for prefix in ["", "/"] {
            let l = HostLayout::new(prefix);
            assert_eq!(l.binary("etcd"), "/opt/rke/bin/etcd");
        }
        let l = HostLayout::new("/srv/node/");
        assert_eq!(l.binary("kubelet"), "/srv/node/opt/rke/bin/kubelet");
        assert_eq!(l.agent_state_dir(), "/srv/node/var/lib/rancher/node-agent");
        let sum = "0123456789abcdef".repeat(4);
        assert_eq!(l.component_binary("etcd", &sum), "/srv/node/opt/rke/bin/etcd-0123456789abcdef");
        assert!(l.owned_dirs().iter().all(|d| d.starts_with("/srv/node/")));
    }
}
