//! The SSH client against real sshd hosts (`rancher_test_support::ssh_hosts`): commands, uploads,
//! refused keys, changed host keys, dead links and a bastion.

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use rancher_provision::ssh::{HostKeyPolicy, MAX_OUTPUT, SshError, SshSession, SshTarget};
use rancher_test_support::ssh_hosts::{SshHost, SshHosts};
use sha2::{Digest, Sha256};

const TIMEOUT: Duration = Duration::from_secs(10);

fn target(hosts: &SshHosts, host: &SshHost, policy: HostKeyPolicy) -> SshTarget {
    SshTarget {
        address: host.address().to_owned(),
        port: host.ssh_port(),
        user: hosts.user().to_owned(),
        key: hosts.client_key().to_owned().into(),
        host_key: policy,
    }
}

fn pinned(host: &SshHost) -> HostKeyPolicy {
    HostKeyPolicy::Pinned(vec![host.host_public_key()])
}

/// A fresh ed25519 private key no host knows.
fn stranger_key() -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("k");
    let st = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&path)
        .status()
        .unwrap();
    assert!(st.success());
    std::fs::read_to_string(path).unwrap()
}

#[tokio::test]
async fn exec_reports_exit_status_and_both_streams() {
    let hosts = SshHosts::start(1);
    let h = &hosts.hosts()[0];
    let s =
        SshSession::connect(&target(&hosts, h, HostKeyPolicy::TrustOnFirstUse), None, TIMEOUT).await.unwrap();
    assert_eq!(s.host_key(), h.host_public_key(), "trust on first use reports the key to pin");

    let out = s.exec("echo out; hostname; echo err >&2; exit 3").await.unwrap();
    assert_eq!(
        (out.status, out.stdout_text().as_str(), out.stderr_text().as_str()),
        (3, "out\nnode1\n", "err\n")
    );
    assert!(!out.truncated);

    match s.run("echo boom >&2; exit 4").await.unwrap_err() {
        SshError::Remote { status: 4, stderr_tail, host, .. } => {
            assert_eq!((stderr_tail.as_str(), host), ("boom", format!("{}:22", h.address())))
        }
        other => panic!("{other:?}"),
    }
    let out = s.exec("kill -TERM $$").await.unwrap();
    assert_eq!(out.status, 128 + 15);

    let out = s.exec("head -c 1100000 /dev/zero; echo fine >&2").await.unwrap();
    assert_eq!((out.stdout.len(), out.truncated, out.stderr_text().as_str()), (MAX_OUTPUT, true, "fine\n"));

    // The session carries many commands, also concurrently.
    let (a, b) = tokio::join!(s.run("sleep 0.3; echo a"), s.run("echo b"));
    assert_eq!((a.unwrap().stdout_text(), b.unwrap().stdout_text()), ("a\n".into(), "b\n".into()));
}

#[tokio::test]
async fn an_upload_arrives_whole_with_its_mode_on_that_host_only() {
    let hosts = SshHosts::start(2);
    let (h1, h2) = (&hosts.hosts()[0], &hosts.hosts()[1]);
    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().join("agent");
    let data: Vec<u8> = (0..20u32 << 20).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    std::fs::write(&local, &data).unwrap();
    let want = hex::encode(Sha256::digest(&data));

    let s = SshSession::connect(&target(&hosts, h1, pinned(h1)), None, TIMEOUT).await.unwrap();
    let started = Instant::now();
    let sha = s.upload(local.as_path(), "/srv/node/bin/agent", 0o750).await.unwrap();
    eprintln!("20 MiB upload + check: {:?}", started.elapsed());
    assert_eq!(sha, want);

    let landed = h1.root_dir().join("bin/agent");
    assert_eq!(std::fs::read(&landed).unwrap(), data);
    assert_eq!(std::fs::metadata(&landed).unwrap().permissions().mode() & 0o7777, 0o750);
    assert!(!h2.root_dir().join("bin").exists(), "host 2's /srv/node is its own");
    let names: Vec<_> =
        std::fs::read_dir(h1.root_dir().join("bin")).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, ["agent"], "no temporary file stays behind");
    assert_eq!(
        s.run("sha256sum /srv/node/bin/agent").await.unwrap().stdout_text().split(' ').next(),
        Some(&*want)
    );

    // Replacing with bytes works too, and a wrong expected checksum leaves the old file in place.
    let sha = s.upload(&b"v2\n"[..], "/srv/node/bin/agent", 0o755).await.unwrap();
    assert_eq!(sha, hex::encode(Sha256::digest(b"v2\n")));
    let wrong = "0".repeat(64);
    match s.upload_verified(local.as_path(), "/srv/node/bin/agent", 0o755, &wrong).await.unwrap_err() {
        // What arrived is what was sent: the source is wrong, not the transfer.
        SshError::SourceMismatch { host, path, expected, actual } => {
            assert_eq!((host, path), (format!("{}:22", h1.address()), "/srv/node/bin/agent".to_owned()));
            assert_eq!((expected, actual), (wrong, want.clone()));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(std::fs::read(&landed).unwrap(), b"v2\n");
    let names: Vec<_> =
        std::fs::read_dir(h1.root_dir().join("bin")).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, ["agent"], "the garbled copy was removed");
    let sha =
        s.upload_verified(local.as_path(), "/srv/node/bin/agent", 0o755, &want.to_uppercase()).await.unwrap();
    assert_eq!(sha, want);

    for bad in ["relative/path", "/srv/node/dir/"] {
        let err = s.upload(&b"x"[..], bad, 0o644).await.unwrap_err();
        assert!(matches!(err, SshError::InvalidInput { .. }), "{bad}: {err:?}");
    }
    // A destination under a file: the directory cannot be made, and the error says so.
    let err = s.upload(&b"x"[..], "/srv/node/bin/agent/x", 0o644).await.unwrap_err();
    match &err {
        SshError::Remote { stderr_tail, .. } => assert!(stderr_tail.contains("File exists"), "{err}"),
        other => panic!("{other:?}"),
    }
    let err = s.upload(std::path::Path::new("/nonexistent/agent"), "/srv/node/x", 0o644).await.unwrap_err();
    assert!(matches!(err, SshError::Local { .. }), "{err:?}");
}

