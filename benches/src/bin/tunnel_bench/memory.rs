//! Server memory per idle session: the server in a child process of the bench (a fresh heap), its
//! agents in a grandchild, TLS on; the child prints its RSS before and after the sessions.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rancher_tunnel::{
    Agent, AgentConfig, Metrics, PARAMS_HEADER, TOKEN_HEADER, WsTransport, ca_checksum, client_tls_pinned,
};
use tokio_util::sync::CancellationToken;

use super::{Args, TOKEN, pki, session_cfg, start_tunnel_server};

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// Child mode: a server that reports its RSS growth for `n` idle sessions.
pub(super) async fn memory_server(args: &Args, n: usize) -> Result<()> {
    let pki = pki()?;
    let (server, url, _stop) = start_tunnel_server(&pki, session_cfg(args)).await?;
    let ca_dir = rancher_benches::ScratchDir::new()?;
    let ca_file = ca_dir.path().join("ca.pem");
    std::fs::write(&ca_file, &pki.ca_pem)?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = rss_kib();
    let exe = std::env::current_exe()?;
    let mut child = tokio::process::Command::new(exe)
        .arg("--agents")
        .arg(n.to_string())
        .arg("--url")
        .arg(&url)
        .arg("--ca-file")
        .arg(&ca_file)
        .args(args.frame_size.map(|f| format!("--frame-size={f}")))
        .kill_on_drop(true)
        .spawn()?;
    let deadline = Instant::now() + Duration::from_secs(300);
    while server.client_keys().len() < n {
        if Instant::now() > deadline {
            bail!("only {} of {n} sessions after 300 s", server.client_keys().len());
        }
        if let Some(status) = child.try_wait()? {
            bail!("agent process exited early: {status}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Let handshakes and first pings settle.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = rss_kib();
    println!("MEMORY {n} {before} {after}");
    child.kill().await?;
    Ok(())
}

/// Child mode: `n` agents, each holding one idle session, until killed.
pub(super) async fn agents(args: &Args, n: usize) -> Result<()> {
    let url = args.url.clone().context("--url")?;
    let ca = std::fs::read(args.ca_file.clone().context("--ca-file")?)?;
    let tls = client_tls_pinned(&ca, &ca_checksum(&ca))?;
    let stop = CancellationToken::new();
    let transport = Arc::new(WsTransport::new(&url, tls, session_cfg(args))?);
    for i in 0..n {
        let mut cfg = AgentConfig::default();
        cfg.session = session_cfg(args);
        cfg.headers.insert(TOKEN_HEADER, TOKEN.parse()?);
        cfg.headers.insert(PARAMS_HEADER, format!("agent-{i}").parse()?);
        let agent =
            Agent::new(transport.clone(), Arc::new(|_: &str, _: &str| false), cfg, Metrics::unregistered())?;
        let stop = stop.clone();
        tokio::spawn(async move { agent.run(stop).await });
        if i % 100 == 99 {
            // Do not flood the listener's accept queue.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    std::future::pending::<()>().await;
    Ok(())
}

pub(super) async fn measure_memory(args: &Args, n: usize) -> Result<(u64, u64)> {
    let exe = std::env::current_exe()?;
    let out = tokio::process::Command::new(exe)
        .arg(format!("--memory-server={n}"))
        .args(args.frame_size.map(|f| format!("--frame-size={f}")))
        .kill_on_drop(true)
        .output()
        .await?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().find(|l| l.starts_with("MEMORY ")).with_context(|| {
        format!("memory server for {n} sessions failed: {}", String::from_utf8_lossy(&out.stderr))
    })?;
    let f: Vec<u64> = line.split_whitespace().skip(2).filter_map(|x| x.parse().ok()).collect();
    Ok((f[0], f[1]))
}
