//! Benchmarks of rancher-rs against the direct path, printed as tables; shared pieces live here.

pub mod apiserver_import;
pub mod big_list;
pub mod fanout;
pub mod fleet;
pub mod fleet_servers;
pub mod hosted;
pub mod http_load;
pub mod import;
pub mod proc_cpu;
pub mod proc_memory;
pub mod rke;
pub mod sim_import;
pub mod watch_latency;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// A fresh directory under the system's temp dir, removed with its contents on drop.
///
/// The benches' own instead of the `tempfile` crate: that crate turns on `rustix` features the
/// workspace's default members do not use, and `cargo run -p rancher-benches` would then rebuild
/// `rustix` and the `rancher` crate above it after a workspace build.
#[derive(Debug)]
pub struct ScratchDir(PathBuf);

impl ScratchDir {
    /// Creates `$TMPDIR/rancher-bench-<pid>-<n>-<nanos>`.
    ///
    /// # Errors
    /// When the directory cannot be created.
    pub fn new() -> std::io::Result<Self> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("rancher-bench-{}-{n}-{nanos}", std::process::id()));
        std::fs::create_dir(&dir)?;
        Ok(ScratchDir(dir))
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The JSON body of `resp`, or an error with its status and text; `what` names the call.
///
/// # Errors
/// A status other than 2xx, or a body that is not JSON.
pub async fn json_of(resp: reqwest::Response, what: &str) -> anyhow::Result<serde_json::Value> {
    use anyhow::Context as _;
    let status = resp.status();
    let text = resp.text().await?;
    if !status.is_success() {
        anyhow::bail!("{what}: {status}: {text}");
    }
    serde_json::from_str(&text).with_context(|| format!("{what}: not JSON: {text}"))
}
