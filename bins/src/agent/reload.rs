//! A cluster agent with a kubeconfig file takes up new credentials without stopping: a cluster the
//! server built rotates its certificates by rewriting the files (its CA, the agent's client
//! certificate), and the agent connects again with them — make before break — instead of the node
//! agent restarting it, which left the server without a way into the cluster for the seconds a
//! restart takes.
//!
//! [`KubeconfigWatch`] notices the change: every [`POLL_EVERY`] it looks at the kubeconfig and every
//! file it names (CA, client certificate and key, token file), and hashes them again when one's size,
//! modification time or inode moved. [`Retirable`] lets the tunnel session
//! of the old credentials live on until the new one is up, but never dial again: once the server has
//! the new session, a reconnect of the old one would take its place.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use http::HeaderMap;
use kube::config::Kubeconfig;
use rancher_tunnel::{BoxedIo, Transport};
use sha2::{Digest, Sha256};
use tokio::sync::watch;

/// How often the kubeconfig and its files are read.
pub(crate) const POLL_EVERY: Duration = Duration::from_secs(2);

/// The files a kubeconfig names, relative paths resolved against its directory (as kubectl does).
fn named_files(path: &Path) -> Result<Vec<PathBuf>, String> {
    let kc = Kubeconfig::read_from(path).map_err(|e| format!("kubeconfig {}: {e}", path.display()))?;
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut files = Vec::new();
    for c in kc.clusters.iter().filter_map(|c| c.cluster.as_ref()) {
        files.extend(c.certificate_authority.clone());
    }
    for a in kc.auth_infos.iter().filter_map(|a| a.auth_info.as_ref()) {
        files.extend(a.client_certificate.clone());
        files.extend(a.client_key.clone());
        files.extend(a.token_file.clone());
    }
    Ok(files.into_iter().map(|f| dir.join(f)).collect())
}

/// What a file's metadata says of its content: a rewrite changes its size or modification time, a
/// file replaced by a rename its inode.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Stamp {
    len: u64,
    modified: Option<std::time::SystemTime>,
    inode: u64,
}

fn stamp(path: &Path) -> Option<Stamp> {
    let m = std::fs::metadata(path).ok()?;
    #[cfg(unix)]
    let inode = std::os::unix::fs::MetadataExt::ino(&m);
    #[cfg(not(unix))]
    let inode = 0;
    Some(Stamp { len: m.len(), modified: m.modified().ok(), inode })
}

/// The files a digest read, each with its stamp taken before it was read.
type Stamps = Vec<(PathBuf, Option<Stamp>)>;

/// A digest of the kubeconfig at `path` and of every file it names.
///
/// # Errors
/// A message naming the file that cannot be read or the kubeconfig that cannot be parsed (a file
/// half written, or gone for a moment, is read again on the next poll).
#[cfg(test)]
fn digest(path: &Path) -> Result<[u8; 32], String> {
    digest_stamped(path).map(|(d, _)| d)
}

/// [`digest`], with the stamps of the files read (taken before each read: a write after it shows on
/// the next look).
fn digest_stamped(path: &Path) -> Result<([u8; 32], Stamps), String> {
    let mut h = Sha256::new();
    let mut stamps = Vec::new();
    let mut hash = |p: &Path| -> Result<(), String> {
        stamps.push((p.to_owned(), stamp(p)));
        let bytes = std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()))?;
        h.update(p.as_os_str().as_encoded_bytes());
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(&bytes);
        Ok(())
    };
    hash(path)?;
    for f in named_files(path)? {
        hash(&f)?;
    }
    Ok((h.finalize().into(), stamps))
}

/// Tells when the kubeconfig or a file it names changed since the credentials in use were read.
pub(crate) struct KubeconfigWatch {
    path: PathBuf,
    in_use: Option<[u8; 32]>,
    /// The last digest and the stamps of its files: a poll that finds every stamp the same reads
    /// nothing (a fleet of agents each parsing its kubeconfig every two seconds is not free).
    seen: std::sync::Mutex<Option<([u8; 32], Stamps)>>,
}

