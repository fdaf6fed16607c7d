//! What a provisioner may use while it works.

use tokio_util::sync::CancellationToken;

/// What a provisioner may use while it works: where agents reach the server, and a cancellation
/// token.
///
/// `cancel` fires when the cluster is deleted while a [`reconcile`](crate::Provisioner::reconcile) is in
/// flight, or when the server shuts down. A provisioner that waits on anything slow selects on
/// [`CancellationToken::cancelled`] and returns [`ProvisionError::Cancelled`](crate::ProvisionError::Cancelled);
/// the controller then calls [`remove`](crate::Provisioner::remove), which must cope with half-made
/// infrastructure.
#[derive(Clone, Debug, Default)]
pub struct ProvisionContext {
    /// The management server's external URL, which agents dial.
    pub server_url: String,
    /// The SHA-256 checksum of the server's CA, which agents pin.
    pub ca_checksum: String,
    /// Fires when the work should stop.
    pub cancel: CancellationToken,
}