#[tokio::test]
async fn a_key_the_host_does_not_know_is_refused_and_a_bad_key_is_never_shown() {
    let hosts = SshHosts::start(1);
    let h = &hosts.hosts()[0];
    let mut t = target(&hosts, h, pinned(h));
    t.key = stranger_key().into();
    match SshSession::connect(&t, None, TIMEOUT).await.unwrap_err() {
        SshError::Auth { host, user } => {
            assert_eq!((host, user), (format!("{}:22", h.address()), "root".into()))
        }
        other => panic!("{other:?}"),
    }
    t.key = "-----BEGIN OPENSSH PRIVATE KEY-----\nc2VjcmV0LWtleS1tYXRlcmlhbA==\n-----END OPENSSH PRIVATE KEY-----\n"
        .to_owned()
        .into();
    let err = SshSession::connect(&t, None, TIMEOUT).await.unwrap_err();
    let shown = format!("{err} {err:?}");
    assert!(matches!(err, SshError::Key(_)), "{err:?}");
    assert!(!shown.contains("c2VjcmV0"), "{shown}");
    assert!(!err.is_transient());
}

#[tokio::test]
async fn a_changed_host_key_is_refused_naming_both_fingerprints() {
    let hosts = SshHosts::start(1);
    let h = &hosts.hosts()[0];
    let t = target(&hosts, h, pinned(h));
    let s = SshSession::connect(&t, None, TIMEOUT).await.unwrap();
    let old_fp = s.host_key_fingerprint();

    h.regenerate_host_key(); // restarts sshd: the open session ends
    match s.exec("true").await.unwrap_err() {
        SshError::Disconnected { host } => assert_eq!(host, format!("{}:22", h.address())),
        other => panic!("{other:?}"),
    }
    assert!(rancher_test_support::within(Duration::from_secs(5), || async { s.is_closed() }).await);
    match SshSession::connect(&t, None, TIMEOUT).await.unwrap_err() {
        SshError::HostKeyChanged { host, expected, actual } => {
            assert_eq!(host, format!("{}:22", h.address()));
            assert_eq!(expected, old_fp);
            assert!(actual.starts_with("SHA256:") && actual != expected, "{actual}");
        }
        other => panic!("{other:?}"),
    }
    // Pinning the new key (next to the old one, as during a rotation) lets it in again.
    let t = target(&hosts, h, HostKeyPolicy::Pinned(vec![t_pin(&t), h.known_hosts_line()]));
    let s = SshSession::connect(&t, None, TIMEOUT).await.unwrap();
    assert_eq!(s.host_key(), h.host_public_key());
}

fn t_pin(t: &SshTarget) -> String {
    match &t.host_key {
        HostKeyPolicy::Pinned(p) => p[0].clone(),
        HostKeyPolicy::TrustOnFirstUse => unreachable!(),
    }
}

#[tokio::test]
async fn a_dead_link_or_closed_port_fails_within_the_timeout() {
    let hosts = SshHosts::start(1);
    let h = &hosts.hosts()[0];
    let mut t = target(&hosts, h, pinned(h));

    t.port = 2222; // nothing listens there: refused at once
    let started = Instant::now();
    let err = SshSession::connect(&t, None, Duration::from_secs(5)).await.unwrap_err();
    assert!(matches!(err, SshError::Unreachable { .. }), "{err:?}");
    assert!(err.is_transient() && started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());

    t.port = 22;
    let s = SshSession::connect(&t, None, TIMEOUT).await.unwrap();
    h.set_link(false);
    let timeout = Duration::from_millis(1500);
    let started = Instant::now();
    let err = SshSession::connect(&t, None, timeout).await.unwrap_err();
    let took = started.elapsed();
    assert!(matches!(err, SshError::Unreachable { .. } | SshError::Timeout { .. }), "{err:?}");
    assert!(err.is_transient());
    assert!(took < timeout + Duration::from_millis(500), "{took:?}");
    assert!(err.to_string().starts_with(&format!("{}:22: ", h.address())), "{err}");

    // A command on a session whose link is cut does not answer; once the link is back it does.
    let pending = tokio::time::timeout(Duration::from_millis(700), s.exec("echo late")).await;
    assert!(pending.is_err(), "{pending:?}");
    h.set_link(true);
    assert_eq!(s.run("echo back").await.unwrap().stdout_text(), "back\n");
}

