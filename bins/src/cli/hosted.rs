//! `rancherctl cluster create NAME --gke|--aks|--eks FILE` and `cluster update NAME --gke|--aks|--eks
//! FILE`: hosted clusters from their engine config in YAML (Rancher's `gkeConfig` / `aksConfig` /
//! `eksConfig` fields). The file is checked with the provisioner's own function first: an error names the file
//! and the field, and nothing is sent. Then the provisioning is followed ([`super::follow`]) unless
//! `--no-wait`.

use std::path::Path;

use rancher_core::model::{AksConfig, EksConfig, GkeConfig};
use rancher_provision::ProvisionError;
use rancher_provision::hosted::{aks, eks, gke};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::client::ApiClient;
use super::error::CliError;
use super::output::Format;

/// The largest engine config file read (1 MiB).
const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// Which engine a file configures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Engine {
    /// `--gke`: `spec.gkeConfig`.
    Gke,
    /// `--aks`: `spec.aksConfig`.
    Aks,
    /// `--eks`: `spec.eksConfig`.
    Eks,
}

impl Engine {
    /// The spec field the config goes to.
    fn field(self) -> &'static str {
        match self {
            Engine::Gke => "gkeConfig",
            Engine::Aks => "aksConfig",
            Engine::Eks => "eksConfig",
        }
    }

    /// Reads and checks `file` as this engine's config; the config as JSON to send.
    fn load(self, file: &Path) -> Result<Value, CliError> {
        match self {
            Engine::Gke => load::<GkeConfig>(file, gke::validate),
            Engine::Aks => load::<AksConfig>(file, aks::validate),
            Engine::Eks => load::<EksConfig>(file, eks::validate),
        }
    }
}

/// Reads `file` (YAML or JSON) as a `C`, checked by `check`.
fn load<C: DeserializeOwned + Serialize>(
    file: &Path,
    check: impl Fn(&C) -> Result<(), ProvisionError>,
) -> Result<Value, CliError> {
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open(file)
        .and_then(|f| f.take(MAX_CONFIG_BYTES + 1).read_to_string(&mut text))
        .map_err(|e| CliError::Input(format!("reading {}: {e}", file.display())))?;
    if text.len() as u64 > MAX_CONFIG_BYTES {
        return Err(CliError::Input(format!("{}: larger than {MAX_CONFIG_BYTES} bytes", file.display())));
    }
    let config: C = serde_saphyr::from_str(&text)
        .map_err(|e| CliError::Input(format!("{}: not a valid config: {e}", file.display())))?;
    check(&config).map_err(|e| CliError::Input(format!("{}: {e}", file.display())))?;
    serde_json::to_value(&config).map_err(|e| CliError::Input(format!("encoding {}: {e}", file.display())))
}

/// `rancherctl cluster create NAME --gke|--aks|--eks FILE`; `wait`: follow the provisioning for that long.
pub(super) async fn create(
    client: &ApiClient,
    name: &str,
    description: &str,
    engine: Engine,
    file: &Path,
    fmt: Format,
    wait: Option<std::time::Duration>,
) -> Result<String, CliError> {
    let config = engine.load(file)?;
    let mut spec = json!({ "displayName": name, "description": description });
    spec[engine.field()] = config;
    super::follow::create_cluster(client, name, spec, fmt, wait).await
}

/// `rancherctl cluster update NAME --gke|--aks|--eks FILE`: the engine config replaced (read, changed,
/// written back with the version read: a concurrent change is a Conflict, not lost); `wait`: follow
/// the change for that long.
pub(super) async fn update(
    client: &ApiClient,
    name: &str,
    engine: Engine,
    file: &Path,
    fmt: Format,
    wait: Option<std::time::Duration>,
) -> Result<String, CliError> {
    let config = engine.load(file)?;
    let field = engine.field();
    let without = format!("cluster {name} has no {field}");
    super::follow::replace_config(client, name, field, config, &without, fmt, wait).await
}
