//! EKS end to end, all through `rancherctl`, against moto's EKS (with the stand-in for the update
//! operations moto lacks in front of it). moto's cluster endpoints are not reachable, which is the
//! private-endpoint path: the cluster waits with the import command shown, the user applies it to
//! the cluster (a `rancher-sim`) and it becomes `active`. Then kubectl through the proxy, scale a
//! node group, upgrade (the control plane first, then each node group), delete (node groups, then
//! the cluster, gone at AWS); then import an existing cluster and delete it from Rancher only.

use std::time::Duration;

use rancher_provision::hosted::credentials::CloudSecret;
use rancher_provision::hosted::eks::{self, EksClient, EksOptions};
use rancher_test_support::eks::EksUpdateStandIn;
use rancher_test_support::moto::Moto;
use serde_json::Value;

use crate::hosted_support::{Hosted, kubectl_out};
use crate::import_support::*;

const REGION: &str = "us-west-2";
const ACCOUNT: &str = "123456789012";
const ACCESS_KEY: &str = "AKIAIOSFODNN7EXAMPLE";
const SECRET_KEY: &str = "wJalrXUtnFEMI-EKS-E2E-SECRET";

fn eks_yaml(cluster: &str, version: &str, ng_a: u32, imported: bool) -> String {
    format!(
        r#"amazonCredentialSecret: aws-keys
displayName: {cluster}
region: {REGION}
imported: {imported}
kubernetesVersion: "{version}"
tags:
  team: platform
subnets: [subnet-0a1b2c3d, subnet-0a1b2c3e]
serviceRole: arn:aws:iam::{ACCOUNT}:role/eks-service
nodeGroups:
  - nodegroupName: ng-a
    instanceType: t3.medium
    diskSize: 20
    minSize: 1
    maxSize: 5
    desiredSize: {ng_a}
    nodeRole: arn:aws:iam::{ACCOUNT}:role/eks-nodes
  - nodegroupName: ng-b
    instanceType: t3.large
    diskSize: 20
    minSize: 1
    maxSize: 3
    desiredSize: 2
    nodeRole: arn:aws:iam::{ACCOUNT}:role/eks-nodes
"#
    )
}

/// The test's own view of AWS, through the same stand-in.
fn aws(endpoint: &str) -> EksClient {
    let secret = CloudSecret::Aws {
        access_key_id: ACCESS_KEY.into(),
        secret_access_key: SECRET_KEY.into(),
        session_token: None,
        default_region: REGION.into(),
    };
    EksClient::from_secret(
        &secret,
        REGION,
        EksOptions { endpoint_url: Some(endpoint.into()), ..Default::default() },
    )
    .unwrap()
}

/// The manifest URL in a message that shows the import command.
fn manifest_url(message: &str) -> Option<String> {
    let (_, rest) = message.split_once("kubectl apply -f ")?;
    Some(rest.split_whitespace().next()?.to_owned())
}

