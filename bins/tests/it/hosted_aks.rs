//! AKS end to end, all through `rancherctl`, against the Azure stand-in (the identity platform's
//! token endpoint + AKS's Resource Manager paths) whose clusters' admin kubeconfigs point at a
//! `rancher-sim`: an Azure cloud credential → create with two node pools → the server deploys the
//! agent through the cluster's endpoint with the admin credentials Azure hands out → the test plays
//! kubelet and starts it → `active` → kubectl through the proxy → scale a pool → upgrade (the
//! control plane first, then each pool, each step in the cluster's status) → delete (gone at
//! Azure); then import an existing cluster and delete it from Rancher only.

use std::path::Path;
use std::time::Duration;

use rancher_test_support::aks::{AksStandIn, AksStandInConfig, KubeTarget};
use serde_json::Value;

use crate::hosted_support::{Hosted, kubectl_out};
use crate::import_support::*;

pub(crate) const RG: &str = "rg-rancher";

/// An `aksConfig` (Rancher's field names) pointing at the stand-in, both pools at `version`.
pub(crate) fn aks_yaml(
    azure: &AksStandIn,
    cluster: &str,
    version: &str,
    user_pool: u32,
    imported: bool,
) -> String {
    let base = azure.base_url();
    format!(
        r#"azureCredentialSecret: aks-cred
resourceLocation: eastus
resourceGroup: {RG}
clusterName: {cluster}
imported: {imported}
baseUrl: {base}
authBaseUrl: {base}
kubernetesVersion: "{version}"
dnsPrefix: {cluster}
tags:
  team: platform
nodePools:
  - name: system
    count: 1
    vmSize: Standard_DS2_v2
    mode: System
    orchestratorVersion: "{version}"
  - name: user1
    count: {user_pool}
    vmSize: Standard_D4s_v3
    mode: User
    orchestratorVersion: "{version}"
"#
    )
}

/// The AKS stand-in whose clusters' admin kubeconfig reaches a new sim (`sim_name`, `nodes`), and a
/// server trusting the stand-in's CA, logged in, with the Azure credential `aks-cred` the stand-in
/// accepts (`rancherctl credential create azure`).
pub(crate) async fn azure_with_server(
    dir: &Path,
    sim_name: &str,
    nodes: usize,
) -> (AksStandIn, rancher_sim::SimHandle, Hosted) {
    let azure = AksStandIn::start(AksStandInConfig::default()).await;
    let sim = rancher_sim::Sim::builder().name(sim_name).nodes(nodes).start().await.unwrap();
    azure.set_kube_target(KubeTarget {
        server: sim.url(),
        ca_pem: sim.ca_pem().to_owned(),
        token: sim.admin_token().to_owned(),
    });
    let ca = dir.join("azure-ca.pem");
    std::fs::write(&ca, azure.ca_pem()).unwrap();
    let h = Hosted::start(dir, &["--cloud-ca-file", ca.to_str().unwrap()]).await;
    let cfg = azure.config();
    let secret = dir.join("client-secret");
    std::fs::write(&secret, &cfg.client_secret).unwrap();
    h.ok(&[
        "credential",
        "create",
        "azure",
        "aks-cred",
        "--client-id",
        &cfg.client_id,
        "--client-secret-file",
        secret.to_str().unwrap(),
        "--subscription-id",
        &cfg.subscription_id,
        "--tenant-id",
        &cfg.tenant_id,
    ]);
    (azure, sim, h)
}

fn pool<'a>(cluster: &'a Value, name: &str) -> Option<&'a Value> {
    cluster["properties"]["agentPoolProfiles"].as_array()?.iter().find(|p| p["name"] == name)
}

fn pool_count(cluster: &Value, name: &str) -> Option<u64> {
    pool(cluster, name)?["count"].as_u64()
}

