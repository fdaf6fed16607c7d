//! `rancherctl`'s saved logins: `<config dir>/rancherctl/config.json`, mode 0600 (it holds tokens).
//! Like kubectl's kubeconfig it holds several named [`Context`]s (a server, a user, a token, what to
//! trust) and which one is current. A file of the earlier single-login form
//! (`{"server","token","cacert","insecure"}`) is read as one context named after the server's
//! `host:port`, and written back in the new form at the next save.

use std::io::Write;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::error::CliError;

/// One saved login.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Context {
    /// The context's name, `<user>@<host:port>` unless `login --name` said otherwise.
    pub name: String,
    /// The server's base URL, e.g. `https://rancher.example.com:8443`.
    pub server: String,
    /// Who logged in (the username, or the user id for a browser login); empty for a migrated login.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub user: String,
    /// The API token `token-xxxxx:<secret>`; empty after `logout`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub token: String,
    /// The CA (PEM) to trust for this server, when given with `--cacert` at login.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cacert: Option<String>,
    /// Skip certificate verification (`--insecure` at login).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub insecure: bool,
}

impl Context {
    /// The token's id (`token-xxxxx`), the part before the secret.
    pub fn token_id(&self) -> Option<&str> {
        self.token.split_once(':').map(|(id, _)| id).filter(|id| !id.is_empty())
    }
}

/// Everything `rancherctl` keeps.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CliConfig {
    /// The context commands use unless `--context` names another.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub current_context: String,
    /// The saved contexts, in the order they were first made.
    #[serde(default)]
    pub contexts: Vec<Context>,
}

/// The config file of the single-login form, before contexts.
#[derive(Deserialize)]
struct SingleLogin {
    server: String,
    #[serde(default)]
    token: String,
    #[serde(default)]
    cacert: Option<String>,
    #[serde(default)]
    insecure: bool,
}

/// The config file's path.
///
/// # Errors
/// [`CliError::Config`] when the platform has no config directory (no `HOME`).
pub(crate) fn path() -> Result<PathBuf, CliError> {
    dirs::config_dir()
        .map(|d| d.join("rancherctl").join("config.json"))
        .ok_or_else(|| CliError::Config("no configuration directory: set HOME (or XDG_CONFIG_HOME)".into()))
}

/// `host:port` of a server URL (the port spelled out even when it is the scheme's default).
pub(crate) fn host_port(server: &str) -> String {
    match url::Url::parse(server) {
        Ok(u) => match (u.host_str(), u.port_or_known_default()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_owned(),
            _ => server.to_owned(),
        },
        Err(_) => server.to_owned(),
    }
}

