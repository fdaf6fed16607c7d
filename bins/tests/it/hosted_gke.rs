//! GKE end to end, all through `rancherctl`, against the GKE stand-in (`container/v1` + its token
//! endpoint) whose clusters' endpoints are `rancher-sim`s that accept the stand-in's access tokens
//! (a TokenReview webhook, as GKE's control planes accept Google tokens): create with two node pools
//! → the server deploys the agent through the cluster's endpoint → the test plays kubelet and starts
//! it → `active` → kubectl through the proxy → scale a pool → upgrade (the control plane first, then
//! each pool, each step in the cluster's status) → delete (gone at Google); then import an existing
//! cluster and delete it from Rancher only.

use std::time::Duration;

use rancher_test_support::gke::{GkeStandIn, GkeStandInOptions};
use serde_json::Value;

use crate::hosted_support::{Hosted, kubectl_out};
use crate::import_support::*;

const ZONE: &str = "us-central1-a";

fn gke_yaml(cluster: &str, version: &str, pool_a: u32, imported: bool) -> String {
    format!(
        r#"googleCredentialSecret: gke-key
projectID: rancher-rs-test
zone: {ZONE}
clusterName: {cluster}
imported: {imported}
kubernetesVersion: "{version}"
labels:
  team: platform
nodePools:
  - name: pool-a
    initialNodeCount: {pool_a}
    config:
      machineType: e2-standard-4
      diskSizeGb: 50
  - name: pool-b
    initialNodeCount: 2
    config:
      machineType: e2-standard-2
      diskSizeGb: 30
"#
    )
}

