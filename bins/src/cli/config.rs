//! `rancherctl`'s saved login: `<config dir>/rancherctl/config.json`, mode 0600 (it holds a token).

use std::io::Write;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::error::CliError;

/// What `rancherctl login` keeps.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CliConfig {
    /// The server's base URL, e.g. `https://rancher.example.com:8443`.
    pub server: String,
    /// The API token `token-xxxxx:<secret>`.
    pub token: String,
    /// The CA (PEM) to trust for this server, when given with `--cacert` at login.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cacert: Option<String>,
    /// Skip certificate verification (`--insecure` at login).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub insecure: bool,
}

/// The config file's path.
///
/// # Errors
/// [`CliError::Config`] when the platform has no config directory (no `HOME`).
pub fn path() -> Result<PathBuf, CliError> {
    dirs::config_dir()
        .map(|d| d.join("rancherctl").join("config.json"))
        .ok_or_else(|| CliError::Config("no configuration directory: set HOME (or XDG_CONFIG_HOME)".into()))
}

impl CliConfig {
    /// Reads the saved login.
    ///
    /// # Errors
    /// [`CliError::NotLoggedIn`] when there is none, [`CliError::Config`] when it cannot be read.
    pub fn load() -> Result<Self, CliError> {
        let path = path()?;
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(CliError::NotLoggedIn),
            Err(e) => return Err(CliError::Config(format!("{}: {e}", path.display()))),
        };
        let cfg: CliConfig = serde_json::from_str(&text)
            .map_err(|e| CliError::Config(format!("{}: {e}; run rancherctl login again", path.display())))?;
        if cfg.server.is_empty() || cfg.token.is_empty() {
            return Err(CliError::NotLoggedIn);
        }
        Ok(cfg)
    }

    /// Saves the login, readable by the owner only.
    ///
    /// # Errors
    /// [`CliError::Config`] when the file cannot be written.
    pub fn save(&self) -> Result<PathBuf, CliError> {
        let path = path()?;
        let fail = |e: std::io::Error| CliError::Config(format!("{}: {e}", path.display()));
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(fail)?;
        }
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut f = opts.open(&path).map_err(fail)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            f.set_permissions(std::fs::Permissions::from_mode(0o600)).map_err(fail)?;
        }
        let text = serde_json::to_string_pretty(self).map_err(|e| CliError::Config(e.to_string()))?;
        f.write_all(text.as_bytes()).map_err(fail)?;
        Ok(path)
    }

    /// Forgets the login.
    ///
    /// # Errors
    /// [`CliError::Config`] when the file exists but cannot be removed.
    pub fn remove() -> Result<(), CliError> {
        let path = path()?;
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(CliError::Config(format!("{}: {e}", path.display()))),
        }
    }
}