impl CliConfig {
    /// Reads the saved contexts; an absent file is an empty configuration.
    ///
    /// # Errors
    /// [`CliError::Config`] when the file cannot be read or is not a configuration.
    pub fn load() -> Result<Self, CliError> {
        let path = path()?;
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(CliConfig::default()),
            Err(e) => return Err(CliError::Config(format!("{}: {e}", path.display()))),
        };
        Self::parse(&text).map_err(|e| {
            CliError::Config(format!("{}: {e}; fix it or delete it and run rancherctl login", path.display()))
        })
    }

    /// Parses either form of the file.
    fn parse(text: &str) -> Result<Self, String> {
        let value: Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
        if value.get("contexts").is_some() || value.get("currentContext").is_some() {
            let cfg: CliConfig = serde_json::from_value(value).map_err(|e| e.to_string())?;
            return Ok(cfg);
        }
        let old: SingleLogin = serde_json::from_value(value).map_err(|e| e.to_string())?;
        if old.server.is_empty() {
            return Ok(CliConfig::default());
        }
        let name = host_port(&old.server);
        Ok(CliConfig {
            current_context: name.clone(),
            contexts: vec![Context {
                name,
                server: old.server,
                user: String::new(),
                token: old.token,
                cacert: old.cacert,
                insecure: old.insecure,
            }],
        })
    }

    /// The context named `name`.
    pub fn get(&self, name: &str) -> Option<&Context> {
        self.contexts.iter().find(|c| c.name == name)
    }

    /// The context a command uses: `wanted` (from `--context`) or the current one.
    ///
    /// # Errors
    /// [`CliError::Input`] for an unknown `wanted`, [`CliError::NotLoggedIn`] without a current context.
    pub fn select(&self, wanted: Option<&str>) -> Result<&Context, CliError> {
        match wanted {
            Some(name) => self.get(name).ok_or_else(|| self.unknown(name)),
            None if self.current_context.is_empty() => Err(CliError::NotLoggedIn),
            None => self.get(&self.current_context).ok_or(CliError::NotLoggedIn),
        }
    }

    /// The error for a context name that is not saved.
    pub fn unknown(&self, name: &str) -> CliError {
        let known: Vec<&str> = self.contexts.iter().map(|c| c.name.as_str()).collect();
        CliError::Input(if known.is_empty() {
            format!("no context {name:?}: there are none yet, run rancherctl login")
        } else {
            format!("no context {name:?} (known: {})", known.join(", "))
        })
    }

    /// Adds `ctx`, or replaces the context of the same name; returns the context it replaced.
    pub fn upsert(&mut self, ctx: Context) -> Option<Context> {
        match self.contexts.iter_mut().find(|c| c.name == ctx.name) {
            Some(slot) => Some(std::mem::replace(slot, ctx)),
            None => {
                self.contexts.push(ctx);
                None
            }
        }
    }

    /// Removes the context `name`; returns it. The current context becomes none when it was that one.
    pub fn remove(&mut self, name: &str) -> Option<Context> {
        let at = self.contexts.iter().position(|c| c.name == name)?;
        if self.current_context == name {
            self.current_context.clear();
        }
        Some(self.contexts.remove(at))
    }

    /// Saves the configuration, readable by the owner only.
    ///
    /// # Errors
    /// [`CliError::Config`] when the file cannot be written.
    pub fn save(&self) -> Result<PathBuf, CliError> {
        let path = path()?;
        let fail = |e: std::io::Error| CliError::Config(format!("{}: {e}", path.display()));
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(fail)?;
        }
        let text = serde_json::to_string_pretty(self).map_err(|e| CliError::Config(e.to_string()))?;
        // Written beside and renamed over, so a failed write never loses the other contexts.
        let tmp = path.with_extension("json.tmp");
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut f = opts.open(&tmp).map_err(fail)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            f.set_permissions(std::fs::Permissions::from_mode(0o600)).map_err(fail)?;
        }
        f.write_all(text.as_bytes()).and_then(|()| f.sync_all()).map_err(fail)?;
        drop(f);
        std::fs::rename(&tmp, &path).map_err(fail)?;
        Ok(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_single_login_file_becomes_one_current_context() {
        let cfg = CliConfig::parse(
            r#"{"server":"https://r.example:8443","token":"token-abcde:xyz","insecure":true}"#,
        )
        .unwrap();
        assert_eq!(cfg.current_context, "r.example:8443");
        let ctx = cfg.select(None).unwrap();
        assert_eq!(
            (ctx.server.as_str(), ctx.token.as_str(), ctx.insecure),
            ("https://r.example:8443", "token-abcde:xyz", true)
        );
        assert_eq!(ctx.token_id(), Some("token-abcde"));
    }

    #[test]
    fn contexts_are_selected_by_name_and_removing_the_current_one_leaves_none() {
        let mut cfg = CliConfig::default();
        for name in ["a", "b"] {
            cfg.upsert(Context {
                name: name.into(),
                server: format!("https://{name}"),
                ..Default::default()
            });
        }
        cfg.current_context = "a".into();
        assert_eq!(cfg.select(Some("b")).unwrap().server, "https://b");
        assert!(matches!(cfg.select(Some("c")), Err(CliError::Input(m)) if m.contains("known: a, b")));
        let replaced =
            cfg.upsert(Context { name: "a".into(), server: "https://a2".into(), ..Default::default() });
        assert_eq!(replaced.unwrap().server, "https://a");
        assert_eq!(cfg.contexts.len(), 2);
        cfg.remove("a");
        assert!(matches!(cfg.select(None), Err(CliError::NotLoggedIn)));
        assert_eq!(host_port("https://h.example"), "h.example:443");
    }
}
