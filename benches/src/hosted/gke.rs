//! GKE against `rancher_test_support::gke::GkeStandIn`, whose clusters' endpoint is a
//! `rancher-sim` that accepts the stand-in's access tokens (a TokenReview webhook, as GKE's control
//! planes accept Google tokens). The direct path is `GkeClient`, polling each operation.

use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use rancher::server::CloudEndpoints;
use rancher_core::model::GkeConfig;
use rancher_provision::hosted::gke::{self, GkeClient, GkeOptions, Location, NodePoolUpdate};
use rancher_test_support::gke::{GkeStandIn, GkeStandInOptions};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::{CallKind, Engine, Phase, Stage};

const ZONE: &str = "us-central1-a";
/// The versions before and after the upgrade (the stand-in resolves them as GKE does).
const VERSIONS: [&str; 2] = ["1.29", "1.30"];
/// The pools; the first is the one scaled (1 → 3 nodes).
const POOLS: [&str; 2] = ["pool-a", "pool-b"];
/// The longest one operation is waited for on the direct path.
const OPERATION_LIMIT: Duration = Duration::from_secs(120);

/// GKE and its stand-in.
pub struct Gke {
    stand_in: GkeStandIn,
    sim: rancher_sim::SimHandle,
    operation_time: Duration,
    poll: Duration,
    /// The direct path's client, made on its first phase.
    client: tokio::sync::OnceCell<GkeClient>,
}

impl Gke {
    /// Starts the stand-in (operations taking `operation_time`) and its downstream sim; `poll`: how
    /// often the direct path polls an operation.
    ///
    /// # Errors
    /// When the sim does not start.
    pub async fn start(operation_time: Duration, poll: Duration) -> Result<Gke> {
        let stand_in = GkeStandIn::start(GkeStandInOptions {
            operation_time,
            default_version: "1.29.4-gke.1043002".into(),
            ..Default::default()
        })
        .await;
        let sim = rancher_sim::Sim::builder()
            .name("gke-bench")
            .nodes(3)
            .auth_webhook(stand_in.token_review_url(), Some(stand_in.ca_pem().to_owned()))
            .start()
            .await?;
        stand_in.set_cluster_endpoint(&sim.addr().to_string(), sim.ca_pem());
        Ok(Gke { stand_in, sim, operation_time, poll, client: tokio::sync::OnceCell::new() })
    }

    fn typed_config(&self, name: &str, stage: Stage) -> Result<GkeConfig> {
        let mut config: GkeConfig = serde_json::from_value(self.config(name, stage))?;
        config.google_credential_secret.clear();
        Ok(config)
    }

    async fn client(&self) -> Result<&GkeClient> {
        self.client
            .get_or_try_init(|| async {
                let options = GkeOptions {
                    base_url: self.stand_in.base_url().to_owned(),
                    extra_ca_pem: Some(self.stand_in.ca_pem().to_owned()),
                    ..Default::default()
                };
                GkeClient::from_key_json(&self.stand_in.service_account_json().into(), options)
                    .context("the GKE client")
            })
            .await
    }

    async fn wait(&self, client: &GkeClient, at: &Location, op: gke::Operation) -> Result<()> {
        client.wait_operation(at, &op, self.poll, OPERATION_LIMIT, &CancellationToken::new()).await?;
        Ok(())
    }
}

