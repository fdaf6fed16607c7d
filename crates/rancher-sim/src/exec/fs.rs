//! The tiny in-memory filesystem a pod's exec shell sees: seeded with `/etc/hostname`,
//! `/etc/os-release`, `/etc/hosts`, `/etc/passwd`, `/etc/resolv.conf` and the service account's
//! namespace file, changed by `mkdir`/`touch`/`rm`/`>`, kept while the pod lives, and bounded.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

/// At most this many files and directories per pod.
const MAX_ENTRIES: usize = 512;
/// At most this many bytes of file content per pod.
const MAX_BYTES: usize = 1 << 20;

/// A file or a directory.
#[derive(Debug, Clone)]
pub(crate) enum Node {
    Dir,
    File(Vec<u8>),
}

/// Why a filesystem call failed, worded as coreutils' messages end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FsError {
    NotFound,
    NotADirectory,
    IsADirectory,
    Exists,
    NoSpace,
}

impl std::fmt::Display for FsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FsError::NotFound => "No such file or directory",
            FsError::NotADirectory => "Not a directory",
            FsError::IsADirectory => "Is a directory",
            FsError::Exists => "File exists",
            FsError::NoSpace => "No space left on device",
        })
    }
}

/// One pod's files, by absolute normalised path (`/` is always a directory).
#[derive(Debug, Default)]
pub(crate) struct Fs {
    nodes: BTreeMap<String, Node>,
    bytes: usize,
}

/// `path` made absolute against `cwd`, with `.`, `..` and repeated slashes resolved.
pub(crate) fn resolve(cwd: &str, path: &str) -> String {
    let joined = if path.starts_with('/') { path.to_string() } else { format!("{cwd}/{path}") };
    let mut parts: Vec<&str> = vec![];
    for seg in joined.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            s => parts.push(s),
        }
    }
    format!("/{}", parts.join("/"))
}

fn parent(path: &str) -> &str {
    match path.rfind('/') {
        Some(0) | None => "/",
        Some(i) => &path[..i],
    }
}

impl Fs {
    /// The files a container starts with.
    pub(crate) fn seeded(hostname: &str, namespace: &str, pod_ip: &str) -> Self {
        let mut fs = Fs::default();
        fs.nodes.insert("/".into(), Node::Dir);
        for d in [
            "/bin",
            "/dev",
            "/etc",
            "/home",
            "/root",
            "/tmp",
            "/usr",
            "/usr/bin",
            "/usr/local",
            "/var",
            "/var/log",
            "/var/run",
            "/var/run/secrets",
            "/var/run/secrets/kubernetes.io",
            "/var/run/secrets/kubernetes.io/serviceaccount",
        ] {
            fs.nodes.insert(d.into(), Node::Dir);
        }
        let files = [
            ("/etc/hostname", format!("{hostname}\n")),
            (
                "/etc/os-release",
                "PRETTY_NAME=\"rancher-sim Linux\"\nNAME=\"rancher-sim Linux\"\nID=rancher-sim\nVERSION_ID=\"1\"\n"
                    .to_string(),
            ),
            ("/etc/hosts", format!("127.0.0.1\tlocalhost\n::1\tlocalhost\n{pod_ip}\t{hostname}\n")),
            ("/etc/passwd", "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n".into()),
            (
                "/etc/resolv.conf",
                format!(
                    "search {namespace}.svc.cluster.local svc.cluster.local cluster.local\nnameserver 10.96.0.10\noptions ndots:5\n"
                ),
            ),
            ("/var/run/secrets/kubernetes.io/serviceaccount/namespace", namespace.to_string()),
        ];
        for (p, content) in files {
            fs.bytes += content.len();
            fs.nodes.insert(p.into(), Node::File(content.into_bytes()));
        }
        fs
    }

    pub(crate) fn get(&self, path: &str) -> Option<&Node> {
        self.nodes.get(path)
    }

    pub(crate) fn is_dir(&self, path: &str) -> bool {
        matches!(self.nodes.get(path), Some(Node::Dir))
    }

    /// Names in a directory, sorted.
    pub(crate) fn list(&self, dir: &str) -> Result<Vec<(String, &Node)>, FsError> {
        match self.nodes.get(dir) {
            None => return Err(FsError::NotFound),
            Some(Node::File(_)) => return Err(FsError::NotADirectory),
            Some(Node::Dir) => {}
        }
        let prefix = if dir == "/" { "/".to_string() } else { format!("{dir}/") };
        Ok(self
            .nodes
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .filter(|(k, _)| !k[prefix.len()..].contains('/') && k.len() > prefix.len())
            .map(|(k, v)| (k[prefix.len()..].to_string(), v))
            .collect())
    }

    pub(crate) fn read(&self, path: &str) -> Result<&[u8], FsError> {
        match self.nodes.get(path) {
            None => Err(FsError::NotFound),
            Some(Node::Dir) => Err(FsError::IsADirectory),
            Some(Node::File(b)) => Ok(b),
        }
    }

    fn check_parent(&self, path: &str) -> Result<(), FsError> {
        match self.nodes.get(parent(path)) {
            None => Err(FsError::NotFound),
            Some(Node::File(_)) => Err(FsError::NotADirectory),
            Some(Node::Dir) => Ok(()),
        }
    }

