//! What the hosted-cluster tests share: a server process with a logged-in `rancherctl`, and the
//! kubelet's part — reading the cluster agent's settings from what the server deployed into a
//! downstream cluster.

#![allow(dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};
use std::process::Command;

use rancher_test_support::deployed_agent::AgentSettings;
use serde_json::Value;

use crate::import_support::{
    ADMIN_PASSWORD, AgentEnv, Proc, Server, WAIT, cluster_row, eventually, kubectl, rancherctl, start_agent,
};

/// A server process and a `rancherctl` home logged in to it as the admin.
pub struct Hosted {
    pub server: Server,
    pub home: PathBuf,
    pub log: PathBuf,
}

impl Hosted {
    /// Starts the server (data and log under `dir`) with `extra` flags and logs in.
    pub async fn start(dir: &Path, extra: &[&str]) -> Hosted {
        let home = dir.join("home");
        std::fs::create_dir_all(&home).unwrap();
        let log = dir.join("server.log");
        let server = Server::start(&dir.join("data"), 0, &log, extra).await;
        let h = Hosted { server, home, log };
        h.ok(&["login", &h.server.url, "--username", "admin", "--password", ADMIN_PASSWORD, "--insecure"]);
        h
    }

    /// `rancherctl ARGS`, which must succeed; its output.
    pub fn ok(&self, args: &[&str]) -> String {
        let (ok, out) = rancherctl(&self.home, args);
        assert!(ok, "rancherctl {args:?}: {out}");
        out
    }

    /// `rancherctl ARGS`, which must fail; its output.
    pub fn fails(&self, args: &[&str]) -> String {
        let (ok, out) = rancherctl(&self.home, args);
        assert!(!ok, "rancherctl {args:?} succeeded: {out}");
        out
    }

    /// Waits until `rancherctl cluster ls` no longer lists `name`.
    pub async fn wait_gone(&self, name: &str) {
        eventually(WAIT, &format!("{name} leaves Rancher"), || {
            let row = cluster_row(&self.home, name);
            async move { row.is_none().then_some(()) }
        })
        .await;
    }

    /// Plays kubelet for the agent the server deployed into `sim`: reads its settings from the
    /// cluster (kubeconfig written to `dir/<label>.kubeconfig`), checks it dials this server, and
    /// starts it (logging to `dir/<label>-agent.log`).
    pub async fn start_deployed_agent(&self, sim: &rancher_sim::SimHandle, dir: &Path, label: &str) -> Proc {
        let kc = dir.join(format!("{label}.kubeconfig"));
        std::fs::write(&kc, sim.kubeconfig_yaml()).unwrap();
        let env = agent_env_from(&kc).await;
        assert_eq!(env.server, self.server.url);
        start_agent(&env, &kc, &dir.join(format!("{label}-agent.log")), &[])
    }

    /// `rancherctl cluster get NAME -o json` (null when it fails).
    pub fn cluster(&self, name: &str) -> Value {
        let (ok, out) = rancherctl(&self.home, &["cluster", "get", name, "-o", "json"]);
        if !ok {
            return Value::Null;
        }
        serde_json::from_str(&out).unwrap_or(Value::Null)
    }
}

/// Waits for the cluster agent the server deployed into the cluster of `kc` and reads its settings
/// the way a kubelet would (`rancher_test_support::deployed_agent`).
pub async fn agent_env_from(kc: &Path) -> AgentEnv {
    let kc = kc.to_owned();
    let s = eventually(WAIT, "the server deployed the cluster agent", || {
        let settings = AgentSettings::read(&kc);
        async move { settings }
    })
    .await;
    AgentEnv { server: s.server, checksum: s.checksum, token: s.token }
}

/// `kubectl --kubeconfig KC ARGS` stdout; panics on failure.
pub fn kubectl_out(kc: &Path, args: &[&str]) -> String {
    let out = Command::new(kubectl()).arg("--kubeconfig").arg(kc).args(args).output().unwrap();
    assert!(out.status.success(), "kubectl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}
