//! Hosted clusters' bad input and faults, through the server and `rancherctl`, against the GKE and
//! Azure stand-ins: an invalid config is refused by the API before any cloud call; a wrong, revoked
//! or another user's credential gives a `Provisioned` condition that says so (no secret in it or in
//! the log); a create the cloud fails shows the cloud's message, can be deleted (and deleting a
//! cluster already gone at the cloud succeeds), and — on AKS — is retried after the user fixes the
//! spec; throttling is retried after the `Retry-After` the cloud gave.

use std::path::Path;
use std::time::Duration;

use rancher_provision::hosted::gke::{GkeClient, GkeOptions, Location};

use rancher_test_support::gke::{GkeStandIn, GkeStandInOptions};
use serde_json::{Value, json};

use crate::hosted_aks::{RG, aks_yaml, azure_with_server};
use crate::hosted_support::Hosted;
use crate::import_support::*;

const ZONE: &str = "us-central1-a";
const USER_PASSWORD: &str = "bob-password-1234";

fn gke_yaml(credential: &str, cluster: &str) -> String {
    format!(
        r#"googleCredentialSecret: {credential}
projectID: rancher-rs-test
zone: {ZONE}
clusterName: {cluster}
kubernetesVersion: "1.29"
nodePools:
  - name: pool-a
    initialNodeCount: 1
    config:
      machineType: e2-standard-4
  - name: pool-b
    initialNodeCount: 2
    config:
      machineType: e2-standard-2
"#
    )
}

/// `(status, reason, message)` of the cluster's `Provisioned` condition.
fn provisioned(cluster: &Value) -> Option<(String, String, String)> {
    let c = cluster["status"]["conditions"].as_array()?.iter().find(|c| c["type"] == "Provisioned")?;
    let s = |k: &str| c[k].as_str().unwrap_or_default().to_owned();
    Some((s("status"), s("reason"), s("message")))
}

/// Waits until `name`'s `Provisioned` condition has `status` and a message containing `needle`.
async fn wait_provisioned(h: &Hosted, name: &str, status: &str, needle: &str) -> (String, String, String) {
    eventually(WAIT, &format!("{name}: Provisioned={status} with {needle:?}"), || {
        let c = h.cluster(name);
        async move { provisioned(&c).filter(|(s, _, m)| s == status && m.contains(needle)) }
    })
    .await
}

