//! The etcd gateway client against real etcd 3.4 members with mutual TLS (certificates from the
//! project's `ClusterPki`): members listed, a learner added, started and promoted, a member
//! removed, a snapshot whose SHA-256 matches its bytes and that `etcdctl` reads, dead endpoints,
//! and the way in through an SSH host to etcd on its loopback.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use rancher_core::model::{RkeConfig, RkeNode};
use rancher_provision::cluster_pki::{self, ClusterPki};
use rancher_provision::etcd_api::{EtcdClient, EtcdError, EtcdTls, SshConnect, TcpConnect};
use rancher_provision::ssh::{HostKeyPolicy, SshSession, SshTarget};
use rancher_test_support::eventually;
use rancher_test_support::free_port;
use rancher_test_support::ssh_hosts::SshHosts;
use sha2::{Digest, Sha256};

const WAIT: Duration = Duration::from_secs(60);

/// The PKI of a cluster of `n` etcd hosts named `e0`…
fn pki(n: usize) -> ClusterPki {
    let nodes = (0..n)
        .map(|i| RkeNode {
            address: format!("10.9.0.{}", i + 1),
            hostname_override: format!("e{i}"),
            role: if i == 0 { vec!["etcd".into(), "controlplane".into()] } else { vec!["etcd".into()] },
            ..Default::default()
        })
        .collect();
    let mut pki = ClusterPki::new();
    pki.ensure(&RkeConfig { nodes, ..Default::default() }).unwrap();
    pki
}

/// The server's client credentials towards etcd (the API server's etcd client certificate).
fn client_tls(pki: &ClusterPki) -> EtcdTls {
    let client = pki.get(cluster_pki::APISERVER_ETCD_CLIENT).unwrap();
    EtcdTls {
        ca_pem: pki.get(cluster_pki::ETCD_CA).unwrap().cert_pem.clone(),
        cert_pem: client.cert_pem.clone(),
        key_pem: client.key_pem.expose().to_owned().into(),
        server_name: "127.0.0.1".into(),
    }
}

