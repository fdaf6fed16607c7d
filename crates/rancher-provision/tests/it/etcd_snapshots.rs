//! Snapshots and restore on real hosts: three SSH hosts each running an etcd 3.4 member with
//! mutual TLS (the project's `ClusterPki`) on its own address and loopback; a snapshot taken
//! through SSH and stored on every host; writes after it; every member restored from it with
//! `etcdctl`, and the writes gone.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use rancher_core::model::{RkeConfig, RkeNode};
use rancher_provision::cluster_pki::{self, ClusterPki};
use rancher_provision::etcd_api::{may_remove, may_stop, member_health};
use rancher_provision::etcd_snapshots::{
    self, EtcdHost, RestoreSpec, SnapshotError, SnapshotKind, etcd_tls, snapshot_file,
};
use rancher_provision::ssh::{HostKeyPolicy, SshSession, SshTarget};
use rancher_test_support::eventually;
use rancher_test_support::ssh_hosts::{SshHost, SshHosts};
use sha2::{Digest, Sha256};

const WAIT: Duration = Duration::from_secs(60);
const PREFIX: &str = "/srv/node";

fn pki_for(hosts: &SshHosts) -> ClusterPki {
    let nodes = hosts
        .hosts()
        .iter()
        .map(|h| RkeNode {
            address: h.address().to_owned(),
            hostname_override: format!("node{}", h.index()),
            role: vec!["etcd".into(), "controlplane".into()],
            ..Default::default()
        })
        .collect();
    let mut pki = ClusterPki::new();
    pki.ensure(&RkeConfig { nodes, ..Default::default() }).unwrap();
    pki
}

/// The certificates a member needs, in `dir/ssl` (outside the hosts' private directories: etcd
/// is started from the root mount namespace, which sees them).
fn write_certs(dir: &Path, pki: &ClusterPki, node: &str) {
    std::fs::create_dir_all(dir.join("ssl")).unwrap();
    let write = |file: &str, text: &str| std::fs::write(dir.join("ssl").join(file), text).unwrap();
    write("ca.pem", &pki.get(cluster_pki::ETCD_CA).unwrap().cert_pem);
    for (base, cert) in [("server", cluster_pki::etcd_server(node)), ("peer", cluster_pki::etcd_peer(node))] {
        let c = pki.get(&cert).unwrap();
        write(&format!("{base}.pem"), &c.cert_pem);
        write(&format!("{base}-key.pem"), c.key_pem.expose());
    }
    let client = pki.get(cluster_pki::APISERVER_ETCD_CLIENT).unwrap();
    write("client.pem", &client.cert_pem);
    write("client-key.pem", client.key_pem.expose());
}

/// etcd members in the hosts' network namespaces, data in each host's `/srv/node/var/lib/etcd`.
struct Members {
    children: Vec<Child>,
}

impl Members {
    fn start(hosts: &SshHosts, certs: &Path, token: &str) -> Members {
        let initial: Vec<String> =
            hosts.hosts().iter().map(|h| format!("node{}=https://{}:2380", h.index(), h.address())).collect();
        let children = hosts
            .hosts()
            .iter()
            .map(|h| {
                let ssl = |f: &str| {
                    certs.join(format!("node{}", h.index())).join("ssl").join(f).display().to_string()
                };
                let (own, peer) =
                    (format!("https://{}:2379", h.address()), format!("https://{}:2380", h.address()));
                Command::new("ip")
                    .args([
                        "netns",
                        "exec",
                        h.netns(),
                        "/usr/bin/etcd",
                        "--name",
                        &format!("node{}", h.index()),
                    ])
                    .arg("--data-dir")
                    .arg(h.root_dir().join("var/lib/etcd"))
                    .args(["--listen-client-urls", &format!("{own},https://127.0.0.1:2379")])
                    .args(["--advertise-client-urls", &own])
                    .args(["--listen-peer-urls", &peer, "--initial-advertise-peer-urls", &peer])
                    .args(["--initial-cluster", &initial.join(","), "--initial-cluster-state", "new"])
                    .args(["--initial-cluster-token", token])
                    .args(["--trusted-ca-file", &ssl("ca.pem"), "--client-cert-auth"])
                    .args(["--cert-file", &ssl("server.pem"), "--key-file", &ssl("server-key.pem")])
                    .args(["--peer-trusted-ca-file", &ssl("ca.pem"), "--peer-client-cert-auth"])
                    .args(["--peer-cert-file", &ssl("peer.pem"), "--peer-key-file", &ssl("peer-key.pem")])
                    .args(["--heartbeat-interval", "50", "--election-timeout", "500"])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("start etcd")
            })
            .collect();
        Members { children }
    }

