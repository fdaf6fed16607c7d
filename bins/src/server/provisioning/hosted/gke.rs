//! The GKE provisioner (driver `GKE`, `spec.gkeConfig`): creates the cluster with its node pools
//! through `container/v1`, applies changes one operation at a time in the order
//! [`gke::next_change`] gives, hands the running cluster to the controller with a Google access
//! token to deploy the agent with, and deletes the cluster (never an imported one) when the Rancher
//! cluster is deleted.

use std::sync::Arc;

use async_trait::async_trait;
use rancher_core::model::{Cluster, GkeConfig, HostedOperation, StepState};
use rancher_provision::hosted::credentials::CloudSecret;
use rancher_provision::hosted::gke::{
    self, ClusterStatus, GkeChange, GkeClient, GkeOptions, Location, NodePoolUpdate,
};
use rancher_provision::{
    Downstream, DownstreamCredential, Progress, ProvisionContext, ProvisionError, Provisioner,
};
use secrecy::ExposeSecret;

use super::{Clients, Hosted, POLL, StatusOf, agent_joined, hand_over, never_made, progress};

const FIELD: &str = "spec.gkeConfig";
/// Where the provisioner keeps its findings: `status.gkeStatus`.
const STATUS: StatusOf<GkeConfig> = |s| &mut s.gke_status;

/// Clusters in Google Kubernetes Engine.
pub(crate) struct GkeProvisioner {
    hosted: Arc<Hosted>,
    /// One client per service-account key and base URL, so that its access token is reused.
    clients: Clients<GkeClient>,
    /// The API calls of every client, for the bench and `/metrics`.
    calls: Arc<gke::ApiCalls>,
}

impl GkeProvisioner {
    pub(crate) fn new(hosted: Arc<Hosted>) -> Self {
        GkeProvisioner { hosted, clients: Clients::new(), calls: Arc::default() }
    }

    fn config(cluster: &Cluster) -> Result<&GkeConfig, ProvisionError> {
        cluster.spec.gke_config.as_deref().ok_or_else(|| {
            ProvisionError::invalid_spec(FIELD, format!("is required for driver {:?}", gke::DRIVER))
        })
    }

    /// The client of the credential `config` names, signed in as the cluster's creator may.
    async fn client(&self, cluster: &Cluster, config: &GkeConfig) -> Result<GkeClient, ProvisionError> {
        let field = format!("{FIELD}.googleCredentialSecret");
        let secret = self.hosted.secret(cluster, &field, &config.google_credential_secret).await?;
        let CloudSecret::Gcp { service_account_json } = secret else {
            return Err(ProvisionError::invalid_spec(
                field,
                format!("cloud credential {:?} is not a Google one", config.google_credential_secret),
            ));
        };
        let endpoints = &self.hosted.endpoints;
        let base = endpoints.gke.as_deref().unwrap_or(gke::DEFAULT_BASE_URL);
        self.clients.get_or_make(&[service_account_json.expose_secret(), base], || {
            let options = GkeOptions {
                base_url: base.to_owned(),
                calls: self.calls.clone(),
                extra_ca_pem: endpoints.extra_ca_pem.clone(),
                ..Default::default()
            };
            GkeClient::from_key_json(&service_account_json, options).map_err(|e| {
                ProvisionError::permanent(format!(
                    "cloud credential {:?}: {e}",
                    config.google_credential_secret
                ))
            })
        })
    }

    async fn record(&self, cluster: &Cluster, op: Option<HostedOperation>) -> Result<(), ProvisionError> {
        self.hosted.record(cluster, STATUS, op).await
    }

    /// Looks at the operation in flight: `Some(progress)` while it runs; its failure as an error.
    async fn operation_in_flight(
        &self,
        cluster: &Cluster,
        client: &GkeClient,
        at: &Location,
    ) -> Result<Option<Progress>, ProvisionError> {
        let Some(op) = cluster.status.gke_status.as_deref().and_then(|s| s.operation.clone()) else {
            return Ok(None);
        };
        let now = match client.get_operation(at, &op.id).await {
            Ok(now) => now,
            // Google forgets operations after a while: look at the cluster instead.
            Err(e) if e.is_not_found() => {
                self.record(cluster, None).await?;
                return Ok(None);
            }
            Err(e) => return Err(e.into()),
        };
        if !now.is_done() {
            let message = format!("{} (GKE operation {})", op.description, op.id);
            return Ok(Some(Progress::InProgress {
                progress: progress(message, StepState::Running, StepState::Running),
                after: POLL,
            }));
        }
        self.record(cluster, None).await?;
        match now.failure() {
            Some(why) => {
                Err(ProvisionError::permanent(format!("{} failed at Google: {why}", op.description)))
            }
            None => Ok(None),
        }
    }

