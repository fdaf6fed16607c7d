//! `rancher-server --store etcd` against a real etcd: objects live in etcd, so a second server process
//! on a fresh data directory sees what the first one stored; servers given the same secrets key share
//! the CA and the registration key kept in etcd, and a server with another key is refused at start;
//! without etcd quorum a server serves reads, answers writes 503 and recovers by itself.
//! Needs `etcd` on PATH (`scripts/test.sh` installs it).
#![cfg(feature = "etcd")]

use rancher_test_support::etcd::Etcd;

use crate::common::{ADMIN_PASSWORD, Api, ServerProc};
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
async fn objects_stored_in_etcd_are_seen_by_a_second_server() {
    let etcd = Etcd::start(1).await;
    let dir = tempfile::tempdir().unwrap();
    let endpoint = etcd.endpoints().remove(0);
    let key = dir.path().join("secrets.key");
    std::fs::write(&key, [5u8; 32]).unwrap();
    let key = key.to_str().unwrap();
    let args = ["--store", "etcd", "--etcd-endpoints", endpoint.as_str(), "--secrets-key-file", key];

    let first = ServerProc::start(&dir.path().join("first"), 0, Some(ADMIN_PASSWORD), &args);
    let admin = Api::new(&first).logged_in("admin", ADMIN_PASSWORD).await;
    let created = admin.post("/v3/clusters", &json!({"metadata": {"name": "in-etcd"}})).await;
    assert_eq!(created.code, 201, "{}", created.body);
    let stale_version = created.body["metadata"]["resourceVersion"].as_str().unwrap().to_owned();
    let first_ca = first.ca_pem();
    first.stop_async().await;

    // A second server with its own data directory and the same secrets key reads the same etcd: the
    // cluster and the bootstrap admin are there, and a write with a stale version is still refused.
    let second = ServerProc::start(&dir.path().join("second"), 0, Some(ADMIN_PASSWORD), &args);
    assert_eq!(second.ca_pem(), first_ca, "the CA is the one the first server made, from etcd");
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
    crate::common::assert_status(&refused, 409, "Conflict");
    let after = admin.get("/v3/clusters/in-etcd").await;
    assert_eq!(after.body["spec"]["description"], "updated through the second server");
}

/// Replicas sharing one etcd and one secrets key: agents pin one CA and registration tokens made
/// through one replica are accepted by the other; a replica given another key does not start.
#[tokio::test(flavor = "multi_thread")]
async fn replicas_share_the_ca_and_registration_tokens_and_refuse_another_secrets_key() {
    let etcd = Etcd::start(1).await;
    let dir = tempfile::tempdir().unwrap();
    let endpoint = etcd.endpoints().remove(0);
    let key = dir.path().join("secrets.key");
    std::fs::write(&key, [6u8; 32]).unwrap();
    let args = |key: &str| {
        ["--store", "etcd", "--etcd-endpoints", endpoint.as_str(), "--secrets-key-file", key]
            .map(str::to_owned)
    };
    let shared = args(key.to_str().unwrap());
    let shared: Vec<&str> = shared.iter().map(String::as_str).collect();
    let a = ServerProc::start(&dir.path().join("a"), 0, Some(ADMIN_PASSWORD), &shared);
    let b = ServerProc::start(&dir.path().join("b"), 0, Some(ADMIN_PASSWORD), &shared);
    assert_eq!(a.ca_pem(), b.ca_pem());
    let cacerts = |s: &ServerProc| {
        let api = Api::new(s);
        async move { api.get("/v3/settings/cacerts").await.body["value"].clone() }
    };
    assert_eq!(cacerts(&a).await, cacerts(&b).await, "agents pin the same checksum on either replica");

    let admin_a = Api::new(&a).logged_in("admin", ADMIN_PASSWORD).await;
    let created = admin_a
        .post("/v3/clusters", &json!({"metadata": {"name": "shared"}, "spec": {"importedConfig": {}}}))
        .await;
    assert_eq!(created.code, 201, "{}", created.body);
    let crt = admin_a.get("/v3/clusterregistrationtokens/shared:default-token").await;
    let token = crt.body["status"]["token"].as_str().unwrap().to_owned();
    // The manifest URL made by replica a works on replica b (the same registration key), and a
    // flipped token does not.
    let on_b = Api::new(&b);
    let manifest = on_b.get(&format!("/v3/import/{token}_shared.yaml")).await;
    assert_eq!(manifest.code, 200, "{}", manifest.body);
    let flipped: String = token.chars().rev().collect();
    assert_eq!(on_b.get(&format!("/v3/import/{flipped}_shared.yaml")).await.code, 404);

    // A replica with its own key cannot open the shared CA: it says so and exits.
    let other = dir.path().join("other.key");
    std::fs::write(&other, [7u8; 32]).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rancher-server"))
        .arg("--data-dir")
        .arg(dir.path().join("c"))
        .args(["--https-listen", "127.0.0.1:0"])
        .args(args(other.to_str().unwrap()))
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("serving-ca") && stderr.contains("--secrets-key-file"), "{stderr}");
    assert_eq!(a.ca_pem(), b.ca_pem(), "nothing in the store changed");
    assert_eq!(on_b.get(&format!("/v3/import/{token}_shared.yaml")).await.code, 200);
    a.stop_async().await;
    b.stop_async().await;
}

