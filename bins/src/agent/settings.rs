//! The agent's settings, from flags and the `CATTLE_*` environment (as Rancher's agent image reads
//! them), checked before anything connects.

use std::path::{Path, PathBuf};

use super::AgentError;

/// Which kind of agent runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mode {
    /// The cluster agent: one per cluster, reports the cluster's state; client key `<cluster>`.
    Cluster,
    /// A node agent: the fallback session `<cluster>:<node>`.
    Node {
        /// The node's name.
        name: String,
    },
}

/// Everything the agent needs to start.
#[derive(Clone)]
pub struct Settings {
    /// The server's base URL, `https://host[:port]`, without a trailing slash.
    pub server: url::Url,
    /// The expected SHA-256 (hex) of the server's `cacerts` setting.
    pub ca_checksum: String,
    /// The cluster registration token.
    pub token: String,
    /// Cluster or node agent.
    pub mode: Mode,
    /// A kubeconfig for the downstream cluster; `None` means in-cluster configuration.
    pub kubeconfig: Option<PathBuf>,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("server", &self.server.as_str())
            .field("ca_checksum", &self.ca_checksum)
            .field("token", &"<redacted>")
            .field("mode", &self.mode)
            .field("kubeconfig", &self.kubeconfig)
            .finish()
    }
}

/// Reads one setting: the environment variable, else the file of that name in the credentials
/// directory (the mounted Secret), trimmed.
fn env_or_file(env: &dyn Fn(&str) -> Option<String>, var: &str, dir: &Path, file: &str) -> Option<String> {
    env(var).filter(|v| !v.trim().is_empty()).map(|v| v.trim().to_owned()).or_else(|| {
        std::fs::read_to_string(dir.join(file)).ok().map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
    })
}

impl Settings {
    /// Builds the settings from the flags and an environment lookup (`std::env::var` in the binary).
    ///
    /// # Errors
    /// [`AgentError::Config`] naming the missing or malformed setting.
    pub fn resolve(
        args: &super::AgentArgs,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Settings, AgentError> {
        let dir = args.credentials_dir.as_path();
        let server = env_or_file(env, "CATTLE_SERVER", dir, "url").ok_or_else(|| {
            AgentError::Config(format!(
                "CATTLE_SERVER is not set and {} holds no url: where is the rancher server?",
                dir.join("url").display()
            ))
        })?;
        let token = env_or_file(env, "CATTLE_TOKEN", dir, "token").ok_or_else(|| {
            AgentError::Config(format!(
                "CATTLE_TOKEN is not set and {} holds no token",
                dir.join("token").display()
            ))
        })?;
        let ca_checksum = env("CATTLE_CA_CHECKSUM").unwrap_or_default();
        let cluster_flag = env("CATTLE_CLUSTER").map(|v| v.trim().eq_ignore_ascii_case("true"));
        let mode = if args.node {
            let name = args
                .node_name
                .clone()
                .or_else(|| env("CATTLE_NODE_NAME"))
                .map(|n| n.trim().to_owned())
                .filter(|n| !n.is_empty())
                .ok_or_else(|| {
                    AgentError::Config("--node needs the node's name: CATTLE_NODE_NAME or --node-name".into())
                })?;
            Mode::Node { name }
        } else if cluster_flag == Some(false) {
            return Err(AgentError::Config(
                "CATTLE_CLUSTER=false without --node: run the node agent with --node".into(),
            ));
        } else {
            Mode::Cluster
        };
        Settings::checked(&server, &ca_checksum, &token, mode, args.kubeconfig.clone())
    }

    /// Checks settings given directly (by [`AgentBuilder`](super::AgentBuilder), or read by
    /// [`Settings::resolve`]); errors name the `CATTLE_*` variable each setting corresponds to.
    ///
    /// # Errors
    /// [`AgentError::Config`] naming the malformed setting.
    pub(crate) fn checked(
        server: &str,
        ca_checksum: &str,
        token: &str,
        mode: Mode,
        kubeconfig: Option<PathBuf>,
    ) -> Result<Settings, AgentError> {
        let server = parse_server(server.trim())?;
        let token = token.trim().to_owned();
        if token.is_empty() {
            return Err(AgentError::Config("CATTLE_TOKEN (the registration token) is empty".into()));
        }
        if token.chars().any(|c| !c.is_ascii_graphic()) {
            return Err(AgentError::Config("CATTLE_TOKEN holds characters a token cannot have".into()));
        }
        let ca_checksum = ca_checksum.trim().to_ascii_lowercase();
        if ca_checksum.is_empty() {
            return Err(AgentError::Config(
                "CATTLE_CA_CHECKSUM is not set: the agent pins the server's CA by its SHA-256 checksum \
                 (shown in the import manifest)"
                    .into(),
            ));
        }
        if ca_checksum.len() != 64 || !ca_checksum.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(AgentError::Config(format!(
                "CATTLE_CA_CHECKSUM {ca_checksum:?} is not a SHA-256 checksum (64 hex digits)"
            )));
        }
        if let Mode::Node { name } = &mode
            && !crate::protocol::connect::is_node_name(name)
        {
            return Err(AgentError::Config(format!("node name {name:?} is not a DNS-1123 subdomain")));
        }
        Ok(Settings { server, ca_checksum, token, mode, kubeconfig })
    }
}

