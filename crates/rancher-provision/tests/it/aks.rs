//! The AKS client against the in-memory Azure stand-in (HTTPS, test CA): sign-in, the cluster's
//! life (create with pools, scale, upgrades, pool create/delete, tags, kubeconfig, list, delete),
//! and the failure paths (throttling, failed operations, refused credentials, conflicts).

use std::collections::BTreeMap;
use std::time::Duration;

use rancher_core::model::{AksConfig, AksNodePool};
use rancher_provision::ProvisionError;
use rancher_provision::hosted::aks::spec::{ClusterIdentity, agent_pool, managed_cluster};
use rancher_provision::hosted::aks::{
    AksChange, AksClient, AksClientOptions, AksError, AzureCredentials, AzureEndpoints, OperationState,
    changes, validate,
};
use rancher_test_support::aks::{AksStandIn, AksStandInConfig, KubeTarget};
use secrecy::ExposeSecret;
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(30);

async fn stand_in() -> AksStandIn {
    AksStandIn::start(AksStandInConfig::default()).await
}

fn client_with_secret(azure: &AksStandIn, secret: &str) -> AksClient {
    let cfg = azure.config();
    let base = azure.base_url();
    let creds = AzureCredentials {
        tenant_id: cfg.tenant_id,
        client_id: cfg.client_id,
        client_secret: secret.to_owned().into(),
        subscription_id: cfg.subscription_id,
    };
    let options = AksClientOptions {
        endpoints: AzureEndpoints::with_overrides(Some(&base), Some(&base)).unwrap(),
        extra_ca_pem: Some(azure.ca_pem().to_owned()),
        retry_backoff: Duration::from_millis(100),
        poll_interval: Duration::from_millis(50),
        ..Default::default()
    };
    AksClient::new(creds, options).unwrap()
}

fn client(azure: &AksStandIn) -> AksClient {
    client_with_secret(azure, &azure.config().client_secret)
}

fn pool(name: &str, mode: &str, count: i32) -> AksNodePool {
    AksNodePool {
        name: name.into(),
        count: Some(count),
        vm_size: Some("Standard_DS2_v2".into()),
        mode: Some(mode.into()),
        ..Default::default()
    }
}

fn config(name: &str) -> AksConfig {
    AksConfig {
        azure_credential_secret: "cc-azure".into(),
        resource_location: "eastus".into(),
        resource_group: "rg-rancher".into(),
        cluster_name: name.into(),
        kubernetes_version: Some("1.30.4".into()),
        tags: BTreeMap::from([("owner".into(), "rancher".into())]),
        node_pools: vec![pool("system", "System", 1), pool("user1", "User", 2)],
        ..Default::default()
    }
}

async fn create(azure: &AksStandIn, c: &AksClient, name: &str) -> rancher_provision::hosted::aks::Operation {
    let cfg = config(name);
    validate(&cfg).unwrap();
    let identity = ClusterIdentity::ServicePrincipal {
        client_id: azure.config().client_id,
        client_secret: "cluster-sp-secret".to_owned().into(),
    };
    let body = managed_cluster(&cfg, &identity, c.subscription_id()).unwrap();
    c.ensure_resource_group(&cfg.resource_group, &cfg.resource_location, &BTreeMap::new()).await.unwrap();
    let (answer, op) = c.create_or_update_cluster(&cfg.resource_group, name, &body).await.unwrap();
    assert_eq!(answer.properties.provisioning_state.as_deref(), Some("Creating"));
    assert!(!op.is_completed(), "a create is a long-running operation");
    op
}

