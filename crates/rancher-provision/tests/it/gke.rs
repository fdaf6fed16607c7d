//! The GKE client against the stand-in that follows Google's documented `container/v1` and token
//! contracts: sign-in and token reuse, a cluster's life (create with two pools, resize, upgrade,
//! pools added and removed, labels, delete), listing for import, throttling, failed operations and
//! rejected credentials.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use rancher_core::model::{GkeConfig, GkeNodeConfig, GkeNodePool};
use rancher_provision::ProvisionError;
use rancher_provision::hosted::gke::{
    self, ApiCalls, ClusterStatus, GkeClient, GkeError, GkeOptions, Location, NodePoolStatus, NodePoolUpdate,
    Operation, OperationStatus, RetryPolicy,
};
use rancher_test_support::gke::{GkeStandIn, GkeStandInOptions};
use secrecy::SecretString;
use tokio_util::sync::CancellationToken;

const POLL: Duration = Duration::from_millis(50);
const DEADLINE: Duration = Duration::from_secs(30);
const REGION: &str = "us-central1";

fn client_with(gke: &GkeStandIn, key_json: String, retry: RetryPolicy) -> GkeClient {
    let options = GkeOptions {
        base_url: gke.base_url().to_owned(),
        extra_ca_pem: Some(gke.ca_pem().to_owned()),
        retry,
        ..Default::default()
    };
    GkeClient::from_key_json(&SecretString::from(key_json), options).expect("client")
}

fn client(gke: &GkeStandIn) -> GkeClient {
    client_with(gke, gke.service_account_json(), RetryPolicy::default())
}

