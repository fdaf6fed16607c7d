//! `rancher-server --store etcd` against a real etcd: objects live in etcd, so a second server process
//! on a fresh data directory sees what the first one stored. Needs `etcd` on PATH (`scripts/test.sh`
//! installs it).
#![cfg(feature = "etcd")]

mod common;

use rancher_test_support::free_port;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{ADMIN_PASSWORD, Api, ServerProc};
use serde_json::json;

struct Etcd {
    child: Child,
    client_url: String,
    _dir: tempfile::TempDir,
}

impl Drop for Etcd {
    fn drop(&mut self) {
        // SIGKILL: a throwaway etcd spends seconds on a graceful stop.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_etcd() -> Etcd {
    let etcd = which("etcd").expect("etcd is not installed: run scripts/test.sh, which installs etcd-server");
    let dir = tempfile::tempdir().unwrap();
    let (client, peer) = (free_port(), free_port());
    let client_url = format!("http://127.0.0.1:{client}");
    let peer_url = format!("http://127.0.0.1:{peer}");
    let child = Command::new(etcd)
        .args(["--name", "s1", "--data-dir"])
        .arg(dir.path().join("etcd"))
        .args(["--listen-client-urls", &client_url, "--advertise-client-urls", &client_url])
        .args(["--listen-peer-urls", &peer_url, "--initial-advertise-peer-urls", &peer_url])
        .args(["--initial-cluster", &format!("s1={peer_url}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", client)).is_err() {
        assert!(Instant::now() < deadline, "etcd did not start listening");
        std::thread::sleep(Duration::from_millis(50));
    }
    Etcd { child, client_url, _dir: dir }
}

fn which(name: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .chain(["/usr/bin", "/usr/local/bin"])
        .map(|d| std::path::Path::new(d).join(name))
        .find(|p| p.is_file())
}

#[tokio::test(flavor = "multi_thread")]
async fn objects_stored_in_etcd_are_seen_by_a_second_server() {
    let etcd = start_etcd();
    let dir = tempfile::tempdir().unwrap();
    let args = ["--store", "etcd", "--etcd-endpoints", etcd.client_url.as_str()];

    let first = ServerProc::start(&dir.path().join("first"), 0, Some(ADMIN_PASSWORD), &args);
    let admin = Api::new(&first).logged_in("admin", ADMIN_PASSWORD).await;
    let created = admin.post("/v3/clusters", &json!({"metadata": {"name": "in-etcd"}})).await;
    assert_eq!(created.code, 201, "{}", created.body);
    let stale_version = created.body["metadata"]["resourceVersion"].as_str().unwrap().to_owned();
    first.stop_async().await;

    // A second server with its own data directory (its own CA) reads the same etcd: the cluster and
    // the bootstrap admin are there, and a write with a stale version is still refused.
    let second = ServerProc::start(&dir.path().join("second"), 0, Some(ADMIN_PASSWORD), &args);
    let admin = Api::new(&second).logged_in("admin", ADMIN_PASSWORD).await;
    let got = admin.get("/v3/clusters/in-etcd").await;
    assert_eq!(got.code, 200, "{}", got.body);
    let mut changed = got.body.clone();
    changed["spec"]["description"] = json!("updated through the second server");
    let updated = admin.put("/v3/clusters/in-etcd", &changed).await;
    assert_eq!(updated.code, 200, "{}", updated.body);
    let mut stale = got.body.clone();
    stale["metadata"]["resourceVersion"] = json!(stale_version);
    stale["spec"]["description"] = json!("written from an old read");
    let refused = admin.put("/v3/clusters/in-etcd", &stale).await;
    common::assert_status(&refused, 409, "Conflict");
    let after = admin.get("/v3/clusters/in-etcd").await;
    assert_eq!(after.body["spec"]["description"], "updated through the second server");
}