#[tokio::test]
async fn signs_in_once_and_reuses_the_token() {
    let azure = stand_in().await;
    let c = client(&azure);
    c.sign_in().await.unwrap();
    c.sign_in().await.unwrap();
    assert!(c.get_resource_group("nothing").await.unwrap().is_none());
    assert!(c.get_cluster("nothing", "c").await.unwrap().is_none(), "no group, no cluster");
    assert_eq!(azure.tokens_issued(), 1);
    let calls = azure.calls();
    assert_eq!(calls.iter().filter(|c| c.path.ends_with("/oauth2/v2.0/token")).count(), 1);
    assert_eq!(c.api_calls(), calls.len() as u64, "the client counts every request it sent");

    let shared = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(100));
    let c = client(&azure).with_call_counter(shared.clone());
    c.sign_in().await.unwrap();
    assert_eq!(shared.load(std::sync::atomic::Ordering::Relaxed), 101);
}

#[tokio::test]
async fn a_cluster_from_create_to_delete() {
    let azure = stand_in().await;
    let c = client(&azure);
    let cancel = CancellationToken::new();
    let rg = "rg-rancher";
    azure.hold_operations(true);
    let op = create(&azure, &c, "prod").await;
    assert!(matches!(c.poll_operation(&op).await.unwrap(), OperationState::InProgress { .. }));
    azure.hold_operations(false);
    c.wait(&op, WAIT, &cancel).await.unwrap();

    let got = c.get_cluster(rg, "prod").await.unwrap().unwrap();
    let p = &got.properties;
    assert_eq!(p.provisioning_state.as_deref(), Some("Succeeded"));
    assert_eq!(p.power_state.as_ref().unwrap().code, "Running");
    assert_eq!(p.current_kubernetes_version.as_deref(), Some("1.30.4"));
    assert!(p.fqdn.as_deref().unwrap().ends_with(".azmk8s.invalid"), "unroutable until a target is set");
    assert!(
        got.properties.service_principal_profile.as_ref().unwrap().secret.is_none(),
        "Azure never returns it"
    );
    let modes: Vec<_> = p
        .agent_pool_profiles
        .iter()
        .map(|a| (a.name.as_str(), a.properties.mode.as_deref().unwrap()))
        .collect();
    assert_eq!(modes, [("system", "System"), ("user1", "User")]);
    assert_eq!(changes(&config("prod"), &got), [], "the cluster is as its spec says");
    let mut more = config("prod");
    more.node_pools[1].count = Some(3);
    assert_eq!(changes(&more, &got), [AksChange::UpdatePool { name: "user1".into(), fields: vec!["count"] }]);

    // Scale the User pool.
    azure.hold_operations(true);
    let op = c.scale_pool(rg, "prod", "user1", 3).await.unwrap();
    let during = azure.cluster(rg, "prod").unwrap();
    assert_eq!(during["properties"]["provisioningState"], "Scaling");
    azure.hold_operations(false);
    c.wait(&op, WAIT, &cancel).await.unwrap();
    let user1 = c.get_pool(rg, "prod", "user1").await.unwrap().unwrap();
    assert_eq!(user1.properties.count, Some(3));
    assert_eq!(user1.properties.provisioning_state.as_deref(), Some("Succeeded"));

    // The control plane, then a pool.
    azure.hold_operations(true);
    let op = c.upgrade_control_plane(rg, "prod", "1.31.1").await.unwrap();
    assert_eq!(azure.cluster(rg, "prod").unwrap()["properties"]["provisioningState"], "Upgrading");
    azure.hold_operations(false);
    c.wait(&op, WAIT, &cancel).await.unwrap();
    let got = c.get_cluster(rg, "prod").await.unwrap().unwrap();
    assert_eq!(got.properties.current_kubernetes_version.as_deref(), Some("1.31.1"));
    let user1 = c.get_pool(rg, "prod", "user1").await.unwrap().unwrap();
    assert_eq!(
        user1.properties.current_orchestrator_version.as_deref(),
        Some("1.30.4"),
        "pools wait their turn"
    );
    let too_new = c.upgrade_pool(rg, "prod", "user1", "1.32.0").await.unwrap_err();
    assert!(
        matches!(&too_new, AksError::Api { status: 400, body } if body.code == "InvalidParameter"),
        "{too_new}"
    );
    let op = c.upgrade_pool(rg, "prod", "user1", "1.31.1").await.unwrap();
    c.wait(&op, WAIT, &cancel).await.unwrap();
    let user1 = c.get_pool(rg, "prod", "user1").await.unwrap().unwrap();
    assert_eq!(user1.properties.current_orchestrator_version.as_deref(), Some("1.31.1"));

    // A pool of its own, then gone again.
    let cfg = config("prod");
    let extra = agent_pool(&cfg, &pool("extra", "User", 1), c.subscription_id());
    let (answer, op) = c.create_or_update_pool(rg, "prod", "extra", &extra).await.unwrap();
    assert_eq!(answer.properties.provisioning_state.as_deref(), Some("Creating"));
    c.wait(&op, WAIT, &cancel).await.unwrap();
    assert_eq!(c.list_pools(rg, "prod").await.unwrap().len(), 3);
    let op = c.delete_pool(rg, "prod", "extra").await.unwrap();
    c.wait(&op, WAIT, &cancel).await.unwrap();
    let names: Vec<_> = c.list_pools(rg, "prod").await.unwrap().into_iter().filter_map(|p| p.name).collect();
    assert_eq!(names, ["system", "user1"]);
    assert!(c.delete_pool(rg, "prod", "extra").await.unwrap().is_completed(), "already gone is deleted");

    // Tags.
    let tags = BTreeMap::from([("owner".to_owned(), "ops".to_owned())]);
    let op = c.update_tags(rg, "prod", &tags).await.unwrap();
    c.wait(&op, WAIT, &cancel).await.unwrap();
    assert_eq!(c.get_cluster(rg, "prod").await.unwrap().unwrap().tags, tags);

    // Delete.
    azure.hold_operations(true);
    let op = c.delete_cluster(rg, "prod").await.unwrap();
    assert_eq!(azure.cluster(rg, "prod").unwrap()["properties"]["provisioningState"], "Deleting");
    azure.hold_operations(false);
    c.wait(&op, WAIT, &cancel).await.unwrap();
    assert!(c.get_cluster(rg, "prod").await.unwrap().is_none());
    assert!(c.delete_cluster(rg, "prod").await.unwrap().is_completed());
    assert_eq!(c.api_calls(), azure.calls().len() as u64);
}

