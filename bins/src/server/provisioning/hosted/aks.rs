//! The AKS provisioner (driver `AKS`, `spec.aksConfig`): creates the resource group (when missing)
//! and the managed cluster with its pools through Azure Resource Manager, applies
//! [`aks::changes`] one operation at a time, hands the running cluster to the controller with the
//! cluster's admin credentials to deploy the agent with, and deletes the managed cluster (never an
//! imported one) when the Rancher cluster is deleted.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use async_trait::async_trait;
use rancher_core::model::{AksConfig, Cluster, HostedOperation, StepState};
use rancher_provision::hosted::aks::{
    self, AksChange, AksClient, AksClientOptions, AzureCredentials, AzureEndpoints, Operation, OperationState,
};
use rancher_provision::hosted::credentials::CloudSecret;
use rancher_provision::{
    Downstream, DownstreamCredential, Progress, ProvisionContext, ProvisionError, Provisioner,
};
use secrecy::{ExposeSecret, SecretString};

use super::{Clients, Hosted, POLL, StatusOf, agent_joined, hand_over, never_made, progress};

const FIELD: &str = "spec.aksConfig";
/// Where the provisioner keeps its findings: `status.aksStatus`.
const STATUS: StatusOf<AksConfig> = |s| &mut s.aks_status;
/// The driver name of AKS clusters (Rancher's).
pub(crate) const DRIVER: &str = "AKS";

/// A signed-in client and the service principal it signs in as.
type Signed = (Arc<AksClient>, (String, SecretString));

/// Clusters in Azure Kubernetes Service.
pub(crate) struct AksProvisioner {
    hosted: Arc<Hosted>,
    /// One client per credential and endpoints, so that its token is reused.
    clients: Clients<Signed>,
    /// The API calls of every client, for the bench.
    calls: Arc<AtomicU64>,
}

impl AksProvisioner {
    pub(crate) fn new(hosted: Arc<Hosted>) -> Self {
        AksProvisioner { hosted, clients: Clients::new(), calls: Arc::default() }
    }

    fn config(cluster: &Cluster) -> Result<&AksConfig, ProvisionError> {
        cluster
            .spec
            .aks_config
            .as_deref()
            .ok_or_else(|| ProvisionError::invalid_spec(FIELD, format!("is required for driver {DRIVER:?}")))
    }

    /// A client signed in with the credential `config` names (the cluster creator's), and that
    /// credential as the service principal a new cluster runs as (unless it has a managed identity).
    async fn client(&self, cluster: &Cluster, config: &AksConfig) -> Result<Signed, ProvisionError> {
        let field = format!("{FIELD}.azureCredentialSecret");
        let secret = self.hosted.secret(cluster, &field, &config.azure_credential_secret).await?;
        let CloudSecret::Azure { client_id, client_secret, tenant_id, subscription_id, environment } = secret
        else {
            return Err(ProvisionError::invalid_spec(
                field,
                format!("cloud credential {:?} is not an Azure one", config.azure_credential_secret),
            ));
        };
        let endpoints = if config.base_url.is_some() || config.auth_base_url.is_some() {
            AzureEndpoints::with_overrides(config.base_url.as_deref(), config.auth_base_url.as_deref())?
        } else if environment.is_empty() {
            AzureEndpoints::default()
        } else {
            AzureEndpoints::for_environment(&environment).ok_or_else(|| {
                ProvisionError::permanent(format!(
                    "cloud credential {:?}: unknown Azure environment {environment:?}",
                    config.azure_credential_secret
                ))
            })?
        };
        let options = AksClientOptions {
            endpoints,
            extra_ca_pem: self.hosted.endpoints.extra_ca_pem.clone(),
            ..Default::default()
        };
        let endpoint_key = format!("{:?}", options.endpoints);
        let parts =
            [tenant_id.as_str(), &client_id, client_secret.expose_secret(), &subscription_id, &endpoint_key];
        self.clients.get_or_make(&parts, || {
            let principal = (client_id.clone(), client_secret.clone());
            let creds = AzureCredentials {
                tenant_id: tenant_id.clone(),
                client_id: client_id.clone(),
                client_secret: client_secret.clone(),
                subscription_id: subscription_id.clone(),
            };
            let client = AksClient::new(creds, options)?.with_call_counter(self.calls.clone());
            Ok::<_, ProvisionError>((Arc::new(client), principal))
        })
    }

    async fn record(&self, cluster: &Cluster, op: Option<HostedOperation>) -> Result<(), ProvisionError> {
        self.hosted.record(cluster, STATUS, op).await
    }

