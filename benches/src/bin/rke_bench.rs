//! Clusters built on SSH hosts: the time from `create` to `Active` per topology, where it goes, and
//! the memory of the server and the node agents. Each topology gets fresh OpenSSH hosts in network
//! namespaces (`rancher_test_support::ssh_hosts`, needs root), a fresh `rancher-server` process with
//! a bundle of the real etcd and kube-apiserver / controller-manager / scheduler 1.20 (from
//! `scripts/build-kube.sh`) and the simulated kubelet, and a cluster created over `/v3`.
//!
//! Where the time goes comes from the cluster's provisioning steps (each records when it started and
//! finished): SSH and transfer (the host steps: connect, upload of the bundle's binaries, start of the
//! node agent), the node agents connecting, etcd healthy, the API server and the rest of the control
//! plane healthy, the workers, then the cluster agent connecting and reporting. The direct path for
//! comparison: one SSH connect and one upload of the biggest binary with the same SSH client, and the
//! same upload with OpenSSH's `scp`, in the same run.
//!
//! ```text
//! cargo build --release --workspace --bins
//! target/release/rke_bench            # as root; takes a few minutes
//! ```

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Parser;
use rancher_benches::json_of;
use rancher_benches::rke::{bin_dir, mb, secs, start_server, status_kb};
use rancher_core::model::{Cluster, ClusterState};
use rancher_provision::ssh::{HostKeyPolicy, SshSession, SshTarget};
use rancher_test_support::kube::kube_bin_dir;
use rancher_test_support::ssh_hosts::SshHosts;
use serde_json::{Value, json};
use tokio::time::Instant;

#[derive(Parser)]
struct Args {
    /// Topologies to build, each `E/C/W` (hosts with only etcd / only controlplane / only worker) or
    /// `Nx` (N hosts with every role).
    #[arg(long, value_delimiter = ',', default_value = "1x,3x,3/2/2")]
    topology: Vec<String>,
    /// Where `rancher-server`, `rancher-agent` and `rancher-sim` are (default: beside this binary).
    #[arg(long)]
    bin_dir: Option<PathBuf>,
}

/// From `create` to `Active`, at most.
const UP: Duration = Duration::from_secs(900);

/// The roles of every host of a topology.
fn roles_of(topology: &str) -> Result<Vec<Vec<&'static str>>> {
    if let Some(n) = topology.strip_suffix('x') {
        let n: usize = n.parse().with_context(|| format!("topology {topology:?}"))?;
        return Ok(vec![vec!["etcd", "controlplane", "worker"]; n]);
    }
    let counts: Vec<usize> = topology
        .split('/')
        .map(str::parse)
        .collect::<Result<_, _>>()
        .with_context(|| format!("topology {topology:?}: expected E/C/W or Nx"))?;
    let [e, c, w] = counts[..] else { bail!("topology {topology:?}: expected E/C/W or Nx") };
    let mut out = vec![vec!["etcd"]; e];
    out.extend(vec![vec!["controlplane"]; c]);
    out.extend(vec![vec!["worker"]; w]);
    Ok(out)
}

/// Picks steps by name.
type StepFilter = dyn Fn(&str) -> bool;

