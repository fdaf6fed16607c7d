//! Store benchmark: creates/s, updates/s (sequential and 16 concurrent writers) and watch-delivery
//! latency with 1,000 watchers, for each backend, next to the direct path (the bare map / bare redb
//! commit) in the same run.
//!
//! `cargo run --release -p rancher-benches --bin store_bench [--features etcd]`

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Parser;
use futures::StreamExt;
use rancher_core::store::{ListOptions, MemoryStore, RedbStore, Store, WatchEvent, WatchOptions};
use serde_json::{Value, json};

#[derive(Parser)]
struct Args {
    /// Writes per measurement for the in-memory store.
    #[arg(long, default_value_t = 20_000)]
    memory_ops: usize,
    /// Writes per measurement for durable stores (each one is an fsync).
    #[arg(long, default_value_t = 1_000)]
    durable_ops: usize,
    /// Open watches during the latency measurement.
    #[arg(long, default_value_t = 1_000)]
    watchers: usize,
    /// Writes observed by every watcher.
    #[arg(long, default_value_t = 100)]
    watched_writes: usize,
}

struct Row {
    backend: String,
    creates: f64,
    updates: f64,
    updates16: f64,
    lat_start: (Duration, Duration),
    lat_return: (Duration, Duration),
}

fn obj(name: &str, i: usize) -> Value {
    json!({"apiVersion": "management.cattle.io/v3", "kind": "Cluster", "metadata": {"name": name, "labels": {"bench": "yes"}},
           "spec": {"displayName": name, "i": i}})
}

async fn creates(store: &Arc<dyn Store>, n: usize) -> Result<f64> {
    let t = Instant::now();
    for i in 0..n {
        store.create("clusters", obj(&format!("c-{i}"), i)).await?;
    }
    Ok(n as f64 / t.elapsed().as_secs_f64())
}

async fn updates(store: &Arc<dyn Store>, name: &str, n: usize) -> Result<()> {
    let mut cur = store.get("clusters", None, name).await?;
    for i in 0..n {
        cur["spec"]["i"] = json!(i + 1_000_000);
        cur = store.update("clusters", cur).await?;
    }
    Ok(())
}

