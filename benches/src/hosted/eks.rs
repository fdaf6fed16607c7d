//! EKS against moto, with `rancher_test_support::eks::EksUpdateStandIn` in front of it (the version
//! updates moto lacks; its record of requests is what is counted). moto's clusters' endpoints are
//! not reachable, so a cluster created through the server waits with the import command shown and
//! the bench, as the user, applies it to a `rancher-sim`. The direct path is `EksClient` and its
//! `wait_*` helpers; the bench's own checks sign with another access key and are not counted.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use rancher::server::CloudEndpoints;
use rancher_core::model::EksConfig;
use rancher_provision::hosted::credentials::CloudSecret;
use rancher_provision::hosted::eks::{
    self, ClusterStatus, EksClient, EksOptions, NodegroupStatus, Scaling, Update, Wait,
};
use rancher_test_support::eks::EksUpdateStandIn;
use rancher_test_support::moto::Moto;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::{CallKind, Engine, Phase, Stage};

const REGION: &str = "us-west-2";
const ACCOUNT: &str = "123456789012";
/// The keys of the cloud credential (the server's) and of the direct path.
const ACCESS_KEY: &str = "AKIAIOSFODNN7EXAMPLE";
const SECRET_KEY: &str = "wJalrXUtnFEMI-EKS-BENCH-SECRET";
/// The keys the bench checks the provider with; requests signed with them are not counted.
const CHECK_ACCESS_KEY: &str = "AKIABENCHCHECKER0001";
/// The versions before and after the upgrade (EKS moves a control plane one minor at a time).
const VERSIONS: [&str; 2] = ["1.29", "1.30"];
/// The node groups; the first is the one scaled (1 → 3 nodes).
const NODE_GROUPS: [&str; 2] = ["ng-a", "ng-b"];
/// The longest one operation is waited for on the direct path.
const OPERATION_LIMIT: Duration = Duration::from_secs(120);

/// EKS: moto with the update stand-in in front.
pub struct Eks {
    // The stand-in is dropped before the moto it forwards to.
    stand_in: EksUpdateStandIn,
    _moto: Moto,
    sim: rancher_sim::SimHandle,
    poll: Duration,
    /// The direct path's client.
    client: EksClient,
    /// The bench's checks' client (other keys: not counted).
    checker: EksClient,
}

fn eks_client(endpoint: &str, access_key: &str) -> Result<EksClient> {
    let secret = CloudSecret::Aws {
        access_key_id: access_key.into(),
        secret_access_key: SECRET_KEY.into(),
        session_token: None,
        default_region: REGION.into(),
    };
    let options = EksOptions { endpoint_url: Some(endpoint.to_owned()), ..Default::default() };
    EksClient::from_secret(&secret, REGION, options).context("the EKS client")
}

impl Eks {
    /// Starts moto, the stand-in in front of it, and the downstream sim the user imports; `poll`:
    /// how often the direct path polls.
    ///
    /// # Errors
    /// When the sim does not start or a client cannot be made.
    ///
    /// # Panics
    /// When moto does not start (`rancher_test_support::moto`).
    pub async fn start(poll: Duration) -> Result<Eks> {
        let moto = Moto::start().await;
        let stand_in = EksUpdateStandIn::start(moto.endpoint()).await;
        let sim = rancher_sim::Sim::builder().name("eks-bench").nodes(3).start().await?;
        let client = eks_client(&stand_in.endpoint(), ACCESS_KEY)?;
        let checker = eks_client(&stand_in.endpoint(), CHECK_ACCESS_KEY)?;
        Ok(Eks { stand_in, _moto: moto, sim, poll, client, checker })
    }

    fn typed_config(&self, name: &str, stage: Stage) -> Result<EksConfig> {
        Ok(serde_json::from_value(self.config(name, stage))?)
    }

    fn wait<'a>(&self, cancel: &'a CancellationToken) -> Wait<'a> {
        Wait { poll: self.poll, deadline: OPERATION_LIMIT, cancel }
    }

    async fn wait_update(&self, cluster: &str, nodegroup: Option<&str>, u: Update) -> Result<()> {
        let cancel = CancellationToken::new();
        self.client.wait_update(cluster, nodegroup, &u.id, self.wait(&cancel)).await?;
        Ok(())
    }
}