/// One etcd member with mutual TLS on 127.0.0.1 (of the root namespace, or of `netns`).
struct TlsMember {
    name: String,
    client_port: u16,
    peer_port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl TlsMember {
    fn new(root: &Path, pki: &ClusterPki, name: &str) -> TlsMember {
        let dir = root.join(name);
        std::fs::create_dir_all(dir.join("ssl")).unwrap();
        let write = |file: &str, text: &str| std::fs::write(dir.join("ssl").join(file), text).unwrap();
        write("ca.pem", &pki.get(cluster_pki::ETCD_CA).unwrap().cert_pem);
        for (base, cert) in
            [("server", cluster_pki::etcd_server(name)), ("peer", cluster_pki::etcd_peer(name))]
        {
            let c = pki.get(&cert).unwrap();
            write(&format!("{base}.pem"), &c.cert_pem);
            write(&format!("{base}-key.pem"), c.key_pem.expose());
        }
        TlsMember { name: name.into(), client_port: free_port(), peer_port: free_port(), dir, child: None }
    }

    fn peer_url(&self) -> String {
        format!("https://127.0.0.1:{}", self.peer_port)
    }

    fn initial(&self) -> String {
        format!("{}={}", self.name, self.peer_url())
    }

    fn start(&mut self, initial_cluster: &str, state: &str, netns: Option<&str>) {
        let ssl = |f: &str| self.dir.join("ssl").join(f).display().to_string();
        let client_url = format!("https://127.0.0.1:{}", self.client_port);
        let mut cmd = match netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, "/usr/bin/etcd"]);
                c
            }
            None => Command::new(rancher_test_support::etcd::etcd_binary()),
        };
        cmd.args(["--name", &self.name, "--data-dir"])
            .arg(self.dir.join("data"))
            .args(["--listen-client-urls", &client_url, "--advertise-client-urls", &client_url])
            .args(["--listen-peer-urls", &self.peer_url(), "--initial-advertise-peer-urls", &self.peer_url()])
            .args(["--initial-cluster", initial_cluster, "--initial-cluster-state", state])
            .args(["--initial-cluster-token", "etcd-api-test"])
            .args(["--trusted-ca-file", &ssl("ca.pem"), "--client-cert-auth"])
            .args(["--cert-file", &ssl("server.pem"), "--key-file", &ssl("server-key.pem")])
            .args(["--peer-trusted-ca-file", &ssl("ca.pem"), "--peer-client-cert-auth"])
            .args(["--peer-cert-file", &ssl("peer.pem"), "--peer-key-file", &ssl("peer-key.pem")])
            .args(["--heartbeat-interval", "50", "--election-timeout", "500"])
            .stdout(Stdio::null())
            .stderr(Stdio::from(std::fs::File::create(self.dir.join("log")).unwrap()));
        self.child = Some(cmd.spawn().expect("start etcd"));
    }

    fn client(&self, tls: &EtcdTls) -> EtcdClient {
        EtcdClient::tls(TcpConnect { address: format!("127.0.0.1:{}", self.client_port) }, tls).unwrap()
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for TlsMember {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `n` members started as one cluster, plus `spare` prepared but not started; waits for health.
async fn cluster(
    root: &Path,
    pki: &ClusterPki,
    n: usize,
    spare: usize,
    netns: Option<&str>,
) -> Vec<TlsMember> {
    let mut members: Vec<TlsMember> =
        (0..n + spare).map(|i| TlsMember::new(root, pki, &format!("e{i}"))).collect();
    let initial: Vec<String> = members[..n].iter().map(TlsMember::initial).collect();
    for m in &mut members[..n] {
        m.start(&initial.join(","), "new", netns);
    }
    if netns.is_none() {
        let tls = client_tls(pki);
        for m in &members[..n] {
            let c = m.client(&tls);
            eventually(WAIT, &format!("{} healthy", m.name), || async {
                matches!(c.health().await, Ok(Ok(()))).then_some(())
            })
            .await;
        }
    }
    members
}

#[tokio::test]
async fn members_status_and_health_over_mutual_tls() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(3);
    let members = cluster(dir.path(), &pki, 3, 0, None).await;
    let tls = client_tls(&pki);
    let etcd = members[1].client(&tls);
    let mut names: Vec<String> = etcd.member_list().await.unwrap().into_iter().map(|m| m.name).collect();
    names.sort();
    assert_eq!(names, ["e0", "e1", "e2"]);
    let status = etcd.status().await.unwrap();
    assert!(status.version.starts_with("3.4."), "{status:?}");
    assert!(status.is_serving() && status.member_id != 0 && status.db_size > 0, "{status:?}");
    let listed = etcd.member_list().await.unwrap();
    assert!(listed.iter().any(|m| m.id == status.member_id && m.name == "e1"), "{listed:?}");
    assert!(listed.iter().any(|m| m.id == status.leader), "the leader is a member: {listed:?}");
}

#[tokio::test]
async fn a_learner_joins_is_promoted_and_a_member_is_removed() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(4);
    let mut members = cluster(dir.path(), &pki, 3, 1, None).await;
    let tls = client_tls(&pki);
    let etcd = members[0].client(&tls);

    // etcd refuses membership changes ("unhealthy cluster", 503) until every member has been
    // connected for 5 s: a transient refusal.
    let peer = [members[3].peer_url()];
    let added = eventually(WAIT, "the learner added", || async {
        match etcd.member_add(&peer, true).await {
            Ok(added) => Some(added),
            Err(e) if e.is_transient() => None,
            Err(e) => panic!("{e}"),
        }
    })
    .await;
    assert!(added.member.is_learner && added.member.name.is_empty(), "{:?}", added.member);
    assert_eq!(added.members.len(), 4);
    let initial: Vec<String> = members.iter().map(TlsMember::initial).collect();
    members[3].start(&initial.join(","), "existing", None);

    // etcd refuses to promote a learner that has not caught up yet: that refusal is transient.
    let promoted = eventually(WAIT, "the learner promoted", || async {
        match etcd.member_promote(added.member.id).await {
            Ok(members) => Some(members),
            Err(e) if e.is_transient() => None,
            Err(e) => panic!("{e}"),
        }
    })
    .await;
    let e3 = promoted.iter().find(|m| m.id == added.member.id).unwrap();
    assert!(!e3.is_learner && e3.name == "e3", "{e3:?}");
    let new = members[3].client(&tls);
    eventually(WAIT, "e3 healthy", || async { matches!(new.health().await, Ok(Ok(()))).then_some(()) }).await;

    let e1 = promoted.iter().find(|m| m.name == "e1").unwrap().id;
    let after = match etcd.member_remove(e1).await {
        Ok(a) => a,
        Err(e) => {
            for m in &members {
                eprintln!(
                    "=== {}\n{}",
                    m.name,
                    std::fs::read_to_string(m.dir.join("log")).unwrap_or_default()
                );
            }
            panic!("{e}");
        }
    };
    let mut names: Vec<&str> = after.iter().map(|m| m.name.as_str()).collect();
    names.sort();
    assert_eq!(names, ["e0", "e2", "e3"]);
    // When e1 led, the others elect a leader first (seconds on a loaded machine): until then a
    // membership call waits for one.
    eventually(WAIT, "a leader other than e1", || async {
        etcd.status().await.ok().filter(|s| s.leader != 0 && s.leader != e1).map(drop)
    })
    .await;
    // Removing it again names the call and etcd's reason.
    let err = etcd.member_remove(e1).await.unwrap_err();
    assert!(matches!(err, EtcdError::Refused { call: "member remove", .. }), "{err}");
    assert!(err.to_string().contains("member not found"), "{err}");
    // Promoting a voter is refused too, and not worth retrying.
    let err = etcd.member_promote(added.member.id).await.unwrap_err();
    assert!(!err.is_transient(), "{err}");
}

