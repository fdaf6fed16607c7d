//! Day two of a cluster built on SSH hosts: the time of each change of the recommended 3 etcd / 2
//! control plane / 2 worker cluster, and how long the API is unavailable through the server's
//! authentication proxy meanwhile.
//!
//! Nine OpenSSH hosts in network namespaces (`rancher_test_support::ssh_hosts`, needs root), a
//! `rancher-server` process with two bundles (`v1.20.2` of the local binaries and
//! `v1.20.2-rancher2` of copies one byte longer, the API server with `--v=3`), and the cluster on
//! hosts 1–7 created over `/v3` (the day-one time every operation is compared with). Then, each a
//! change of the cluster over `/v3` followed until the server has reconciled it
//! (`status.observedGeneration` reaches the spec's `metadata.generation`) and the cluster is
//! active again: a worker joins (host 8), an etcd host joins (host 9), both leave, the cluster is
//! upgraded to the other bundle, and every certificate is rotated with new CAs.
//!
//! All along a prober reads `/api/v1/namespaces/default` of the cluster through the proxy
//! (`/k8s/clusters/<id>/…`, the admin's token) every 100 ms; an unavailability window runs from a
//! failed read to the next good one.
//!
//! ```text
//! cargo build --release --workspace --bins
//! target/release/rke_day_two_bench     # as root; takes about ten minutes
//! ```

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Parser;
use rancher_benches::rke::{ServerProc, bin_dir, mb, secs, start_server, status_kb, write_other_bundle};
use rancher_core::model::{Cluster, ClusterState};
use rancher_test_support::ssh_hosts::SshHosts;
use reqwest::Method;
use serde_json::{Value, json};
use tokio::time::Instant;

#[derive(Parser)]
struct Args {
    /// Where `rancher-server`, `rancher-agent` and `rancher-sim` are (default: beside this binary).
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// How long one operation may take before the bench gives up on it and goes on, in seconds.
    #[arg(long, default_value_t = 600)]
    op_timeout: u64,
}

/// The cluster's name (and id).
const CLUSTER: &str = "bench";
/// The upgrade's bundle.
const OTHER: &str = "v1.20.2-rancher2";
/// From `create` to `Active`, at most.
const UP: Duration = Duration::from_secs(900);
/// How often the prober reads through the proxy.
const PROBE_EVERY: Duration = Duration::from_millis(100);
/// How long one read through the proxy may take before it counts as failed.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// How often the bench reads the cluster while it waits.
const POLL: Duration = Duration::from_millis(500);
/// How much of a failed read's body is kept.
const BODY_HEAD: usize = 200;

/// One read through the proxy.
struct Read {
    /// Seconds since the bench's clock started.
    at: f64,
    ok: bool,
    /// Status and the body's head, or the transport error (failed reads only).
    why: String,
}

/// Reads through the proxy every [`PROBE_EVERY`] until stopped.
struct Prober {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Vec<Read>>,
}

