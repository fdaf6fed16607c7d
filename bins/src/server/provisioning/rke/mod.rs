//! The `rke` provisioner: clusters built on SSH hosts from `spec.rkeConfig` (Rancher's cluster.yml
//! shape) and a component [`Bundle`] of the server's [`BundleRegistry`].
//!
//! `ssh_key_path` names a file on the **server's** filesystem, read when provisioning; inline keys
//! are sealed at rest (see [`keys`] and [`crate::server::secrets`]).

pub(crate) mod backup_schedule;
pub(crate) mod backups;
mod board;
pub(crate) mod expiry;
pub(crate) mod export;
mod health;
mod hosts;
pub(crate) mod keys;
mod layout;
mod lifecycle;
mod membership;
pub(crate) mod node_roles;
mod plans;
mod restore;
mod rollout;
mod rotation;
mod run;
mod runs;
mod snapshots;
pub(crate) mod state;

use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use rancher_core::model::{Cluster, RkeConfig};
use rancher_provision::bundle::{Bundle, BundleRegistry};
use rancher_provision::rke::{self, SshKeySource};
use rancher_provision::{Progress, ProvisionContext, ProvisionError, Provisioner};
use secrecy::SecretString;

use crate::server::registration::Registration;
use crate::server::secrets::{Sealer, is_sealed};

/// The largest SSH key file read (64 KiB).
const MAX_KEY_FILE_BYTES: u64 = 64 * 1024;

/// Builds clusters from `spec.rkeConfig` on SSH hosts.
pub(crate) struct RkeProvisioner {
    bundles: Arc<BundleRegistry>,
    sealer: Arc<Sealer>,
    /// What runs work with, once the server has built its registration ([`attach`](Self::attach)).
    ctx: OnceLock<Arc<run::RunCtx>>,
    runs: runs::Runs,
}

impl RkeProvisioner {
    /// A provisioner using these bundles and this sealer.
    pub(crate) fn new(bundles: Arc<BundleRegistry>, sealer: Arc<Sealer>) -> Self {
        RkeProvisioner { bundles, sealer, ctx: OnceLock::new(), runs: runs::Runs::default() }
    }

    /// Gives the provisioner the server's registration (its store, tunnel and tokens); until then
    /// `reconcile` and `remove` fail as transient.
    pub(crate) fn attach(&self, registration: Arc<Registration>) {
        let _ = self.ctx.set(Arc::new(run::RunCtx { registration, sealer: self.sealer.clone() }));
    }

    fn run_ctx(&self) -> Result<&Arc<run::RunCtx>, ProvisionError> {
        self.ctx.get().ok_or_else(|| ProvisionError::transient("the server is still starting"))
    }

    /// The cluster's `spec.rkeConfig`.
    ///
    /// # Errors
    /// [`ProvisionError::InvalidSpec`] when it has none.
    pub(crate) fn config(cluster: &Cluster) -> Result<&RkeConfig, ProvisionError> {
        cluster.spec.rke_config.as_deref().ok_or_else(|| {
            ProvisionError::invalid_spec("spec.rkeConfig", "a cluster of the rke driver needs spec.rkeConfig")
        })
    }

    /// The bundle of `cfg.kubernetes_version`, or the newest registered one when it is empty.
    ///
    /// # Errors
    /// [`ProvisionError::InvalidSpec`] on `spec.rkeConfig.kubernetes_version` naming the versions the
    /// server has.
    pub(crate) fn bundle_for(&self, cfg: &RkeConfig) -> Result<Arc<Bundle>, ProvisionError> {
        let field = "spec.rkeConfig.kubernetes_version";
        if cfg.kubernetes_version.is_empty() {
            return self.bundles.newest().ok_or_else(|| {
                ProvisionError::invalid_spec(
                    field,
                    "the server has no Kubernetes bundle (start it with --bundle-dir DIR of bundle manifests)",
                )
            });
        }
        self.bundles.get(&cfg.kubernetes_version).ok_or_else(|| {
            let known = self.bundles.versions();
            let known = if known.is_empty() { "none".to_owned() } else { known.join(", ") };
            ProvisionError::invalid_spec(
                field,
                format!("the server has no bundle for {} (it has: {known})", cfg.kubernetes_version),
            )
        })
    }
}

/// The private key of a [`SshKeySource`]: a sealed inline key opened, a plain one as is, a path read
/// from the server's filesystem (at most [`MAX_KEY_FILE_BYTES`]).
///
/// # Errors
/// [`ProvisionError::Permanent`] when a sealed key does not open or the file cannot be read (the
/// message names the path, never the key).
pub(crate) async fn read_ssh_key(
    sealer: &Sealer,
    source: SshKeySource<'_>,
) -> Result<SecretString, ProvisionError> {
    match source {
        SshKeySource::Inline(v) if is_sealed(v) => {
            sealer.open(v).map_err(|e| ProvisionError::permanent(format!("opening a sealed SSH key: {e}")))
        }
        SshKeySource::Inline(v) => Ok(SecretString::from(v.to_owned())),
        SshKeySource::Path(p) => {
            use tokio::io::AsyncReadExt;
            let read = async {
                let mut text = String::new();
                tokio::fs::File::open(p).await?.take(MAX_KEY_FILE_BYTES).read_to_string(&mut text).await?;
                Ok::<_, std::io::Error>(text)
            };
            read.await.map(SecretString::from).map_err(|e| {
                ProvisionError::permanent(format!("reading the SSH key file {p} on the server: {e}"))
            })
        }
    }
}

/// `rkeConfig.x` of the shared validation as the cluster's `spec.rkeConfig.x`.
fn in_spec(e: ProvisionError) -> ProvisionError {
    match e {
        ProvisionError::InvalidSpec { field, message } => {
            ProvisionError::InvalidSpec { field: format!("spec.{field}"), message }
        }
        other => other,
    }
}

#[async_trait]
impl Provisioner for RkeProvisioner {
    fn driver(&self) -> &str {
        rke::DRIVER
    }

    fn validate(&self, cluster: &Cluster) -> Result<(), ProvisionError> {
        let cfg = Self::config(cluster)?;
        rke::validate(cfg).map_err(in_spec)?;
        self.bundle_for(cfg).map(drop)
    }

    fn warnings(&self, cluster: &Cluster) -> Vec<String> {
        Self::config(cluster).ok().and_then(|cfg| rke::validate(cfg).ok()).unwrap_or_default()
    }

    async fn reconcile(&self, cluster: &Cluster, ctx: &ProvisionContext) -> Result<Progress, ProvisionError> {
        let run_ctx = self.run_ctx()?;
        let cfg = Self::config(cluster)?;
        let bundle = self.bundle_for(cfg)?;
        lifecycle::reconcile(&self.runs, run_ctx, cluster, cfg, bundle, ctx).await
    }

    async fn remove(&self, cluster: &Cluster, _ctx: &ProvisionContext) -> Result<Progress, ProvisionError> {
        lifecycle::remove(&self.runs, self.run_ctx()?, cluster).await
    }
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
