//! Real etcd processes for tests: single members and three-member clusters on loopback, each with a
//! temporary data directory, killed with SIGKILL when dropped (SIGTERM makes a lone survivor wait ~5 s).

#![allow(dead_code, unreachable_pub)]

use rancher_test_support::free_port;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Fails the test (never skips) when etcd is missing.
pub fn etcd_binary() -> PathBuf {
    let found = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join("etcd"))
        .find(|p| p.is_file());
    found.unwrap_or_else(|| {
        panic!("etcd is not on PATH: the etcd tests need a real etcd (3.4+); run scripts/test.sh, which installs it")
    })
}

/// One etcd member.
pub struct Member {
    pub name: String,
    pub client_url: String,
    pub peer_url: String,
    pub data_dir: PathBuf,
    initial_cluster: String,
    child: Option<Child>,
}

impl Member {
    fn spawn(&mut self) {
        let child = Command::new(etcd_binary())
            .args(["--name", &self.name, "--data-dir"])
            .arg(&self.data_dir)
            .args(["--listen-client-urls", &self.client_url, "--advertise-client-urls", &self.client_url])
            .args(["--listen-peer-urls", &self.peer_url, "--initial-advertise-peer-urls", &self.peer_url])
            .args(["--initial-cluster", &self.initial_cluster, "--initial-cluster-state", "new"])
            .args(["--heartbeat-interval", "50", "--election-timeout", "500"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start etcd");
        self.child = Some(child);
    }

    /// SIGKILL.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts again with the same data directory.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }
}

/// A running etcd cluster of one or more members.
pub struct Etcd {
    pub members: Vec<Member>,
    _dir: tempfile::TempDir,
}

impl Etcd {
    /// Starts `n` members and waits until every one answers.
    pub async fn start(n: usize) -> Etcd {
        let dir = tempfile::tempdir().unwrap();
        let mut members: Vec<Member> = (0..n)
            .map(|i| Member {
                name: format!("m{i}"),
                client_url: format!("http://127.0.0.1:{}", free_port()),
                peer_url: format!("http://127.0.0.1:{}", free_port()),
                data_dir: dir.path().join(format!("m{i}")),
                initial_cluster: String::new(),
                child: None,
            })
            .collect();
        let initial: Vec<String> = members.iter().map(|m| format!("{}={}", m.name, m.peer_url)).collect();
        for m in &mut members {
            m.initial_cluster = initial.join(",");
            m.spawn();
        }
        let etcd = Etcd { members, _dir: dir };
        for i in 0..n {
            etcd.wait_ready(i).await;
        }
        etcd
    }

    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(|m| m.client_url.clone()).collect()
    }

    /// Waits until member `i` serves a linearizable read.
    pub async fn wait_ready(&self, i: usize) {
        let deadline = Instant::now() + Duration::from_secs(60);
        let url = self.members[i].client_url.clone();
        loop {
            let ok = async {
                let opts = etcd_client::ConnectOptions::new()
                    .with_connect_timeout(Duration::from_secs(1))
                    .with_timeout(Duration::from_secs(2));
                let mut c = etcd_client::Client::connect([url.as_str()], Some(opts)).await.ok()?;
                c.get("/health-probe", None).await.ok()
            }
            .await
            .is_some();
            if ok {
                return;
            }
            assert!(Instant::now() < deadline, "etcd member {url} did not become ready");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The index of the current leader.
    pub async fn leader(&self) -> usize {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            for (i, m) in self.members.iter().enumerate() {
                let Ok(mut c) = etcd_client::Client::connect([m.client_url.as_str()], None).await else {
                    continue;
                };
                if let Ok(s) = c.status().await
                    && s.header().is_some_and(|h| h.member_id() == s.leader())
                {
                    return i;
                }
            }
            assert!(Instant::now() < deadline, "no etcd leader");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        for m in &mut self.members {
            m.kill();
        }
    }
}