impl Prober {
    fn start(server: &ServerProc, t0: Instant) -> Result<Prober> {
        let url = format!("{}/k8s/clusters/{CLUSTER}/api/v1/namespaces/default", server.url);
        let token = server.token.clone();
        // Its own client: the prober's connections are not queued behind the bench's.
        let http =
            reqwest::Client::builder().danger_accept_invalid_certs(true).timeout(PROBE_TIMEOUT).build()?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let task = tokio::spawn(async move {
            let mut reads = Vec::new();
            let mut tick = tokio::time::interval(PROBE_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            while !flag.load(Ordering::Relaxed) {
                tick.tick().await;
                let at = t0.elapsed().as_secs_f64();
                let (ok, why) = match http.get(&url).bearer_auth(&token).send().await {
                    Ok(resp) => {
                        let status = resp.status();
                        if status.is_success() {
                            // The body is read, so a read that breaks off mid-answer fails.
                            match resp.bytes().await {
                                Ok(_) => (true, String::new()),
                                Err(e) => (false, format!("{status}, body cut off: {e}")),
                            }
                        } else {
                            let body = resp.text().await.unwrap_or_default();
                            let head: String = body.chars().take(BODY_HEAD).collect();
                            (false, format!("{status}: {}", head.trim()))
                        }
                    }
                    Err(e) => (false, format!("no answer: {:#}", anyhow::Error::from(e))),
                };
                reads.push(Read { at, ok, why });
            }
            reads
        });
        Ok(Prober { stop, task })
    }

    async fn finish(self) -> Result<Vec<Read>> {
        self.stop.store(true, Ordering::Relaxed);
        Ok(self.task.await?)
    }
}

/// A run of failed reads: from the first failure to the next good read (or the last read).
struct Window {
    start: f64,
    end: f64,
    /// Why its first read failed.
    first: String,
    /// Whether no good read ended it.
    open: bool,
}

fn windows(reads: &[Read]) -> Vec<Window> {
    let mut out: Vec<Window> = Vec::new();
    let mut current: Option<Window> = None;
    for r in reads {
        match (&mut current, r.ok) {
            (None, false) => {
                current = Some(Window { start: r.at, end: r.at, first: r.why.clone(), open: true })
            }
            (Some(w), false) => w.end = r.at,
            (Some(_), true) => {
                let mut w = current.take().expect("a window is open");
                (w.end, w.open) = (r.at, false);
                out.push(w);
            }
            (None, true) => {}
        }
    }
    out.extend(current);
    out
}

/// One day-two operation as measured.
struct Op {
    name: &'static str,
    /// Seconds since the bench's clock started.
    start: f64,
    end: f64,
    /// Why it failed.
    failed: Option<String>,
}

/// The nodes of `spec.rkeConfig` for hosts `1..=n` of `hosts` with `roles`.
fn nodes(hosts: &SshHosts, roles: &[(usize, &str)]) -> Vec<Value> {
    roles
        .iter()
        .map(|(i, role)| {
            let h = &hosts.hosts()[i - 1];
            json!({"address": h.address(), "user": "root", "ssh_key": hosts.client_key(),
                   "hostname_override": format!("node{}", h.index()), "role": [role]})
        })
        .collect()
}

/// Hosts 1–7: 3 etcd, 2 control plane, 2 workers.
const THREE_TWO_TWO: [(usize, &str); 7] = [
    (1, "etcd"),
    (2, "etcd"),
    (3, "etcd"),
    (4, "controlplane"),
    (5, "controlplane"),
    (6, "worker"),
    (7, "worker"),
];

/// Why cluster `c` is not becoming active, from its `Provisioned` condition and its progress.
fn why_failed(c: &Cluster) -> String {
    let condition = c
        .status
        .conditions
        .iter()
        .find(|x| x.type_ == "Provisioned")
        .map(|x| format!("{}: {}", x.reason, x.message))
        .unwrap_or_default();
    let progress = c.status.provisioning.as_ref().map(|p| p.message.clone()).unwrap_or_default();
    match (condition.is_empty(), progress.is_empty() || condition.contains(&progress)) {
        (true, true) => format!("state {}", c.state()),
        (true, false) => progress,
        (false, true) => condition,
        (false, false) => format!("{condition} (progress: {progress})"),
    }
}

/// The `Provisioned` condition's reason and message.
fn provisioned(c: &Cluster) -> Option<(String, String)> {
    c.status
        .conditions
        .iter()
        .find(|x| x.type_ == "Provisioned")
        .map(|x| (x.reason.clone(), x.message.clone()))
}

/// Waits until the server has reconciled `generation` of the cluster and it is active. `before`:
/// the `Provisioned` condition before the change — a retry keeps the last failure's message until
/// an attempt gets through, so a "not implemented" that was there before is no news.
async fn wait_active(
    server: &ServerProc,
    generation: i64,
    before: Option<(String, String)>,
    timeout: Duration,
) -> Result<Cluster> {
    let deadline = Instant::now() + timeout;
    loop {
        let c: Cluster = serde_json::from_value(server.get(&format!("/v3/clusters/{CLUSTER}")).await?)
            .context("the server's cluster does not parse")?;
        let current = c.status.observed_generation.unwrap_or(0) >= generation;
        let now = provisioned(&c);
        let not_implemented = now.as_ref().is_some_and(|(reason, message)| {
            reason == "NotImplemented" || message.to_lowercase().contains("not implemented")
        }) && now != before;
        match c.state() {
            ClusterState::Active if current => return Ok(c),
            ClusterState::Error if current => bail!("{}", why_failed(&c)),
            _ if current && not_implemented => bail!("{}", why_failed(&c)),
            ClusterState::Removing => bail!("the cluster is being deleted"),
            _ => {}
        }
        if Instant::now() > deadline {
            bail!("not active after {}: {} ({})", secs(timeout.as_secs_f64()), c.state(), why_failed(&c));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Replaces `spec.rkeConfig` with what `change` makes of it (`PUT`), and waits for the outcome.
async fn change(server: &ServerProc, timeout: Duration, change: impl FnOnce(&mut Value)) -> Result<()> {
    let path = format!("/v3/clusters/{CLUSTER}");
    let mut cluster = server.get(&path).await?;
    let before = provisioned(&serde_json::from_value(cluster.clone())?);
    change(&mut cluster["spec"]["rkeConfig"]);
    let updated = server.send(Method::PUT, &path, &cluster).await?;
    let generation =
        updated.pointer("/metadata/generation").and_then(Value::as_i64).context("no metadata.generation")?;
    wait_active(server, generation, before, timeout).await.map(drop)
}

/// Rotates every certificate with new CAs, and waits for the outcome.
async fn rotate(server: &ServerProc, timeout: Duration) -> Result<()> {
    let path = format!("/v3/clusters/{CLUSTER}");
    let before = provisioned(&serde_json::from_value(server.get(&path).await?)?);
    server
        .send(Method::POST, &format!("{path}?action=rotateCertificates"), &json!({"caCertificates": true}))
        .await?;
    let cluster = server.get(&path).await?;
    let generation =
        cluster.pointer("/metadata/generation").and_then(Value::as_i64).context("no metadata.generation")?;
    wait_active(server, generation, before, timeout).await.map(drop)
}

/// Takes an etcd snapshot on request (`backupEtcd`: synchronous, on one healthy member, stored on
/// every etcd host); returns its name.
async fn snapshot(server: &ServerProc) -> Result<String> {
    let path = format!("/v3/clusters/{CLUSTER}?action=backupEtcd");
    let out = server.send(Method::POST, &path, &json!({})).await?;
    out.pointer("/snapshot/name").and_then(Value::as_str).map(str::to_owned).context("no snapshot name")
}

/// Restores etcd from snapshot `name` (`restoreFromEtcdBackup`), and waits for the outcome.
async fn restore(server: &ServerProc, name: &str, timeout: Duration) -> Result<()> {
    let path = format!("/v3/clusters/{CLUSTER}");
    let before = provisioned(&serde_json::from_value(server.get(&path).await?)?);
    server
        .send(Method::POST, &format!("{path}?action=restoreFromEtcdBackup"), &json!({"etcdBackupId": name}))
        .await?;
    let cluster = server.get(&path).await?;
    let generation =
        cluster.pointer("/metadata/generation").and_then(Value::as_i64).context("no metadata.generation")?;
    wait_active(server, generation, before, timeout).await.map(drop)
}

async fn run(args: Args) -> Result<()> {
    let bins = bin_dir(args.bin_dir)?;
    let op_timeout = Duration::from_secs(args.op_timeout);
    let hosts = SshHosts::start(9);
    let scratch = rancher_benches::ScratchDir::new()?;
    let dir = scratch.path().to_owned();
    write_other_bundle(&dir.join("bundles"), &bins, OTHER)?;
    let server = start_server(&dir, &bins, hosts.hosts()[0].bridge_address()).await?;
    let t0 = Instant::now();

    eprintln!("day one: creating the 3/2/2 cluster …");
    let cluster = json!({"metadata": {"name": CLUSTER}, "spec": {"rkeConfig": {
        "kubernetes_version": "v1.20.2", "prefix_path": "/srv/node",
        "nodes": nodes(&hosts, &THREE_TWO_TWO)}}});
    let created = Instant::now();
    server.send(Method::POST, "/v3/clusters", &cluster).await.context("creating the cluster")?;
    wait_active(&server, 0, None, UP).await.context("day one")?;
    let day_one = created.elapsed().as_secs_f64();
    eprintln!("day one: active after {}", secs(day_one));

    let prober = Prober::start(&server, t0)?;
    // A few good reads first, so the first operation's window is its own.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut ops = Vec::new();
    let mut with_worker = THREE_TWO_TWO.to_vec();
    with_worker.push((8, "worker"));
    let mut with_etcd = with_worker.clone();
    with_etcd.push((9, "etcd"));
    let mut taken: Option<String> = None;
    let plan: [(&'static str, u8); 7] = [
        ("add a worker (host 8)", 0),
        ("add an etcd host (host 9)", 1),
        ("remove hosts 8 and 9", 2),
        ("upgrade to v1.20.2-rancher2", 3),
        ("rotate certificates, new CAs", 4),
        ("etcd snapshot (on the hosts)", 5),
        ("restore that snapshot", 6),
    ];
    for (name, which) in plan {
        eprintln!("{name} …");
        let start = t0.elapsed().as_secs_f64();
        let result = match which {
            0 => change(&server, op_timeout, |c| c["nodes"] = json!(nodes(&hosts, &with_worker))).await,
            1 => change(&server, op_timeout, |c| c["nodes"] = json!(nodes(&hosts, &with_etcd))).await,
            2 => change(&server, op_timeout, |c| c["nodes"] = json!(nodes(&hosts, &THREE_TWO_TWO))).await,
            3 => change(&server, op_timeout, |c| c["kubernetes_version"] = json!(OTHER)).await,
            4 => rotate(&server, op_timeout).await,
            5 => snapshot(&server).await.map(|name| taken = Some(name)),
            _ => match &taken {
                Some(name) => restore(&server, name, op_timeout).await,
                None => Err(anyhow::anyhow!("no snapshot to restore")),
            },
        };
        let end = t0.elapsed().as_secs_f64();
        let failed = result.err().map(|e| format!("{e:#}"));
        match &failed {
            None => eprintln!("{name}: done in {}", secs(end - start)),
            Some(why) => eprintln!("{name}: FAILED after {}: {why}", secs(end - start)),
        }
        ops.push(Op { name, start, end, failed });
    }
    // The last operation's window, if any, gets the chance to close.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let reads = prober.finish().await?;
    let pid = server.pid();
    let (rss, hwm) = (status_kb(pid, "VmRSS:").unwrap_or(0), status_kb(pid, "VmHWM:").unwrap_or(0));
    let last = serde_json::from_value::<Cluster>(server.get(&format!("/v3/clusters/{CLUSTER}")).await?)?;
    report(day_one, &ops, &reads, rss, hwm, &last);
    drop(server);
    drop(hosts);
    Ok(())
}

fn report(day_one: f64, ops: &[Op], reads: &[Read], rss: u64, hwm: u64, last: &Cluster) {
    let windows = windows(reads);
    println!(
        "| operation | time | time / day-one create | proxy reads | failed reads | longest unavailability window | total unavailable |"
    );
    println!("|---|---|---|---|---|---|---|");
    println!("| day one: create 3/2/2 (direct path) | {} | 1.00x | - | - | - | - |", secs(day_one));
    for op in ops {
        let within: Vec<&Read> = reads.iter().filter(|r| r.at >= op.start && r.at <= op.end).collect();
        let failed = within.iter().filter(|r| !r.ok).count();
        let mine: Vec<&Window> =
            windows.iter().filter(|w| w.start >= op.start && w.start <= op.end).collect();
        let longest = mine.iter().map(|w| w.end - w.start).fold(0.0, f64::max);
        let total = mine.iter().map(|w| w.end - w.start).fold(0.0, |a, b| a + b);
        let time = match &op.failed {
            None => secs(op.end - op.start),
            Some(_) => format!("FAILED after {}", secs(op.end - op.start)),
        };
        println!(
            "| {} | {time} | {:.2}x | {} | {failed} | {} | {} |",
            op.name,
            (op.end - op.start) / day_one,
            within.len(),
            secs(longest),
            secs(total),
        );
    }
    let all_failed = reads.iter().filter(|r| !r.ok).count();
    println!(
        "\nproxy reads in all: {} ({all_failed} failed), one every {} ms, each allowed {}",
        reads.len(),
        PROBE_EVERY.as_millis(),
        secs(PROBE_TIMEOUT.as_secs_f64())
    );
    println!("server RSS after: {} (peak {})", mb(rss), mb(hwm));
    println!(
        "the cluster after: {}, Kubernetes {}, {} nodes",
        last.state(),
        last.status.version.as_ref().map_or("?", |v| v.git_version.as_str()),
        last.status.node_count.map_or("?".to_owned(), |n| n.to_string())
    );
    let failures: Vec<&Op> = ops.iter().filter(|o| o.failed.is_some()).collect();
    if !failures.is_empty() {
        println!("\nFailed operations (the server's word):");
        for op in failures {
            println!("- {}: {}", op.name, op.failed.as_deref().unwrap_or_default());
        }
    }
    if !windows.is_empty() {
        println!("\nUnavailability windows (seconds since the bench started; why the first read failed):");
        for w in &windows {
            let op = ops
                .iter()
                .find(|o| w.start >= o.start && w.start <= o.end)
                .map_or("between operations", |o| o.name);
            println!(
                "- {op}: {} → {} ({}{}): {}",
                secs(w.start),
                secs(w.end),
                secs(w.end - w.start),
                if w.open { ", never closed" } else { "" },
                w.first
            );
        }
    }
}

fn main() -> Result<()> {
    let args = Args::parse();
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(run(args))
}