/// The Resource Manager calls that change something (a kubeconfig POST only reads).
fn is_write(c: &rancher_test_support::aks::Call) -> bool {
    matches!(c.method.as_str(), "PUT" | "PATCH" | "DELETE")
        || (c.method == "POST"
            && !c.path.ends_with("/token")
            && !c.path.to_ascii_lowercase().ends_with("/listclusteradmincredential"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aks_create_scale_upgrade_delete_and_import_through_rancherctl() {
    install_crypto();
    let dir = tempfile::tempdir().unwrap();
    let (azure, sim, h) = azure_with_server(dir.path(), "aks-prod", 3).await;

    // Create with two node pools.
    let file = dir.path().join("aks.yaml");
    std::fs::write(&file, aks_yaml(&azure, "prod-aks", "1.29.7", 2, false)).unwrap();
    h.ok(&["cluster", "create", "prod", "--aks", file.to_str().unwrap(), "--no-wait"]);
    let created = eventually(WAIT, "the AKS cluster exists", || {
        let c = azure.cluster(RG, "prod-aks");
        async move { c }
    })
    .await;
    assert_eq!(pool_count(&created, "system"), Some(1), "{created}");
    assert_eq!(pool_count(&created, "user1"), Some(2), "{created}");
    assert_eq!(created["tags"]["team"], "platform", "{created}");

    // The server deploys the agent through the cluster's endpoint with Azure's admin credentials.
    let _agent = h.start_deployed_agent(&sim, dir.path(), "sim").await;
    let row = wait_state(&h.home, "prod", "active", WAIT).await;
    assert_eq!(row[2], "AKS", "{row:?}");
    let cluster = h.cluster("prod");
    assert_eq!(cluster["status"]["aksStatus"]["phase"], "Succeeded", "{cluster}");
    let upstream = &cluster["status"]["aksStatus"]["upstreamSpec"];
    assert_eq!(upstream["nodePools"].as_array().map(Vec::len), Some(2), "{upstream}");

    // kubectl through the server's proxy.
    let kubeconfig = dir.path().join("prod.kubeconfig");
    std::fs::write(&kubeconfig, h.ok(&["kubeconfig", "prod"])).unwrap();
    let nodes = kubectl_out(&kubeconfig, &["get", "nodes", "-o", "name"]);
    assert_eq!(nodes.lines().count(), 3, "{nodes}");

    // Scale the User pool; the System pool is left alone.
    std::fs::write(&file, aks_yaml(&azure, "prod-aks", "1.29.7", 3, false)).unwrap();
    h.ok(&["cluster", "update", "prod", "--aks", file.to_str().unwrap(), "--no-wait"]);
    eventually(WAIT, "user1 has 3 nodes in the status", || {
        let c = h.cluster("prod");
        async move {
            let up = &c["status"]["aksStatus"]["upstreamSpec"]["nodePools"];
            let count = up.as_array()?.iter().find(|p| p["name"] == "user1")?["count"].as_u64();
            (count == Some(3) && c["status"]["aksStatus"]["operation"].is_null()).then_some(())
        }
    })
    .await;
    let now = azure.cluster(RG, "prod-aks").unwrap();
    assert_eq!(pool_count(&now, "user1"), Some(3));
    assert_eq!(pool_count(&now, "system"), Some(1), "the System pool untouched");

    // Upgrade: the control plane first, then each pool, one at a time, each step in the status.
    let before = azure.calls().len();
    std::fs::write(&file, aks_yaml(&azure, "prod-aks", "1.30.4", 3, false)).unwrap();
    h.ok(&["cluster", "update", "prod", "--aks", file.to_str().unwrap(), "--no-wait"]);
    let mut seen: Vec<String> = Vec::new();
    eventually(Duration::from_secs(120), "every pool at 1.30.4", || {
        let c = h.cluster("prod");
        let message = c["status"]["provisioning"]["message"].as_str().unwrap_or_default().to_owned();
        if message.starts_with("upgrading") && seen.last() != Some(&message) {
            seen.push(message);
        }
        let a = azure.cluster(RG, "prod-aks").unwrap();
        async move {
            let pools = a["properties"]["agentPoolProfiles"].as_array().cloned().unwrap_or_default();
            let all = pools.iter().all(|p| p["currentOrchestratorVersion"] == "1.30.4");
            let cp = a["properties"]["currentKubernetesVersion"] == "1.30.4";
            (all && cp && c["status"]["aksStatus"]["operation"].is_null()).then_some(())
        }
    })
    .await;
    assert_eq!(
        seen,
        [
            "upgrading the control plane 1.29.7 → 1.30.4",
            "upgrading node pool system → 1.30.4",
            "upgrading node pool user1 → 1.30.4"
        ],
        "{seen:?}"
    );
    let changes: Vec<String> = azure.calls()[before..]
        .iter()
        .filter(|c| is_write(c))
        .map(|c| format!("{} {}", c.method, c.path.rsplit('/').next().unwrap_or_default()))
        .collect();
    assert_eq!(changes, ["PUT prod-aks", "PUT system", "PUT user1"], "{changes:?}");
    wait_state(&h.home, "prod", "active", WAIT).await;

    // Delete: gone at Azure, then from Rancher.
    h.ok(&["cluster", "rm", "prod"]);
    eventually(WAIT, "the AKS cluster is deleted", || {
        let gone = azure.cluster(RG, "prod-aks").is_none();
        async move { gone.then_some(()) }
    })
    .await;
    h.wait_gone("prod").await;

    // Import an existing cluster (on a second sim); deleting it in Rancher leaves it at Azure.
    let sim2 = rancher_sim::Sim::builder().name("aks-existing").nodes(1).start().await.unwrap();
    azure.set_kube_target(KubeTarget {
        server: sim2.url(),
        ca_pem: sim2.ca_pem().to_owned(),
        token: sim2.admin_token().to_owned(),
    });
    azure.insert_cluster(
        RG,
        "existing",
        serde_json::json!({
            "location": "eastus",
            "properties": {
                "kubernetesVersion": "1.29.7",
                "dnsPrefix": "existing",
                "agentPoolProfiles": [{"name": "system", "count": 1, "mode": "System", "vmSize": "Standard_DS2_v2"}]
            }
        }),
    );
    let writes = || azure.calls().iter().filter(|c| is_write(c)).count();
    let writes_before_import = writes();
    let imp = dir.path().join("import.yaml");
    std::fs::write(&imp, aks_yaml(&azure, "existing", "1.29.7", 2, true)).unwrap();
    h.ok(&["cluster", "create", "existing", "--aks", imp.to_str().unwrap(), "--no-wait"]);
    let _agent2 = h.start_deployed_agent(&sim2, dir.path(), "sim2").await;
    wait_state(&h.home, "existing", "active", WAIT).await;
    assert_eq!(h.cluster("existing")["spec"]["aksConfig"]["imported"], true);
    h.ok(&["cluster", "rm", "existing"]);
    h.wait_gone("existing").await;
    let still = azure.cluster(RG, "existing").expect("an imported cluster stays at Azure");
    assert_eq!(pool_count(&still, "system"), Some(1), "its pools as they were");
    assert_eq!(writes(), writes_before_import, "nothing was changed at Azure for the imported cluster");
    let log = read_log(&h.log);
    let cfg = azure.config();
    assert!(!log.contains(&cfg.client_secret), "the client secret in the server's log");
    assert!(!log.contains("standin."), "an Azure access token in the server's log");
    assert!(!log.contains(sim.admin_token()), "the cluster's admin token in the server's log");
}
