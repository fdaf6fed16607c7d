//! AKS against `rancher_test_support::aks::AksStandIn` (sign-in and Resource Manager), whose
//! clusters' admin kubeconfig points at a `rancher-sim`. The direct path is `AksClient`, waiting on
//! each operation as Azure's `Retry-After` says.

use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use rancher::server::CloudEndpoints;
use rancher_core::model::AksConfig;
use rancher_provision::hosted::aks::{self, AksClient, AksClientOptions, AzureCredentials, AzureEndpoints};
use rancher_test_support::aks::{AksStandIn, AksStandInConfig, KubeTarget};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::{CallKind, Engine, Phase, Stage};

const RESOURCE_GROUP: &str = "rg-bench";
/// The versions before and after the upgrade.
const VERSIONS: [&str; 2] = ["1.30.4", "1.31.2"];
/// The pools (a System one and a User one); the second is the one scaled (2 → 4 nodes).
const POOLS: [&str; 2] = ["system", "user1"];
/// The longest one operation is waited for on the direct path.
const OPERATION_LIMIT: Duration = Duration::from_secs(120);

/// AKS and its stand-in.
pub struct Aks {
    stand_in: AksStandIn,
    sim: rancher_sim::SimHandle,
    operation_time: Duration,
    retry_after: u64,
    /// The direct path's client, made on its first phase.
    client: tokio::sync::OnceCell<AksClient>,
}

impl Aks {
    /// Starts the stand-in (operations taking `operation_time`, polls told `Retry-After:
    /// retry_after` seconds) and its downstream sim.
    ///
    /// # Errors
    /// When the sim does not start.
    pub async fn start(operation_time: Duration, retry_after: u64) -> Result<Aks> {
        let stand_in = AksStandIn::start(AksStandInConfig {
            operation_time,
            poll_retry_after: Some(retry_after),
            ..Default::default()
        })
        .await;
        let sim = rancher_sim::Sim::builder().name("aks-bench").nodes(3).start().await?;
        stand_in.set_kube_target(KubeTarget {
            server: sim.url(),
            ca_pem: sim.ca_pem().to_owned(),
            token: sim.admin_token().to_owned(),
        });
        Ok(Aks { stand_in, sim, operation_time, retry_after, client: tokio::sync::OnceCell::new() })
    }

    async fn client(&self) -> Result<&AksClient> {
        self.client
            .get_or_try_init(|| async {
                let c = self.stand_in.config();
                let base = self.stand_in.base_url();
                let options = AksClientOptions {
                    endpoints: AzureEndpoints::with_overrides(Some(&base), Some(&base))?,
                    extra_ca_pem: Some(self.stand_in.ca_pem().to_owned()),
                    ..Default::default()
                };
                let creds = AzureCredentials {
                    tenant_id: c.tenant_id,
                    client_id: c.client_id,
                    client_secret: c.client_secret.into(),
                    subscription_id: c.subscription_id,
                };
                AksClient::new(creds, options).context("the AKS client")
            })
            .await
    }

    async fn wait(&self, client: &AksClient, op: aks::Operation) -> Result<()> {
        client.wait(&op, OPERATION_LIMIT, &CancellationToken::new()).await?;
        Ok(())
    }
}