/// One topology's figures.
struct Row {
    topology: String,
    hosts: usize,
    to_active: f64,
    /// (step group, seconds) in order.
    phases: Vec<(&'static str, f64)>,
    /// Every step: name, seconds from `create` to its start and to its end.
    steps: Vec<(String, Option<f64>, Option<f64>)>,
    server_rss_kb: u64,
    server_hwm_kb: u64,
    node_agent_rss_kb: (u64, u64),
    cluster_agent_rss_kb: u64,
}

/// When the first of the chosen steps started and the last finished.
fn span(steps: &[Value], names: impl Fn(&str) -> bool) -> Option<(jiff::Timestamp, jiff::Timestamp)> {
    let chosen: Vec<&Value> = steps.iter().filter(|s| s["name"].as_str().is_some_and(&names)).collect();
    let ts = |s: &Value, k: &str| s[k].as_str().and_then(|t| t.parse::<jiff::Timestamp>().ok());
    let start = chosen.iter().filter_map(|s| ts(s, "startedAt")).min()?;
    let end = chosen.iter().filter_map(|s| ts(s, "finishedAt")).max()?;
    Some((start, end))
}

fn seconds(a: jiff::Timestamp, b: jiff::Timestamp) -> f64 {
    (b.as_millisecond() - a.as_millisecond()) as f64 / 1000.0
}

async fn build(topology: &str, bins: &Path) -> Result<Row> {
    let roles = roles_of(topology)?;
    let hosts = SshHosts::start(roles.len());
    let scratch = rancher_benches::ScratchDir::new()?;
    let dir = scratch.path().to_owned();
    let server = start_server(&dir, bins, hosts.hosts()[0].bridge_address()).await?;
    let nodes: Vec<Value> = hosts
        .hosts()
        .iter()
        .zip(&roles)
        .map(|(h, r)| {
            json!({"address": h.address(), "user": "root", "ssh_key": hosts.client_key(),
                   "hostname_override": format!("node{}", h.index()), "role": r})
        })
        .collect();
    let cluster = json!({"metadata": {"name": "bench"}, "spec": {"rkeConfig": {
        "kubernetes_version": "v1.20.2", "prefix_path": "/srv/node", "nodes": nodes}}});
    let created = Instant::now();
    let resp = server
        .http
        .post(format!("{}/v3/clusters", server.url))
        .bearer_auth(&server.token)
        .json(&cluster)
        .send()
        .await?;
    json_of(resp, "creating the cluster").await?;
    let create_ts = jiff::Timestamp::now();
    let status = loop {
        let resp = server
            .http
            .get(format!("{}/v3/clusters/bench", server.url))
            .bearer_auth(&server.token)
            .send()
            .await?;
        let v = json_of(resp, "reading the cluster").await?;
        let c: Cluster = serde_json::from_value(v.clone())?;
        if c.state() == ClusterState::Active {
            break v;
        }
        if created.elapsed() > UP {
            bail!("{topology}: not active after {UP:?}: {}", v["status"]["provisioning"]);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let to_active = created.elapsed().as_secs_f64();
    let active_ts = jiff::Timestamp::now();
    let steps = status["status"]["provisioning"]["steps"].as_array().cloned().unwrap_or_default();
    let mut phases = Vec::new();
    let groups: [(&'static str, &StepFilter); 6] = [
        ("certificates", &|n: &str| n == "certificates"),
        ("SSH + transfer + agent start (hosts in parallel)", &|n: &str| n.starts_with("host ")),
        ("node agents connect", &|n: &str| n == "node agents"),
        ("etcd healthy", &|n: &str| n == "etcd"),
        ("API server + control plane healthy", &|n: &str| n == "control plane"),
        ("workers healthy", &|n: &str| n == "workers"),
    ];
    let mut last_end = create_ts;
    for (name, pick) in groups {
        if let Some((start, end)) = span(&steps, pick) {
            phases.push((name, seconds(start, end)));
            last_end = last_end.max(end);
        }
    }
    phases.push(("cluster agent connects and reports", seconds(last_end, active_ts)));
    let at = |s: &Value, k: &str| {
        s[k].as_str().and_then(|t| t.parse::<jiff::Timestamp>().ok()).map(|t| seconds(create_ts, t))
    };
    let step_times = steps
        .iter()
        .map(|s| (s["name"].as_str().unwrap_or("?").to_owned(), at(s, "startedAt"), at(s, "finishedAt")))
        .collect();

    let pid = server.pid();
    let (server_rss_kb, server_hwm_kb) =
        (status_kb(pid, "VmRSS:").unwrap_or(0), status_kb(pid, "VmHWM:").unwrap_or(0));
    let is_agent = |a: &[String]| a.first().is_some_and(|b| b.ends_with("opt/rke/bin/node-agent"));
    let node_agents: Vec<u64> = hosts
        .hosts()
        .iter()
        .flat_map(|h| h.pids_matching(|a| is_agent(a) && a.iter().any(|x| x == "--node")))
        .filter_map(|p| status_kb(p, "VmRSS:"))
        .collect();
    let cluster_agent = hosts
        .hosts()
        .iter()
        .flat_map(|h| h.pids_matching(|a| is_agent(a) && !a.iter().any(|x| x == "--node")))
        .filter_map(|p| status_kb(p, "VmRSS:"))
        .max()
        .unwrap_or(0);
    let avg = node_agents.iter().sum::<u64>() / node_agents.len().max(1) as u64;
    let max = node_agents.iter().copied().max().unwrap_or(0);
    drop(server);
    drop(hosts);
    Ok(Row {
        topology: topology.to_owned(),
        hosts: roles.len(),
        to_active,
        phases,
        steps: step_times,
        server_rss_kb,
        server_hwm_kb,
        node_agent_rss_kb: (avg, max),
        cluster_agent_rss_kb: cluster_agent,
    })
}

/// The direct path: one SSH connect and one upload of `file` with our SSH client, and the same upload
/// with OpenSSH's `scp`.
async fn direct_path(file: &Path) -> Result<(f64, f64, f64, u64)> {
    let hosts = SshHosts::start(1);
    let h = &hosts.hosts()[0];
    let target = SshTarget {
        address: h.address().to_owned(),
        port: h.ssh_port(),
        user: hosts.user().to_owned(),
        key: hosts.client_key().to_owned().into(),
        host_key: HostKeyPolicy::TrustOnFirstUse,
    };
    let t = Instant::now();
    let ssh = SshSession::connect(&target, None, Duration::from_secs(30)).await?;
    let connect = t.elapsed().as_secs_f64();
    let bytes = std::fs::metadata(file)?.len();
    let t = Instant::now();
    ssh.upload(rancher_provision::ssh::UploadSource::File(file), "/srv/node/ours", 0o755).await?;
    let ours = t.elapsed().as_secs_f64();
    let key = std::env::temp_dir().join(format!("rke-bench-key-{}", std::process::id()));
    std::fs::write(&key, hosts.client_key())?;
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    let t = Instant::now();
    let status = Command::new("scp")
        .args(["-q", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-i"])
        .arg(&key)
        .arg(file)
        .arg(format!("{}@{}:/srv/node/scp", hosts.user(), h.address()))
        .status()?;
    let scp = t.elapsed().as_secs_f64();
    let _ = std::fs::remove_file(&key);
    if !status.success() {
        bail!("scp failed: {status}");
    }
    Ok((connect, ours, scp, bytes))
}

fn main() -> Result<()> {
    let args = Args::parse();
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let bins = bin_dir(args.bin_dir)?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        let apiserver = kube_bin_dir().join("kube-apiserver");
        let (connect, ours, scp, bytes) = direct_path(&apiserver).await?;
        println!("Direct path, one host: SSH connect + auth {}; upload of kube-apiserver ({}): ours {} ({:.0} MB/s), OpenSSH scp {} ({:.0} MB/s), ours/scp {:.2}x\n",
            secs(connect), mb(bytes / 1024), secs(ours), bytes as f64 / 1e6 / ours, secs(scp), bytes as f64 / 1e6 / scp, ours / scp);
        let mut rows = Vec::new();
        for t in &args.topology {
            eprintln!("building {t} …");
            rows.push(build(t, &bins).await?);
        }
        println!("| topology | hosts | create → Active | server RSS (peak) | node agent RSS avg / max | cluster agent RSS |");
        println!("|---|---|---|---|---|---|");
        for r in &rows {
            println!(
                "| {} | {} | {} | {} ({}) | {} / {} | {} |",
                r.topology, r.hosts, secs(r.to_active), mb(r.server_rss_kb), mb(r.server_hwm_kb),
                mb(r.node_agent_rss_kb.0), mb(r.node_agent_rss_kb.1), mb(r.cluster_agent_rss_kb)
            );
        }
        println!("\nWhere the time goes (from the steps' start and finish times; the role steps overlap):\n");
        for r in &rows {
            println!("{} ({} hosts, {} in all):", r.topology, r.hosts, secs(r.to_active));
            for (name, s) in &r.phases {
                println!("  {name:<52} {:>8}", secs(*s));
            }
            println!("  each step, seconds after create (start → end):");
            let opt = |t: &Option<f64>| t.map(secs).unwrap_or_else(|| "-".into());
            for (name, start, end) in &r.steps {
                println!("    {name:<30} {:>8} → {:>8}", opt(start), opt(end));
            }
        }
        println!("\nload average after: {}", std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim());
        Ok(())
    })
}
