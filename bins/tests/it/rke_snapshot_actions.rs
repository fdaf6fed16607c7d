//! The etcd snapshot actions of clusters on SSH hosts, without hosts: `backupEtcd` and
//! `restoreFromEtcdBackup` are for whoever may update the cluster, refused with a reason on a
//! cluster not built on hosts or not provisioned yet, and a restore names a snapshot the cluster
//! has; `rancherctl cluster snapshot ls` prints `status.etcdSnapshots`. Taking, uploading and
//! restoring on real hosts is `rke_snapshots`'s.

use crate::common::{ADMIN_PASSWORD, Api, assert_status, err, install_crypto, ok};
use crate::rke_certs::ctl;
use crate::rke_config::InProcess;
use rancher_core::model::{Cluster, EtcdSnapshot, EtcdSnapshotS3};
use rancher_core::store::Api as StoreApi;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_actions_are_checked_and_the_list_comes_from_the_status() {
    install_crypto();
    let dir = tempfile::tempdir().unwrap();
    let InProcess { store, http, url, ca_file, admin, stop, task } = InProcess::start(dir.path()).await;

    // 10.0.0.1 is never reached: the cluster stays unprovisioned.
    let nodes = json!([{"address": "10.0.0.1", "role": ["etcd", "controlplane", "worker"]}]);
    let body =
        json!({"metadata": {"name": "c-rke"}, "spec": {"rkeConfig": {"ssh_key": "k", "nodes": nodes}}});
    assert_eq!(admin.post("/v3/clusters", &body).await.code, 201);
    let imported = json!({"metadata": {"name": "c-imp"}, "spec": {}});
    assert_eq!(admin.post("/v3/clusters", &imported).await.code, 201);
    let clusters = StoreApi::<Cluster>::all(store.clone());
    let backup = "/v3/clusters/c-rke?action=backupEtcd";
    let restore = "/v3/clusters/c-rke?action=restoreFromEtcdBackup";

    // Not provisioned: nothing to snapshot, and no snapshot to restore.
    let a = admin.post(backup, &json!({})).await;
    assert_status(&a, 409, "Conflict");
    let message = a.body["message"].as_str().unwrap();
    assert!(message.contains("cluster c-rke has not been provisioned yet"), "{message}");
    let a = admin.post(restore, &json!({"etcdBackupId": "c-rke-manual-20261203150405"})).await;
    assert_status(&a, 422, "Invalid");
    assert_eq!(a.body["details"]["causes"][0]["field"], "etcdBackupId");
    assert!(a.body["message"].as_str().unwrap().contains("cluster c-rke has no snapshot"), "{}", a.body);
    assert_status(&admin.post(restore, &json!({})).await, 422, "Invalid");
    assert_status(&admin.post(restore, &json!({"snapshot": "x"})).await, 400, "BadRequest");
    assert_status(&admin.post(backup, &json!({"now": true})).await, 400, "BadRequest");
    assert!(clusters.get("c-rke").await.unwrap().spec.rke_config.unwrap().restore.is_none());

    // Not built on hosts, or not there.
    for action in ["backupEtcd", "restoreFromEtcdBackup"] {
        let a =
            admin.post(&format!("/v3/clusters/c-imp?action={action}"), &json!({"etcdBackupId": "x"})).await;
        assert_status(&a, 409, "Conflict");
        assert!(a.body["message"].as_str().unwrap().contains("not built on hosts"), "{}", a.body);
        let a = admin.post(&format!("/v3/clusters/c-none?action={action}"), &json!({})).await;
        assert_status(&a, 404, "NotFound");
    }

    // A standard user may not update the cluster.
    let u =
        admin.post("/v3/users", &json!({"spec": {"username": "bob", "password": "a-password-1234"}})).await;
    assert_eq!(u.code, 201, "{}", u.body);
    let bob =
        Api { http: http.clone(), url: url.clone(), token: None }.logged_in("bob", "a-password-1234").await;
    assert_status(&bob.post(backup, &json!({})).await, 403, "Forbidden");
    assert_status(&bob.post(restore, &json!({"etcdBackupId": "x"})).await, 403, "Forbidden");

    // rancherctl: the list from the status; create says why it cannot.
    let home = dir.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    ok(&ctl(
        &home,
        &["login", &url, "-u", "admin", "-p", ADMIN_PASSWORD, "--cacert", ca_file.to_str().unwrap()],
    )
    .await);
    let out = ok(&ctl(&home, &["cluster", "snapshot", "ls", "c-rke"]).await);
    assert_eq!(out, "cluster c-rke has no etcd snapshots\n");
    let e = err(&ctl(&home, &["cluster", "snapshot", "create", "c-imp"]).await);
    assert!(e.contains("not built on hosts"), "{e}");
    let e = err(&ctl(&home, &["cluster", "snapshot", "restore", "c-rke", "nope", "--no-wait"]).await);
    assert!(e.contains("cluster c-rke has no snapshot \"nope\""), "{e}");

    let mut c = clusters.get("c-rke").await.unwrap();
    let snapshot = |name: &str, kind: &str, s3: EtcdSnapshotS3| EtcdSnapshot {
        name: name.into(),
        kind: kind.into(),
        created_at: "2026-12-03T15:04:05Z".into(),
        size: 20512,
        sha256: "ab".repeat(32),
        hosts: vec!["10.0.0.1".into()],
        s3: Some(s3),
    };
    c.status.etcd_snapshots = vec![
        snapshot(
            "c-rke-manual-20261203150405",
            "manual",
            EtcdSnapshotS3 {
                bucket: "snaps".into(),
                key: "c-rke-manual-20261203150405.db".into(),
                error: "".into(),
            },
        ),
        snapshot(
            "c-rke-recurring-20261203160000",
            "recurring",
            EtcdSnapshotS3 { bucket: "snaps".into(), key: "".into(), error: "connection refused".into() },
        ),
    ];
    clusters.update(&c).await.unwrap();
    let table = ok(&ctl(&home, &["cluster", "snapshot", "ls", "c-rke"]).await);
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("NAME") && lines[0].ends_with("S3"), "{table}");
    assert!(
        lines[1].starts_with("c-rke-manual-20261203150405")
            && lines[1].ends_with("s3://snaps/c-rke-manual-20261203150405.db"),
        "{table}"
    );
    assert!(
        lines[2].contains("recurring") && lines[2].ends_with("upload failed: connection refused"),
        "{table}"
    );
    let listed: serde_json::Value =
        serde_json::from_str(&ok(&ctl(&home, &["cluster", "snapshot", "ls", "c-rke", "-o", "json"]).await))
            .unwrap();
    assert_eq!(listed[1]["s3"], json!({"bucket": "snaps", "error": "connection refused"}));

    stop.cancel();
    task.await.unwrap();
}
