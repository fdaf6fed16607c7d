//! The console's cluster list with many clusters (issue 16: "page loads of the cluster list with 1,000
//! clusters stay under 300 ms"). A `rancher-server` process (`--bin-dir`) holding N imported clusters
//! (no agents: the rows are what the page draws), a headless Chromium (Debian's `chromium` and
//! `chromium-driver`) logged in through the page, and R full loads of `/dashboard/#/clusters`: the
//! time from the navigation's start to the list drawn with every row — the page's own
//! `clusters-rendered` performance mark, checked against the row count. Beside it the direct path:
//! the same `GET /v3/clusters` the page makes, over reqwest with a token, and the ratio.
//!
//! `cargo build --release -p rancher -p rancher-benches --bin rancher-server --bin console_bench`,
//! then `target/release/console_bench [--clusters 1000] [--loads 15]`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Parser;
use futures::{StreamExt, TryStreamExt};
use rancher_benches::rke::{server_bin_dir, start_server_with};
use rancher_benches::watch_latency::quantile;
use rancher_test_support::browser::Browser;
use serde_json::json;
use tokio::time::Instant;

#[derive(Parser)]
struct Args {
    /// Clusters in the list.
    #[arg(long, default_value_t = 1000)]
    clusters: usize,
    /// Page loads (and as many direct reads), interleaved.
    #[arg(long, default_value_t = 15)]
    loads: usize,
    /// Where `rancher-server` is (default: the bench's own directory).
    #[arg(long)]
    bin_dir: Option<PathBuf>,
}

fn main() -> Result<()> {
    let args = Args::parse();
    if args.loads == 0 {
        bail!("--loads must be at least 1");
    }
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let bins = server_bin_dir(args.bin_dir.clone())?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(run(&args, &bins))
}

async fn run(args: &Args, bins: &std::path::Path) -> Result<()> {
    let dir = tempfile::tempdir()?;
    eprintln!("starting rancher-server and creating {} clusters …", args.clusters);
    let server = start_server_with(dir.path(), bins, "127.0.0.1", &[]).await?;
    futures::stream::iter(0..args.clusters)
        .map(|i| {
            let body = json!({"metadata": {"name": format!("c{i:05}")}, "spec": {"importedConfig": {}}});
            let server = &server;
            async move { server.send(reqwest::Method::POST, "/v3/clusters", &body).await }
        })
        .buffer_unordered(16)
        .try_collect::<Vec<_>>()
        .await?;

    let browser = Browser::start().await;
    browser.goto(&format!("{}/dashboard/", server.url)).await;
    browser.type_into(&browser.wait_for("#username", Duration::from_secs(30)).await, "admin").await;
    let password = rancher_benches::rke::PASSWORD;
    browser.type_into(&browser.wait_for("#password", Duration::from_secs(30)).await, password).await;
    browser.click(&browser.wait_for("#login", Duration::from_secs(30)).await).await;
    browser.wait_for("#clusters tbody tr", Duration::from_secs(60)).await;

    let (mut page_ms, mut direct_ms, mut bytes) = (Vec::new(), Vec::new(), 0usize);
    for i in 0..args.loads {
        let started = Instant::now();
        let resp =
            server.http.get(format!("{}/v3/clusters", server.url)).bearer_auth(&server.token).send().await?;
        let body = resp.bytes().await?;
        direct_ms.push(started.elapsed().as_secs_f64() * 1000.0);
        bytes = body.len();

        // A new document each time (the query differs), so the whole page loads again.
        browser.goto(&format!("{}/dashboard/?load={i}#/clusters", server.url)).await;
        let deadline = Instant::now() + Duration::from_secs(60);
        let mark = loop {
            let v = browser
                .execute(
                    "const m = performance.getEntriesByName('clusters-rendered'); \
                     return m.length ? [m[0].startTime, document.querySelectorAll('#clusters tbody tr').length] : null",
                )
                .await;
            if let Some(a) = v.as_array() {
                break (a[0].as_f64().context("a time")?, a[1].as_u64().context("a count")?);
            }
            if Instant::now() > deadline {
                bail!("the list did not render within a minute");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        if mark.1 != args.clusters as u64 {
            bail!("the list drew {} rows, not {}", mark.1, args.clusters);
        }
        page_ms.push(mark.0);
    }
    page_ms.sort_by(f64::total_cmp);
    direct_ms.sort_by(f64::total_cmp);
    let (p50, d50) = (quantile(&page_ms, 0.5), quantile(&direct_ms, 0.5));
    println!(
        "{} clusters, {} loads of /dashboard/#/clusters in headless Chromium; GET /v3/clusters is {:.0} KiB\n",
        args.clusters,
        args.loads,
        bytes as f64 / 1024.0
    );
    println!("| path | p50 ms | p90 ms | max ms |");
    println!("|---|---|---|---|");
    println!(
        "| page load to the list drawn (navigation start → every row) | {p50:.1} | {:.1} | {:.1} |",
        quantile(&page_ms, 0.9),
        page_ms[page_ms.len() - 1]
    );
    println!(
        "| direct: GET /v3/clusters (reqwest, keep-alive) | {d50:.1} | {:.1} | {:.1} |",
        quantile(&direct_ms, 0.9),
        direct_ms[direct_ms.len() - 1]
    );
    println!("\npage load / direct at p50: {:.1}×; target (issue 16): page load ≤ 300 ms", p50 / d50);
    Ok(())
}
