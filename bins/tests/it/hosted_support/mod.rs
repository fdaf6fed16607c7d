//! What the hosted-cluster tests share: a server process with a logged-in `rancherctl`, and the
//! kubelet's part — reading the cluster agent's settings from what the server deployed into a
//! downstream cluster.

#![allow(dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};

use rancher_test_support::deployed_agent::AgentSettings;
use serde_json::Value;

use crate::import_support::{ADMIN_PASSWORD, AgentEnv, Server, WAIT, eventually, rancherctl};

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