    /// Starts `change` on the running cluster `have`.
    async fn start(
        &self,
        client: &GkeClient,
        at: &Location,
        config: &GkeConfig,
        have: &gke::Cluster,
        change: &GkeChange,
    ) -> Result<gke::Operation, ProvisionError> {
        let name = &config.cluster_name;
        let op = match change {
            GkeChange::UpgradeControlPlane { to, .. } => client.update_master(at, name, to).await,
            GkeChange::UpgradePool { pool, to, .. } => {
                let update = NodePoolUpdate { node_version: to.clone(), ..Default::default() };
                client.update_node_pool(at, name, pool, &update).await
            }
            GkeChange::AddPool(pool) => {
                let Some(p) = config.node_pools.iter().find(|p| &p.name == pool) else {
                    return Err(ProvisionError::permanent(format!(
                        "node pool {pool} vanished from the config"
                    )));
                };
                client.create_node_pool(at, name, &gke::node_pool_for_create(p, config)).await
            }
            GkeChange::ResizePool { pool, to, .. } => client.set_node_pool_size(at, name, pool, *to).await,
            GkeChange::RemovePool(pool) => client.delete_node_pool(at, name, pool).await,
            GkeChange::SetLabels => {
                client.set_resource_labels(at, name, &config.labels, &have.label_fingerprint).await
            }
        };
        Ok(op?)
    }
}

#[async_trait]
impl Provisioner for GkeProvisioner {
    fn driver(&self) -> &str {
        gke::DRIVER
    }

    fn validate(&self, cluster: &Cluster) -> Result<(), ProvisionError> {
        gke::validate(Self::config(cluster)?)
    }

    async fn reconcile(&self, cluster: &Cluster, ctx: &ProvisionContext) -> Result<Progress, ProvisionError> {
        let config = Self::config(cluster)?;
        gke::validate(config)?;
        let client = self.client(cluster, config).await?;
        let at = Location::of(config);
        if let Some(waiting) = self.operation_in_flight(cluster, &client, &at).await? {
            return Ok(waiting);
        }
        if ctx.cancel.is_cancelled() {
            return Err(ProvisionError::Cancelled);
        }
        let Some(have) = client.find_cluster(&at, &config.cluster_name).await? else {
            if config.imported {
                return Err(ProvisionError::permanent(format!(
                    "GKE cluster {:?} not found in {}/{}: an imported cluster must exist",
                    config.cluster_name,
                    config.project_id,
                    config.location()
                )));
            }
            let op = client.create_cluster(&at, &gke::cluster_for_create(config)).await?;
            let description = format!("creating GKE cluster {}", config.cluster_name);
            self.record(cluster, Some(HostedOperation { id: op.name, description: description.clone() }))
                .await?;
            return Ok(Progress::InProgress {
                progress: progress(description, StepState::Running, StepState::Pending),
                after: POLL,
            });
        };
        let upstream = gke::upstream_spec(config, &have);
        let phase = format!("{:?}", have.status).to_uppercase();
        self.hosted.observed(cluster, STATUS, upstream, &phase).await?;
        match have.status {
            ClusterStatus::Running => {}
            ClusterStatus::Error | ClusterStatus::Degraded => {
                // Worded as the failed operation's message is: the one reconcile that saw the
                // operation fail and the next, which sees only the cluster, say the same.
                return Err(ProvisionError::permanent(format!(
                    "GKE cluster {} failed at Google ({phase}): {}",
                    config.cluster_name, have.status_message
                )));
            }
            _ => {
                let message = format!("GKE cluster {} is {phase}", config.cluster_name);
                return Ok(Progress::InProgress {
                    progress: progress(message, StepState::Running, StepState::Pending),
                    after: POLL,
                });
            }
        }
        // An imported cluster is registered, not managed: its pools and versions stay as they are.
        if !config.imported
            && let Some(change) = gke::next_change(config, &have)
        {
            let op = self.start(&client, &at, config, &have, &change).await?;
            let description = change.to_string();
            self.record(cluster, Some(HostedOperation { id: op.name, description: description.clone() }))
                .await?;
            return Ok(Progress::InProgress {
                progress: progress(description, StepState::Done, StepState::Running),
                after: POLL,
            });
        }
        if agent_joined(cluster) {
            return Ok(Progress::Done);
        }
        let token = client.access_token().await?;
        let downstream = Downstream {
            api_endpoint: format!("https://{}", have.endpoint),
            ca_pem: have.ca_pem().unwrap_or_default(),
            credential: DownstreamCredential::BearerToken(token),
        };
        Ok(hand_over("GKE cluster running", downstream))
    }

    /// Deletes the GKE cluster (its pools go with it) unless it was imported; done once Google no
    /// longer has it.
    async fn remove(&self, cluster: &Cluster, _ctx: &ProvisionContext) -> Result<Progress, ProvisionError> {
        let Ok(config) = Self::config(cluster) else { return Ok(Progress::Done) };
        if config.imported {
            return Ok(Progress::Done);
        }
        let client = match self.client(cluster, config).await {
            Ok(client) => client,
            // Never signed in (a credential the creator may not use): nothing was made at Google.
            Err(e) if never_made(&e, cluster.status.gke_status.as_deref()) => return Ok(Progress::Done),
            Err(e) => return Err(e),
        };
        let at = Location::of(config);
        let Some(have) = client.find_cluster(&at, &config.cluster_name).await? else {
            return Ok(Progress::Done);
        };
        let message = format!("deleting GKE cluster {}", config.cluster_name);
        if have.status != ClusterStatus::Stopping {
            match client.delete_cluster(&at, &config.cluster_name).await {
                Ok(_) => {}
                Err(e) if e.is_not_found() => return Ok(Progress::Done),
                // Another operation runs on it (a create or change cut short): wait for it to end.
                Err(e) if e.is_transient() => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(Progress::InProgress {
            progress: progress(message, StepState::Running, StepState::Pending),
            after: POLL,
        })
    }
}