#[tokio::test]
async fn a_host_is_reached_through_a_bastion() {
    let hosts = SshHosts::start(2);
    let (h1, h2) = (&hosts.hosts()[0], &hosts.hosts()[1]);
    let bastion = target(&hosts, h1, pinned(h1));
    let inner = target(&hosts, h2, pinned(h2));

    let s = SshSession::connect(&inner, Some(&bastion), TIMEOUT).await.unwrap();
    let out = s.run("hostname; echo $SSH_CONNECTION").await.unwrap().stdout_text();
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("node2"));
    let client = lines.next().unwrap().split(' ').next().unwrap().to_owned();
    assert_eq!(client, h1.address(), "host 2 sees the bastion as its client");
    s.upload(&b"through\n"[..], "/srv/node/f", 0o600).await.unwrap();
    assert_eq!(std::fs::read(h2.root_dir().join("f")).unwrap(), b"through\n");

    // Directly, host 2 sees the root namespace's bridge address instead.
    let direct = SshSession::connect(&inner, None, TIMEOUT).await.unwrap();
    let out = direct.run("echo $SSH_CONNECTION").await.unwrap().stdout_text();
    assert_eq!(out.split(' ').next(), Some(h2.bridge_address()));

    // The bastion cannot reach a closed port: the error names the target.
    let mut closed = inner.clone();
    closed.port = 2222;
    match SshSession::connect(&closed, Some(&bastion), TIMEOUT).await.unwrap_err() {
        SshError::Unreachable { host, .. } => assert_eq!(host, format!("{}:2222", h2.address())),
        other => panic!("{other:?}"),
    }
    // A changed key of the inner host is caught through the bastion too.
    let mut wrong = inner.clone();
    wrong.host_key = pinned(h1);
    assert!(matches!(
        SshSession::connect(&wrong, Some(&bastion), TIMEOUT).await.unwrap_err(),
        SshError::HostKeyChanged { .. }
    ));
}

#[tokio::test]
async fn connecting_costs_little() {
    let hosts = SshHosts::start(2);
    let h = &hosts.hosts()[0];
    let t = target(&hosts, h, pinned(h));
    let started = Instant::now();
    for _ in 0..5 {
        let s = SshSession::connect(&t, None, TIMEOUT).await.unwrap();
        s.run("true").await.unwrap();
        s.close().await;
    }
    let per = started.elapsed() / 5;
    eprintln!("connect + authenticate + one command: {per:?}");
    let s = SshSession::connect(&t, None, TIMEOUT).await.unwrap();
    let started = Instant::now();
    for _ in 0..10 {
        s.run("true").await.unwrap();
    }
    eprintln!("one command on an open session: {:?}", started.elapsed() / 10);
    let inner = target(&hosts, &hosts.hosts()[1], pinned(&hosts.hosts()[1]));
    let started = Instant::now();
    for _ in 0..3 {
        SshSession::connect(&inner, Some(&t), TIMEOUT).await.unwrap().run("true").await.unwrap();
    }
    eprintln!("the same through a bastion: {:?}", started.elapsed() / 3);
    // Generous for a loaded two-core machine; a login shell sourcing rc files would add ~0.3 s each.
    assert!(per < Duration::from_secs(2), "{per:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_whose_link_dies_fails_as_a_lost_connection_and_leaves_no_file() {
    let hosts = SshHosts::start(1);
    let h = &hosts.hosts()[0];
    let s = SshSession::connect(&target(&hosts, h, pinned(h)), None, TIMEOUT).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().join("big");
    std::fs::write(&local, vec![7u8; 64 << 20]).unwrap();
    h.limit_rate(Some("100mbit"));
    let bin = h.root_dir().join("bin");
    let cut = async {
        loop {
            let part = std::fs::read_dir(&bin).ok().and_then(|d| {
                d.filter_map(Result::ok).find(|e| e.metadata().is_ok_and(|m| m.len() > (1 << 20)))
            });
            if part.is_some() {
                h.set_link(false);
                return Instant::now();
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    let upload = s.upload(local.as_path(), "/srv/node/bin/big", 0o755);
    let (result, cut_at) = tokio::join!(tokio::time::timeout(Duration::from_secs(120), upload), cut);
    let err = result.expect("the upload ends").unwrap_err();
    eprintln!("failed {:?} after the cut: {err}", cut_at.elapsed());
    assert!(matches!(err, SshError::Disconnected { .. }) && err.is_transient(), "{err:?}");
    assert!(cut_at.elapsed() < Duration::from_secs(60), "{:?}", cut_at.elapsed());
    h.set_link(true);
    assert!(!h.root_dir().join("bin/big").exists());
}