async fn concurrent_updates(store: &Arc<dyn Store>, writers: usize, n: usize) -> Result<f64> {
    let t = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for w in 0..writers {
        let store = store.clone();
        set.spawn(async move { updates(&store, &format!("c-{w}"), n / writers).await });
    }
    while let Some(r) = set.join_next().await {
        r??;
    }
    Ok((n / writers * writers) as f64 / t.elapsed().as_secs_f64())
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Opens `watchers` watches, makes `writes` sequential writes, and measures for every (watcher, write)
/// the time from the write starting, and from it returning, to the watcher holding the event.
async fn watch_latency(
    store: &Arc<dyn Store>,
    watchers: usize,
    writes: usize,
) -> Result<((Duration, Duration), (Duration, Duration))> {
    let base = store.create("clusters", obj("watched", 0)).await?;
    let from = base["metadata"]["resourceVersion"].as_str().context("rv")?.to_owned();
    let epoch = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..watchers {
        let opts = WatchOptions { resource_version: Some(from.clone()), ..Default::default() };
        let mut w = store.watch("clusters", &opts).await?;
        set.spawn(async move {
            let mut got = Vec::with_capacity(writes);
            while got.len() < writes {
                match tokio::time::timeout(Duration::from_secs(60), w.next()).await {
                    Ok(Some(Ok(WatchEvent::Modified(v)))) => {
                        let i = v["spec"]["i"].as_u64().unwrap_or(0) as usize;
                        got.push((i, epoch.elapsed()));
                    }
                    Ok(Some(Ok(_))) => {}
                    other => anyhow::bail!("watch ended early: {other:?}"),
                }
            }
            Ok(got)
        });
    }
    let mut cur = base;
    let mut marks = Vec::with_capacity(writes);
    for i in 1..=writes {
        cur["spec"]["i"] = json!(i);
        let start = epoch.elapsed();
        cur = store.update("clusters", cur).await?;
        marks.push((start, epoch.elapsed()));
        // Let deliveries drain so each write's latency is measured on its own.
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let (mut from_start, mut from_return) = (Vec::new(), Vec::new());
    while let Some(r) = set.join_next().await {
        for (i, at) in r?? {
            let (s, e) = marks[i - 1];
            from_start.push(at.saturating_sub(s));
            from_return.push(at.saturating_sub(e));
        }
    }
    from_start.sort();
    from_return.sort();
    Ok((
        (percentile(&from_start, 0.5), percentile(&from_start, 0.99)),
        (percentile(&from_return, 0.5), percentile(&from_return, 0.99)),
    ))
}

async fn bench(backend: &str, store: Arc<dyn Store>, ops: usize, args: &Args) -> Result<Row> {
    eprintln!("{backend}: creates");
    let creates = creates(&store, ops).await?;
    eprintln!("{backend}: updates");
    let t = Instant::now();
    updates(&store, "c-0", ops).await?;
    let updates_s = ops as f64 / t.elapsed().as_secs_f64();
    eprintln!("{backend}: 16 writers");
    let updates16 = concurrent_updates(&store, 16, ops).await?;
    eprintln!("{backend}: {} watchers", args.watchers);
    let (lat_start, lat_return) = watch_latency(&store, args.watchers, args.watched_writes).await?;
    let n = store.list("clusters", &ListOptions::default()).await?.items.len();
    anyhow::ensure!(n == ops + 1, "{backend}: expected {} objects, found {n}", ops + 1);
    Ok(Row { backend: backend.into(), creates, updates: updates_s, updates16, lat_start, lat_return })
}

/// The direct path: a bare map insert, and a bare redb insert + Immediate commit.
fn direct_memory(n: usize) -> f64 {
    let map = std::sync::Mutex::new(std::collections::BTreeMap::new());
    let t = Instant::now();
    for i in 0..n {
        let v = serde_json::to_vec(&obj(&format!("c-{i}"), i)).unwrap_or_default();
        map.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(format!("c-{i}"), v);
    }
    n as f64 / t.elapsed().as_secs_f64()
}

fn direct_redb(path: &std::path::Path, n: usize) -> Result<f64> {
    const T: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new("t");
    let db = redb::Database::create(path)?;
    let t = Instant::now();
    for i in 0..n {
        let mut txn = db.begin_write()?;
        txn.set_durability(redb::Durability::Immediate)?;
        {
            let mut table = txn.open_table(T)?;
            let v = serde_json::to_vec(&obj(&format!("c-{i}"), i))?;
            table.insert(format!("c-{i}").as_str(), v.as_slice())?;
        }
        txn.commit()?;
    }
    Ok(n as f64 / t.elapsed().as_secs_f64())
}

/// An etcd child process, SIGKILLed on drop; its data directory goes with it.
#[cfg_attr(not(feature = "etcd"), allow(dead_code))]
struct EtcdProcess {
    child: Child,
    _data: rancher_benches::ScratchDir,
}

impl Drop for EtcdProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg_attr(not(feature = "etcd"), allow(dead_code))]
fn start_etcd() -> Result<(EtcdProcess, String)> {
    let port = |_| -> Result<u16> { Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port()) };
    let (client, peer) = (port(())?, port(())?);
    let dir = rancher_benches::ScratchDir::new()?;
    let url = format!("http://127.0.0.1:{client}");
    let peer_url = format!("http://127.0.0.1:{peer}");
    let child = Command::new("etcd")
        .args(["--name", "bench", "--data-dir"])
        .arg(dir.path().join("etcd"))
        .args(["--listen-client-urls", &url, "--advertise-client-urls", &url])
        .args(["--listen-peer-urls", &peer_url, "--initial-advertise-peer-urls", &peer_url])
        .args(["--initial-cluster", &format!("bench={peer_url}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting etcd (is it on PATH? scripts/test.sh installs it)")?;
    Ok((EtcdProcess { child, _data: dir }, url))
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1e3)
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let dir = rancher_benches::ScratchDir::new()?;
    let mut rows = Vec::new();
    let direct_mem = direct_memory(args.memory_ops);
    rows.push(bench("memory", Arc::new(MemoryStore::new()), args.memory_ops, &args).await?);
    let direct_redb = direct_redb(&dir.path().join("direct.redb"), args.durable_ops)?;
    rows.push(
        bench("redb", Arc::new(RedbStore::open(dir.path().join("store.redb"))?), args.durable_ops, &args)
            .await?,
    );
    #[cfg(feature = "etcd")]
    let _etcd = {
        let (process, url) = start_etcd()?;
        let deadline = Instant::now() + Duration::from_secs(30);
        let store = loop {
            match rancher_core::store::EtcdStore::connect(std::slice::from_ref(&url)).await {
                Ok(s) if s.list("probe", &ListOptions::default()).await.is_ok() => break s,
                _ if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(100)).await,
                Ok(_) | Err(_) => anyhow::bail!("etcd at {url} did not become ready"),
            }
        };
        rows.push(bench("etcd", Arc::new(store), args.durable_ops, &args).await?);
        process
    };

    println!(
        "\nstore bench: {} watchers, {} watched writes; memory {} ops, durable {} ops per measurement",
        args.watchers, args.watched_writes, args.memory_ops, args.durable_ops
    );
    println!(
        "{:<8} {:>11} {:>11} {:>13} {:>16} {:>16} {:>17} {:>17}",
        "backend",
        "creates/s",
        "updates/s",
        "updates/s x16",
        "watch p50 start",
        "watch p99 start",
        "watch p50 return",
        "watch p99 return"
    );
    for r in &rows {
        println!(
            "{:<8} {:>11.0} {:>11.0} {:>13.0} {:>13} ms {:>13} ms {:>14} ms {:>14} ms",
            r.backend,
            r.creates,
            r.updates,
            r.updates16,
            ms(r.lat_start.0),
            ms(r.lat_start.1),
            ms(r.lat_return.0),
            ms(r.lat_return.1)
        );
    }
    println!("\ndirect path (same run):");
    println!(
        "  bare Mutex<BTreeMap> insert of the JSON bytes: {direct_mem:>10.0}/s  (MemoryStore creates: {:.2}x of it)",
        rows[0].creates / direct_mem
    );
    println!(
        "  bare redb insert + Immediate commit:            {direct_redb:>10.0}/s  (RedbStore creates: {:.2}x of it)",
        rows[1].creates / direct_redb
    );
    Ok(())
}
