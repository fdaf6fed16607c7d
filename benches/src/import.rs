//! Importing a cluster into a `rancher-server` process the way a user does: the imported cluster
//! [`CLUSTER`] created over `/v3`, its import manifest applied with `kubectl`, and a `rancher-agent`
//! process started with the settings the manifest deployed — the steps the benches that run the
//! release binaries share.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use rancher_test_support::deployed_agent::AgentSettings;
use rancher_test_support::kubectl::default_kubectl;
use rancher_test_support::{Proc, eventually};

use crate::http_load::{Target, client_tls};
use crate::rke::ServerProc;

/// The imported cluster's id.
pub const CLUSTER: &str = "bench";
/// How long each setup step may take.
pub const WAIT: Duration = Duration::from_secs(120);

/// `kubectl --kubeconfig <kubeconfig> <args>`: stdout when it succeeds.
///
/// # Errors
/// kubectl cannot be run or fails (its stderr in the error).
pub fn kubectl(kubeconfig: &Path, args: &[&str]) -> Result<String> {
    let out = Command::new(default_kubectl()).arg("--kubeconfig").arg(kubeconfig).args(args).output()?;
    if !out.status.success() {
        bail!("kubectl {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8(out.stdout)?)
}

/// `127.0.0.1:<port>` of `https://<host>:<port>`.
///
/// # Errors
/// A URL without a port.
pub fn address_of(url: &str) -> Result<SocketAddr> {
    let port = url
        .trim_end_matches('/')
        .rsplit(':')
        .next()
        .and_then(|p| p.parse::<u16>().ok())
        .with_context(|| format!("{url}: no port"))?;
    Ok(SocketAddr::from(([127, 0, 0, 1], port)))
}

/// Creates the imported cluster [`CLUSTER`] on `server`, applies its import manifest (kept in
/// `dir/import.yaml`) to the cluster of `admin` (a kubeconfig), and reads the deployed agent's
/// settings back from it.
///
/// # Errors
/// A call the server refuses, or a manifest kubectl cannot apply.
///
/// # Panics
/// When the settings cannot be read back within [`WAIT`].
pub async fn import(server: &ServerProc, admin: &Path, dir: &Path) -> Result<AgentSettings> {
    let crt = server.create_imported(CLUSTER).await?;
    let manifest_url = crt["status"]["manifestUrl"].as_str().context("no manifestUrl")?;
    let manifest = server.http.get(manifest_url).send().await?.error_for_status()?.text().await?;
    let manifest_file = dir.join("import.yaml");
    std::fs::write(&manifest_file, manifest)?;
    kubectl(admin, &["apply", "-f", &manifest_file.to_string_lossy()])?;
    Ok(eventually(WAIT, "the import manifest's agent settings can be read back", || {
        let settings = AgentSettings::read(admin);
        async move { settings }
    })
    .await)
}

/// Starts `bins/rancher-agent` as the cluster agent with `settings`, reaching its cluster with
/// `kubeconfig`, logging to `log`.
pub fn start_agent(bins: &Path, settings: &AgentSettings, kubeconfig: &Path, log: &Path) -> Proc {
    let mut agent = Command::new(bins.join("rancher-agent"));
    agent
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .env("RUST_LOG", "info")
        .env("CATTLE_SERVER", &settings.server)
        .env("CATTLE_CA_CHECKSUM", &settings.checksum)
        .env("CATTLE_TOKEN", &settings.token)
        .env("CATTLE_CLUSTER", "true");
    Proc::spawn(agent, log)
}

/// Waits until a read through the server's proxy reaches the cluster.
///
/// # Panics
/// When none does within [`WAIT`].
pub async fn wait_proxied(server: &ServerProc) {
    let probe = format!("/k8s/clusters/{CLUSTER}/api/v1/namespaces/default");
    eventually(WAIT, "a proxied read reaches the cluster through the agent", || {
        let read = server.get(&probe);
        async move { read.await.ok() }
    })
    .await;
}

/// `path` through `server`'s proxy, `/k8s/clusters/<id><path>` of [`CLUSTER`], with the admin's API
/// token; `server_ca` (PEM) is what the server's certificate is checked against.
///
/// # Errors
/// A server URL without a port, or a CA that is not PEM.
pub fn proxied_target(server: &ServerProc, server_ca: &str, path: &str) -> Result<Target> {
    Ok(Target {
        addr: address_of(&server.url)?,
        tls: client_tls(server_ca)?,
        path: format!("/k8s/clusters/{CLUSTER}{path}"),
        token: server.token.clone(),
        headers: http::HeaderMap::new(),
    })
}
