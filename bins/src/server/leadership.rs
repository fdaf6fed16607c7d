//! Which of the servers sharing a store runs the controllers that must run once: the cluster
//! controller, the provisioning controller, the certificate-expiry check and the etcd snapshot
//! schedule. Two of them at once would provision a cluster twice — two EC2 instances for one machine,
//! two snapshots for one schedule. With leader election on (`--store etcd`), they run only on the
//! server holding the [`LEASE`] ([`LeaderElection`]); when it stops it releases the lease and
//! another server takes over within seconds, when it dies within the lease's 15 s.
//!
//! Everything else runs on every server: the supervisors and the syncs they run (RBAC, the authorized
//! cluster endpoint's tokens, system namespaces, node role labels) run where a cluster's agent is
//! connected, and the clean-up controller closes each server's own sessions and caches of a deleted
//! cluster (its store deletions are idempotent).
//!
//! `rancher_controllers_leader` on `/metrics` is 1 while a server runs them.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use rancher_core::controller::LeaderElection;
use rancher_core::store::Store;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::metrics::Metrics;

/// The lease the servers elect their leader over.
pub(crate) const LEASE: &str = "controllers";

/// The file in the data directory holding this server's name among the replicas.
const IDENTITY_FILE: &str = "replica-id";

/// Started tasks, each with a name for the shutdown log.
pub(crate) type Tasks = Vec<(&'static str, JoinHandle<()>)>;

/// This server's name among the servers sharing the store: `<host name>-<8 hex digits>`, made on
/// first start and kept in the data directory, so that a server restarted on the same directory
/// takes its own lease back at once rather than waiting for it to run out.
///
/// # Errors
/// I/O errors of reading or writing the file.
pub(crate) fn identity(data_dir: &Path) -> std::io::Result<String> {
    let path = data_dir.join(IDENTITY_FILE);
    match std::fs::read_to_string(&path) {
        Ok(id) if valid_identity(id.trim()) => return Ok(id.trim().to_owned()),
        Ok(_) => tracing::warn!(path = %path.display(), "not a replica name; making a new one"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let host: String = host
        .trim()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' { c.to_ascii_lowercase() } else { '-' })
        .take(40)
        .collect();
    let host = if host.trim_matches('-').is_empty() { "server".to_owned() } else { host };
    let id = format!("{host}-{:08x}", rand::random::<u32>());
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    // Like everything in the data directory: the owner's only.
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut file = opts.open(&path)?;
    file.write_all(id.as_bytes())?;
    file.sync_all()?;
    Ok(id)
}

fn valid_identity(id: &str) -> bool {
    !id.is_empty() && id.len() <= 63 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// Runs `start`'s tasks: at once and until `stop` without an identity (leader election off); with
/// one, each time this server is elected, until it is no longer the leader or `stop`.
pub(crate) async fn run(
    store: Arc<dyn Store>,
    identity: Option<String>,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
    start: impl Fn(CancellationToken) -> Tasks,
) {
    let lead = |term: CancellationToken| {
        let tasks = start(term);
        let metrics = metrics.clone();
        metrics.set_controllers_leader(true);
        async move {
            for (what, task) in tasks {
                if let Err(e) = task.await {
                    tracing::error!("the {what} ended abnormally: {e}");
                }
            }
            metrics.set_controllers_leader(false);
        }
    };
    match identity {
        None => lead(stop).await,
        Some(identity) => LeaderElection::new(store, LEASE, &identity).run(stop, lead).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_identity_is_made_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let id = identity(dir.path()).unwrap();
        assert!(valid_identity(&id), "{id}");
        assert_eq!(identity(dir.path()).unwrap(), id, "kept across restarts");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(IDENTITY_FILE)).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let other = tempfile::tempdir().unwrap();
        assert_ne!(identity(other.path()).unwrap(), id, "another data directory, another server");
        std::fs::write(dir.path().join(IDENTITY_FILE), "not/a name\n").unwrap();
        let fresh = identity(dir.path()).unwrap();
        assert!(valid_identity(&fresh) && fresh != id);
    }
}