fn status_message(c: &Value) -> String {
    c["status"]["provisioning"]["message"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eks_private_endpoint_import_scale_upgrade_delete_and_import_through_rancherctl() {
    install_crypto();
    let dir = tempfile::tempdir().unwrap();
    let moto = Moto::start().await;
    let standin = EksUpdateStandIn::start(moto.endpoint()).await;
    let aws = aws(&standin.endpoint());
    let h = Hosted::start(dir.path(), &["--eks-api-url", &standin.endpoint()]).await;
    let secret = dir.path().join("secret");
    std::fs::write(&secret, SECRET_KEY).unwrap();
    h.ok(&[
        "credential",
        "create",
        "aws",
        "aws-keys",
        "--access-key",
        ACCESS_KEY,
        "--secret-key-file",
        secret.to_str().unwrap(),
        "--region",
        REGION,
    ]);

    // A config without the role it needs is refused before anything is sent.
    let file = dir.path().join("eks.yaml");
    std::fs::write(&file, eks_yaml("prod-eks", "1.29", 1, false).replace("serviceRole:", "#")).unwrap();
    let out = h.fails(&["cluster", "create", "prod", "--eks", file.to_str().unwrap(), "--no-wait"]);
    assert!(out.contains("spec.eksConfig.serviceRole"), "{out}");
    assert!(aws.list_clusters().await.unwrap().is_empty());

    std::fs::write(&file, eks_yaml("prod-eks", "1.29", 1, false)).unwrap();
    h.ok(&["cluster", "create", "prod", "--eks", file.to_str().unwrap(), "--no-wait"]);
    // moto's endpoint is not reachable: the cluster waits with the import command shown.
    let url = eventually(WAIT, "the import command is shown", || {
        let c = h.cluster("prod");
        async move { manifest_url(&status_message(&c)) }
    })
    .await;
    let groups = aws.list_nodegroups("prod-eks").await.unwrap();
    assert_eq!(groups.len(), 2, "{groups:?}");
    let sim = rancher_sim::Sim::builder().name("eks-prod").nodes(2).start().await.unwrap();
    let kc = dir.path().join("sim.kubeconfig");
    std::fs::write(&kc, sim.kubeconfig_yaml()).unwrap();
    let env = apply_manifest(&url, &kc, dir.path()).await;
    let _agent = start_agent(&env, &kc, &dir.path().join("agent.log"), &[]);
    let row = wait_state(&h.home, "prod", "active", WAIT).await;
    assert_eq!(row[2], "EKS", "{row:?}");
    let c = h.cluster("prod");
    assert_eq!(c["status"]["eksStatus"]["phase"], "ACTIVE", "{c}");

    // kubectl through the server's proxy.
    let kubeconfig = dir.path().join("prod.kubeconfig");
    std::fs::write(&kubeconfig, h.ok(&["kubeconfig", "prod"])).unwrap();
    let nodes = kubectl_out(&kubeconfig, &["get", "nodes", "-o", "name"]);
    assert_eq!(nodes.lines().count(), 2, "{nodes}");

    // Scale a node group.
    std::fs::write(&file, eks_yaml("prod-eks", "1.29", 3, false)).unwrap();
    h.ok(&["cluster", "update", "prod", "--eks", file.to_str().unwrap(), "--no-wait"]);
    eventually(WAIT, "ng-a scaled to 3", || {
        let aws = aws.clone();
        async move {
            let g = aws.describe_nodegroup("prod-eks", "ng-a").await.ok()?;
            (g.scaling.desired_size == Some(3)).then_some(())
        }
    })
    .await;
    assert_eq!(aws.describe_nodegroup("prod-eks", "ng-b").await.unwrap().scaling.desired_size, Some(2));

    // Upgrade: the control plane first, then each node group, each step in the status.
    std::fs::write(&file, eks_yaml("prod-eks", "1.30", 3, false)).unwrap();
    h.ok(&["cluster", "update", "prod", "--eks", file.to_str().unwrap(), "--no-wait"]);
    let mut seen: Vec<String> = Vec::new();
    eventually(Duration::from_secs(120), "every node group at 1.30", || {
        let c = h.cluster("prod");
        let message = status_message(&c);
        if message.starts_with("upgrading") && !seen.iter().any(|m| message.starts_with(m.as_str())) {
            seen.push(message.split(" (").next().unwrap_or_default().to_owned());
        }
        let aws = aws.clone();
        async move {
            for g in ["ng-a", "ng-b"] {
                let ng = aws.describe_nodegroup("prod-eks", g).await.ok()?;
                (ng.version.as_deref() == Some("1.30")).then_some(())?;
            }
            c["status"]["eksStatus"]["operation"].is_null().then_some(())
        }
    })
    .await;
    assert_eq!(
        seen,
        [
            "upgrading the control plane 1.29 → 1.30",
            "upgrading node group ng-a 1.29 → 1.30",
            "upgrading node group ng-b 1.29 → 1.30"
        ],
        "{seen:?}"
    );
    assert_eq!(aws.describe_cluster("prod-eks").await.unwrap().version.as_deref(), Some("1.30"));
    wait_state(&h.home, "prod", "active", WAIT).await;

    // Delete: the node groups, then the cluster, gone at AWS; then from Rancher.
    h.ok(&["cluster", "rm", "prod"]);
    eventually(Duration::from_secs(120), "the EKS cluster is deleted", || {
        let aws = aws.clone();
        async move { aws.find_cluster("prod-eks").await.ok()?.is_none().then_some(()) }
    })
    .await;
    h.wait_gone("prod").await;

    // Import an existing cluster; deleting it in Rancher leaves it at AWS.
    let mut config: rancher_core::model::EksConfig =
        serde_saphyr::from_str(&eks_yaml("existing-eks", "1.29", 1, false)).unwrap();
    config.node_groups.clear();
    aws.create_cluster(&eks::cluster_for_create(&config)).await.unwrap();
    let imp = dir.path().join("import.yaml");
    std::fs::write(&imp, eks_yaml("existing-eks", "1.29", 1, true)).unwrap();
    h.ok(&["cluster", "create", "existing", "--eks", imp.to_str().unwrap(), "--no-wait"]);
    let url = eventually(WAIT, "the import command is shown for the imported cluster", || {
        let c = h.cluster("existing");
        async move { manifest_url(&status_message(&c)) }
    })
    .await;
    let sim2 = rancher_sim::Sim::builder().name("eks-existing").nodes(1).start().await.unwrap();
    let kc2 = dir.path().join("sim2.kubeconfig");
    std::fs::write(&kc2, sim2.kubeconfig_yaml()).unwrap();
    let env2 = apply_manifest(&url, &kc2, dir.path()).await;
    let _agent2 = start_agent(&env2, &kc2, &dir.path().join("agent2.log"), &[]);
    wait_state(&h.home, "existing", "active", WAIT).await;
    assert!(
        aws.list_nodegroups("existing-eks").await.unwrap().is_empty(),
        "an imported cluster is not changed"
    );
    h.ok(&["cluster", "rm", "existing"]);
    h.wait_gone("existing").await;
    assert!(aws.find_cluster("existing-eks").await.unwrap().is_some(), "an imported cluster stays at AWS");
    let log = read_log(&h.log);
    assert!(!log.contains(SECRET_KEY) && !log.contains("k8s-aws-v1."), "a secret in the server's log");
}
