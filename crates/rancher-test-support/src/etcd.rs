//! Real etcd for tests: one member or a cluster of several on loopback ports reserved with
//! [`free_port`](crate::free_port), each with its own data directory under one temporary directory,
//! killed with SIGKILL when dropped (SIGTERM makes a lone survivor wait ~5 s for its peers).

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::free_port;

/// The `etcd` on `PATH`.
///
/// # Panics
/// When there is none: a test that needs etcd fails rather than skips.
pub fn etcd_binary() -> PathBuf {
    let found = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .chain([PathBuf::from("/usr/bin")])
        .map(|d| d.join("etcd"))
        .find(|p| p.is_file());
    found.unwrap_or_else(|| {
        panic!("etcd is not on PATH: the etcd tests need a real etcd (3.4+); run scripts/test.sh, which installs it")
    })
}

/// One etcd member.
pub struct Member {
    /// Its name in the cluster (`m0`, `m1`, …).
    pub name: String,
    /// `http://127.0.0.1:<port>` for clients.
    pub client_url: String,
    /// `http://127.0.0.1:<port>` for its peers.
    pub peer_url: String,
    /// Its data directory.
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

    /// Its process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether the member answers `/health` as healthy: it has a leader and serves a quorum read.
    pub fn healthy(&self) -> bool {
        healthy(&self.client_url)
    }
}

fn healthy(client_url: &str) -> bool {
    let Some(addr) = client_url.strip_prefix("http://") else { return false };
    let Ok(mut tcp) = TcpStream::connect(addr) else { return false };
    let _ = tcp.set_read_timeout(Some(Duration::from_secs(3)));
    if tcp.write_all(format!("GET /health HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes()).is_err() {
        return false;
    }
    let mut answer = String::new();
    let _ = tcp.read_to_string(&mut answer);
    answer.split_whitespace().nth(1) == Some("200") && answer.contains(r#""health":"true""#)
}

/// A running etcd cluster of one or more members.
pub struct Etcd {
    /// The members, in start order.
    pub members: Vec<Member>,
    _dir: tempfile::TempDir,
}

impl Etcd {
    /// Starts `n` members and waits until every one is healthy.
    pub async fn start(n: usize) -> Etcd {
        let dir = tempfile::tempdir().expect("tempdir");
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

    /// The members' client URLs.
    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(|m| m.client_url.clone()).collect()
    }

    /// Waits until member `i` is healthy.
    ///
    /// # Panics
    /// When it is not within a minute.
    pub async fn wait_ready(&self, i: usize) {
        let deadline = Instant::now() + Duration::from_secs(60);
        let url = self.members[i].client_url.clone();
        loop {
            let probe = url.clone();
            if tokio::task::spawn_blocking(move || healthy(&probe)).await.unwrap_or(false) {
                return;
            }
            assert!(Instant::now() < deadline, "etcd member {url} did not become ready");
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