fn pool(name: &str, count: i64) -> GkeNodePool {
    GkeNodePool {
        name: name.into(),
        initial_node_count: Some(count),
        config: Some(GkeNodeConfig {
            machine_type: "e2-medium".into(),
            image_type: "COS_CONTAINERD".into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn config(gke: &GkeStandIn, name: &str) -> GkeConfig {
    GkeConfig {
        google_credential_secret: "cc-gcp".into(),
        project_id: gke.project_id().to_owned(),
        region: REGION.into(),
        cluster_name: name.into(),
        kubernetes_version: Some("1.28.9-gke.1000000".into()),
        labels: BTreeMap::from([("team".to_owned(), "a".to_owned())]),
        node_pools: vec![pool("np-a", 1), pool("np-b", 2)],
        ..Default::default()
    }
}

async fn wait(client: &GkeClient, at: &Location, op: &Operation) -> Result<Operation, GkeError> {
    client.wait_operation(at, op, POLL, DEADLINE, &CancellationToken::new()).await
}

#[tokio::test]
async fn signs_in_once_and_reuses_the_token_for_many_calls() {
    let gke = GkeStandIn::start(GkeStandInOptions::default()).await;
    let client = client(&gke);
    let at = Location::new(gke.project_id(), REGION);
    for _ in 0..3 {
        assert!(client.list_clusters(&at).await.unwrap().is_empty());
    }
    assert!(client.find_cluster(&at, "nope").await.unwrap().is_none());
    let err = client.get_cluster(&at, "nope").await.unwrap_err();
    assert!(err.is_not_found(), "{err}");
    assert!(err.to_string().contains("clusters/nope"), "Google's message is quoted: {err}");
    // Clones share the token cache and the counters.
    client.clone().list_clusters(&at).await.unwrap();

    assert_eq!(gke.token_requests(), 1, "{:?}", gke.calls());
    assert_eq!((client.calls().token_requests(), client.calls().api_calls()), (1, 6));
    assert_eq!(gke.calls().len(), 7);
    let shown = format!("{client:?} {:?}", client.key());
    assert!(shown.contains("iam.gserviceaccount.com") && !shown.contains("PRIVATE KEY"), "{shown}");
}

#[tokio::test]
async fn a_token_is_renewed_shortly_before_it_expires() {
    // Tokens live 6 s here, so the client renews after half of that.
    let gke =
        GkeStandIn::start(GkeStandInOptions { token_lifetime: Duration::from_secs(6), ..Default::default() })
            .await;
    let client = client(&gke);
    let at = Location::new(gke.project_id(), REGION);
    client.list_clusters(&at).await.unwrap();
    client.list_clusters(&at).await.unwrap();
    assert_eq!(gke.token_requests(), 1);
    tokio::time::sleep(Duration::from_millis(3500)).await;
    client.list_clusters(&at).await.unwrap();
    assert_eq!(gke.token_requests(), 2);
    assert!(gke.calls().iter().all(|c| c.status == 200), "{:?}", gke.calls());
}

#[tokio::test]
async fn a_cluster_with_two_pools_is_created_resized_upgraded_and_deleted() {
    let sim_ca = "-----BEGIN CERTIFICATE-----\nMIIBsim\n-----END CERTIFICATE-----\n";
    let options = GkeStandInOptions {
        endpoint: "127.0.0.1:6443".into(),
        cluster_ca_pem: Some(sim_ca.into()),
        ..Default::default()
    };
    let gke = GkeStandIn::start(options).await;
    let client = client(&gke);
    let cfg = config(&gke, "gke-one");
    gke::validate(&cfg).unwrap();
    let at = Location::of(&cfg);

    gke.hold_operations(true);
    let op = client.create_cluster(&at, &gke::cluster_for_create(&cfg)).await.unwrap();
    assert_eq!((op.operation_type.as_str(), op.status), ("CREATE_CLUSTER", OperationStatus::Pending));
    let early = client.get_cluster(&at, "gke-one").await.unwrap();
    assert_eq!(early.status, ClusterStatus::Provisioning);
    assert!(early.endpoint.is_empty() && early.ca_pem().is_none());
    let again = client.create_cluster(&at, &gke::cluster_for_create(&cfg)).await.unwrap_err();
    assert!(matches!(&again, GkeError::Conflict { status, .. } if status == "ALREADY_EXISTS"), "{again}");
    gke.hold_operations(false);

    let done = wait(&client, &at, &op).await.unwrap();
    assert_eq!(done.status, OperationStatus::Done);
    let c = client.get_cluster(&at, "gke-one").await.unwrap();
    assert_eq!(c.status, ClusterStatus::Running);
    assert_eq!((c.endpoint.as_str(), c.ca_pem().as_deref()), ("127.0.0.1:6443", Some(sim_ca)));
    assert_eq!(c.current_master_version, "1.28.9-gke.1000000");
    assert_eq!(c.resource_labels["team"], "a");
    let pools: Vec<_> =
        c.node_pools.iter().map(|p| (p.name.as_str(), p.initial_node_count, p.status)).collect();
    assert_eq!(pools, [("np-a", 1, NodePoolStatus::Running), ("np-b", 2, NodePoolStatus::Running)]);

    // Resize; a second change while it runs is refused as Google refuses it.
    gke.hold_operations(true);
    let op = client.set_node_pool_size(&at, "gke-one", "np-b", 4).await.unwrap();
    let busy = client.update_master(&at, "gke-one", "1.29").await.unwrap_err();
    assert!(matches!(&busy, GkeError::Conflict { status, .. } if status == "FAILED_PRECONDITION"), "{busy}");
    assert!(ProvisionError::from(busy).is_transient());
    gke.hold_operations(false);
    wait(&client, &at, &op).await.unwrap();
    assert_eq!(client.get_node_pool(&at, "gke-one", "np-b").await.unwrap().initial_node_count, 4);

    // Upgrade: the control plane first, then a pool; nodes may not run ahead of it.
    let ahead =
        NodePoolUpdate { node_version: "1.29.4-gke.1043002".into(), image_type: "COS_CONTAINERD".into() };
    let refused = client.update_node_pool(&at, "gke-one", "np-a", &ahead).await.unwrap_err();
    assert!(
        matches!(&refused, GkeError::Api { code: 400, status, .. } if status == "INVALID_ARGUMENT"),
        "{refused}"
    );
    let op = client.update_master(&at, "gke-one", "1.29.4-gke.1043002").await.unwrap();
    assert_eq!(op.operation_type, "UPGRADE_MASTER");
    wait(&client, &at, &op).await.unwrap();
    let op = client.update_node_pool(&at, "gke-one", "np-a", &ahead).await.unwrap();
    wait(&client, &at, &op).await.unwrap();
    let c = client.get_cluster(&at, "gke-one").await.unwrap();
    assert_eq!(c.current_master_version, "1.29.4-gke.1043002");
    assert_eq!(c.node_pool("np-a").unwrap().version, "1.29.4-gke.1043002");
    assert_eq!(c.node_pool("np-b").unwrap().version, "1.28.9-gke.1000000");
    assert_eq!(c.current_node_version, "1.28.9-gke.1000000", "the oldest pool's");

    // A pool added, another removed.
    let extra = gke::node_pool_for_create(&pool("np-c", 1), &cfg);
    gke.hold_operations(true);
    let op = client.create_node_pool(&at, "gke-one", &extra).await.unwrap();
    assert_eq!(
        client.get_node_pool(&at, "gke-one", "np-c").await.unwrap().status,
        NodePoolStatus::Provisioning
    );
    gke.hold_operations(false);
    wait(&client, &at, &op).await.unwrap();
    let op = client.delete_node_pool(&at, "gke-one", "np-a").await.unwrap();
    wait(&client, &at, &op).await.unwrap();
    let names: Vec<_> =
        client.get_cluster(&at, "gke-one").await.unwrap().node_pools.into_iter().map(|p| p.name).collect();
    assert_eq!(names, ["np-b", "np-c"]);
    assert!(client.get_node_pool(&at, "gke-one", "np-a").await.unwrap_err().is_not_found());

    // Labels, with the fingerprint guarding against lost updates.
    let c = client.get_cluster(&at, "gke-one").await.unwrap();
    let labels = BTreeMap::from([("team".to_owned(), "b".to_owned()), ("env".to_owned(), "test".to_owned())]);
    let stale = client.set_resource_labels(&at, "gke-one", &labels, "00000000").await.unwrap_err();
    assert!(matches!(stale, GkeError::Conflict { .. }), "{stale}");
    let op = client.set_resource_labels(&at, "gke-one", &labels, &c.label_fingerprint).await.unwrap();
    wait(&client, &at, &op).await.unwrap();
    let c = client.get_cluster(&at, "gke-one").await.unwrap();
    assert_eq!(c.resource_labels, labels);

    // Listed for import; then deleted and gone.
    let listed = client.list_clusters(&Location::new(gke.project_id(), "-")).await.unwrap();
    assert_eq!(listed.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(), ["gke-one"]);
    gke.hold_operations(true);
    let op = client.delete_cluster(&at, "gke-one").await.unwrap();
    assert_eq!(client.get_cluster(&at, "gke-one").await.unwrap().status, ClusterStatus::Stopping);
    gke.hold_operations(false);
    wait(&client, &at, &op).await.unwrap();
    assert!(client.find_cluster(&at, "gke-one").await.unwrap().is_none());
    assert!(client.delete_cluster(&at, "gke-one").await.unwrap_err().is_not_found());
    assert_eq!(gke.token_requests(), 1);
}

#[tokio::test]
async fn existing_clusters_are_listed_for_import_across_locations() {
    let gke = GkeStandIn::start(GkeStandInOptions::default()).await;
    gke.insert_running_cluster("europe-west1-b", serde_json::json!({"name": "old-one", "nodePools": [{"name": "default-pool", "initialNodeCount": 3}]}));
    gke.insert_running_cluster(REGION, serde_json::json!({"name": "old-two"}));
    let client = client(&gke);
    let all = client.list_clusters(&Location::new(gke.project_id(), "-")).await.unwrap();
    assert_eq!(all.len(), 2);
    let one =
        client.get_cluster(&Location::new(gke.project_id(), "europe-west1-b"), "old-one").await.unwrap();
    assert_eq!((one.status, one.location.as_str()), (ClusterStatus::Running, "europe-west1-b"));
    assert_eq!(one.node_pools[0].version, one.current_master_version);
    assert_eq!(
        client.list_clusters(&Location::new(gke.project_id(), REGION)).await.unwrap()[0].name,
        "old-two"
    );
}

#[tokio::test]
async fn throttled_calls_are_retried_after_retry_after() {
    let gke = GkeStandIn::start(GkeStandInOptions::default()).await;
    let retry = RetryPolicy {
        max_attempts: 3,
        base_delay: Duration::from_millis(10),
        max_delay: Duration::from_secs(5),
    };
    let client = client_with(&gke, gke.service_account_json(), retry);
    let at = Location::new(gke.project_id(), REGION);
    gke.throttle_next(2, Duration::from_secs(1));
    assert!(client.list_clusters(&at).await.unwrap().is_empty());

    let api: Vec<_> = gke.calls().into_iter().filter(|c| c.path.starts_with("/v1/")).collect();
    assert_eq!(api.iter().map(|c| c.status).collect::<Vec<_>>(), [429, 429, 200]);
    for pair in api.windows(2) {
        let gap = pair[1].at - pair[0].at;
        assert!(
            gap >= Duration::from_secs(1),
            "the retry came {gap:?} after the 429, before its Retry-After"
        );
    }
    assert_eq!(client.calls().api_calls(), 3);

    // Bounded: still throttled after the last attempt, a transient failure.
    gke.throttle_next(5, Duration::from_millis(1));
    let retry = RetryPolicy {
        max_attempts: 2,
        base_delay: Duration::from_millis(10),
        max_delay: Duration::from_secs(5),
    };
    let client = client_with(&gke, gke.service_account_json(), retry);
    let err = client.list_clusters(&at).await.unwrap_err();
    match &err {
        GkeError::Throttled { code: 429, attempts: 2, retry_after, message } => {
            assert_eq!(*retry_after, Some(Duration::from_secs(1)));
            assert!(message.contains("Quota exceeded"), "{message}");
        }
        other => panic!("expected Throttled, got {other:?}"),
    }
    assert!(ProvisionError::from(err).is_transient());
}

#[tokio::test]
async fn a_failed_operation_surfaces_its_message() {
    let gke = GkeStandIn::start(GkeStandInOptions::default()).await;
    let client = client(&gke);
    let cfg = config(&gke, "gke-fails");
    let at = Location::of(&cfg);
    gke.fail_next_operation("The zone does not have enough resources available to fulfill the request.");
    let op = client.create_cluster(&at, &gke::cluster_for_create(&cfg)).await.unwrap();
    let err = wait(&client, &at, &op).await.unwrap_err();
    match &err {
        GkeError::OperationFailed { operation, operation_type, message } => {
            assert_eq!((operation.as_str(), operation_type.as_str()), (op.name.as_str(), "CREATE_CLUSTER"));
            assert!(message.contains("enough resources"), "{message}");
        }
        other => panic!("expected OperationFailed, got {other:?}"),
    }
    let c = client.get_cluster(&at, "gke-fails").await.unwrap();
    assert_eq!(c.status, ClusterStatus::Error);
    assert!(c.status_message.contains("enough resources"));
    assert!(!ProvisionError::from(err).is_transient());
    // What failed can be deleted.
    let op = client.delete_cluster(&at, "gke-fails").await.unwrap();
    wait(&client, &at, &op).await.unwrap();
    assert!(client.find_cluster(&at, "gke-fails").await.unwrap().is_none());
}

#[tokio::test]
async fn waiting_stops_at_the_deadline_or_on_cancel() {
    let gke = GkeStandIn::start(GkeStandInOptions {
        operation_time: Duration::from_secs(60),
        ..Default::default()
    })
    .await;
    let client = client(&gke);
    let cfg = config(&gke, "gke-slow");
    let at = Location::of(&cfg);
    let op = client.create_cluster(&at, &gke::cluster_for_create(&cfg)).await.unwrap();
    let err = client
        .wait_operation(&at, &op, POLL, Duration::from_millis(200), &CancellationToken::new())
        .await
        .unwrap_err();
    assert!(matches!(&err, GkeError::OperationTimeout { operation, .. } if *operation == op.name), "{err}");
    assert!(ProvisionError::from(err).is_transient());
    let cancel = CancellationToken::new();
    cancel.cancel();
    let err = client.wait_operation(&at, &op, POLL, DEADLINE, &cancel).await.unwrap_err();
    assert!(matches!(ProvisionError::from(err), ProvisionError::Cancelled));
    // It goes on at Google: still in its first quarter (PENDING) of 60 s.
    assert_eq!(client.get_operation(&at, &op.name).await.unwrap().status, OperationStatus::Pending);
}

#[tokio::test]
async fn a_wrong_or_revoked_key_is_rejected() {
    let gke = GkeStandIn::start(GkeStandInOptions::default()).await;
    let at = Location::new(gke.project_id(), REGION);
    let calls = Arc::new(ApiCalls::default());
    let wrong = GkeClient::from_key_json(
        &SecretString::from(gke.unknown_key_json()),
        GkeOptions {
            base_url: gke.base_url().to_owned(),
            extra_ca_pem: Some(gke.ca_pem().to_owned()),
            calls: calls.clone(),
            ..Default::default()
        },
    )
    .unwrap();
    let err = wrong.list_clusters(&at).await.unwrap_err();
    assert!(matches!(err, GkeError::CredentialsRejected { .. }), "{err}");
    assert!(err.to_string().contains("invalid_grant"), "{err}");
    assert_eq!(
        (calls.token_requests(), calls.api_calls()),
        (1, 0),
        "nothing reaches the API without a token"
    );
    assert!(!ProvisionError::from(err).is_transient());

    let client = client(&gke);
    client.list_clusters(&at).await.unwrap();
    gke.revoke_credentials();
    let err = client.list_clusters(&at).await.unwrap_err();
    assert!(matches!(err, GkeError::CredentialsRejected { .. }), "{err}");
    let statuses: Vec<_> = gke.calls().iter().rev().take(2).map(|c| (c.path.clone(), c.status)).collect();
    assert_eq!(statuses[0], ("/token".to_owned(), 400), "a 401 makes one fresh sign-in, which is refused");
    assert_eq!(statuses[1].1, 401);
}

#[tokio::test]
async fn unusable_keys_and_options_are_refused_before_any_call() {
    let bad = |json: &str| {
        GkeClient::from_key_json(&SecretString::from(json.to_owned()), GkeOptions::default()).unwrap_err()
    };
    assert!(matches!(bad("{"), GkeError::InvalidKey(_)));
    let e = bad(r#"{"type":"authorized_user"}"#);
    assert_eq!(
        e.to_string(),
        "the service-account key is not usable: type is \"authorized_user\", not \"service_account\""
    );
    let e = bad(
        r#"{"type":"service_account","client_email":"a@b","private_key":"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n","token_uri":"https://x/token"}"#,
    );
    assert!(e.to_string().contains("not a usable RSA key") && !e.to_string().contains("AAAA"), "{e}");
    let gke = GkeStandIn::start(GkeStandInOptions::default()).await;
    let plain = gke.service_account_json().replace("https://", "http://");
    assert!(bad(&plain).to_string().contains("is not HTTPS"));
    let options = GkeOptions { base_url: "http://127.0.0.1:1".into(), ..Default::default() };
    let e = GkeClient::from_key_json(&SecretString::from(gke.service_account_json()), options).unwrap_err();
    assert!(matches!(e, GkeError::Config(_)), "{e}");
}