#[tokio::test]
async fn the_admin_kubeconfig_points_at_the_configured_cluster() {
    let azure = stand_in().await;
    let c = client(&azure);
    let op = create(&azure, &c, "kc").await;
    c.wait(&op, WAIT, &CancellationToken::new()).await.unwrap();
    azure.set_kube_target(KubeTarget {
        server: "https://127.0.0.1:16443".into(),
        ca_pem: "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n".into(),
        token: "admin-bearer".into(),
    });
    let kubeconfig = c.admin_kubeconfig("rg-rancher", "kc").await.unwrap();
    assert!(!format!("{kubeconfig:?}").contains("admin-bearer"));
    let access = kubeconfig.access().unwrap();
    assert_eq!(access.server, "https://127.0.0.1:16443");
    assert!(access.ca_pem.unwrap().starts_with("-----BEGIN CERTIFICATE-----"));
    assert_eq!(access.token.unwrap().expose_secret(), "admin-bearer");
    let got = c.get_cluster("rg-rancher", "kc").await.unwrap().unwrap();
    assert_eq!(got.properties.fqdn.as_deref(), Some("127.0.0.1:16443"));
    let missing = c.admin_kubeconfig("rg-rancher", "nope").await.unwrap_err();
    assert!(missing.is_not_found(), "{missing}");
}