impl Engine for Gke {
    fn name(&self) -> &'static str {
        "GKE"
    }

    fn timing(&self) -> String {
        format!(
            "GKE stand-in: each operation {:.1} s; direct path polls operations every {:.1} s",
            self.operation_time.as_secs_f64(),
            self.poll.as_secs_f64()
        )
    }

    fn spec_field(&self) -> &'static str {
        "gkeConfig"
    }

    fn credential(&self) -> (&'static str, Value) {
        ("googlecredentialConfig", json!({"authEncodedJson": self.stand_in.service_account_json()}))
    }

    fn endpoints(&self) -> CloudEndpoints {
        CloudEndpoints {
            gke: Some(self.stand_in.base_url().to_owned()),
            extra_ca_pem: Some(self.stand_in.ca_pem().to_owned()),
            ..Default::default()
        }
    }

    fn config(&self, name: &str, stage: Stage) -> Value {
        let version = if stage == Stage::Upgraded { VERSIONS[1] } else { VERSIONS[0] };
        let scaled = if stage == Stage::Created { 1 } else { 3 };
        json!({
            "googleCredentialSecret": "bench-cred",
            "projectID": self.stand_in.project_id(),
            "zone": ZONE,
            "clusterName": name,
            "kubernetesVersion": version,
            "labels": {"team": "platform"},
            "nodePools": [
                {"name": POOLS[0], "initialNodeCount": scaled,
                 "config": {"machineType": "e2-standard-4", "diskSizeGb": 50}},
                {"name": POOLS[1], "initialNodeCount": 2,
                 "config": {"machineType": "e2-standard-2", "diskSizeGb": 30}},
            ],
        })
    }

    fn call_kinds(&self) -> Vec<CallKind> {
        let review = self.stand_in.token_review_url();
        let review_path = review.strip_prefix(self.stand_in.base_url()).unwrap_or(&review);
        self.stand_in
            .calls()
            .iter()
            .map(|c| match c.path.as_str() {
                "/token" => CallKind::Token,
                p if p == review_path => CallKind::NotCounted,
                _ => CallKind::Api,
            })
            .collect()
    }

    async fn check(&self, name: &str, stage: Option<Stage>) -> Result<()> {
        let have = self.stand_in.cluster(ZONE, name);
        let Some(stage) = stage else {
            ensure!(have.is_none(), "GKE still has cluster {name}");
            return Ok(());
        };
        let have = have.with_context(|| format!("GKE has no cluster {name}"))?;
        ensure!(have["status"] == "RUNNING", "cluster {name} is {}", have["status"]);
        let want: Value = self.config(name, stage);
        let version = want["kubernetesVersion"].as_str().unwrap_or_default();
        let master = have["currentMasterVersion"].as_str().unwrap_or_default();
        ensure!(master.starts_with(version), "cluster {name}: control plane at {master}, not {version}");
        for pool in want["nodePools"].as_array().into_iter().flatten() {
            let Some(p) =
                have["nodePools"].as_array().into_iter().flatten().find(|p| p["name"] == pool["name"])
            else {
                bail!("cluster {name} has no pool {}", pool["name"]);
            };
            ensure!(
                p["initialNodeCount"] == pool["initialNodeCount"],
                "pool {}: {} nodes, not {}",
                pool["name"],
                p["initialNodeCount"],
                pool["initialNodeCount"]
            );
            let v = p["version"].as_str().unwrap_or_default();
            ensure!(v.starts_with(version), "pool {} at {v}, not {version}", pool["name"]);
        }
        Ok(())
    }

    fn downstream_kubeconfig(&self) -> String {
        self.sim.kubeconfig_yaml()
    }

    async fn direct(&self, name: &str, phase: Phase) -> Result<()> {
        let client = self.client().await?;
        let config = self.typed_config(name, phase.leaves().unwrap_or(Stage::Upgraded))?;
        let at = Location::of(&config);
        match phase {
            Phase::Create => {
                let op = client.create_cluster(&at, &gke::cluster_for_create(&config)).await?;
                self.wait(client, &at, op).await?;
                // What using the cluster takes: its endpoint and CA, and a token for it.
                let running = client.get_cluster(&at, name).await?;
                ensure!(!running.endpoint.is_empty(), "cluster {name} running without an endpoint");
                client.access_token().await?;
            }
            Phase::Scale => {
                let op = client.set_node_pool_size(&at, name, POOLS[0], 3).await?;
                self.wait(client, &at, op).await?;
            }
            Phase::Upgrade => {
                let op = client.update_master(&at, name, VERSIONS[1]).await?;
                self.wait(client, &at, op).await?;
                for pool in POOLS {
                    let update =
                        NodePoolUpdate { node_version: VERSIONS[1].to_owned(), ..Default::default() };
                    let op = client.update_node_pool(&at, name, pool, &update).await?;
                    self.wait(client, &at, op).await?;
                }
            }
            Phase::Delete => {
                let op = client.delete_cluster(&at, name).await?;
                self.wait(client, &at, op).await?;
            }
        }
        Ok(())
    }
}
