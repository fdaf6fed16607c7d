//! The authentication proxy at `/k8s/clusters/<id>/…`, wired to the server: rancher-auth's tower
//! stack ([`rancher_auth::proxy`]) with the store's tokens ([`authenticator`]), the binding policy
//! ([`access`]), the tunnel as the way downstream ([`upstream`]) and the audit log ([`AuditConfig`]).

mod access;
mod authenticator;
mod authz_index;
pub(crate) mod membership;
mod upstream;

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use rancher_auth::proxy::{
    self, AuditLayer, AuditLevel, AuditSink, BrowserPolicy, ForwardConfig, ProxyService,
};
use rancher_core::store::Store;

pub(crate) use access::{BindingAccess, has_binding};
pub(crate) use authenticator::{StoreAuthenticator, user_info};
use upstream::TunnelUpstreams;

use super::auth::TokenAuthenticator;
use super::registration::Registration;

/// Where the audit log goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuditTarget {
    /// One JSON line per request on standard output.
    Stdout,
    /// Appended to this file.
    File(PathBuf),
}

impl std::str::FromStr for AuditTarget {
    type Err = String;

    /// `-` for standard output, anything else is a file path.
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "" => Err("the audit log needs a path, or - for standard output".into()),
            "-" => Ok(AuditTarget::Stdout),
            path => Ok(AuditTarget::File(PathBuf::from(path))),
        }
    }
}

/// The proxy's audit log settings; off unless a target is given (or an embedder's sink, see
/// [`ServerBuilder::audit_sink`](crate::server::ServerBuilder::audit_sink)).
#[derive(Clone, Debug, Default)]
pub struct AuditConfig {
    /// Where to write; `None` disables the audit log.
    pub target: Option<AuditTarget>,
    /// How much of each request to record.
    pub level: AuditLevel,
}

impl AuditConfig {
    /// The audit layer for these settings, recording to the configured target and to every one of
    /// `extra` (the embedder's sinks) at [`AuditConfig::level`].
    ///
    /// # Errors
    /// When the file cannot be opened for appending.
    pub(crate) fn layer(&self, extra: &[Arc<dyn AuditSink>]) -> std::io::Result<AuditLayer> {
        let mut sinks: Vec<Arc<dyn AuditSink>> = Vec::new();
        match &self.target {
            None => {}
            Some(AuditTarget::Stdout) => sinks.push(Arc::new(proxy::StdoutSink::new()?)),
            Some(AuditTarget::File(path)) => sinks.push(Arc::new(proxy::FileSink::open(path)?)),
        }
        sinks.extend(extra.iter().cloned());
        Ok(match sinks.len() {
            0 => AuditLayer::disabled(),
            1 => AuditLayer::new(sinks.remove(0), self.level),
            _ => AuditLayer::new(Arc::new(super::plugins::FanOut(sinks)), self.level),
        })
    }
}

/// Builds the proxy service the router mounts at `/k8s/clusters/{*rest}`.
pub(crate) fn build(
    store: Arc<dyn Store>,
    tokens: Arc<TokenAuthenticator>,
    registration: Arc<Registration>,
    audit: AuditLayer,
) -> ProxyService {
    let clients = Arc::new(OnceLock::new());
    let access = BindingAccess::new(store.clone(), registration.clone(), clients.clone());
    // Browser sessions may also come from the external URL (a load balancer's name).
    let browsers = BrowserPolicy::for_server_url(registration.server_url()).unwrap_or_default();
    let service = proxy::proxy_service_for_browsers(
        StoreAuthenticator::new(tokens, store),
        access,
        TunnelUpstreams::new(registration),
        audit,
        ForwardConfig::default(),
        browsers,
    );
    let _ = clients.set(service.clients().clone());
    service
}
