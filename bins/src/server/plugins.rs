//! What an embedder plugs into a [`ServerBuilder`]: provisioners, identity providers, audit sinks, a
//! metrics registry, the tunnel's transport and session settings. Kept in one field of the builder
//! ([`Plugins`]) so each plug-in is one method here.

use std::sync::Arc;

use rancher_auth::providers::AuthProvider;
use rancher_auth::proxy::{AuditEvent, AuditSink};
use rancher_provision::Provisioner;
use rancher_provision::bundle::Bundle;
use rancher_tunnel::{SessionConfig, Transport};

use super::ServerBuilder;
use super::metrics::Metrics;

/// The plug-ins given to the builder.
#[derive(Clone, Default)]
pub(crate) struct Plugins {
    /// Identity providers served besides `local` and those of `--auth-config`.
    pub(crate) auth_providers: Vec<Arc<dyn AuthProvider>>,
    /// Where the proxy's audit events go besides the configured log.
    pub(crate) audit_sinks: Vec<Arc<dyn AuditSink>>,
    /// The server's metrics, made early when an embedder's registry carries them.
    pub(crate) metrics: Option<Arc<Metrics>>,
    /// The tunnel's transport (its `accept` side) instead of the WebSocket one.
    pub(crate) tunnel_transport: Option<Arc<dyn Transport>>,
    /// The tunnel's session settings instead of
    /// [`tunnel_session_config`](super::registration::tunnel_session_config).
    pub(crate) session_config: Option<SessionConfig>,
    /// Provisioners by driver name, besides the built-in `imported`.
    pub(crate) provisioners: Vec<Arc<dyn Provisioner>>,
    /// Kubernetes component bundles besides those of `--bundle-dir`.
    pub(crate) bundles: Vec<Bundle>,
}

impl std::fmt::Debug for Plugins {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.auth_providers.iter().map(|p| p.name()).collect();
        f.debug_struct("Plugins")
            .field("auth_providers", &names)
            .field("audit_sinks", &self.audit_sinks.len())
            .field("metrics_registry", &self.metrics.is_some())
            .field("tunnel_transport", &self.tunnel_transport.is_some())
            .field("session_config", &self.session_config)
            .field("provisioners", &self.provisioners.iter().map(|p| p.driver()).collect::<Vec<_>>())
            .field("bundles", &self.bundles.iter().map(|b| b.version.as_str()).collect::<Vec<_>>())
            .finish()
    }
}

/// Every audit event to each sink in turn (the configured log first).
pub(crate) struct FanOut(pub(crate) Vec<Arc<dyn AuditSink>>);

impl AuditSink for FanOut {
    fn record(&self, event: &AuditEvent) {
        for sink in &self.0 {
            sink.record(event);
        }
    }

    fn flush(&self) {
        for sink in &self.0 {
            sink.flush();
        }
    }
}

impl ServerBuilder {
    /// Plugs in a provisioner for clusters of its [`driver`](rancher_provision::Provisioner::driver):
    /// a cluster created with that `spec.driver` is validated by it on creation, provisioned by it
    /// (progress in the `Provisioned` condition and `status.provisioning`) and removed by it when
    /// deleted. `imported` is built in.
    ///
    /// ```no_run
    /// # async fn demo(my_provisioner: std::sync::Arc<dyn rancher_provision::Provisioner>)
    /// # -> Result<(), Box<dyn std::error::Error>> {
    /// let server = rancher::server::Server::builder()
    ///     .data_dir("/tmp/rancher-demo")
    ///     .provisioner(my_provisioner)
    ///     .build()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    ///
    /// Two provisioners for one driver name make [`build`](Self::build) fail with
    /// [`ServerError::Provisioner`](super::ServerError::Provisioner).
    pub fn provisioner(mut self, provisioner: Arc<dyn Provisioner>) -> Self {
        self.plugins.provisioners.push(provisioner);
        self
    }

    /// Registers a bundle of Kubernetes component binaries for the `rke` provisioner, besides the
    /// manifests of [`bundle_dir`](Self::bundle_dir). A cluster's `rkeConfig.kubernetes_version`
    /// selects a bundle by its version (empty: the newest). A bundle that is invalid, or a second one of a
    /// version, makes [`build`](Self::build) fail with [`ServerError::Bundles`](super::ServerError::Bundles).
    ///
    /// ```no_run
    /// # fn demo(dir: &std::path::Path) -> Result<(), Box<dyn std::error::Error>> {
    /// use rancher_provision::bundle::{Bundle, COMPONENTS};
    /// let files: Vec<(&str, std::path::PathBuf)> = COMPONENTS.iter().map(|c| (*c, dir.join(c))).collect();
    /// let files: Vec<(&str, &std::path::Path)> = files.iter().map(|(c, p)| (*c, p.as_path())).collect();
    /// let builder = rancher::server::Server::builder().bundle(Bundle::from_local_files("v1.20.2", &files)?);
    /// # drop(builder); Ok(()) }
    /// ```
    pub fn bundle(mut self, bundle: Bundle) -> Self {
        self.plugins.bundles.push(bundle);
        self
    }