impl KubeconfigWatch {
    /// Watches `path`, whose credentials were read as they are now (taken a moment after they
    /// were read: a change in between is seen only on the next one).
    pub(crate) fn new(path: &Path) -> Self {
        let first = digest_stamped(path).ok();
        KubeconfigWatch {
            path: path.to_owned(),
            in_use: first.as_ref().map(|(d, _)| *d),
            seen: std::sync::Mutex::new(first),
        }
    }

    fn lock_seen(&self) -> std::sync::MutexGuard<'_, Option<([u8; 32], Stamps)>> {
        self.seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The last digest, when no file of it has changed (or become unreadable) since it was read.
    fn unmoved(&self) -> Option<[u8; 32]> {
        let seen = self.lock_seen();
        let (digest, files) = seen.as_ref()?;
        files.iter().all(|(p, s)| s.is_some() && stamp(p) == *s).then_some(*digest)
    }

    /// Waits until the files differ from those in use (polling every [`POLL_EVERY`]; read again only
    /// when a file's size, modification time or inode changed) and returns their digest; pass it to
    /// [`taken`](Self::taken) once the new credentials are in use.
    pub(crate) async fn changed(&self) -> [u8; 32] {
        loop {
            tokio::time::sleep(POLL_EVERY).await;
            let digest = match self.unmoved() {
                Some(d) => d,
                None => match digest_stamped(&self.path) {
                    Ok((d, stamps)) => {
                        *self.lock_seen() = Some((d, stamps));
                        d
                    }
                    Err(e) => {
                        *self.lock_seen() = None;
                        tracing::debug!(error = %e, "the kubeconfig is not readable now; read again later");
                        continue;
                    }
                },
            };
            if Some(digest) != self.in_use {
                return digest;
            }
        }
    }

    /// The credentials of `digest` are in use now.
    pub(crate) fn taken(&mut self, digest: [u8; 32]) {
        self.in_use = Some(digest);
    }
}

/// A transport whose dials can be stopped: once [`retire`](Self::retire)d, a connect waits for
/// good (until the agent is told to stop); the session already up is left alone.
pub(crate) struct Retirable {
    inner: Arc<dyn Transport>,
    retired: watch::Sender<bool>,
}

impl Retirable {
    pub(crate) fn new(inner: Arc<dyn Transport>) -> Arc<Self> {
        Arc::new(Retirable { inner, retired: watch::Sender::new(false) })
    }

    pub(crate) fn retire(&self) {
        self.retired.send_replace(true);
    }
}

#[async_trait]
impl Transport for Retirable {
    async fn connect(&self, headers: &HeaderMap) -> rancher_tunnel::Result<BoxedIo> {
        let mut retired = self.retired.subscribe();
        if *retired.borrow_and_update() {
            // Retired: no dial starts; the agent's stop ends the wait.
            return std::future::pending().await;
        }
        tokio::select! {
            biased;
            // A retirement while the dial is under way ends it.
            _ = retired.wait_for(|r| *r) => {}
            r = self.inner.connect(headers) => if !*self.retired.borrow() {
                return r;
            }
        }
        std::future::pending().await
    }

    async fn accept(&self, raw: BoxedIo) -> rancher_tunnel::Result<BoxedIo> {
        self.inner.accept(raw).await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    fn kubeconfig(dir: &Path, ca: &str) -> PathBuf {
        let path = dir.join("kubeconfig");
        std::fs::write(
            &path,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: https://127.0.0.1:6443\n    \
                 certificate-authority: {ca}\nusers:\n- name: u\n  user:\n    client-certificate: {}/cert.pem\n    \
                 client-key: {}/key.pem\ncontexts:\n- name: x\n  context:\n    cluster: c\n    user: u\n\
                 current-context: x\n",
                dir.display(),
                dir.display()
            ),
        )
        .unwrap();
        path
    }

