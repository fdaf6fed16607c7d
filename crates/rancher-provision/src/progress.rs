//! What a provisioner reports after one call: how far it got, and what the controller does next.

use std::time::Duration;

use rancher_core::model::ProvisioningProgress;
use secrecy::SecretString;

/// What a provisioner reports after one [`reconcile`](crate::Provisioner::reconcile) or
/// [`remove`](crate::Provisioner::remove) call.
///
/// Every variant but [`Done`](Progress::Done) carries a [`ProvisioningProgress`] — a message and the
/// steps with their states — which the controller writes to the cluster's `status.provisioning`, where
/// a client reads it to draw a progress bar (`done()` of `total()` steps).
#[derive(Clone, Debug)]
pub enum Progress {
    /// Work is under way; the controller calls again after `after` (sooner if the cluster changes).
    /// The cluster's `Provisioned` condition is `Unknown` with the progress message.
    InProgress {
        /// How far the work has got.
        progress: ProvisioningProgress,
        /// When to look again.
        after: Duration,
    },
    /// The infrastructure is in place; the cluster agent has yet to connect, installed by the user
    /// (the message says how). `Provisioned` is `True`; the agent's connection drives the rest.
    WaitingForAgent {
        /// How far the work has got, and what the user should do.
        progress: ProvisioningProgress,
    },
    /// The provisioner created the cluster and hands over how to reach it, so that the server deploys
    /// the cluster agent itself (hosted clusters; clusters built on machines).
    ///
    /// The server applies the cluster's import manifest through `downstream` with server-side apply
    /// and drops the credential; `Provisioned` turns `True` and the agent's connection drives the
    /// rest. It applies it again only when the spec or the manifest changed, or when the agent has
    /// not connected within a bound, so returning `Created` on every call is fine. When the endpoint
    /// cannot be reached (a private endpoint), the cluster waits for the user to apply the import
    /// command shown in its progress; a TLS failure or a 401/403 is a failure that says what was
    /// refused, retried with backoff (with the credential of the next call).
    Created {
        /// How far the work has got.
        progress: ProvisioningProgress,
        /// The new cluster's API server and a credential for it.
        downstream: Downstream,
    },
    /// The step is complete: the cluster is provisioned (for `reconcile`) or removed (for `remove`).
    Done,
}

/// How the server reaches a cluster a provisioner created, to deploy its agent there.
///
/// The credential is a secret: it is never logged (its `Debug` is redacted) and never stored in the
/// cluster's status.
#[derive(Clone, Debug)]
pub struct Downstream {
    /// The API server's URL, `https://host:port`.
    pub api_endpoint: String,
    /// PEM CA certificates the API server's certificate chains to; empty when publicly trusted.
    pub ca_pem: String,
    /// Who the server is when it deploys the agent; it needs cluster-admin rights.
    pub credential: DownstreamCredential,
}

/// A credential for a downstream API server.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum DownstreamCredential {
    /// A bearer token (a service account's, or a cloud's short-lived one).
    BearerToken(SecretString),
    /// A client certificate and its key, both PEM.
    ClientCertificate {
        /// The certificate chain.
        cert_pem: String,
        /// The private key.
        key_pem: SecretString,
    },
}
