//! Certificate rotation and expiry of clusters on SSH hosts, without hosts: the `rotateCertificates`
//! action stamps `spec.rkeConfig.rotate_certificates` for whoever may update the cluster (validated
//! like any update), `rancherctl cluster rotate-certs` sends it, and `rancherctl cluster certs`
//! prints the expiry table from `status.certificatesExpiration`. Carrying a rotation out over real
//! hosts is the day-two end-to-end test's.

use std::path::Path;
use std::process::Output;

use crate::common::{ADMIN_PASSWORD, Api, assert_status, err, install_crypto, ok};
use crate::rke_config::InProcess;
use rancher_core::model::{CertExpiration, Cluster};
use rancher_core::store::Api as StoreApi;
use rancher_core::{ConditionStatus, Conditions};
use serde_json::json;

/// `rancherctl` (see [`crate::rke_config::ctl`]) off the runtime's threads.
pub(crate) async fn ctl(home: &Path, args: &[&str]) -> Output {
    let (home, args) = (home.to_owned(), args.iter().map(|a| (*a).to_owned()).collect::<Vec<_>>());
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        crate::rke_config::ctl(&home, &args)
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_is_asked_for_checked_and_certificates_are_listed() {
    install_crypto();
    let dir = tempfile::tempdir().unwrap();
    let InProcess { store, http, url, ca_file, admin, stop, task } = InProcess::start(dir.path()).await;

    let nodes = json!([{"address": "10.0.0.1", "role": ["etcd", "controlplane", "worker"]}]);
    let body =
        json!({"metadata": {"name": "c-rke"}, "spec": {"rkeConfig": {"ssh_key": "k", "nodes": nodes}}});
    assert_eq!(admin.post("/v3/clusters", &body).await.code, 201);
    let imported = json!({"metadata": {"name": "c-imp"}, "spec": {}});
    assert_eq!(admin.post("/v3/clusters", &imported).await.code, 201);
    let clusters = StoreApi::<Cluster>::all(store.clone());
    let request =
        || async { clusters.get("c-rke").await.unwrap().spec.rke_config.unwrap().rotate_certificates };
    let action = "/v3/clusters/c-rke?action=rotateCertificates";

    // New CAs: stamped with the time of the request.
    let a = admin.post(action, &json!({"caCertificates": true})).await;
    assert_eq!(a.code, 200, "{}", a.body);
    assert_eq!(a.body["type"], "rotateCertificateOutput");
    assert!(a.body["message"].as_str().unwrap().contains("with new CAs"), "{}", a.body);
    let first = request().await.expect("stored");
    assert!(first.ca_certificates && first.services.is_empty());
    let first_at: jiff::Timestamp = first.requested_at.parse().expect("an RFC 3339 time");
    // Rancher's single-service shape; each request has a later time than the last.
    let a = admin.post(action, &json!({"caCertificates": false, "services": "kubelet"})).await;
    assert_eq!(a.code, 200, "{}", a.body);
    let second = request().await.unwrap();
    assert_eq!(
        (second.ca_certificates, second.services.as_slice()),
        (false, ["kubelet".to_owned()].as_slice())
    );
    assert!(second.requested_at.parse::<jiff::Timestamp>().unwrap() > first_at);

    // Refused, naming the field and the known names; nothing stored.
    let a = admin.post(action, &json!({"services": ["etcd", "kube-proxy"]})).await;
    assert_status(&a, 422, "Invalid");
    assert_eq!(a.body["details"]["causes"][0]["field"], "spec.rkeConfig.rotate_certificates.services[1]");
    let message = a.body["message"].as_str().unwrap();
    assert!(
        message
            .contains("kube-controller-manager, kube-scheduler, kubelet; these clusters run no kube-proxy"),
        "{message}"
    );
    let a = admin.post(action, &json!({"caCertificates": true, "services": "etcd"})).await;
    assert_status(&a, 422, "Invalid");
    assert_eq!(request().await.unwrap(), second);
    let a = admin.post(action, &json!({"newCa": true})).await;
    assert_status(&a, 400, "BadRequest");
    let a = admin.post("/v3/clusters/c-imp?action=rotateCertificates", &json!({})).await;
    assert_status(&a, 409, "Conflict");
    assert_status(
        &admin.post("/v3/clusters/c-none?action=rotateCertificates", &json!({})).await,
        404,
        "NotFound",
    );

    // A standard user may not update the cluster: refused, nothing stored.
    let u =
        admin.post("/v3/users", &json!({"spec": {"username": "bob", "password": "a-password-1234"}})).await;
    assert_eq!(u.code, 201, "{}", u.body);
    let bob =
        Api { http: http.clone(), url: url.clone(), token: None }.logged_in("bob", "a-password-1234").await;
    let a = bob.post(action, &json!({"caCertificates": true})).await;
    assert_status(&a, 403, "Forbidden");
    assert_eq!(request().await.unwrap(), second);

    // rancherctl: rotate-certs sends the request; certs prints the expiry table from the status.
    let home = dir.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    ok(&ctl(
        &home,
        &["login", &url, "-u", "admin", "-p", ADMIN_PASSWORD, "--cacert", ca_file.to_str().unwrap()],
    )
    .await);
    let out = ok(&ctl(
        &home,
        &[
            "cluster",
            "rotate-certs",
            "c-rke",
            "--service",
            "etcd",
            "--service",
            "kube-scheduler",
            "--no-wait",
        ],
    )
    .await);
    assert!(out.contains("rotating the certificates of etcd, kube-scheduler of cluster c-rke"), "{out}");
    assert_eq!(request().await.unwrap().services, ["etcd", "kube-scheduler"]);
    let e = err(&ctl(&home, &["cluster", "rotate-certs", "c-rke", "--service", "dns", "--no-wait"]).await);
    assert!(e.contains("unknown service \"dns\""), "{e}");
    let e = err(&ctl(&home, &["cluster", "certs", "c-rke"]).await);
    assert!(e.contains("shows no certificates"), "{e}");

    let now = jiff::Timestamp::now();
    let in_days = |d: i64| {
        (now + jiff::SignedDuration::from_hours(24 * d) + jiff::SignedDuration::from_secs(600)).to_string()
    };
    let mut c = clusters.get("c-rke").await.unwrap();
    c.status.certificates_expiration = [
        ("kube-ca", "kube-ca", in_days(3650)),
        ("kube-apiserver", "kube-apiserver", in_days(12)),
        ("kube-node-10.0.0.1", "system:node:10.0.0.1", in_days(200)),
    ]
    .into_iter()
    .map(|(n, cn, at)| (n.to_owned(), CertExpiration { expiration_date: at, common_name: cn.to_owned() }))
    .collect();
    c.status.conditions.set_condition(
        "CertificatesExpiring",
        ConditionStatus::True,
        "ExpiresSoon",
        "kube-apiserver expires soon",
    );
    clusters.update(&c).await.unwrap();
    let table = ok(&ctl(&home, &["cluster", "certs", "c-rke"]).await);
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("CERTIFICATE") && lines[0].ends_with("DAYS LEFT"), "{table}");
    assert!(lines[1].starts_with("kube-apiserver") && lines[1].ends_with(" 12"), "{table}");
    assert!(lines[2].contains("system:node:10.0.0.1") && lines[2].ends_with(" 200"), "{table}");
    assert!(lines[3].starts_with("kube-ca") && lines[3].ends_with(" 3650"), "{table}");
    assert!(table.contains("warning: kube-apiserver expires soon"), "{table}");
    let json: serde_json::Value =
        serde_json::from_str(&ok(&ctl(&home, &["cluster", "certs", "c-rke", "-o", "json"]).await)).unwrap();
    assert_eq!(json["kube-apiserver"]["expirationDate"], in_days(12));

    stop.cancel();
    task.await.unwrap();
}
