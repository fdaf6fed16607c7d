//! The versioned bundle of Kubernetes component binaries an RKE-style cluster runs: each component's
//! source (a file on the server, or a URL) and its SHA-256, and the registry of bundles a server
//! knows by Kubernetes version.
//!
//! A manifest (YAML or JSON) names every component (and may name the optional ones: `etcdctl`,
//! which restoring an etcd snapshot needs on the etcd hosts):
//!
//! ```
//! # let sum = "a".repeat(64);
//! let manifest = format!(r#"
//! version: v1.20.2
//! components:
//!   etcd: {{ path: /usr/bin/etcd, sha256: {sum} }}
//!   etcdctl: {{ path: /usr/bin/etcdctl, sha256: {sum} }}
//!   kube-apiserver: {{ url: "https://example.com/v1.20.2/kube-apiserver", sha256: {sum} }}
//!   kube-controller-manager: {{ path: /opt/kube/kube-controller-manager, sha256: {sum} }}
//!   kube-scheduler: {{ path: /opt/kube/kube-scheduler, sha256: {sum} }}
//!   kubelet: {{ path: /opt/kube/kubelet, sha256: {sum} }}
//!   node-agent: {{ path: /opt/rancher/rancher-agent, sha256: {sum} }}
//! "#);
//! let bundle = rancher_provision::bundle::Bundle::from_manifest(&manifest)?;
//! assert_eq!(bundle.version, "v1.20.2");
//! # Ok::<(), rancher_provision::bundle::BundleError>(())
//! ```

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The components every bundle has, by name.
pub const COMPONENTS: [&str; 6] =
    ["etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "node-agent"];

/// Components a bundle may have: without them, everything works but what needs them — without
/// `etcdctl` (on etcd hosts), restoring an etcd snapshot.
pub const OPTIONAL_COMPONENTS: [&str; 1] = ["etcdctl"];

/// The largest manifest read (1 MiB).
const MAX_MANIFEST_BYTES: u64 = 1 << 20;

/// Why a bundle or a manifest is unusable.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// The manifest does not parse, or a field is invalid; `field` is a path like
    /// `components.etcd.sha256`.
    #[error("{field}: {message}")]
    Invalid {
        /// The field at fault.
        field: String,
        /// What is wrong with it.
        message: String,
    },
    /// A file (a manifest, a component) could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A component's file does not have the checksum the bundle says.
    #[error("component {component}: the file's sha256 is {actual}, the bundle says {expected}")]
    Checksum {
        /// The component.
        component: String,
        /// The bundle's checksum.
        expected: String,
        /// The file's.
        actual: String,
    },
    /// A manifest of `path` is not a valid bundle.
    #[error("the bundle manifest {path}: {source}")]
    Manifest {
        /// The manifest file.
        path: PathBuf,
        /// What is wrong in it.
        #[source]
        source: Box<BundleError>,
    },
    /// Two bundles of one version.
    #[error("two bundles are registered for {0}")]
    Duplicate(String),
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> BundleError {
    BundleError::Invalid { field: field.into(), message: message.into() }
}

/// Where a component's binary comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ComponentSource {
    /// A file on the server (an absolute path).
    Path(PathBuf),
    /// An `https://` (or `http://`) URL; the checksum is what makes a download trustworthy.
    Url(String),
}

/// One component of a bundle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BundleComponent {
    /// Where its binary comes from.
    pub source: ComponentSource,
    /// Its SHA-256, 64 lower-case hex characters.
    pub sha256: String,
    /// Flags this version runs the component with by default (name without dashes → value; an
    /// empty value renders `--name`), as Rancher's per-version service options: over the
    /// provisioner's own defaults, under the cluster's `services.*.extra_args`.
    pub args: BTreeMap<String, String>,
}

/// The component binaries of one Kubernetes version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bundle {
    /// The Kubernetes version (`v1.20.2`), what `rkeConfig.kubernetes_version` selects.
    pub version: String,
    /// Every one of [`COMPONENTS`], and any of [`OPTIONAL_COMPONENTS`], by name.
    pub components: BTreeMap<String, BundleComponent>,
}

/// A manifest as written: a component names a `path` or a `url`.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBundle {
    version: String,
    components: BTreeMap<String, RawComponent>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawComponent {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    url: Option<String>,
    sha256: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    args: BTreeMap<String, String>,
}

fn check_sha256(sum: &str, field: &str) -> Result<(), BundleError> {
    if sum.len() != 64 || !sum.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        return Err(invalid(field, format!("{sum:?} is not a SHA-256: 64 lower-case hex characters")));
    }
    Ok(())
}

