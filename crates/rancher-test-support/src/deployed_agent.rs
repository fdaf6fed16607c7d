//! The kubelet's part for a cluster agent a server deployed into a downstream cluster (a
//! `rancher-sim` runs no pods): reading the agent's settings back from the cluster — the
//! `cattle-cluster-agent` Deployment's env and the credentials Secret it names — so that the test
//! can start the agent itself.
//!
//! ```no_run
//! # fn example(kubeconfig: &std::path::Path) {
//! use rancher_test_support::deployed_agent::AgentSettings;
//! if let Some(settings) = AgentSettings::read(kubeconfig) {
//!     println!("the agent dials {}", settings.server);
//! }
//! # }
//! ```

use std::path::Path;
use std::process::Command;

use base64::Engine;
use serde_json::Value;

use crate::kubectl::default_kubectl;

/// What a deployed cluster agent is started with (`CATTLE_SERVER`, `CATTLE_CA_CHECKSUM`,
/// `CATTLE_TOKEN`).
#[derive(Clone, PartialEq, Eq)]
pub struct AgentSettings {
    /// The server's URL.
    pub server: String,
    /// The SHA-256 checksum of the server's CA.
    pub checksum: String,
    /// The registration token (a secret: not in `Debug`).
    pub token: String,
}

impl std::fmt::Debug for AgentSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentSettings")
            .field("server", &self.server)
            .field("checksum", &self.checksum)
            .finish_non_exhaustive()
    }
}

impl AgentSettings {
    /// One look at the cluster of `kubeconfig` (with the default kubectl): the settings once the
    /// Deployment `cattle-system/cattle-cluster-agent` and its credentials Secret (the one with
    /// `data.url` and `data.token`) exist, `None` until then.
    pub fn read(kubeconfig: &Path) -> Option<AgentSettings> {
        let deployment = kubectl_json(
            kubeconfig,
            &["-n", "cattle-system", "get", "deployment", "cattle-cluster-agent", "-o", "json"],
        )?;
        let secrets = kubectl_json(kubeconfig, &["-n", "cattle-system", "get", "secrets", "-o", "json"])?;
        let env = deployment["spec"]["template"]["spec"]["containers"][0]["env"].as_array()?;
        let var = |name: &str| {
            env.iter().find(|e| e["name"] == name).and_then(|e| e["value"].as_str()).map(str::to_owned)
        };
        let token64 = secrets["items"].as_array()?.iter().find_map(|s| {
            s["data"]["token"].as_str().filter(|_| s["data"]["url"].is_string()).map(str::to_owned)
        })?;
        let token = base64::engine::general_purpose::STANDARD.decode(token64).ok()?;
        Some(AgentSettings {
            server: var("CATTLE_SERVER")?,
            checksum: var("CATTLE_CA_CHECKSUM")?,
            token: String::from_utf8(token).ok()?,
        })
    }
}

/// `kubectl --kubeconfig KC ARGS` as JSON, `None` on failure.
fn kubectl_json(kubeconfig: &Path, args: &[&str]) -> Option<Value> {
    let out = Command::new(default_kubectl()).arg("--kubeconfig").arg(kubeconfig).args(args).output().ok()?;
    out.status.success().then(|| serde_json::from_slice(&out.stdout).ok()).flatten()
}
