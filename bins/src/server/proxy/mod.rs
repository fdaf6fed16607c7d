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

use rancher_auth::proxy::{self, AuditLayer, AuditLevel, BrowserPolicy, ForwardConfig, ProxyService};
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

/// The proxy's audit log settings; off unless a target is given.
#[derive(Clone, Debug, Default)]
pub struct AuditConfig {
    /// Where to write; `None` disables the audit log.
    pub target: Option<AuditTarget>,
    /// How much of each request to record.
    pub level: AuditLevel,
}

impl AuditConfig {
    /// The audit layer for these settings.
    ///
    /// # Errors
    /// When the file cannot be opened for appending.
    pub(crate) fn layer(&self) -> std::io::Result<AuditLayer> {
        Ok(match &self.target {
            None => AuditLayer::disabled(),
            Some(AuditTarget::Stdout) => AuditLayer::new(Arc::new(proxy::StdoutSink::new()?), self.level),
            Some(AuditTarget::File(path)) => {
                AuditLayer::new(Arc::new(proxy::FileSink::open(path)?), self.level)
            }
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