#[tokio::test]
async fn lists_every_page_and_existing_clusters_for_import() {
    let azure = stand_in().await;
    let c = client(&azure);
    let cancel = CancellationToken::new();
    let mut ops = Vec::new();
    for name in ["a1", "a2", "a3"] {
        ops.push(create(&azure, &c, name).await);
    }
    for op in &ops {
        c.wait(op, WAIT, &cancel).await.unwrap();
    }
    let body = serde_json::json!({
        "location": "westeurope",
        "properties": {"kubernetesVersion": "1.29.7", "dnsPrefix": "made-outside",
            "agentPoolProfiles": [{"name": "nodes", "count": 2, "mode": "System", "vmSize": "Standard_D2s_v3"}]}
    });
    azure.insert_cluster("rg-other", "outside", body);
    let mut all: Vec<_> = c.list_clusters(None).await.unwrap().into_iter().filter_map(|m| m.name).collect();
    all.sort();
    assert_eq!(all, ["a1", "a2", "a3", "outside"]);
    let nexts =
        azure.calls().iter().filter(|c| c.path.ends_with("/managedClusters") && c.method == "GET").count();
    assert_eq!(nexts, 2, "two clusters a page: the client followed nextLink");
    let other = c.list_clusters(Some("rg-other")).await.unwrap();
    assert_eq!(other.len(), 1);
    let p = &other[0].properties;
    assert_eq!(
        (p.provisioning_state.as_deref(), p.current_kubernetes_version.as_deref()),
        (Some("Succeeded"), Some("1.29.7"))
    );
    assert_eq!(p.agent_pool_profiles[0].properties.count, Some(2));
}

#[tokio::test]
async fn a_throttled_call_is_retried_after_its_retry_after() {
    let azure = stand_in().await;
    let c = client(&azure);
    c.sign_in().await.unwrap();
    azure.throttle_next(1, 1);
    assert!(c.get_resource_group("rg-x").await.unwrap().is_none());
    let calls: Vec<_> =
        azure.calls().into_iter().filter(|c| c.path.ends_with("/resourcegroups/rg-x")).collect();
    assert_eq!(calls.iter().map(|c| c.status).collect::<Vec<_>>(), [429, 404]);
    let gap = calls[1].at - calls[0].at;
    assert!(gap >= Duration::from_secs(1), "retried after {gap:?}, before Retry-After: 1");

    // Still throttled after every attempt: a transient error that says so.
    azure.throttle_next(10, 0);
    let e = c.get_resource_group("rg-x").await.unwrap_err();
    assert!(
        matches!(&e, AksError::Throttled { attempts: 4, body, .. } if body.code == "SubscriptionRequestsThrottled"),
        "{e}"
    );
    assert!(ProvisionError::from(e).is_transient());
}

#[tokio::test]
async fn a_failed_operation_surfaces_azures_message() {
    let azure = stand_in().await;
    let c = client(&azure);
    azure.fail_next_operation(
        "QuotaExceeded",
        "Operation results in exceeding approved standardDSv2Family Cores quota.",
    );
    let op = create(&azure, &c, "quota").await;
    let e = c.wait(&op, WAIT, &CancellationToken::new()).await.unwrap_err();
    assert!(matches!(&e, AksError::OperationFailed(body) if body.code == "QuotaExceeded"), "{e}");
    assert!(e.to_string().contains("exceeding approved standardDSv2Family Cores quota"), "{e}");
    let got = c.get_cluster("rg-rancher", "quota").await.unwrap().unwrap();
    assert_eq!(got.properties.provisioning_state.as_deref(), Some("Failed"));
    assert!(matches!(ProvisionError::from(e), ProvisionError::Permanent(_)));
}

#[tokio::test]
async fn a_second_change_while_one_runs_is_a_conflict() {
    let azure = stand_in().await;
    let c = client(&azure);
    azure.hold_operations(true);
    let op = create(&azure, &c, "busy").await;
    let e = c.scale_pool("rg-rancher", "busy", "user1", 5).await.unwrap_err();
    assert!(matches!(&e, AksError::Conflict(body) if body.code == "OperationNotAllowed"), "{e}");
    assert!(ProvisionError::from(e).is_transient());
    // Waiting gives up at its deadline, or when cancelled, without waiting on.
    let e = c.wait(&op, Duration::from_millis(1), &CancellationToken::new()).await.unwrap_err();
    assert!(matches!(e, AksError::Timeout(_)), "{e}");
    let cancel = CancellationToken::new();
    cancel.cancel();
    assert!(matches!(c.wait(&op, WAIT, &cancel).await, Err(AksError::Cancelled)));
    azure.hold_operations(false);
    c.wait(&op, WAIT, &CancellationToken::new()).await.unwrap();
    let op = c.scale_pool("rg-rancher", "busy", "user1", 5).await.unwrap();
    c.wait(&op, WAIT, &CancellationToken::new()).await.unwrap();
}