    fn kill(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.children.clear();
    }
}

impl Drop for Members {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `etcdctl` from the root namespace against the first host's member.
fn etcdctl(hosts: &SshHosts, certs: &Path, args: &[&str]) -> String {
    let ssl = |f: &str| certs.join("node1").join("ssl").join(f).display().to_string();
    let out = Command::new("etcdctl")
        .args(["--endpoints", &format!("https://{}:2379", hosts.hosts()[0].address())])
        .args(["--cacert", &ssl("ca.pem"), "--cert", &ssl("client.pem"), "--key", &ssl("client-key.pem")])
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "etcdctl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

async fn etcd_hosts(hosts: &SshHosts) -> Vec<EtcdHost> {
    let mut out = Vec::new();
    for h in hosts.hosts() {
        let target = SshTarget {
            address: h.address().to_owned(),
            port: h.ssh_port(),
            user: hosts.user().to_owned(),
            key: hosts.client_key().to_owned().into(),
            host_key: HostKeyPolicy::Pinned(vec![h.host_public_key()]),
        };
        let session = SshSession::connect(&target, None, Duration::from_secs(10)).await.unwrap();
        out.push(EtcdHost {
            name: format!("node{}", h.index()),
            internal_address: h.address().to_owned(),
            session: Arc::new(session),
        });
    }
    out
}

async fn all_healthy(hosts: &[EtcdHost], tls: &rancher_provision::etcd_api::EtcdTls) {
    for h in hosts {
        let etcd = h.etcd(tls).unwrap();
        eventually(WAIT, &format!("{} healthy", h.name), || async {
            matches!(etcd.health().await, Ok(Ok(()))).then_some(())
        })
        .await;
    }
}

fn host_file(h: &SshHost, path: &str) -> std::path::PathBuf {
    h.root_dir().join(path.trim_start_matches(PREFIX).trim_start_matches('/'))
}

#[tokio::test]
async fn a_snapshot_is_stored_on_every_host_and_restores_every_member() {
    let hosts = SshHosts::start(3);
    let certs = tempfile::tempdir().unwrap();
    let pki = pki_for(&hosts);
    for h in hosts.hosts() {
        write_certs(&certs.path().join(format!("node{}", h.index())), &pki, &format!("node{}", h.index()));
    }
    let token = pki.etcd_cluster_token().to_owned();
    let mut members = Members::start(&hosts, certs.path(), &token);
    let tls = etcd_tls(&pki).unwrap();
    let etcd_hosts = etcd_hosts(&hosts).await;
    all_healthy(&etcd_hosts, &tls).await;
    etcdctl(&hosts, certs.path(), &["put", "/kept", "before"]);

    let scratch = tempfile::tempdir().unwrap();
    let name = etcd_snapshots::snapshot_name("c-test", SnapshotKind::Manual, jiff::Timestamp::now());
    let taken = etcd_snapshots::take(&etcd_hosts, &tls, PREFIX, &name, SnapshotKind::Manual, scratch.path())
        .await
        .unwrap();
    let record = &taken.record;
    assert_eq!(record.hosts, ["node1", "node2", "node3"]);
    assert!(taken.failed_hosts.is_empty(), "{:?}", taken.failed_hosts);
    let local = std::fs::read(&taken.local_file).unwrap();
    assert_eq!(
        (local.len() as u64, hex::encode(Sha256::digest(&local))),
        (record.size, record.sha256.clone())
    );
    for h in hosts.hosts() {
        let file = host_file(h, &snapshot_file(PREFIX, &name));
        assert_eq!(std::fs::read(&file).unwrap(), local, "{}", file.display());
        let sum = std::fs::read_to_string(file.with_extension("db.sha256")).unwrap();
        assert_eq!(sum, format!("{}  {name}.db\n", record.sha256));
    }

    etcdctl(&hosts, certs.path(), &["put", "/kept", "after"]);
    etcdctl(&hosts, certs.path(), &["put", "/newer", "gone after the restore"]);
    // One host lost its copy: the restore copies it there from another.
    std::fs::remove_file(host_file(&hosts.hosts()[2], &snapshot_file(PREFIX, &name))).unwrap();

    let spec = RestoreSpec {
        name: &name,
        sha256: &record.sha256,
        token: &token,
        prefix: PREFIX,
        etcdctl: "/usr/bin/etcdctl",
    };
    let err = etcd_snapshots::restore(&etcd_hosts, &tls, &spec, scratch.path()).await.unwrap_err();
    assert!(matches!(&err, SnapshotError::StillRunning { node } if node == "node1"), "{err}");

    members.kill();
    let no_etcdctl = RestoreSpec { etcdctl: "/srv/node/opt/rke/bin/etcdctl", ..spec.clone() };
    let err = etcd_snapshots::restore(&etcd_hosts, &tls, &no_etcdctl, scratch.path()).await.unwrap_err();
    assert!(matches!(err, SnapshotError::NoEtcdctl { .. }), "{err}");
    assert!(err.to_string().contains("restoring needs etcdctl"), "{err}");
    let wrong = RestoreSpec { sha256: &"0".repeat(64), ..spec.clone() };
    let err = etcd_snapshots::restore(&etcd_hosts, &tls, &wrong, scratch.path()).await.unwrap_err();
    assert!(matches!(err, SnapshotError::Missing { .. }), "{err}");

    let report = etcd_snapshots::restore(&etcd_hosts, &tls, &spec, scratch.path()).await.unwrap();
    assert_eq!(report.copied_to, ["node3"]);
    assert_eq!(report.set_aside.len(), 3);
    for (node, aside) in &report.set_aside {
        let h = &hosts.hosts()[etcd_hosts.iter().position(|e| &e.name == node).unwrap()];
        assert!(host_file(h, aside).join("member").is_dir(), "{node}: the old data is kept at {aside}");
    }

    let mut members = Members::start(&hosts, certs.path(), &token);
    all_healthy(&etcd_hosts, &tls).await;
    assert_eq!(etcdctl(&hosts, certs.path(), &["get", "/kept", "--print-value-only"]).trim(), "before");
    assert_eq!(etcdctl(&hosts, certs.path(), &["get", "/newer", "--print-value-only"]).trim(), "");
    let listed = etcd_hosts[1].etcd(&tls).unwrap().member_list().await.unwrap();
    let mut names: Vec<&str> = listed.iter().map(|m| m.name.as_str()).collect();
    names.sort();
    assert_eq!(names, ["node1", "node2", "node3"]);

    assert!(etcd_snapshots::cleanup_restore(&etcd_hosts, PREFIX).await.is_empty());
    for (node, aside) in &report.set_aside {
        let h = &hosts.hosts()[etcd_hosts.iter().position(|e| &e.name == node).unwrap()];
        assert!(!host_file(h, aside).exists(), "{node}: {aside} removed");
    }
    assert!(etcd_snapshots::remove(&etcd_hosts, PREFIX, &name).await.unwrap().is_empty());
    assert!(!host_file(&hosts.hosts()[0], &snapshot_file(PREFIX, &name)).exists());

    // The members' health as the quorum check takes it: one member down, the others may not stop.
    let health = member_health(&etcd_hosts, &tls).await.unwrap();
    assert!(health.health.iter().all(|m| m.healthy && !m.learner), "{health:?}");
    let mut third = members.children.remove(2);
    let _ = third.kill();
    let _ = third.wait();
    // When the member killed was the leader, the other two report themselves unhealthy (no leader)
    // until they have elected one (etcd's election timeout, 1 s by default): the state to check is
    // the one after that election.
    let (hosts_ref, tls_ref) = (&etcd_hosts, &tls);
    let health = eventually(Duration::from_secs(20), "node1 and node2 elect a leader", || async move {
        let health = member_health(hosts_ref, tls_ref).await.ok()?;
        let unhealthy: Vec<&str> =
            health.health.iter().filter(|m| !m.healthy).map(|m| m.name.as_str()).collect();
        (unhealthy == ["node3"]).then_some(health)
    })
    .await;
    assert_eq!(
        may_stop(&health.health, "node1").unwrap_err().to_string(),
        "stopping node1 would leave 1 of 3 etcd members healthy; etcd needs 2 for quorum"
    );
    may_remove(&health.health, "node3").unwrap();
}