#[tokio::test]
async fn a_snapshot_is_streamed_with_its_sha256_and_etcdctl_reads_it() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(1);
    let members = cluster(dir.path(), &pki, 1, 0, None).await;
    let tls = client_tls(&pki);
    let etcd = members[0].client(&tls);
    let path = dir.path().join("snap.db");
    let mut file = tokio::fs::File::create(&path).await.unwrap();
    let info = etcd.snapshot(&mut file).await.unwrap();
    drop(file);
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(info.size, bytes.len() as u64);
    assert_eq!(info.sha256, hex::encode(Sha256::digest(&bytes)));
    assert!(info.size > 4096, "{info:?}");
    // etcdctl checks the trailer and reads the database.
    let out = Command::new("etcdctl").args(["snapshot", "status", "-w", "json"]).arg(&path).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"totalKey\""), "{out:?}");
}

#[tokio::test]
async fn dead_endpoints_wrong_cas_and_silent_servers_are_told_apart() {
    let pki = pki(1);
    let tls = client_tls(&pki);
    let port = free_port();
    let dead = EtcdClient::tls(TcpConnect { address: format!("127.0.0.1:{port}") }, &tls).unwrap();
    let err = dead.member_list().await.unwrap_err();
    assert!(matches!(err, EtcdError::Connect { call: "member list", .. }) && err.is_transient(), "{err}");
    assert!(err.to_string().contains(&format!("127.0.0.1:{port}")), "{err}");

    // A server that accepts and never answers: the deadline, named.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = silent.local_addr().unwrap().to_string();
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = silent.accept().await {
            held.push(s);
        }
    });
    let slow = EtcdClient::plain(TcpConnect { address }).with_timeout(Duration::from_millis(500));
    let err = slow.status().await.unwrap_err();
    assert!(matches!(err, EtcdError::Timeout { call: "status", .. }), "{err}");
    hold.abort();

    // A member whose certificate another CA signed: the TLS handshake fails.
    let dir = tempfile::tempdir().unwrap();
    let members = cluster(dir.path(), &pki, 1, 0, None).await;
    let other = client_tls(&self::pki(1));
    let err = members[0].client(&other).status().await.unwrap_err();
    assert!(matches!(err, EtcdError::Connect { .. }) && err.to_string().contains("TLS"), "{err}");

    let mut bad = tls.clone();
    bad.key_pem = "not a key".to_owned().into();
    let err = EtcdClient::tls(TcpConnect { address: "127.0.0.1:1".into() }, &bad).unwrap_err();
    assert_eq!(err.to_string(), "etcd client TLS: the client key is not a PEM private key");
}