#[tokio::test]
async fn a_wrong_or_revoked_secret_is_rejected() {
    let azure = stand_in().await;
    let wrong = client_with_secret(&azure, "not-the-secret");
    let e = wrong.sign_in().await.unwrap_err();
    assert!(
        matches!(&e, AksError::CredentialsRejected { status: 401, body } if body.code == "invalid_client"),
        "{e}"
    );
    assert!(e.to_string().contains("AADSTS7000215"), "{e}");
    assert!(!format!("{wrong:?}").contains("not-the-secret"));
    assert!(matches!(ProvisionError::from(e), ProvisionError::Permanent(_)));

    let c = client(&azure);
    c.sign_in().await.unwrap();
    azure.revoke_client_secret();
    let e = c.get_resource_group("rg").await.unwrap_err();
    assert!(matches!(&e, AksError::CredentialsRejected { .. }), "{e}");
    let last: Vec<_> = azure.calls().iter().rev().take(2).map(|c| (c.method.clone(), c.status)).collect();
    assert_eq!(
        last,
        [("POST".to_owned(), 401), ("GET".to_owned(), 401)],
        "the refused token made it sign in again"
    );
}

#[tokio::test]
async fn polls_wait_as_long_as_azure_asks() {
    let azure =
        AksStandIn::start(AksStandInConfig { poll_retry_after: Some(1), ..AksStandInConfig::default() })
            .await;
    let c = client(&azure);
    let op = create(&azure, &c, "patient").await;
    assert_eq!(op.retry_after_secs, Some(1));
    c.wait(&op, WAIT, &CancellationToken::new()).await.unwrap();
    let calls = azure.calls();
    let put =
        calls.iter().find(|c| c.method == "PUT" && c.path.ends_with("/managedClusters/patient")).unwrap();
    let polls: Vec<_> = calls.iter().filter(|c| c.path.contains("/operations/")).collect();
    assert_eq!(polls.len(), 1, "the operation (300 ms) ended within the first Retry-After");
    assert!(polls[0].at - put.at >= Duration::from_secs(1));
}

#[tokio::test]
async fn a_token_is_renewed_before_it_expires() {
    // A 2 s token is renewed at half its life (the usual margin is five minutes).
    let azure =
        AksStandIn::start(AksStandInConfig { token_lifetime: 2, ..AksStandInConfig::default() }).await;
    let c = client(&azure);
    c.sign_in().await.unwrap();
    assert_eq!(azure.tokens_issued(), 1);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    c.get_resource_group("rg").await.unwrap();
    assert_eq!(azure.tokens_issued(), 2);
}

#[tokio::test]
async fn a_resource_group_is_made_once_and_deleted_with_what_it_holds() {
    let azure = stand_in().await;
    let c = client(&azure);
    let cancel = CancellationToken::new();
    let op = create(&azure, &c, "doomed").await;
    c.wait(&op, WAIT, &cancel).await.unwrap();
    let tags = BTreeMap::new();
    assert!(!c.ensure_resource_group("rg-rancher", "eastus", &tags).await.unwrap(), "it exists already");
    assert_eq!(c.get_resource_group("rg-rancher").await.unwrap().unwrap().location, "eastus");
    let op = c.delete_resource_group("rg-rancher").await.unwrap();
    assert!(op.location_url.is_some() && op.status_url.is_none(), "{op:?}");
    c.wait(&op, WAIT, &cancel).await.unwrap();
    assert!(!azure.has_resource_group("rg-rancher"));
    assert!(c.get_cluster("rg-rancher", "doomed").await.unwrap().is_none());
    assert!(c.delete_resource_group("rg-rancher").await.unwrap().is_completed());
}
