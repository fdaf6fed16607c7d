//! The EKS client (feature `eks`) against moto's server: a cluster's life from create to NotFound,
//! credentials refused by moto's signature check, throttling retried after `Retry-After`, and the
//! checks and the token that need no AWS. moto lacks `UpdateClusterVersion`,
//! `UpdateNodegroupVersion` and `DescribeUpdate`; [`EksUpdateStandIn`] answers those in front of it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use rancher_core::model::{EksConfig, EksNodeGroup};
use rancher_provision::ProvisionError;
use rancher_provision::hosted::credentials::CloudSecret;
use rancher_provision::hosted::eks::{
    self, ClusterStatus, EksClient, EksError, EksOptions, NodegroupStatus, RetryPolicy, Scaling,
    UpdateStatus, Wait,
};
use rancher_test_support::moto::Moto;
use secrecy::ExposeSecret;
use tokio_util::sync::CancellationToken;

use rancher_test_support::eks::EksUpdateStandIn;

const ACCOUNT: &str = "123456789012";

fn node_group(name: &str, desired: i64) -> EksNodeGroup {
    EksNodeGroup {
        nodegroup_name: name.into(),
        instance_type: Some("t3.medium".into()),
        disk_size: Some(20),
        desired_size: Some(desired),
        min_size: Some(1),
        max_size: Some(3),
        labels: BTreeMap::from([("pool".into(), name.into())]),
        node_role: Some(format!("arn:aws:iam::{ACCOUNT}:role/eks-nodes")),
        ..Default::default()
    }
}

fn config() -> EksConfig {
    EksConfig {
        amazon_credential_secret: "cc-aws".into(),
        display_name: "eks-one".into(),
        region: "us-west-2".into(),
        kubernetes_version: Some("1.29".into()),
        tags: BTreeMap::from([("team".into(), "platform".into())]),
        subnets: vec!["subnet-0a1b2c3d".into(), "subnet-0a1b2c3e".into()],
        service_role: Some(format!("arn:aws:iam::{ACCOUNT}:role/eks-service")),
        logging_types: vec!["api".into()],
        node_groups: vec![node_group("ng-a", 1), node_group("ng-b", 2)],
        ..Default::default()
    }
}

fn secret(id: &str, key: &str) -> CloudSecret {
    CloudSecret::Aws {
        access_key_id: id.into(),
        secret_access_key: key.into(),
        session_token: None,
        default_region: "us-west-2".into(),
    }
}

fn client(endpoint: String, id: &str, key: &str) -> EksClient {
    let options = EksOptions {
        endpoint_url: Some(endpoint),
        retry: RetryPolicy {
            max_attempts: 3,
            initial_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_secs(5),
        },
        ..Default::default()
    };
    EksClient::from_secret(&secret(id, key), "", options).unwrap()
}