fn pool_count(cluster: &Value, pool: &str) -> Option<u64> {
    cluster["nodePools"].as_array()?.iter().find(|p| p["name"] == pool)?["initialNodeCount"].as_u64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gke_create_scale_upgrade_delete_and_import_through_rancherctl() {
    install_crypto();
    let dir = tempfile::tempdir().unwrap();
    let gke = GkeStandIn::start(GkeStandInOptions {
        operation_time: Duration::from_millis(300),
        default_version: "1.29.4-gke.1043002".into(),
        ..Default::default()
    })
    .await;
    let sim = rancher_sim::Sim::builder()
        .name("gke-prod")
        .nodes(3)
        .auth_webhook(gke.token_review_url(), Some(gke.ca_pem().to_owned()))
        .start()
        .await
        .unwrap();
    gke.set_cluster_endpoint(&sim.addr().to_string(), sim.ca_pem());
    let ca = dir.path().join("gke-ca.pem");
    std::fs::write(&ca, gke.ca_pem()).unwrap();
    let h = Hosted::start(
        dir.path(),
        &["--gke-api-url", gke.base_url(), "--cloud-ca-file", ca.to_str().unwrap()],
    )
    .await;
    let key = dir.path().join("key.json");
    std::fs::write(&key, gke.service_account_json()).unwrap();
    h.ok(&["credential", "create", "gcp", "gke-key", "--key-file", key.to_str().unwrap()]);

    // Create with two node pools; nothing is sent for a config that does not pass the checks.
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, gke_yaml("Prod_GKE", "1.29", 1, false)).unwrap();
    let out = h.fails(&["cluster", "create", "prod", "--gke", bad.to_str().unwrap(), "--no-wait"]);
    assert!(out.contains("spec.gkeConfig.clusterName"), "{out}");
    let file = dir.path().join("gke.yaml");
    std::fs::write(&file, gke_yaml("prod-gke", "1.29", 1, false)).unwrap();
    h.ok(&["cluster", "create", "prod", "--gke", file.to_str().unwrap(), "--no-wait"]);
    let created = eventually(WAIT, "the GKE cluster exists", || {
        let c = gke.cluster(ZONE, "prod-gke");
        async move { c }
    })
    .await;
    assert_eq!(pool_count(&created, "pool-a"), Some(1));
    assert_eq!(pool_count(&created, "pool-b"), Some(2));

    // The server deploys the agent through the cluster's endpoint with a Google access token.
    let _agent = h.start_deployed_agent(&sim, dir.path(), "sim").await;
    let row = wait_state(&h.home, "prod", "active", WAIT).await;
    assert_eq!(row[2], "GKE", "{row:?}");
    let cluster = h.cluster("prod");
    assert_eq!(cluster["status"]["gkeStatus"]["phase"], "RUNNING", "{cluster}");
    let upstream = &cluster["status"]["gkeStatus"]["upstreamSpec"];
    assert_eq!(upstream["nodePools"].as_array().map(Vec::len), Some(2), "{upstream}");

    // kubectl through the server's proxy.
    let kubeconfig = dir.path().join("prod.kubeconfig");
    std::fs::write(&kubeconfig, h.ok(&["kubeconfig", "prod"])).unwrap();
    let nodes = kubectl_out(&kubeconfig, &["get", "nodes", "-o", "name"]);
    assert_eq!(nodes.lines().count(), 3, "{nodes}");

    // Scale a pool.
    std::fs::write(&file, gke_yaml("prod-gke", "1.29", 3, false)).unwrap();
    h.ok(&["cluster", "update", "prod", "--gke", file.to_str().unwrap(), "--no-wait"]);
    eventually(WAIT, "pool-a has 3 nodes in the status", || {
        let c = h.cluster("prod");
        async move {
            let up = &c["status"]["gkeStatus"]["upstreamSpec"];
            (pool_count(up, "pool-a") == Some(3) && c["status"]["gkeStatus"]["operation"].is_null())
                .then_some(())
        }
    })
    .await;
    assert_eq!(pool_count(&gke.cluster(ZONE, "prod-gke").unwrap(), "pool-a"), Some(3));
    assert_eq!(pool_count(&gke.cluster(ZONE, "prod-gke").unwrap(), "pool-b"), Some(2), "pool-b untouched");

    // Upgrade: the control plane first, then each pool, one at a time, each step in the status.
    let before = gke.calls().len();
    std::fs::write(&file, gke_yaml("prod-gke", "1.30", 3, false)).unwrap();
    h.ok(&["cluster", "update", "prod", "--gke", file.to_str().unwrap(), "--no-wait"]);
    let mut seen: Vec<String> = Vec::new();
    eventually(Duration::from_secs(120), "every pool at 1.30", || {
        let c = h.cluster("prod");
        let message = c["status"]["provisioning"]["message"].as_str().unwrap_or_default().to_owned();
        if message.starts_with("upgrading") && seen.last() != Some(&message) {
            seen.push(message);
        }
        let g = gke.cluster(ZONE, "prod-gke").unwrap();
        async move {
            let pools = g["nodePools"].as_array().cloned().unwrap_or_default();
            let all = pools.iter().all(|p| p["version"].as_str().is_some_and(|v| v.starts_with("1.30")));
            (all && c["status"]["gkeStatus"]["operation"].is_null()).then_some(())
        }
    })
    .await;
    assert_eq!(
        seen.iter().map(|m| m.split(" 1.").next().unwrap_or_default()).collect::<Vec<_>>(),
        ["upgrading the control plane", "upgrading node pool pool-a", "upgrading node pool pool-b"],
        "{seen:?}"
    );
    let changes: Vec<String> = gke.calls()[before..]
        .iter()
        .filter(|c| c.method != "GET" && c.path.starts_with("/v1/"))
        .map(|c| c.path.rsplit('/').next().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(changes, ["prod-gke:updateMaster", "pool-a", "pool-b"], "{changes:?}");
    wait_state(&h.home, "prod", "active", WAIT).await;

    // Delete: gone at Google, then from Rancher.
    h.ok(&["cluster", "rm", "prod"]);
    eventually(WAIT, "the GKE cluster is deleted", || {
        let gone = gke.cluster(ZONE, "prod-gke").is_none();
        async move { gone.then_some(()) }
    })
    .await;
    h.wait_gone("prod").await;

    // Import an existing cluster (on a second sim); deleting it in Rancher leaves it at Google.
    let sim2 = rancher_sim::Sim::builder()
        .name("gke-existing")
        .nodes(1)
        .auth_webhook(gke.token_review_url(), Some(gke.ca_pem().to_owned()))
        .start()
        .await
        .unwrap();
    gke.set_cluster_endpoint(&sim2.addr().to_string(), sim2.ca_pem());
    gke.insert_running_cluster(
        ZONE,
        serde_json::json!({"name": "existing", "nodePools": [{"name": "pool-a", "initialNodeCount": 1}]}),
    );
    let writes = || gke.calls().iter().filter(|c| c.method != "GET" && c.path.starts_with("/v1/")).count();
    let writes_before_import = writes();
    let imp = dir.path().join("import.yaml");
    std::fs::write(&imp, gke_yaml("existing", "1.29", 1, true)).unwrap();
    h.ok(&["cluster", "create", "existing", "--gke", imp.to_str().unwrap(), "--no-wait"]);
    let _agent2 = h.start_deployed_agent(&sim2, dir.path(), "sim2").await;
    wait_state(&h.home, "existing", "active", WAIT).await;
    h.ok(&["cluster", "rm", "existing"]);
    h.wait_gone("existing").await;
    assert!(gke.cluster(ZONE, "existing").is_some(), "an imported cluster stays at Google");
    assert_eq!(writes(), writes_before_import, "nothing was changed at Google for the imported cluster");
    let log = read_log(&h.log);
    assert!(!log.contains("ya29."), "an access token in the server's log");
}