/// Whether `server`'s `/metrics` says it runs the controllers that run once.
async fn leads(server: &ServerProc) -> bool {
    let metrics = Api::new(server).get("/metrics").await;
    let text = metrics.body.as_str().unwrap_or_default().to_owned();
    assert!(text.contains("rancher_controllers_leader"), "{text}");
    text.lines().any(|l| l == "rancher_controllers_leader 1")
}

/// Creates an imported cluster through `api` and waits until the controllers have summed it up (the
/// `Waiting` condition: no agent yet), which only the leader's controllers write.
async fn handled_within(api: &Api, name: &str, within: std::time::Duration) -> std::time::Duration {
    let created =
        api.post("/v3/clusters", &json!({"metadata": {"name": name}, "spec": {"importedConfig": {}}})).await;
    assert_eq!(created.code, 201, "{}", created.body);
    let start = std::time::Instant::now();
    loop {
        let got = api.get(&format!("/v3/clusters/{name}")).await;
        let conditions = got.body["status"]["conditions"].as_array().cloned().unwrap_or_default();
        if conditions.iter().any(|c| c["type"] == "Waiting") {
            return start.elapsed();
        }
        assert!(start.elapsed() < within, "{name} was not handled within {within:?}: {}", got.body);
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// Of two replicas one runs the controllers that must run once; when it stops the other takes over
/// at once (the lease is released), and when it dies without a word, once the lease runs out.
#[tokio::test(flavor = "multi_thread")]
async fn one_replica_runs_the_controllers_and_another_takes_over_when_it_stops_or_dies() {
    use std::time::Duration;
    let etcd = Etcd::start(1).await;
    let dir = tempfile::tempdir().unwrap();
    let endpoint = etcd.endpoints().remove(0);
    let key = dir.path().join("secrets.key");
    std::fs::write(&key, [8u8; 32]).unwrap();
    let args = [
        "--store",
        "etcd",
        "--etcd-endpoints",
        endpoint.as_str(),
        "--secrets-key-file",
        key.to_str().unwrap(),
    ];
    let (dir_a, dir_b) = (dir.path().join("a"), dir.path().join("b"));
    let a = ServerProc::start(&dir_a, 0, Some(ADMIN_PASSWORD), &args);
    let b = ServerProc::start(&dir_b, 0, Some(ADMIN_PASSWORD), &args);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !(leads(&a).await || leads(&b).await) {
        assert!(std::time::Instant::now() < deadline, "nobody leads");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (leader, follower, leader_dir) = if leads(&a).await { (a, b, dir_a) } else { (b, a, dir_b) };
    assert!(!leads(&follower).await, "one leader at a time");
    let on_follower = Api::new(&follower).logged_in("admin", ADMIN_PASSWORD).await;
    handled_within(&on_follower, "first", Duration::from_secs(10)).await;

    // Stopped: it releases the lease, and the follower leads within a retry period or two.
    leader.stop_async().await;
    let took = handled_within(&on_follower, "second", Duration::from_secs(8)).await;
    assert!(leads(&follower).await);
    eprintln!("a stopped leader's controllers ran again on the other replica within {took:?}");

    // Restarted on its directory (its name), it stands without taking the lease back.
    let again = ServerProc::start(&leader_dir, 0, Some(ADMIN_PASSWORD), &args);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(!leads(&again).await && leads(&follower).await);

    // The leader dies (SIGKILL, no release): the other takes over once the 15 s lease has run out.
    let mut dead = follower;
    dead.child.kill().unwrap();
    dead.child.wait().unwrap();
    let on_again = Api::new(&again).logged_in("admin", ADMIN_PASSWORD).await;
    let took = handled_within(&on_again, "third", Duration::from_secs(25)).await;
    assert!(took >= Duration::from_secs(10), "not before the lease ran out: {took:?}");
    assert!(leads(&again).await);
    eprintln!("a killed leader's controllers ran again on the other replica within {took:?}");
    again.stop_async().await;
}

/// etcd loses its quorum under a server (two of three members gone): the server keeps answering reads
/// of what the store holds, refuses writes with a 503 `Status`, stops leading the controllers (its lease
/// cannot be renewed), and once a member is back takes writes again without a restart.
#[tokio::test(flavor = "multi_thread")]
async fn without_etcd_quorum_reads_are_served_writes_get_503_and_both_come_back() {
    use std::time::Duration;

    use rancher_test_support::{eventually, within};
    let mut etcd = Etcd::start(3).await;
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("secrets.key");
    std::fs::write(&key, [9u8; 32]).unwrap();
    // The server reaches the member that stays, as a replica cut off with it would.
    let endpoint = etcd.members[0].client_url.clone();
    let args =
        ["--store", "etcd", "--etcd-endpoints", &endpoint, "--secrets-key-file", key.to_str().unwrap()];
    let server = ServerProc::start(&dir.path().join("s"), 0, Some(ADMIN_PASSWORD), &args);
    let admin = Api::new(&server).logged_in("admin", ADMIN_PASSWORD).await;
    let created = admin.post("/v3/clusters", &json!({"metadata": {"name": "before"}})).await;
    assert_eq!(created.code, 201, "{}", created.body);

    etcd.members[1].kill();
    etcd.members[2].kill();
    let refused = admin.post("/v3/clusters", &json!({"metadata": {"name": "during"}})).await;
    crate::common::assert_status(&refused, 503, "ServiceUnavailable");
    assert!(refused.body["message"].as_str().unwrap().contains("try again later"), "{}", refused.body);
    let got = admin.get("/v3/clusters/before").await;
    assert_eq!(got.code, 200, "{}", got.body);
    let listed = admin.get("/v3/clusters").await;
    assert_eq!(listed.code, 200, "{}", listed.body);
    let stopped_leading = within(Duration::from_secs(30), || async { !leads(&server).await }).await;
    assert!(stopped_leading, "still leading the controllers without quorum");

    etcd.members[1].restart();
    etcd.wait_ready(1).await;
    eventually(Duration::from_secs(60), "writes to come back", || async {
        let created = admin.post("/v3/clusters", &json!({"metadata": {"name": "after"}})).await;
        (created.code == 201).then_some(())
    })
    .await;
    let leads_again = within(Duration::from_secs(30), || leads(&server)).await;
    assert!(leads_again, "did not lead the controllers again");
    server.stop_async().await;
}