#[tokio::test]
async fn a_cluster_with_two_node_groups_is_created_scaled_upgraded_and_deleted() {
    let moto = Moto::start().await;
    let standin = EksUpdateStandIn::start(moto.endpoint()).await;
    let eks = client(standin.endpoint(), "AKIDEXAMPLE", "any-secret");
    let config = config();
    eks::validate(&config).unwrap();
    let cancel = CancellationToken::new();
    let wait = Wait { poll: Duration::from_millis(50), deadline: Duration::from_secs(30), cancel: &cancel };
    let name = config.display_name.as_str();

    let before = eks.calls().api_calls();
    assert!(eks.find_cluster(name).await.unwrap().is_none());
    assert_eq!(eks.calls().api_calls() - before, 1, "a NotFound is answered, not retried");

    let created = eks
        .create_cluster(&eks::cluster_for_create(&config))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", moto.log()));
    assert_eq!(created.name, name);
    let again = eks.create_cluster(&eks::cluster_for_create(&config)).await.unwrap_err();
    assert!(matches!(again, EksError::InUse { operation: "CreateCluster", .. }), "{again}");

    let cluster = eks.wait_cluster_active(name, wait).await.unwrap();
    assert_eq!(cluster.status, ClusterStatus::Active);
    assert_eq!(cluster.version.as_deref(), Some("1.29"));
    assert!(
        cluster.arn.starts_with("arn:aws:eks:us-west-2:") && cluster.arn.ends_with(":cluster/eks-one"),
        "{}",
        cluster.arn
    );
    assert!(cluster.endpoint.as_deref().is_some_and(|e| e.starts_with("https://")), "{:?}", cluster.endpoint);
    assert!(cluster.certificate_authority_data.is_some());
    assert_eq!(cluster.subnets, config.subnets);
    assert_eq!(cluster.role_arn, config.service_role);
    assert_eq!(cluster.tags.get("team").map(String::as_str), Some("platform"));
    assert_eq!(cluster.logging_types, ["api"]);
    assert!(eks.list_clusters().await.unwrap().contains(&name.to_owned()));

    for ng in &config.node_groups {
        let create = eks::nodegroup_for_create(&config, ng);
        eks.create_nodegroup(name, &create).await.unwrap_or_else(|e| panic!("{e}\n{}", moto.log()));
    }
    for ng in &config.node_groups {
        let got = eks.wait_nodegroup_active(name, &ng.nodegroup_name, wait).await.unwrap();
        assert_eq!(got.status, NodegroupStatus::Active);
        assert_eq!(got.instance_types, ["t3.medium"]);
        assert_eq!(got.labels.get("pool"), Some(&ng.nodegroup_name));
        assert_eq!(got.subnets, config.subnets, "the cluster's subnets");
        assert_eq!(got.scaling.desired_size, ng.desired_size.map(|n| n as i32));
    }
    let mut groups = eks.list_nodegroups(name).await.unwrap();
    groups.sort();
    assert_eq!(groups, ["ng-a", "ng-b"]);

    // Scale ng-b to 3 of at most 5.
    let scale = Scaling { min_size: Some(1), max_size: Some(5), desired_size: Some(3) };
    let update = eks.update_nodegroup_scaling(name, "ng-b", scale).await.unwrap();
    let done = eks.wait_update(name, Some("ng-b"), &update.id, wait).await.unwrap();
    assert_eq!(done.status, UpdateStatus::Successful);
    assert_eq!(eks.describe_nodegroup(name, "ng-b").await.unwrap().scaling, scale);
    assert_eq!(
        eks.describe_nodegroup(name, "ng-a").await.unwrap().scaling.desired_size,
        Some(1),
        "untouched"
    );

    // Upgrade the control plane, then the nodes.
    let skip = eks.update_cluster_version(name, "1.31").await.unwrap_err();
    assert!(matches!(&skip, EksError::Invalid { operation: "UpdateClusterVersion", .. }), "{skip}");
    assert!(!ProvisionError::from(skip).is_transient());
    let up = eks.update_cluster_version(name, "1.30").await.unwrap();
    assert_eq!((up.status.clone(), up.kind.as_str()), (UpdateStatus::InProgress, "VersionUpdate"));
    assert_eq!(eks.describe_update(name, None, &up.id).await.unwrap().status, UpdateStatus::InProgress);
    assert_eq!(
        eks.describe_cluster(name).await.unwrap().version.as_deref(),
        Some("1.29"),
        "not before it is done"
    );
    eks.wait_update(name, None, &up.id, wait).await.unwrap();
    assert_eq!(eks.describe_cluster(name).await.unwrap().version.as_deref(), Some("1.30"));
    for ng in ["ng-a", "ng-b"] {
        let up = eks.update_nodegroup_version(name, ng, None).await.unwrap();
        eks.wait_update(name, Some(ng), &up.id, wait).await.unwrap();
        assert_eq!(eks.describe_nodegroup(name, ng).await.unwrap().version.as_deref(), Some("1.30"), "{ng}");
    }
    let unknown = eks.describe_update(name, None, "no-such-update").await.unwrap_err();
    assert!(unknown.is_not_found(), "{unknown}");

    // Node groups first, then the cluster; afterwards everything is NotFound.
    for ng in ["ng-a", "ng-b"] {
        eks.delete_nodegroup(name, ng).await.unwrap();
        eks.wait_nodegroup_gone(name, ng, wait).await.unwrap();
    }
    assert!(eks.list_nodegroups(name).await.unwrap().is_empty());
    eks.delete_cluster(name).await.unwrap();
    eks.wait_cluster_gone(name, wait).await.unwrap();
    let gone = eks.describe_cluster(name).await.unwrap_err();
    assert!(gone.is_not_found(), "{gone}");
    assert!(matches!(gone, EksError::NotFound { operation: "DescribeCluster", .. }));
    assert!(eks.delete_cluster(name).await.unwrap_err().is_not_found(), "deleting twice: done");
    assert!(eks.describe_nodegroup(name, "ng-a").await.unwrap_err().is_not_found());
    assert!(!eks.list_clusters().await.unwrap().contains(&name.to_owned()));
}

/// moto (5.x) checks EKS requests' signatures once authentication is on, but refuses even
/// botocore's correct ones there (`SignatureDoesNotMatch` for boto3 with the right key, tried by
/// hand), so the right key cannot be shown working under the check: the same client works while it
/// is off and gets a credential error once it is on.
#[tokio::test]
async fn a_wrong_secret_is_a_credential_error_that_never_shows_the_secret() {
    let moto = Moto::start().await;
    let wrong_secret = "WRONG-SECRET-wJalrXUtnFEMI";
    let wrong = client(moto.endpoint(), "AKIAUNKNOWNKEY000000", wrong_secret);
    assert_eq!(
        wrong.list_clusters().await.unwrap_or_else(|e| panic!("{e}\n{}", moto.log())),
        Vec::<String>::new()
    );

    let (id, key) = moto.enforce_signatures_allowing("eks").await;
    for (who, eks, code) in [
        ("a wrong secret", client(moto.endpoint(), &id, wrong_secret), "SignatureDoesNotMatch"),
        ("an unknown key", wrong, "InvalidClientTokenId"),
    ] {
        let e = eks.list_clusters().await.unwrap_err();
        assert!(e.is_credentials(), "{who}: {e} / {e:?}");
        let text = format!("{e} {e:?} {eks:?}");
        assert!(
            text.starts_with(&format!("ListClusters: AWS rejected the credentials ({code})")),
            "{who}: {text}"
        );
        assert!(!text.contains(wrong_secret) && !text.contains(&key), "{who}: the secret shows: {text}");
        let p = ProvisionError::from(e);
        assert!(!p.is_transient(), "{who}: {p}");
        assert!(!format!("{p} {p:?}").contains(wrong_secret));
    }
}