impl Engine for Eks {
    fn name(&self) -> &'static str {
        "EKS"
    }

    fn timing(&self) -> String {
        format!(
            "EKS (moto + EksUpdateStandIn; --operation-ms does not apply): moto makes clusters and node \
             groups ACTIVE, and deletes them, at once and does scaling updates at once; the stand-in's \
             version updates answer InProgress to their first DescribeUpdate and Successful after. \
             No STS or token calls: the cluster's bearer token is presigned locally. moto's endpoint \
             is unreachable, so the server's create includes the user's import. The direct path polls \
             every {:.1} s",
            self.poll.as_secs_f64()
        )
    }

    fn spec_field(&self) -> &'static str {
        "eksConfig"
    }

    fn credential(&self) -> (&'static str, Value) {
        let config = json!({"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY, "defaultRegion": REGION});
        ("amazonec2credentialConfig", config)
    }

    fn endpoints(&self) -> CloudEndpoints {
        CloudEndpoints { eks: Some(self.stand_in.endpoint()), ..Default::default() }
    }

    fn config(&self, name: &str, stage: Stage) -> Value {
        let version = if stage == Stage::Upgraded { VERSIONS[1] } else { VERSIONS[0] };
        let scaled = if stage == Stage::Created { 1 } else { 3 };
        json!({
            "amazonCredentialSecret": "bench-cred",
            "displayName": name,
            "region": REGION,
            "imported": false,
            "kubernetesVersion": version,
            "tags": {"team": "platform"},
            "subnets": ["subnet-0a1b2c3d", "subnet-0a1b2c3e"],
            "serviceRole": format!("arn:aws:iam::{ACCOUNT}:role/eks-service"),
            "nodeGroups": [
                {"nodegroupName": NODE_GROUPS[0], "instanceType": "t3.medium", "diskSize": 20,
                 "minSize": 1, "maxSize": 5, "desiredSize": scaled,
                 "nodeRole": format!("arn:aws:iam::{ACCOUNT}:role/eks-nodes")},
                {"nodegroupName": NODE_GROUPS[1], "instanceType": "t3.large", "diskSize": 20,
                 "minSize": 1, "maxSize": 3, "desiredSize": 2,
                 "nodeRole": format!("arn:aws:iam::{ACCOUNT}:role/eks-nodes")},
            ],
        })
    }

    fn call_kinds(&self) -> Vec<CallKind> {
        self.stand_in
            .calls()
            .iter()
            .map(|c| match c.access_key_id.as_deref() {
                Some(CHECK_ACCESS_KEY) => CallKind::NotCounted,
                _ => CallKind::Api,
            })
            .collect()
    }

    async fn check(&self, name: &str, stage: Option<Stage>) -> Result<()> {
        let have = self.checker.find_cluster(name).await?;
        let Some(stage) = stage else {
            ensure!(have.is_none(), "AWS still has cluster {name}");
            return Ok(());
        };
        let have = have.with_context(|| format!("AWS has no cluster {name}"))?;
        ensure!(have.status == ClusterStatus::Active, "cluster {name} is {:?}", have.status);
        let want = self.typed_config(name, stage)?;
        let version = want.kubernetes_version.as_deref().unwrap_or_default();
        let running = have.version.as_deref().unwrap_or_default();
        ensure!(running == version, "cluster {name}: control plane at {running}, not {version}");
        for g in &want.node_groups {
            let group = &g.nodegroup_name;
            let h = self
                .checker
                .find_nodegroup(name, group)
                .await?
                .with_context(|| format!("cluster {name} has no node group {group}"))?;
            ensure!(h.status == NodegroupStatus::Active, "node group {group} is {:?}", h.status);
            let nodes = h.scaling.desired_size.map(i64::from);
            ensure!(nodes == g.desired_size, "node group {group}: {nodes:?} nodes, not {:?}", g.desired_size);
            let v = h.version.as_deref().unwrap_or_default();
            ensure!(v == version, "node group {group} at {v}, not {version}");
        }
        Ok(())
    }

    fn user_imports(&self) -> bool {
        true
    }

    fn downstream_kubeconfig(&self) -> String {
        self.sim.kubeconfig_yaml()
    }

    async fn direct(&self, name: &str, phase: Phase) -> Result<()> {
        let config = self.typed_config(name, phase.leaves().unwrap_or(Stage::Upgraded))?;
        let client = &self.client;
        let cancel = CancellationToken::new();
        match phase {
            Phase::Create => {
                client.create_cluster(&eks::cluster_for_create(&config)).await?;
                client.wait_cluster_active(name, self.wait(&cancel)).await?;
                for g in &config.node_groups {
                    client.create_nodegroup(name, &eks::nodegroup_for_create(&config, g)).await?;
                }
                for g in &config.node_groups {
                    client.wait_nodegroup_active(name, &g.nodegroup_name, self.wait(&cancel)).await?;
                }
                // What using the cluster takes: its endpoint and CA (one more read), and a bearer
                // token, presigned here (no call).
                let running = client.describe_cluster(name).await?;
                ensure!(running.endpoint.is_some(), "cluster {name} active without an endpoint");
                let _token = client.bearer_token(name);
            }
            Phase::Scale => {
                let scaling = Scaling { desired_size: Some(3), ..Default::default() };
                let u = client.update_nodegroup_scaling(name, NODE_GROUPS[0], scaling).await?;
                self.wait_update(name, Some(NODE_GROUPS[0]), u).await?;
            }
            Phase::Upgrade => {
                let u = client.update_cluster_version(name, VERSIONS[1]).await?;
                self.wait_update(name, None, u).await?;
                for group in NODE_GROUPS {
                    let u = client.update_nodegroup_version(name, group, Some(VERSIONS[1])).await?;
                    self.wait_update(name, Some(group), u).await?;
                }
            }
            Phase::Delete => {
                for group in NODE_GROUPS {
                    client.delete_nodegroup(name, group).await?;
                }
                for group in NODE_GROUPS {
                    client.wait_nodegroup_gone(name, group, self.wait(&cancel)).await?;
                }
                client.delete_cluster(name).await?;
                client.wait_cluster_gone(name, self.wait(&cancel)).await?;
            }
        }
        Ok(())
    }
}