impl Engine for Aks {
    fn name(&self) -> &'static str {
        "AKS"
    }

    fn timing(&self) -> String {
        format!(
            "AKS stand-in: each operation {:.1} s, Retry-After {} s on its polls (both paths honour it)",
            self.operation_time.as_secs_f64(),
            self.retry_after
        )
    }

    fn spec_field(&self) -> &'static str {
        "aksConfig"
    }

    fn credential(&self) -> (&'static str, Value) {
        let c = self.stand_in.config();
        let config = json!({
            "clientId": c.client_id,
            "clientSecret": c.client_secret,
            "subscriptionId": c.subscription_id,
            "tenantId": c.tenant_id,
            "environment": "",
        });
        ("azurecredentialConfig", config)
    }

    fn endpoints(&self) -> CloudEndpoints {
        // Resource Manager's address is the cluster's (`baseUrl`, `authBaseUrl`); the CA the server's.
        CloudEndpoints { extra_ca_pem: Some(self.stand_in.ca_pem().to_owned()), ..Default::default() }
    }

    fn config(&self, name: &str, stage: Stage) -> Value {
        let version = if stage == Stage::Upgraded { VERSIONS[1] } else { VERSIONS[0] };
        let scaled = if stage == Stage::Created { 2 } else { 4 };
        let base = self.stand_in.base_url();
        json!({
            "azureCredentialSecret": "bench-cred",
            "resourceLocation": "eastus",
            "resourceGroup": RESOURCE_GROUP,
            "clusterName": name,
            "baseUrl": base,
            "authBaseUrl": base,
            "kubernetesVersion": version,
            "dnsPrefix": name,
            "tags": {"team": "platform"},
            "nodePools": [
                {"name": POOLS[0], "mode": "System", "count": 1, "vmSize": "Standard_DS2_v2",
                 "orchestratorVersion": version},
                {"name": POOLS[1], "mode": "User", "count": scaled, "vmSize": "Standard_DS2_v2",
                 "orchestratorVersion": version},
            ],
        })
    }

    fn call_kinds(&self) -> Vec<CallKind> {
        self.stand_in
            .calls()
            .iter()
            .map(|c| if c.path.ends_with("/oauth2/v2.0/token") { CallKind::Token } else { CallKind::Api })
            .collect()
    }

    async fn check(&self, name: &str, stage: Option<Stage>) -> Result<()> {
        let have = self.stand_in.cluster(RESOURCE_GROUP, name);
        let Some(stage) = stage else {
            ensure!(have.is_none(), "Azure still has cluster {name}");
            return Ok(());
        };
        let have = have.with_context(|| format!("Azure has no cluster {name}"))?;
        let p = &have["properties"];
        ensure!(p["provisioningState"] == "Succeeded", "cluster {name} is {}", p["provisioningState"]);
        let want = self.config(name, stage);
        let version = want["kubernetesVersion"].as_str().unwrap_or_default();
        let running = p["currentKubernetesVersion"].as_str().unwrap_or_default();
        ensure!(running == version, "cluster {name}: control plane at {running}, not {version}");
        for pool in want["nodePools"].as_array().into_iter().flatten() {
            let Some(h) =
                p["agentPoolProfiles"].as_array().into_iter().flatten().find(|h| h["name"] == pool["name"])
            else {
                bail!("cluster {name} has no pool {}", pool["name"]);
            };
            ensure!(
                h["count"] == pool["count"],
                "pool {}: {} nodes, not {}",
                pool["name"],
                h["count"],
                pool["count"]
            );
            let v = h["currentOrchestratorVersion"].as_str().unwrap_or_default();
            ensure!(v == version, "pool {} at {v}, not {version}", pool["name"]);
        }
        Ok(())
    }

    fn downstream_kubeconfig(&self) -> String {
        self.sim.kubeconfig_yaml()
    }

    async fn direct(&self, name: &str, phase: Phase) -> Result<()> {
        let client = self.client().await?;
        let config: AksConfig =
            serde_json::from_value(self.config(name, phase.leaves().unwrap_or(Stage::Upgraded)))?;
        let rg = RESOURCE_GROUP;
        match phase {
            Phase::Create => {
                client.ensure_resource_group(rg, &config.resource_location, &config.tags).await?;
                let c = self.stand_in.config();
                let identity =
                    aks::spec::ClusterIdentity::for_config(&config, (c.client_id, c.client_secret.into()));
                let body = aks::spec::managed_cluster(&config, &identity, client.subscription_id())?;
                let (_, op) = client.create_or_update_cluster(rg, name, &body).await?;
                self.wait(client, op).await?;
                // What using the cluster takes: its admin kubeconfig.
                client.admin_kubeconfig(rg, name).await?.access()?;
            }
            Phase::Scale => {
                let op = client.scale_pool(rg, name, POOLS[1], 4).await?;
                self.wait(client, op).await?;
            }
            Phase::Upgrade => {
                let op = client.upgrade_control_plane(rg, name, VERSIONS[1]).await?;
                self.wait(client, op).await?;
                for pool in POOLS {
                    let op = client.upgrade_pool(rg, name, pool, VERSIONS[1]).await?;
                    self.wait(client, op).await?;
                }
            }
            Phase::Delete => {
                let op = client.delete_cluster(rg, name).await?;
                self.wait(client, op).await?;
            }
        }
        Ok(())
    }
}
