//! `rancherctl kubectl --all-clusters` timed across a fleet: one read through the server's proxy on
//! every cluster the admin may reach, with real kubectl, as a user would run it.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tokio::process::Command;

use crate::rke::PASSWORD;

/// One run of the fan-out.
#[derive(Debug, Clone)]
pub struct FanOut {
    /// Clusters asked at once.
    pub concurrency: u16,
    /// Whether kubectl's discovery cache (`~/.kube/cache`, one directory per cluster URL) was kept
    /// from the run before.
    pub warm: bool,
    /// Wall time of the whole command.
    pub seconds: f64,
    /// Clusters that answered with at least one row.
    pub answered: usize,
    /// Clusters that failed (rancherctl's `N of M clusters failed`).
    pub failed: usize,
    /// Rows of the table (one per node of every cluster that answered).
    pub rows: usize,
}

/// Logs `rancherctl` (from `bins`) into `url` as the admin, with its configuration under `home`.
///
/// # Errors
/// When `rancherctl` is missing or the login fails.
pub async fn login(bins: &Path, home: &Path, url: &str) -> Result<()> {
    std::fs::create_dir_all(home)?;
    let out = rancherctl(bins, home)
        .args(["login", url, "--username", "admin", "--password", PASSWORD, "--insecure"])
        .output()
        .await
        .with_context(|| format!("running {}", bins.join("rancherctl").display()))?;
    if !out.status.success() {
        bail!("rancherctl login: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

/// Times `rancherctl kubectl --all-clusters --concurrency <c> -- get nodes --no-headers`, with
/// kubectl's discovery cache as the run before left it (`warm`) or emptied first.
///
/// # Errors
/// When rancherctl cannot run or prints no table.
pub async fn run(
    bins: &Path,
    home: &Path,
    concurrency: u16,
    warm: bool,
    timeout: Duration,
) -> Result<FanOut> {
    if !warm {
        match std::fs::remove_dir_all(home.join(".kube/cache")) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
            _ => {}
        }
    }
    let t = Instant::now();
    let out = rancherctl(bins, home)
        .args(["kubectl", "--all-clusters", "--concurrency", &concurrency.to_string()])
        .args(["--timeout", &format!("{}s", timeout.as_secs().max(1))])
        .args(["--", "get", "nodes", "--no-headers"])
        .output()
        .await?;
    let seconds = t.elapsed().as_secs_f64();
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    if !lines.next().is_some_and(|header| header.starts_with("CLUSTER")) {
        bail!("rancherctl kubectl -A printed no table: {text}{}", String::from_utf8_lossy(&out.stderr));
    }
    let (mut rows, mut answered, mut last) = (0, 0, None);
    for line in lines {
        let Some((cluster, rest)) = line.split_once(char::is_whitespace) else { continue };
        if rest.trim_start().starts_with("error:") {
            continue;
        }
        rows += 1;
        if last != Some(cluster) {
            answered += 1;
            last = Some(cluster);
        }
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let failed = stderr
        .lines()
        .chain(text.lines())
        .find_map(|l| l.split_once(" of ").filter(|(_, rest)| rest.contains("clusters failed")))
        .and_then(|(n, _)| n.trim().rsplit(' ').next()?.parse().ok())
        .unwrap_or(0);
    Ok(FanOut { concurrency, warm, seconds, answered, failed, rows })
}

fn rancherctl(bins: &Path, home: &Path) -> Command {
    let mut cmd = Command::new(bins.join("rancherctl"));
    cmd.env("HOME", home).env_remove("XDG_CONFIG_HOME").kill_on_drop(true);
    cmd
}