impl Bundle {
    /// Checks a bundle: a version like `v1.20.2`, each of [`COMPONENTS`], perhaps some of
    /// [`OPTIONAL_COMPONENTS`], and no other; absolute paths, `https`/`http` URLs and well-formed
    /// checksums.
    ///
    /// # Errors
    /// [`BundleError::Invalid`] naming the field.
    pub fn check(&self) -> Result<(), BundleError> {
        if !crate::rke::validate::version_like(&self.version) {
            return Err(invalid("version", format!("{:?} is not a version like v1.20.2", self.version)));
        }
        for name in self.components.keys() {
            if !COMPONENTS.contains(&name.as_str()) && !OPTIONAL_COMPONENTS.contains(&name.as_str()) {
                return Err(invalid(
                    format!("components.{name}"),
                    format!(
                        "unknown component: the components are {} (and optionally {})",
                        COMPONENTS.join(", "),
                        OPTIONAL_COMPONENTS.join(", ")
                    ),
                ));
            }
        }
        for name in COMPONENTS {
            if !self.components.contains_key(name) {
                return Err(invalid(
                    format!("components.{name}"),
                    "missing: every bundle has all the components",
                ));
            }
        }
        for (name, c) in &self.components {
            let field = |f: &str| format!("components.{name}.{f}");
            check_sha256(&c.sha256, &field("sha256"))?;
            for (k, v) in &c.args {
                let bad = k.is_empty() || k.starts_with('-') || k.contains(['=', ' ', '\t', '\n']);
                if bad || v.contains('\n') {
                    return Err(invalid(
                        format!("{}.{k}", field("args")),
                        "a flag name without dashes (`v`, `audit-log-path`) and a one-line value",
                    ));
                }
            }
            match &c.source {
                ComponentSource::Path(p) if !p.is_absolute() => {
                    return Err(invalid(field("path"), format!("{} is not an absolute path", p.display())));
                }
                ComponentSource::Url(u) if !(u.starts_with("https://") || u.starts_with("http://")) => {
                    return Err(invalid(field("url"), format!("{u:?} is not an https:// or http:// URL")));
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Reads a manifest (YAML, or JSON) and [checks](Self::check) it.
    ///
    /// # Errors
    /// [`BundleError::Invalid`] naming the field (or the line, for YAML that does not parse).
    pub fn from_manifest(text: &str) -> Result<Bundle, BundleError> {
        if text.len() as u64 > MAX_MANIFEST_BYTES {
            return Err(invalid("manifest", format!("larger than {MAX_MANIFEST_BYTES} bytes")));
        }
        let raw: RawBundle = if text.trim_start().starts_with('{') {
            serde_json::from_str(text).map_err(|e| invalid("manifest", e.to_string()))?
        } else {
            serde_saphyr::from_str(text).map_err(|e| {
                let full = e.to_string();
                invalid(
                    "manifest",
                    full.lines().next().unwrap_or("").trim_start_matches("error: ").to_owned(),
                )
            })?
        };
        let mut components = BTreeMap::new();
        for (name, c) in raw.components {
            let source = match (c.path, c.url) {
                (Some(p), None) => ComponentSource::Path(p.into()),
                (None, Some(u)) => ComponentSource::Url(u),
                _ => return Err(invalid(format!("components.{name}"), "give exactly one of path and url")),
            };
            components.insert(name, BundleComponent { source, sha256: c.sha256, args: c.args });
        }
        let bundle = Bundle { version: raw.version, components };
        bundle.check()?;
        Ok(bundle)
    }

    /// The manifest of this bundle, as YAML that [`from_manifest`](Self::from_manifest) reads back.
    pub fn to_manifest(&self) -> String {
        let components = self
            .components
            .iter()
            .map(|(name, c)| {
                let (path, url) = match &c.source {
                    ComponentSource::Path(p) => (Some(p.display().to_string()), None),
                    ComponentSource::Url(u) => (None, Some(u.clone())),
                };
                (name.clone(), RawComponent { path, url, sha256: c.sha256.clone(), args: c.args.clone() })
            })
            .collect();
        let raw = RawBundle { version: self.version.clone(), components };
        serde_saphyr::to_string(&raw).unwrap_or_default()
    }

    /// A bundle of local files, their checksums computed now (for tests and development servers).
    ///
    /// # Errors
    /// [`BundleError::Read`] for a file that cannot be read; [`BundleError::Invalid`] as
    /// [`check`](Self::check).
    pub fn from_local_files(version: &str, files: &[(&str, &Path)]) -> Result<Bundle, BundleError> {
        let mut components = BTreeMap::new();
        for (name, path) in files {
            let path = std::path::absolute(path)
                .map_err(|source| BundleError::Read { path: path.to_path_buf(), source })?;
            let sha256 = sha256_file(&path)?;
            components.insert(
                (*name).to_owned(),
                BundleComponent { source: ComponentSource::Path(path), sha256, args: BTreeMap::new() },
            );
        }
        let bundle = Bundle { version: version.to_owned(), components };
        bundle.check()?;
        Ok(bundle)
    }

    /// Reads every component whose source is a local file and compares its checksum with the bundle's
    /// (URL components are checked when they are downloaded). Blocking: it reads whole binaries.
    ///
    /// # Errors
    /// [`BundleError::Read`] for a file that cannot be read, [`BundleError::Checksum`] for one that
    /// differs.
    pub fn verify_local(&self) -> Result<(), BundleError> {
        for (name, c) in &self.components {
            if let ComponentSource::Path(path) = &c.source {
                let actual = sha256_file(path)?;
                if actual != c.sha256 {
                    return Err(BundleError::Checksum {
                        component: name.clone(),
                        expected: c.sha256.clone(),
                        actual,
                    });
                }
            }
        }
        Ok(())
    }
}

/// The SHA-256 of a file, read in chunks, as lower-case hex.
///
/// # Errors
/// [`BundleError::Read`].
pub fn sha256_file(path: &Path) -> Result<String, BundleError> {
    let read_err = |source| BundleError::Read { path: path.to_path_buf(), source };
    let mut file = std::fs::File::open(path).map_err(read_err)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = file.read(&mut buf).map_err(read_err)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// The bundles a server knows, by version.
#[derive(Clone, Debug, Default)]
pub struct BundleRegistry {
    by_version: BTreeMap<String, Arc<Bundle>>,
}

/// `v1.20.2-x` as `([1, 20, 2], "-x")` for ordering versions.
fn version_key(v: &str) -> (Vec<u64>, &str) {
    let rest = v.trim_start_matches('v');
    let end = rest.find(['-', '+']).unwrap_or(rest.len());
    (rest[..end].split('.').map(|p| p.parse().unwrap_or(0)).collect(), &rest[end..])
}

/// [`BundleError::Read`] of `path`.
fn read_err(path: &Path) -> impl Fn(std::io::Error) -> BundleError + '_ {
    move |source| BundleError::Read { path: path.to_path_buf(), source }
}

impl BundleRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a bundle after [checking](Bundle::check) it.
    ///
    /// # Errors
    /// [`BundleError::Invalid`], or [`BundleError::Duplicate`] for a version already there.
    pub fn insert(&mut self, bundle: Bundle) -> Result<(), BundleError> {
        bundle.check()?;
        if self.by_version.contains_key(&bundle.version) {
            return Err(BundleError::Duplicate(bundle.version));
        }
        self.by_version.insert(bundle.version.clone(), Arc::new(bundle));
        Ok(())
    }

    /// Adds the bundle of each `*.yaml` (and `*.yml`, `*.json`) manifest in `dir`.
    ///
    /// # Errors
    /// [`BundleError::Read`] when the directory or a manifest cannot be read;
    /// [`BundleError::Manifest`] naming the file of an invalid one; [`BundleError::Duplicate`].
    pub fn load_dir(&mut self, dir: &Path) -> Result<(), BundleError> {
        let mut paths = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(read_err(dir))? {
            let path = entry.map_err(read_err(dir))?.path();
            let manifest = path.extension().is_some_and(|e| e == "yaml" || e == "yml" || e == "json");
            if manifest && path.is_file() {
                paths.push(path);
            }
        }
        paths.sort();
        for path in paths {
            let mut text = String::new();
            std::fs::File::open(&path)
                .and_then(|f| f.take(MAX_MANIFEST_BYTES + 1).read_to_string(&mut text))
                .map_err(read_err(&path))?;
            let bundle = Bundle::from_manifest(&text)
                .map_err(|e| BundleError::Manifest { path: path.clone(), source: Box::new(e) })?;
            self.insert(bundle)?;
        }
        Ok(())
    }

    /// The bundle of `version`.
    pub fn get(&self, version: &str) -> Option<Arc<Bundle>> {
        self.by_version.get(version).cloned()
    }

    /// The bundle of the highest version.
    pub fn newest(&self) -> Option<Arc<Bundle>> {
        self.by_version.values().max_by(|a, b| version_key(&a.version).cmp(&version_key(&b.version))).cloned()
    }

    /// The registered versions, in order.
    pub fn versions(&self) -> Vec<String> {
        self.by_version.keys().cloned().collect()
    }

    /// True when no bundle is registered.
    pub fn is_empty(&self) -> bool {
        self.by_version.is_empty()
    }
}

#[cfg(test)]
#[path = "bundle_tests.rs"]
mod tests;