    /// Where the clouds' APIs are for hosted clusters (GKE's base URL, extra CAs), when not at their
    /// public addresses: a sovereign cloud, a proxy, a test stand-in. AKS's endpoints are each
    /// cluster's (`aksConfig.baseUrl`, `authBaseUrl`).
    pub fn cloud_endpoints(mut self, endpoints: super::CloudEndpoints) -> Self {
        self.cloud_endpoints = endpoints;
        self
    }

    /// Trusts the CAs of the PEM `file` for the clouds' APIs too (`--cloud-ca-file`); read when the
    /// server is built.
    pub fn cloud_ca_file(mut self, file: impl AsRef<std::path::Path>) -> Self {
        self.cloud_ca_file = Some(file.as_ref().to_owned());
        self
    }

    /// Reads the bundle manifests (`*.yaml`, `*.yml`, `*.json`) of `dir` when the server is built
    /// (`--bundle-dir`); see [`bundle`](Self::bundle).
    pub fn bundle_dir(mut self, dir: impl AsRef<std::path::Path>) -> Self {
        self.bundle_dirs.push(dir.as_ref().to_owned());
        self
    }

    /// Serves `provider` for login at `/v3-public/<name>Providers/<name>` where `<name>` is its
    /// [`AuthProvider::name`] (`openLdapProviders/openldap` and `activeDirectoryProviders/activedirectory`
    /// in Rancher's spelling): `POST ?action=login` with `{"username","password"}`, or with
    /// `{"code","state"}` after `GET ?action=authorize&redirectUri=…` for a provider that implements
    /// [`AuthProvider::authorize_url`]. Its users become local `u-…` users on first login, its groups
    /// reach the proxy's `Impersonate-Group` headers and are re-read every refresh interval.
    ///
    /// The name must be 1–32 lowercase letters and digits, starting with a letter, and not `local` or
    /// a name the `--auth-config` file configures; [`build`](Self::build) fails with
    /// [`ServerError::AuthProvider`](super::ServerError::AuthProvider) otherwise.
    ///
    /// ```no_run
    /// # async fn demo(provider: std::sync::Arc<dyn rancher_auth::providers::AuthProvider>)
    /// # -> Result<(), rancher::server::ServerError> {
    /// let server = rancher::server::Server::builder().auth_provider(provider).build().await?;
    /// # drop(server); Ok(()) }
    /// ```
    pub fn auth_provider(mut self, provider: Arc<dyn AuthProvider>) -> Self {
        self.plugins.auth_providers.push(provider);
        self
    }

    /// Sends every audit event of the authentication proxy (`/k8s/clusters/<id>/…`) to `sink`, in
    /// addition to the audit log configured with [`audit`](Self::audit) (file or standard output),
    /// at that configuration's [`level`](super::AuditConfig::level). Several sinks each get every
    /// event. `record` is called on the request's task: a sink must queue, not block.
    pub fn audit_sink(mut self, sink: Arc<dyn AuditSink>) -> Self {
        self.plugins.audit_sinks.push(sink);
        self
    }

    /// Registers the server's metrics — the HTTP API, the store, the listener and the tunnel
    /// (`tunnel_sessions`, `tunnel_streams_total`, …) — into `registry` under the prefix `rancher`, as
    /// well as serving them at `/metrics`. The same counters: an embedder rendering its registry sees
    /// what `/metrics` shows.
    pub fn metrics_registry(mut self, registry: &mut prometheus_client::registry::Registry) -> Self {
        let metrics = self.plugins.metrics.get_or_insert_with(|| Arc::new(Metrics::new()));
        metrics.register_into(registry.sub_registry_with_prefix("rancher"));
        self
    }

    /// Wraps agents' upgraded `/v3/connect` connections with `transport`'s
    /// [`accept`](Transport::accept) instead of the WebSocket framing; agents must connect with the
    /// same transport (see `rancher::agent::AgentBuilder::transport`).
    pub fn tunnel_transport(mut self, transport: Arc<dyn Transport>) -> Self {
        self.plugins.tunnel_transport = Some(transport);
        self
    }

    /// The tunnel's session settings (keepalive, dead-peer timeout, windows) instead of
    /// [`tunnel_session_config`](super::registration::tunnel_session_config).
    pub fn session_config(mut self, config: SessionConfig) -> Self {
        self.plugins.session_config = Some(config);
        self
    }
}