    /// Writes (or appends to) a file, creating it in an existing directory.
    pub(crate) fn write(&mut self, path: &str, data: &[u8], append: bool) -> Result<(), FsError> {
        self.check_parent(path)?;
        let old = match self.nodes.get(path) {
            Some(Node::Dir) => return Err(FsError::IsADirectory),
            Some(Node::File(b)) => Some(b.len()),
            None => None,
        };
        if old.is_none() && self.nodes.len() >= MAX_ENTRIES {
            return Err(FsError::NoSpace);
        }
        let keep = if append { old.unwrap_or(0) } else { 0 };
        let new_total = self.bytes - old.unwrap_or(0) + keep + data.len();
        if new_total > MAX_BYTES {
            return Err(FsError::NoSpace);
        }
        self.bytes = new_total;
        let entry = self.nodes.entry(path.to_string()).or_insert_with(|| Node::File(vec![]));
        if let Node::File(b) = entry {
            if !append {
                b.clear();
            }
            b.extend_from_slice(data);
        }
        Ok(())
    }

    /// `touch`: creates an empty file when missing.
    pub(crate) fn touch(&mut self, path: &str) -> Result<(), FsError> {
        if self.nodes.contains_key(path) {
            return Ok(());
        }
        self.write(path, b"", true)
    }

    /// `mkdir` (`parents`: `-p`, also quiet about existing directories).
    pub(crate) fn mkdir(&mut self, path: &str, parents: bool) -> Result<(), FsError> {
        if let Some(n) = self.nodes.get(path) {
            return match (n, parents) {
                (Node::Dir, true) => Ok(()),
                _ => Err(FsError::Exists),
            };
        }
        if parents && path != "/" {
            self.mkdir(parent(path), true)?;
        }
        self.check_parent(path)?;
        if self.nodes.len() >= MAX_ENTRIES {
            return Err(FsError::NoSpace);
        }
        self.nodes.insert(path.to_string(), Node::Dir);
        Ok(())
    }

    /// `rm` (`recursive`: `-r`, needed for directories).
    pub(crate) fn remove(&mut self, path: &str, recursive: bool) -> Result<(), FsError> {
        match self.nodes.get(path) {
            None => Err(FsError::NotFound),
            Some(Node::File(b)) => {
                self.bytes -= b.len();
                self.nodes.remove(path);
                Ok(())
            }
            Some(Node::Dir) if path == "/" => Err(FsError::IsADirectory),
            Some(Node::Dir) => {
                if !recursive {
                    return Err(FsError::IsADirectory);
                }
                let prefix = format!("{path}/");
                let doomed: Vec<String> = self
                    .nodes
                    .range(prefix.clone()..)
                    .take_while(|(k, _)| k.starts_with(&prefix))
                    .map(|(k, _)| k.clone())
                    .chain(std::iter::once(path.to_string()))
                    .collect();
                for k in doomed {
                    if let Some(Node::File(b)) = self.nodes.remove(&k) {
                        self.bytes -= b.len();
                    }
                }
                Ok(())
            }
        }
    }
}

/// The filesystems of the pods exec has visited, by pod uid; those of deleted pods are dropped.
#[derive(Debug, Default)]
pub(crate) struct PodFiles(Mutex<HashMap<String, Arc<Mutex<Fs>>>>);

/// Locks a pod's filesystem (a poisoned lock still holds usable data).
pub(crate) fn lock(fs: &Mutex<Fs>) -> MutexGuard<'_, Fs> {
    fs.lock().unwrap_or_else(|e| e.into_inner())
}

impl PodFiles {
    /// The filesystem of pod `uid`, seeded on first use; forgets pods not in `live`.
    pub(crate) fn get(
        &self,
        uid: &str,
        live: &std::collections::HashSet<String>,
        seed: impl FnOnce() -> Fs,
    ) -> Arc<Mutex<Fs>> {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|k, _| live.contains(k));
        map.entry(uid.to_string()).or_insert_with(|| Arc::new(Mutex::new(seed()))).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_bounds() {
        assert_eq!(resolve("/root", "../etc/./hostname"), "/etc/hostname");
        assert_eq!(resolve("/", ".."), "/");
        let mut fs = Fs::seeded("pod-1", "default", "10.0.0.1");
        assert_eq!(fs.read("/etc/hostname").unwrap(), b"pod-1\n");
        assert_eq!(fs.write("/nope/x", b"", false), Err(FsError::NotFound));
        fs.mkdir("/a/b/c", true).unwrap();
        fs.write("/a/b/c/f", b"hi", false).unwrap();
        assert_eq!(fs.remove("/a", false), Err(FsError::IsADirectory));
        fs.remove("/a", true).unwrap();
        assert!(fs.get("/a/b/c/f").is_none());
        assert_eq!(fs.write("/tmp/big", &vec![0u8; MAX_BYTES + 1], false), Err(FsError::NoSpace));
        let names: Vec<String> = fs.list("/etc").unwrap().into_iter().map(|(n, _)| n).collect();
        assert!(names.contains(&"os-release".to_string()), "{names:?}");
    }
}