#[tokio::test]
async fn through_an_ssh_host_to_etcd_on_its_loopback() {
    let hosts = SshHosts::start(1);
    let h = &hosts.hosts()[0];
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(1);
    let _members = cluster(dir.path(), &pki, 1, 0, Some(h.netns())).await;
    let port = _members[0].client_port;
    let target = SshTarget {
        address: h.address().to_owned(),
        port: h.ssh_port(),
        user: hosts.user().to_owned(),
        key: hosts.client_key().to_owned().into(),
        host_key: HostKeyPolicy::Pinned(vec![h.host_public_key()]),
    };
    let session = Arc::new(SshSession::connect(&target, None, Duration::from_secs(10)).await.unwrap());
    // Nothing listens on the root namespace's port: only the host reaches it.
    let direct =
        EtcdClient::tls(TcpConnect { address: format!("127.0.0.1:{port}") }, &client_tls(&pki)).unwrap();
    assert!(matches!(direct.status().await, Err(EtcdError::Connect { .. })));

    let connect = SshConnect { session: session.clone(), host: "127.0.0.1".into(), port };
    let etcd = EtcdClient::tls(connect, &client_tls(&pki)).unwrap();
    eventually(WAIT, "etcd in the host healthy", || async {
        matches!(etcd.health().await, Ok(Ok(()))).then_some(())
    })
    .await;
    let members = etcd.member_list().await.unwrap();
    assert_eq!(members.len(), 1);
    assert_eq!(members[0].name, "e0");
    let mut snapshot = Vec::new();
    let info = etcd.snapshot(&mut snapshot).await.unwrap();
    assert_eq!(info.sha256, hex::encode(Sha256::digest(&snapshot)));

    // A port nothing listens on in the host: the host could not connect, said as such.
    let closed = EtcdClient::tls(
        SshConnect { session, host: "127.0.0.1".into(), port: free_port() },
        &client_tls(&pki),
    )
    .unwrap();
    let err = closed.status().await.unwrap_err();
    assert!(matches!(err, EtcdError::Connect { .. }), "{err}");
    assert!(err.to_string().contains("could not connect"), "{err}");
}

/// A server that answers every connection with `answer` (a whole HTTP/1.1 response) once it has read
/// a request head.
async fn canned(answer: Vec<u8>) -> (String, tokio::task::JoinHandle<()>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let task = tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let answer = answer.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = s.write_all(&answer).await;
                let _ = s.shutdown().await;
            });
        }
    });
    (address, task)
}

fn http(status: &str, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

#[tokio::test]
async fn answers_are_read_as_the_gateway_writes_them_and_bounded() {
    // Numbers where the gateway writes strings are accepted too.
    let (address, task) =
        canned(http("200 OK", r#"{"members":[{"ID":12,"name":"a","isLearner":true}]}"#)).await;
    let m = EtcdClient::plain(TcpConnect { address }).member_list().await.unwrap();
    assert_eq!((m[0].id, m[0].name.as_str(), m[0].is_learner), (12, "a", true));
    task.abort();

    let refusal =
        r#"{"error":"etcdserver: member not found","code":5,"message":"etcdserver: member not found"}"#;
    let (address, task) = canned(http("404 Not Found", refusal)).await;
    let err = EtcdClient::plain(TcpConnect { address }).member_remove(7).await.unwrap_err();
    match &err {
        EtcdError::Refused { call: "member remove", status: 404, message, .. } => {
            assert_eq!(message, "etcdserver: member not found")
        }
        other => panic!("{other:?}"),
    }
    assert!(!err.is_transient());
    task.abort();

    let huge = format!(r#"{{"members":[],"pad":"{}"}}"#, "x".repeat(2 << 20));
    let (address, task) = canned(http("200 OK", &huge)).await;
    let err = EtcdClient::plain(TcpConnect { address }).member_list().await.unwrap_err();
    assert!(matches!(err, EtcdError::BadAnswer { .. }) && err.to_string().contains("larger than"), "{err}");
    task.abort();

    let (address, task) = canned(http("200 OK", "<html>")).await;
    let err = EtcdClient::plain(TcpConnect { address }).status().await.unwrap_err();
    assert!(matches!(err, EtcdError::BadAnswer { call: "status", .. }), "{err}");
    task.abort();

    let (address, task) =
        canned(http("503 Service Unavailable", r#"{"health":"false","reason":"RAFT NO LEADER"}"#)).await;
    assert_eq!(
        EtcdClient::plain(TcpConnect { address }).health().await.unwrap(),
        Err("RAFT NO LEADER".into())
    );
    task.abort();

    let err = EtcdClient::plain(TcpConnect { address: "127.0.0.1:1".into() })
        .member_add(&[], true)
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "etcd member add: no peer URL");
    let bad = ["10.0.0.1:2380".to_owned()];
    let err = EtcdClient::plain(TcpConnect { address: "127.0.0.1:1".into() })
        .member_add(&bad, true)
        .await
        .unwrap_err();
    assert!(matches!(err, EtcdError::InvalidInput { .. }), "{err}");
}