/// `POST /v3/clusters` as the admin: the status and the body.
async fn post_cluster(h: &Hosted, body: Value) -> (u16, String) {
    let bearer = login(&h.server.url).await;
    let resp = insecure_client()
        .post(format!("{}/v3/clusters", h.server.url))
        .bearer_auth(bearer)
        .json(&body)
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

/// The GKE stand-in, a server that trusts it, and the admin's credential `gke-key`.
async fn gke_setup(dir: &Path) -> (GkeStandIn, Hosted) {
    let gke = GkeStandIn::start(GkeStandInOptions {
        operation_time: Duration::from_millis(300),
        ..Default::default()
    })
    .await;
    let ca = dir.join("gke-ca.pem");
    std::fs::write(&ca, gke.ca_pem()).unwrap();
    let h =
        Hosted::start(dir, &["--gke-api-url", gke.base_url(), "--cloud-ca-file", ca.to_str().unwrap()]).await;
    let key = dir.join("key.json");
    std::fs::write(&key, gke.service_account_json()).unwrap();
    h.ok(&["credential", "create", "gcp", "gke-key", "--key-file", key.to_str().unwrap()]);
    (gke, h)
}

/// The base64 body of the `private_key` in a service-account key JSON, a line of it.
fn key_fragment(key_json: &str) -> String {
    let v: Value = serde_json::from_str(key_json).unwrap();
    let pem = v["private_key"].as_str().unwrap();
    pem.lines().filter(|l| !l.starts_with("-----")).nth(2).unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gke_refuses_bad_input_and_reports_refused_or_foreign_credentials() {
    install_crypto();
    let dir = tempfile::tempdir().unwrap();
    let (gke, h) = gke_setup(dir.path()).await;

    // An invalid config: 422 naming the field, and Google hears nothing.
    let mut config: Value = serde_saphyr::from_str(&gke_yaml("gke-key", "Bad_Name")).unwrap();
    let (status, body) =
        post_cluster(&h, json!({"metadata": {"name": "bad"}, "spec": {"gkeConfig": config.clone()}})).await;
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("spec.gkeConfig.clusterName"), "{body}");
    config["clusterName"] = json!("ok-name");
    config["nodePools"][1]["initialNodeCount"] = json!(-2);
    let (status, body) =
        post_cluster(&h, json!({"metadata": {"name": "bad"}, "spec": {"gkeConfig": config}})).await;
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("spec.gkeConfig.nodePools[1].initialNodeCount"), "{body}");
    assert!(cluster_row(&h.home, "bad").is_none(), "nothing was stored");

    // A standard user naming the admin's credential: refused by the API naming the field (as not
    // found), nothing stored, and nothing sent to Google.
    h.ok(&["user", "create", "bob", "--password", USER_PASSWORD]);
    let bob = dir.path().join("home-bob");
    std::fs::create_dir_all(&bob).unwrap();
    let (ok, out) = rancherctl(
        &bob,
        &["login", &h.server.url, "--username", "bob", "--password", USER_PASSWORD, "--insecure"],
    );
    assert!(ok, "{out}");
    let file = dir.path().join("theirs.yaml");
    std::fs::write(&file, gke_yaml("gke-key", "bobs-gke")).unwrap();
    let (ok, out) =
        rancherctl(&bob, &["cluster", "create", "bobs", "--gke", file.to_str().unwrap(), "--no-wait"]);
    assert!(!ok, "{out}");
    assert!(
        out.contains("spec.gkeConfig.googleCredentialSecret")
            && out.contains("cloud credential \"gke-key\" not found"),
        "{out}"
    );
    assert!(cluster_row(&h.home, "bobs").is_none(), "nothing was stored");
    assert!(gke.calls().is_empty(), "Google was called: {:?}", gke.calls());

    // A key Google does not know (deleted, or another account's): the condition says Google refused it.
    let wrong_json = gke.unknown_key_json();
    let wrong = dir.path().join("wrong.json");
    std::fs::write(&wrong, &wrong_json).unwrap();
    h.ok(&["credential", "create", "gcp", "wrong-key", "--key-file", wrong.to_str().unwrap()]);
    std::fs::write(&file, gke_yaml("wrong-key", "wrong-gke")).unwrap();
    h.ok(&["cluster", "create", "wrong", "--gke", file.to_str().unwrap(), "--no-wait"]);
    let (_, _, message) = wait_provisioned(&h, "wrong", "False", "rejected the credentials").await;
    assert!(message.contains("invalid_grant"), "{message}");
    assert!(gke.calls().iter().all(|c| c.path == "/token"), "only the sign-in was tried");
    assert!(gke.cluster(ZONE, "wrong-gke").is_none());
    let wrong_cluster = h.cluster("wrong").to_string();
    assert!(!wrong_cluster.contains(&key_fragment(&wrong_json)), "the key in the cluster: {wrong_cluster}");

    // Credentials revoked while a create runs: the next look at the operation says so.
    gke.hold_operations(true);
    std::fs::write(&file, gke_yaml("gke-key", "revoked-gke")).unwrap();
    h.ok(&["cluster", "create", "revoked", "--gke", file.to_str().unwrap(), "--no-wait"]);
    eventually(WAIT, "the create is in flight", || {
        let c = h.cluster("revoked");
        async move { c["status"]["gkeStatus"]["operation"]["id"].as_str().map(str::to_owned) }
    })
    .await;
    assert_eq!(gke.cluster(ZONE, "revoked-gke").unwrap()["status"], "PROVISIONING");
    gke.revoke_credentials();
    let (_, _, message) = wait_provisioned(&h, "revoked", "False", "rejected the credentials").await;
    wait_state(&h.home, "revoked", "error", WAIT).await;
    let log = read_log(&h.log);
    for (what, secret) in
        [("the wrong key", key_fragment(&wrong_json)), ("the key", key_fragment(&gke.service_account_json()))]
    {
        assert!(!log.contains(&secret), "{what} in the server's log");
        assert!(!message.contains(&secret), "{what} in the condition");
    }
    let leaks: Vec<&str> = log.lines().filter(|l| l.contains("ya29.")).collect();
    assert!(leaks.is_empty(), "an access token in the server's log: {leaks:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gke_throttling_is_retried_and_a_failed_create_is_shown_and_deleted() {
    install_crypto();
    let dir = tempfile::tempdir().unwrap();
    let (gke, h) = gke_setup(dir.path()).await;
    let file = dir.path().join("gke.yaml");

    // Throttled: the same call again after the Retry-After Google gave, then on.
    gke.throttle_next(2, Duration::from_secs(1));
    std::fs::write(&file, gke_yaml("gke-key", "first-gke")).unwrap();
    h.ok(&["cluster", "create", "first", "--gke", file.to_str().unwrap(), "--no-wait"]);
    eventually(WAIT, "the throttled create got through", || {
        let c = gke.cluster(ZONE, "first-gke");
        async move { c.filter(|c| c["status"] == "RUNNING") }
    })
    .await;
    let api: Vec<_> = gke.calls().into_iter().filter(|c| c.path.starts_with("/v1/")).collect();
    assert_eq!(api.iter().filter(|c| c.status == 429).count(), 2, "{api:?}");
    assert!(api[0].status == 429 && api[1].status == 429 && api[2].status != 429, "{api:?}");
    assert!(api[..3].iter().all(|c| c.path == api[0].path && c.method == api[0].method), "{api:?}");
    for pair in api[..3].windows(2) {
        let waited = pair[1].at.duration_since(pair[0].at);
        assert!(waited >= Duration::from_secs(1), "retried after {waited:?}, before the Retry-After");
        assert!(waited < Duration::from_secs(4), "retried after {waited:?}");
    }
    let (status, _, message) = provisioned(&h.cluster("first")).unwrap_or_default();
    assert_ne!(status, "False", "{message}");

    // A create Google fails: the cluster shows Google's message.
    let quota = "Insufficient regional quota to satisfy request: resource \"CPUS\": request requires '12.0'";
    gke.fail_next_operation(quota);
    std::fs::write(&file, gke_yaml("gke-key", "broken-gke")).unwrap();
    h.ok(&["cluster", "create", "broken", "--gke", file.to_str().unwrap(), "--no-wait"]);
    let (_, reason, message) = wait_provisioned(&h, "broken", "False", quota).await;
    assert!(message.contains("failed at Google"), "{reason}: {message}");
    wait_state(&h.home, "broken", "error", WAIT).await;
    assert_eq!(gke.cluster(ZONE, "broken-gke").unwrap()["status"], "ERROR");

    // Deleting it deletes what Google has.
    h.ok(&["cluster", "rm", "broken"]);
    h.wait_gone("broken").await;
    assert!(gke.cluster(ZONE, "broken-gke").is_none(), "the failed cluster is deleted at Google");

    // Another failed create that someone already deleted at Google: deleting it in Rancher succeeds.
    gke.fail_next_operation(quota);
    std::fs::write(&file, gke_yaml("gke-key", "gone-gke")).unwrap();
    h.ok(&["cluster", "create", "gone", "--gke", file.to_str().unwrap(), "--no-wait"]);
    wait_provisioned(&h, "gone", "False", quota).await;
    let options = GkeOptions {
        base_url: gke.base_url().to_owned(),
        extra_ca_pem: Some(gke.ca_pem().to_owned()),
        ..Default::default()
    };
    let client = GkeClient::from_key_json(&gke.service_account_json().into(), options).unwrap();
    client.delete_cluster(&Location::new(gke.project_id(), ZONE), "gone-gke").await.unwrap();
    eventually(WAIT, "gone-gke deleted at Google", || {
        let gone = gke.cluster(ZONE, "gone-gke").is_none();
        async move { gone.then_some(()) }
    })
    .await;
    let before = gke.calls().len();
    h.ok(&["cluster", "rm", "gone"]);
    h.wait_gone("gone").await;
    let after: Vec<_> = gke.calls()[before..].iter().map(|c| format!("{} {}", c.method, c.path)).collect();
    assert!(after.iter().all(|c| c.starts_with("GET ")), "only looked: {after:?}");
    assert!(gke.cluster(ZONE, "gone-gke").is_none(), "not created again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aks_bad_config_refused_throttling_retried_failed_create_fixed_and_deleted() {
    install_crypto();
    let dir = tempfile::tempdir().unwrap();
    let (azure, _sim, h) = azure_with_server(dir.path(), "aks-faults", 1).await;

    // An invalid config: 422 naming the field, and Azure hears nothing.
    let mut config: Value =
        serde_saphyr::from_str(&aks_yaml(&azure, "quota-aks", "1.29.7", 5, false)).unwrap();
    config["nodePools"][1]["name"] = json!("User_Pool");
    let (status, body) =
        post_cluster(&h, json!({"metadata": {"name": "quota"}, "spec": {"aksConfig": config}})).await;
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("spec.aksConfig.nodePools[1].name"), "{body}");
    assert!(azure.calls().is_empty(), "Azure was called: {:?}", azure.calls());

    // Throttled, then a create Azure fails for want of quota.
    let quota =
        "Operation could not be completed as it results in exceeding approved standardDSv2Family Cores quota";
    azure.throttle_next(2, 1);
    azure.fail_next_operation("QuotaExceeded", quota);
    let file = dir.path().join("aks.yaml");
    std::fs::write(&file, aks_yaml(&azure, "quota-aks", "1.29.7", 5, false)).unwrap();
    h.ok(&["cluster", "create", "quota", "--aks", file.to_str().unwrap(), "--no-wait"]);
    let (_, _, message) = wait_provisioned(&h, "quota", "False", quota).await;
    assert!(message.contains("QuotaExceeded"), "{message}");
    wait_state(&h.home, "quota", "error", WAIT).await;
    let calls: Vec<_> = azure.calls().into_iter().filter(|c| !c.path.ends_with("/token")).collect();
    assert!(calls[0].status == 429 && calls[1].status == 429 && calls[2].status != 429, "{calls:?}");
    for pair in calls[..3].windows(2) {
        assert_eq!(pair[1].path, pair[0].path, "the throttled call is the one retried");
        let waited = pair[1].at.duration_since(pair[0].at);
        assert!(waited >= Duration::from_secs(1), "retried after {waited:?}, before the Retry-After");
    }
    assert_eq!(azure.cluster(RG, "quota-aks").unwrap()["properties"]["provisioningState"], "Failed");

    // The user asks for fewer nodes: the change re-runs the create, which now gets through.
    std::fs::write(&file, aks_yaml(&azure, "quota-aks", "1.29.7", 1, false)).unwrap();
    h.ok(&["cluster", "update", "quota", "--aks", file.to_str().unwrap(), "--no-wait"]);
    eventually(WAIT, "the fixed cluster runs at Azure", || {
        let c = azure.cluster(RG, "quota-aks");
        async move {
            let c = c?;
            let user1 =
                c["properties"]["agentPoolProfiles"].as_array()?.iter().find(|p| p["name"] == "user1")?;
            (c["properties"]["provisioningState"] == "Succeeded" && user1["count"] == 1).then_some(())
        }
    })
    .await;
    wait_provisioned(&h, "quota", "True", "").await;

    // Deleting it deletes it at Azure.
    h.ok(&["cluster", "rm", "quota"]);
    h.wait_gone("quota").await;
    assert!(azure.cluster(RG, "quota-aks").is_none(), "deleted at Azure");
    assert!(
        !read_log(&h.log).contains(&azure.config().client_secret),
        "the client secret in the server's log"
    );
}