    /// Records `op` as the operation in flight (none when Azure finished it within the request) and
    /// reports `description` as under way.
    async fn started(
        &self,
        cluster: &Cluster,
        op: &Operation,
        description: String,
        cloud: StepState,
    ) -> Result<Progress, ProvisionError> {
        if !op.is_completed() {
            let id = serde_json::to_string(op).map_err(|e| ProvisionError::permanent(e.to_string()))?;
            self.record(cluster, Some(HostedOperation { id, description: description.clone() })).await?;
        }
        let changes = if cloud == StepState::Done { StepState::Running } else { StepState::Pending };
        Ok(Progress::InProgress { progress: progress(description, cloud, changes), after: POLL })
    }

    /// Looks at the operation in flight: `Some(progress)` while it runs; its failure as an error.
    async fn operation_in_flight(
        &self,
        cluster: &Cluster,
        client: &AksClient,
    ) -> Result<Option<Progress>, ProvisionError> {
        let Some(op) = cluster.status.aks_status.as_deref().and_then(|s| s.operation.clone()) else {
            return Ok(None);
        };
        let Ok(azure_op) = serde_json::from_str::<Operation>(&op.id) else {
            self.record(cluster, None).await?;
            return Ok(None);
        };
        let state = match client.poll_operation(&azure_op).await {
            Ok(state) => state,
            Err(e) if e.is_not_found() => OperationState::Succeeded,
            Err(e) => return Err(e.into()),
        };
        match state {
            OperationState::InProgress { retry_after } => Ok(Some(Progress::InProgress {
                progress: progress(op.description, StepState::Running, StepState::Running),
                after: retry_after
                    .clamp(std::time::Duration::from_secs(1), std::time::Duration::from_secs(60)),
            })),
            OperationState::Succeeded => {
                self.record(cluster, None).await?;
                Ok(None)
            }
            OperationState::Failed(body) => {
                self.record(cluster, None).await?;
                Err(ProvisionError::permanent(format!(
                    "{} failed at Azure: {}: {}",
                    op.description, body.code, body.message
                )))
            }
            OperationState::Canceled => {
                self.record(cluster, None).await?;
                Err(ProvisionError::permanent(format!("{} was cancelled at Azure", op.description)))
            }
        }
    }

    /// Starts `change`; a change AKS cannot make is an invalid spec naming the field.
    async fn start(
        &self,
        client: &AksClient,
        config: &AksConfig,
        change: &AksChange,
    ) -> Result<Operation, ProvisionError> {
        let (rg, name) = (&config.resource_group, &config.cluster_name);
        let op = match change {
            AksChange::UpgradeControlPlane { to, .. } => client.upgrade_control_plane(rg, name, to).await?,
            AksChange::CreatePool { name: pool } | AksChange::UpdatePool { name: pool, .. } => {
                let Some(p) = config.node_pools.iter().find(|p| &p.name == pool) else {
                    return Err(ProvisionError::permanent(format!(
                        "node pool {pool} vanished from the config"
                    )));
                };
                let spec = aks::spec::agent_pool(config, p, client.subscription_id());
                client.create_or_update_pool(rg, name, pool, &spec).await?.1
            }
            AksChange::UpgradePool { name: pool, to } => client.upgrade_pool(rg, name, pool, to).await?,
            AksChange::DeletePool { name: pool } => client.delete_pool(rg, name, pool).await?,
            AksChange::UpdateTags => client.update_tags(rg, name, &config.tags).await?,
            AksChange::ImmutablePoolField { name: pool, field } => {
                let index = config.node_pools.iter().position(|p| &p.name == pool).unwrap_or_default();
                return Err(ProvisionError::invalid_spec(
                    format!("{FIELD}.nodePools[{index}].{field}"),
                    "AKS cannot change this on an existing pool: add a new pool with it and remove this one",
                ));
            }
        };
        Ok(op)
    }
}

fn describe(change: &AksChange) -> String {
    match change {
        AksChange::UpgradeControlPlane { from, to } => format!("upgrading the control plane {from} → {to}"),
        AksChange::CreatePool { name } => format!("adding node pool {name}"),
        AksChange::UpgradePool { name, to } => format!("upgrading node pool {name} → {to}"),
        AksChange::UpdatePool { name, fields } => {
            format!("updating node pool {name} ({})", fields.join(", "))
        }
        AksChange::DeletePool { name } => format!("removing node pool {name}"),
        AksChange::ImmutablePoolField { name, field } => format!("node pool {name}: {field} cannot change"),
        AksChange::UpdateTags => "setting the cluster's tags".to_owned(),
    }
}

#[async_trait]
impl Provisioner for AksProvisioner {
    fn driver(&self) -> &str {
        DRIVER
    }

    fn validate(&self, cluster: &Cluster) -> Result<(), ProvisionError> {
        aks::validate(Self::config(cluster)?)
    }