/// A server answering `ListClusters` with `throttled` 429 `ThrottlingException`s (with
/// `Retry-After: 1`) before a list.
async fn throttling_server(throttled: u32) -> (String, Arc<AtomicU32>, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(AtomicU32::new(0));
    let counter = seen.clone();
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { return };
            let counter = counter.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |_req| {
                    let n = counter.fetch_add(1, Ordering::SeqCst);
                    async move {
                        let r = if n < throttled {
                            hyper::Response::builder()
                                .status(429)
                                .header("x-amzn-errortype", "ThrottlingException")
                                .header("retry-after", "1")
                                .body(http_body_util::Full::new(bytes::Bytes::from(
                                    r#"{"message":"Rate exceeded"}"#,
                                )))
                        } else {
                            hyper::Response::builder()
                                .header("content-type", "application/json")
                                .body(http_body_util::Full::new(bytes::Bytes::from(r#"{"clusters":["c1"]}"#)))
                        };
                        Ok::<_, std::convert::Infallible>(r.unwrap())
                    }
                });
                let io = hyper_util::rt::TokioIo::new(stream);
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, svc).await;
            });
        }
    });
    (url, seen, task)
}

#[tokio::test]
async fn throttling_is_retried_after_the_retry_after_the_answer_asks() {
    let (url, seen, task) = throttling_server(1).await;
    let eks = client(url, "AKIDEXAMPLE", "secret");
    let start = Instant::now();
    assert_eq!(eks.list_clusters().await.unwrap(), ["c1"]);
    let waited = start.elapsed();
    assert_eq!(seen.load(Ordering::SeqCst), 2);
    assert_eq!(eks.calls().api_calls(), 2, "the retry is counted");
    // The policy's own backoff is 10 ms: only the header makes it wait a second.
    assert!(waited >= Duration::from_millis(950), "{waited:?}");
    task.abort();

    let (url, seen, task) = throttling_server(u32::MAX).await;
    let eks = client(url, "AKIDEXAMPLE", "secret");
    let e = eks.list_clusters().await.unwrap_err();
    assert!(matches!(&e, EksError::Throttled { operation: "ListClusters", .. }), "{e}");
    assert_eq!(seen.load(Ordering::SeqCst), 3, "max_attempts");
    assert!(ProvisionError::from(e).is_transient());
    task.abort();
}

#[test]
fn bad_configs_are_refused_before_any_cloud_call_naming_the_field() {
    let refused = |change: &dyn Fn(&mut EksConfig)| {
        let mut c = config();
        change(&mut c);
        match eks::validate(&c) {
            Err(ProvisionError::InvalidSpec { field, message }) => (field, message),
            other => panic!("{other:?}"),
        }
    };
    let (f, m) = refused(&|c| c.node_groups[1].max_size = Some(0));
    assert_eq!((f.as_str(), m.as_str()), ("spec.eksConfig.nodeGroups[1].maxSize", "must be at least 1"));
    let (f, m) = refused(&|c| c.subnets.clear());
    assert_eq!(f, "spec.eksConfig.subnets");
    assert!(m.contains("creating a VPC is not implemented"), "{m}");
    let (f, m) = refused(&|c| c.node_groups[0].node_role = None);
    assert_eq!(f, "spec.eksConfig.nodeGroups[0].nodeRole");
    assert!(m.contains("not implemented"), "{m}");
    assert_eq!(refused(&|c| c.region = "moon-1".into()).0, "spec.eksConfig.region");
}

#[test]
fn the_client_s_token_presigns_get_caller_identity_for_the_cluster() {
    let eks = client("http://127.0.0.1:1".into(), "AKIDEXAMPLE", "token-secret");
    let token = eks.bearer_token("eks-one");
    let text = token.expose_secret();
    assert!(text.starts_with("k8s-aws-v1."), "{text}");
    let url = url::Url::parse(&eks::token_url(&token).unwrap()).unwrap();
    assert_eq!(url.host_str(), Some("sts.us-west-2.amazonaws.com"));
    let q: BTreeMap<String, String> = url.query_pairs().into_owned().collect();
    assert_eq!(q["Action"], "GetCallerIdentity");
    assert_eq!(q["X-Amz-Expires"], "60");
    assert!(q["X-Amz-SignedHeaders"].split(';').any(|h| h == "x-k8s-aws-id"), "{q:?}");
    assert!(
        q["X-Amz-Credential"].starts_with("AKIDEXAMPLE/")
            && q["X-Amz-Credential"].ends_with("/us-west-2/sts/aws4_request")
    );
    assert!(!url.as_str().contains("token-secret"));
}
