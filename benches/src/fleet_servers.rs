//! The `rancher-server` processes of `fleet_bench`: one on the embedded store, or replicas sharing an
//! etcd; started, stopped (each drains) and started again on their ports and data, and read through
//! their `/metrics`.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Result, bail};
use rancher_test_support::free_port;
use tokio::time::Instant;

use crate::rke::{ServerProc, server_bin_dir, start_server_on};

/// One replica: its process, port and data directory (kept over a restart).
pub struct Replica {
    /// The running process, if any.
    pub proc: Option<ServerProc>,
    /// Its HTTPS port.
    pub port: u16,
    /// Its directory (data and log), kept over a restart.
    pub dir: PathBuf,
}

/// The servers of one run and how to start them again.
pub struct Servers {
    /// Every replica, in the order the fleet dials them.
    pub replicas: Vec<Replica>,
    /// Where `rancher-server` (and `rancherctl`) are.
    pub bins: PathBuf,
    extra: Vec<OsString>,
    /// The etcd the replicas share, if they do.
    pub etcd: Option<rancher_test_support::etcd::Etcd>,
}

impl Servers {
    /// Starts `replicas` servers from `bin_dir` (default: beside this binary) with their data under
    /// `dir`, on etcd when there are several or `store` is `etcd`, on the embedded store otherwise;
    /// each with `server_args` besides.
    ///
    /// # Errors
    /// A bad `store`, a missing binary, or a server that does not start.
    pub async fn start(
        replicas: usize,
        store: &str,
        bin_dir: Option<PathBuf>,
        dir: &Path,
        server_args: &[String],
    ) -> Result<Servers> {
        let bins = server_bin_dir(bin_dir)?;
        let on_etcd = replicas > 1 || store == "etcd";
        if !on_etcd && store != "embedded" {
            bail!("--store is `embedded` or `etcd`, not {store:?}");
        }
        // Every agent dials from this host, as from behind a load balancer: no cap per client address
        // (by default a quarter of the connection cap, which ten thousand agents would pass).
        let mut extra: Vec<OsString> = vec!["--max-connections-per-client".into(), "0".into()];
        let etcd = if on_etcd {
            let etcd = rancher_test_support::etcd::Etcd::start(1).await;
            let key = dir.join("secrets.key");
            std::fs::write(&key, [7u8; 32])?;
            extra.extend(["--store".into(), "etcd".into(), "--etcd-endpoints".into()]);
            extra.push(etcd.endpoints()[0].clone().into());
            extra.extend(["--secrets-key-file".into(), key.into_os_string()]);
            Some(etcd)
        } else {
            None
        };
        extra.extend(server_args.iter().map(OsString::from));
        let mut servers = Servers { replicas: Vec::new(), bins, extra, etcd };
        for i in 0..replicas {
            let rdir = dir.join(format!("replica-{i}"));
            std::fs::create_dir_all(&rdir)?;
            // A port reserved for this process (outside the kernel's ephemeral range): two picked by
            // binding port 0 and letting go can be the same one, and a replica restarts on its port.
            servers.replicas.push(Replica { proc: None, port: free_port(), dir: rdir });
        }
        servers.start_all().await?;
        Ok(servers)
    }