    #[test]
    fn the_digest_follows_every_file_the_kubeconfig_names() {
        let dir = tempfile::tempdir().unwrap();
        for f in ["ca.pem", "cert.pem", "key.pem"] {
            std::fs::write(dir.path().join(f), f).unwrap();
        }
        // A relative CA path is read next to the kubeconfig.
        let path = kubeconfig(dir.path(), "ca.pem");
        let first = digest(&path).unwrap();
        assert_eq!(digest(&path).unwrap(), first, "nothing changed");
        std::fs::write(dir.path().join("ca.pem"), "new CA").unwrap();
        let ca_changed = digest(&path).unwrap();
        assert_ne!(ca_changed, first, "the CA file changed");
        std::fs::write(dir.path().join("key.pem"), "new key").unwrap();
        assert_ne!(digest(&path).unwrap(), ca_changed, "the client key changed");
        std::fs::remove_file(dir.path().join("cert.pem")).unwrap();
        let e = digest(&path).unwrap_err();
        assert!(e.contains("cert.pem"), "{e}");
        std::fs::write(&path, "{{ not yaml").unwrap();
        assert!(digest(&path).unwrap_err().contains("kubeconfig"));
    }

    /// A rewritten file or one replaced by a rename is read again; untouched files are not even
    /// parsed, and a change not yet taken is reported again.
    #[tokio::test(start_paused = true)]
    async fn the_watch_reads_again_only_what_moved() {
        let dir = tempfile::tempdir().unwrap();
        for f in ["ca.pem", "cert.pem", "key.pem"] {
            std::fs::write(dir.path().join(f), f).unwrap();
        }
        let path = kubeconfig(dir.path(), "ca.pem");
        let mut watch = KubeconfigWatch::new(&path);
        let first = watch.in_use.unwrap();
        assert_eq!(watch.unmoved(), Some(first), "nothing moved");
        let nothing = tokio::time::timeout(POLL_EVERY * 3, watch.changed()).await;
        assert!(nothing.is_err(), "no change is reported while nothing changes");

        std::fs::write(dir.path().join("ca.pem"), "a longer new CA").unwrap();
        assert_eq!(watch.unmoved(), None, "the CA was rewritten");
        let ca = watch.changed().await;
        assert_ne!(ca, first);
        assert_eq!(watch.changed().await, ca, "not taken yet: reported again");
        watch.taken(ca);

        // A key replaced the way tools replace files: written aside, renamed over.
        std::fs::write(dir.path().join("key.new"), "key.pem").unwrap();
        std::fs::rename(dir.path().join("key.new"), dir.path().join("key.pem")).unwrap();
        assert_eq!(watch.unmoved(), None, "a new inode");
        // Same bytes as before: read again, and found unchanged.
        let nothing = tokio::time::timeout(POLL_EVERY * 3, watch.changed()).await;
        assert!(nothing.is_err(), "the same content is no change");
        assert_eq!(watch.unmoved(), Some(ca));
    }

    struct Counting(AtomicUsize);

    #[async_trait]
    impl Transport for Counting {
        async fn connect(&self, _: &HeaderMap) -> rancher_tunnel::Result<BoxedIo> {
            self.0.fetch_add(1, Ordering::SeqCst);
            let (a, _b) = tokio::io::duplex(64);
            Ok(Box::new(a))
        }
        async fn accept(&self, raw: BoxedIo) -> rancher_tunnel::Result<BoxedIo> {
            Ok(raw)
        }
    }

    #[tokio::test]
    async fn a_retired_transport_dials_no_more() {
        let inner = Arc::new(Counting(AtomicUsize::new(0)));
        let t = Retirable::new(inner.clone());
        t.connect(&HeaderMap::new()).await.unwrap();
        t.retire();
        let dial = tokio::time::timeout(Duration::from_millis(200), t.connect(&HeaderMap::new())).await;
        assert!(dial.is_err(), "a retired transport's dial never completes");
        assert_eq!(inner.0.load(Ordering::SeqCst), 1, "and does not reach the server");
    }
}