/// `https://host[:port]` with nothing after it (a trailing `/` is dropped).
fn parse_server(raw: &str) -> Result<url::Url, AgentError> {
    let url = url::Url::parse(raw.trim_end_matches('/'))
        .map_err(|e| AgentError::Config(format!("CATTLE_SERVER {raw:?} is not a URL: {e}")))?;
    if url.scheme() != "https" {
        return Err(AgentError::Config(format!("CATTLE_SERVER {raw:?} must be an https:// URL")));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(AgentError::Config(format!("CATTLE_SERVER {raw:?} has no host")));
    }
    if !matches!(url.path(), "" | "/") || url.query().is_some() || !url.username().is_empty() {
        return Err(AgentError::Config(format!(
            "CATTLE_SERVER {raw:?} must be just https://host[:port], without a path, query or user"
        )));
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use clap::Parser;

    use super::*;
    use crate::agent::AgentArgs;

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
        let map: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |k| map.get(k).cloned()
    }

    const SUM: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn cluster_agent_from_env() {
        let args = AgentArgs::parse_from(["rancher-agent", "--credentials-dir", "/nonexistent"]);
        let e = env(&[
            ("CATTLE_SERVER", "https://rancher.example:8443/"),
            ("CATTLE_CA_CHECKSUM", &SUM.to_uppercase()),
            ("CATTLE_TOKEN", "tok123"),
            ("CATTLE_CLUSTER", "true"),
        ]);
        let s = Settings::resolve(&args, &e).unwrap();
        assert_eq!(s.server.as_str(), "https://rancher.example:8443/");
        assert_eq!(s.ca_checksum, SUM);
        assert_eq!(s.mode, Mode::Cluster);
        assert!(!format!("{s:?}").contains("tok123"), "the token is never printed");
    }

    #[test]
    fn token_and_url_come_from_the_mounted_secret() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("url"), "https://10.0.0.1\n").unwrap();
        std::fs::write(dir.path().join("token"), "from-file\n").unwrap();
        let args = AgentArgs::parse_from([
            "rancher-agent",
            "--credentials-dir",
            dir.path().to_str().unwrap(),
            "--node",
            "--node-name",
            "worker-1",
        ]);
        let s = Settings::resolve(&args, &env(&[("CATTLE_CA_CHECKSUM", SUM)])).unwrap();
        assert_eq!(s.token, "from-file");
        assert_eq!(s.server.host_str(), Some("10.0.0.1"));
        assert_eq!(s.mode, Mode::Node { name: "worker-1".into() });
    }

    #[test]
    fn bad_settings_are_named() {
        let args = AgentArgs::parse_from(["rancher-agent", "--credentials-dir", "/nonexistent"]);
        let err = |vars: &[(&str, &str)]| Settings::resolve(&args, &env(vars)).unwrap_err().to_string();
        assert!(err(&[]).contains("CATTLE_SERVER"));
        let base = [("CATTLE_SERVER", "https://h"), ("CATTLE_TOKEN", "t")];
        assert!(err(&base).contains("CATTLE_CA_CHECKSUM is not set"));
        assert!(err(&[base[0], base[1], ("CATTLE_CA_CHECKSUM", "abc")]).contains("64 hex"));
        let bad_url = [("CATTLE_SERVER", "http://h"), ("CATTLE_TOKEN", "t"), ("CATTLE_CA_CHECKSUM", SUM)];
        assert!(err(&bad_url).contains("https://"));
        let path = [("CATTLE_SERVER", "https://h/x"), ("CATTLE_TOKEN", "t"), ("CATTLE_CA_CHECKSUM", SUM)];
        assert!(err(&path).contains("without a path"));
        let node = AgentArgs::parse_from(["rancher-agent", "--credentials-dir", "/nonexistent", "--node"]);
        let e = env(&[("CATTLE_SERVER", "https://h"), ("CATTLE_TOKEN", "t"), ("CATTLE_CA_CHECKSUM", SUM)]);
        assert!(Settings::resolve(&node, &e).unwrap_err().to_string().contains("CATTLE_NODE_NAME"));
    }
}