    /// Starts every replica that is not running and waits until each counts all of them as live.
    pub async fn start_all(&mut self) -> Result<()> {
        let extra: Vec<&std::ffi::OsStr> = self.extra.iter().map(OsString::as_os_str).collect();
        let starts =
            self.replicas.iter().map(|r| start_server_on(&r.dir, &self.bins, "127.0.0.1", r.port, &extra));
        let procs = futures::future::try_join_all(starts).await?;
        for (r, p) in self.replicas.iter_mut().zip(procs) {
            r.proc = Some(p);
        }
        if self.replicas.len() > 1 {
            let deadline = Instant::now() + Duration::from_secs(60);
            for r in &self.replicas {
                while metric(&self.metrics(r).await?, "rancher_replicas_live") < self.replicas.len() as f64 {
                    if Instant::now() > deadline {
                        bail!("replica {} does not count {} live replicas", r.url(), self.replicas.len());
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
        Ok(())
    }

    /// Stops every running replica with SIGTERM (each drains) and waits for them.
    ///
    /// # Errors
    /// When one does not exit in time.
    pub async fn stop_all(&mut self) -> Result<()> {
        let stops = self
            .replicas
            .iter_mut()
            .filter_map(|r| r.proc.take())
            .map(|p| p.terminate(Duration::from_secs(60)));
        futures::future::try_join_all(stops).await?;
        Ok(())
    }

    /// The first replica's process (the one the bench drives the API through).
    ///
    /// # Panics
    /// When it is not running.
    pub fn first(&self) -> &ServerProc {
        self.replicas[0].proc.as_ref().expect("the replicas run")
    }

    /// Every replica's base URL.
    pub fn urls(&self) -> Vec<String> {
        self.replicas.iter().map(Replica::url).collect()
    }

    /// The running replicas' process ids.
    pub fn pids(&self) -> Vec<u32> {
        self.replicas.iter().filter_map(|r| r.proc.as_ref().map(ServerProc::pid)).collect()
    }

    /// `/metrics` of replica `r`.
    pub async fn metrics(&self, r: &Replica) -> Result<String> {
        let first = self.first();
        let url = format!("{}/metrics", r.url());
        Ok(first.http.get(url).bearer_auth(&first.token).send().await?.error_for_status()?.text().await?)
    }

    /// Connected agents: the sum of every replica's open tunnel sessions (only a cluster's owner holds
    /// its session; a replica relaying an agent to the owner does not count it).
    pub async fn sessions(&self) -> Result<f64> {
        let mut sum = 0.0;
        for r in &self.replicas {
            sum += metric(&self.metrics(r).await?, "rancher_tunnel_sessions");
        }
        Ok(sum)
    }
}

impl Replica {
    /// Its base URL.
    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }
}

/// The value of the unlabelled metric `name` in the exposition `text` (0 when it is not there).
pub fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

/// The store writes every replica has made so far (its `store_operation_duration_seconds` counts of
/// creates, updates and deletes), but for the replicas' leases: their renewals go on for as long as
/// the replicas run, and are no work of the fleet's.
pub async fn writes(servers: &Servers) -> Result<f64> {
    let mut sum = 0.0;
    for r in &servers.replicas {
        sum += servers
            .metrics(r)
            .await?
            .lines()
            .filter(|l| l.starts_with("rancher_store_operation_duration_seconds_count{"))
            .filter(|l| ["op=\"create\"", "op=\"update\"", "op=\"delete\""].iter().any(|op| l.contains(op)))
            .filter(|l| !l.contains("resource=\"leases\""))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>();
    }
    Ok(sum)
}

/// The downstream syncs waiting for their turn on every replica (`rancher_cluster_syncs_waiting`).
pub async fn syncs_waiting(servers: &Servers) -> Result<f64> {
    let mut sum = 0.0;
    for r in &servers.replicas {
        sum += metric(&servers.metrics(r).await?, "rancher_cluster_syncs_waiting");
    }
    Ok(sum)
}

/// Seconds from `since` until the servers have written nothing to the store for 6 s and no
/// downstream sync waits for its turn: the work a fleet's arrival causes (system projects,
/// namespaces put into them, the first syncs, which write into the clusters, not the store) is done.
pub async fn until_quiet(servers: &Servers, since: Instant, timeout: Duration) -> Result<f64> {
    let mut last = writes(servers).await?;
    let mut still = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let now = writes(servers).await?;
        if now != last || syncs_waiting(servers).await? > 0.0 {
            (last, still) = (now, Instant::now());
        } else if still.elapsed() >= Duration::from_secs(6) {
            return Ok(since.elapsed().as_secs_f64() - 6.0);
        }
        if since.elapsed() > timeout {
            bail!("the servers were still writing {timeout:?} after the fleet started");
        }
    }
}