    async fn reconcile(&self, cluster: &Cluster, ctx: &ProvisionContext) -> Result<Progress, ProvisionError> {
        let config = Self::config(cluster)?;
        aks::validate(config)?;
        let (client, principal) = self.client(cluster, config).await?;
        if let Some(waiting) = self.operation_in_flight(cluster, &client).await? {
            return Ok(waiting);
        }
        if ctx.cancel.is_cancelled() {
            return Err(ProvisionError::Cancelled);
        }
        let (rg, name) = (&config.resource_group, &config.cluster_name);
        let Some(have) = client.get_cluster(rg, name).await? else {
            if config.imported {
                return Err(ProvisionError::permanent(format!(
                    "AKS cluster {name:?} not found in resource group {rg:?}: an imported cluster must exist"
                )));
            }
            client.ensure_resource_group(rg, &config.resource_location, &config.tags).await?;
            let identity = aks::spec::ClusterIdentity::for_config(config, principal);
            let body = aks::spec::managed_cluster(config, &identity, client.subscription_id())?;
            let (_, op) = client.create_or_update_cluster(rg, name, &body).await?;
            return self
                .started(cluster, &op, format!("creating AKS cluster {name}"), StepState::Running)
                .await;
        };
        let upstream = aks::upstream_spec(config, &have);
        let phase = have.properties.provisioning_state.clone().unwrap_or_default();
        self.hosted.observed(cluster, STATUS, upstream, &phase).await?;
        match phase.as_str() {
            "Succeeded" => {}
            "Failed" | "Canceled" if config.imported => {}
            // Azure's way out of a failed operation is to PUT the cluster again. A failure reported
            // by its operation stops the reconciles until the spec changes: this is that retry.
            "Failed" | "Canceled" => {
                let identity = aks::spec::ClusterIdentity::for_config(config, principal);
                let body = aks::spec::managed_cluster(config, &identity, client.subscription_id())?;
                let (_, op) = client.create_or_update_cluster(rg, name, &body).await?;
                let description = format!("retrying AKS cluster {name} after its last operation {phase}");
                return self.started(cluster, &op, description, StepState::Running).await;
            }
            _ => {
                return Ok(Progress::InProgress {
                    progress: progress(
                        format!("AKS cluster {name} is {phase}"),
                        StepState::Running,
                        StepState::Pending,
                    ),
                    after: POLL,
                });
            }
        }
        if !config.imported
            && let Some(change) = aks::changes(config, &have).into_iter().next()
        {
            let op = self.start(&client, config, &change).await?;
            return self.started(cluster, &op, describe(&change), StepState::Done).await;
        }
        if agent_joined(cluster) {
            return Ok(Progress::Done);
        }
        let access = client.admin_kubeconfig(rg, name).await?.access()?;
        let credential = match (access.token, access.client_certificate_pem, access.client_key_pem) {
            (Some(token), _, _) => DownstreamCredential::BearerToken(token),
            (None, Some(cert_pem), Some(key_pem)) => {
                DownstreamCredential::ClientCertificate { cert_pem, key_pem }
            }
            _ => {
                return Err(ProvisionError::permanent(
                    "the cluster's admin kubeconfig from Azure holds neither a token nor a client certificate",
                ));
            }
        };
        let downstream =
            Downstream { api_endpoint: access.server, ca_pem: access.ca_pem.unwrap_or_default(), credential };
        Ok(hand_over("AKS cluster running", downstream))
    }

    /// Deletes the managed cluster (its pools go with it) unless it was imported; done once Azure
    /// no longer has it.
    async fn remove(&self, cluster: &Cluster, _ctx: &ProvisionContext) -> Result<Progress, ProvisionError> {
        let Ok(config) = Self::config(cluster) else { return Ok(Progress::Done) };
        if config.imported {
            return Ok(Progress::Done);
        }
        let client = match self.client(cluster, config).await {
            Ok((client, _)) => client,
            // Never signed in (a credential the creator may not use): nothing was made at Azure.
            Err(e) if never_made(&e, cluster.status.aks_status.as_deref()) => return Ok(Progress::Done),
            Err(e) => return Err(e),
        };
        let (rg, name) = (&config.resource_group, &config.cluster_name);
        let Some(have) = client.get_cluster(rg, name).await? else { return Ok(Progress::Done) };
        if have.properties.provisioning_state.as_deref() != Some("Deleting") {
            match client.delete_cluster(rg, name).await {
                Ok(_) => {}
                // Another operation runs on it (a create or change cut short): wait for it to end.
                Err(e) if e.is_transient() => {}
                Err(e) => return Err(e.into()),
            }
        }
        let message = format!("deleting AKS cluster {name}");
        Ok(Progress::InProgress {
            progress: progress(message, StepState::Running, StepState::Pending),
            after: POLL,
        })
    }
}
