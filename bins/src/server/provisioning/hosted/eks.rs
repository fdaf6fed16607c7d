//! The EKS provisioner (driver `EKS`, `spec.eksConfig`, feature `eks`): creates the control plane,
//! then its node groups, through the AWS SDK; applies [`eks::next_change`] one change at a time
//! (recording AWS's update id to report its failure); hands the active cluster to the controller
//! with an STS-presigned bearer token to deploy the agent with (a private endpoint the server cannot
//! reach waits for the user's import); and deletes the node groups, then the cluster (never an
//! imported one) when the Rancher cluster is deleted.

use std::sync::Arc;

use async_trait::async_trait;
use rancher_core::model::{Cluster, EksConfig, HostedOperation, StepState};
use rancher_provision::hosted::eks::{
    self, ClusterStatus, EksChange, EksClient, EksOptions, Nodegroup, NodegroupStatus, UpdateStatus,
};
use rancher_provision::{
    Downstream, DownstreamCredential, Progress, ProvisionContext, ProvisionError, Provisioner,
};
use serde::{Deserialize, Serialize};

use super::{Hosted, POLL, StatusOf, agent_joined, hand_over, never_made, progress};

const FIELD: &str = "spec.eksConfig";
/// Where the provisioner keeps its findings: `status.eksStatus`.
const STATUS: StatusOf<EksConfig> = |s| &mut s.eks_status;

/// An update AWS is carrying out, as recorded in `status.eksStatus.operation.id`.
#[derive(Serialize, Deserialize)]
struct UpdateRef {
    /// The node group it changes (none: the cluster).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    nodegroup: Option<String>,
    /// AWS's update id.
    id: String,
}

/// Clusters in Amazon EKS.
pub(crate) struct EksProvisioner {
    hosted: Arc<Hosted>,
    /// The API calls of every client, for the bench.
    calls: Arc<eks::ApiCalls>,
}

impl EksProvisioner {
    pub(crate) fn new(hosted: Arc<Hosted>) -> Self {
        EksProvisioner { hosted, calls: Arc::default() }
    }

    fn config(cluster: &Cluster) -> Result<&EksConfig, ProvisionError> {
        cluster.spec.eks_config.as_deref().ok_or_else(|| {
            ProvisionError::invalid_spec(FIELD, format!("is required for driver {:?}", eks::DRIVER))
        })
    }

    /// A client signed in with the credential `config` names (the cluster creator's).
    async fn client(&self, cluster: &Cluster, config: &EksConfig) -> Result<EksClient, ProvisionError> {
        let field = format!("{FIELD}.amazonCredentialSecret");
        let secret = self.hosted.secret(cluster, &field, &config.amazon_credential_secret).await?;
        let options = EksOptions {
            endpoint_url: self.hosted.endpoints.eks.clone(),
            calls: self.calls.clone(),
            ..Default::default()
        };
        Ok(EksClient::from_secret(&secret, &config.region, options)?)
    }

    async fn record(&self, cluster: &Cluster, op: Option<HostedOperation>) -> Result<(), ProvisionError> {
        self.hosted.record(cluster, STATUS, op).await
    }

    /// Looks at the update in flight: `Some(progress)` while it runs; its failure as an error.
    async fn update_in_flight(
        &self,
        cluster: &Cluster,
        client: &EksClient,
        name: &str,
    ) -> Result<Option<Progress>, ProvisionError> {
        let Some(op) = cluster.status.eks_status.as_deref().and_then(|s| s.operation.clone()) else {
            return Ok(None);
        };
        let Ok(update) = serde_json::from_str::<UpdateRef>(&op.id) else {
            self.record(cluster, None).await?;
            return Ok(None);
        };
        let now = match client.describe_update(name, update.nodegroup.as_deref(), &update.id).await {
            Ok(now) => now,
            Err(e) if e.is_not_found() => {
                self.record(cluster, None).await?;
                return Ok(None);
            }
            Err(e) => return Err(e.into()),
        };
        match now.status {
            UpdateStatus::Successful => {
                self.record(cluster, None).await?;
                Ok(None)
            }
            UpdateStatus::Failed | UpdateStatus::Cancelled => {
                self.record(cluster, None).await?;
                Err(ProvisionError::permanent(format!(
                    "{} failed at AWS (update {}): {}",
                    op.description,
                    update.id,
                    now.errors.join("; ")
                )))
            }
            _ => Ok(Some(Progress::InProgress {
                progress: progress(
                    format!("{} (EKS update {})", op.description, update.id),
                    StepState::Done,
                    StepState::Running,
                ),
                after: POLL,
            })),
        }
    }

    /// The cluster's node groups as AWS has them.
    async fn nodegroups(&self, client: &EksClient, name: &str) -> Result<Vec<Nodegroup>, ProvisionError> {
        let mut out = Vec::new();
        for group in client.list_nodegroups(name).await? {
            if let Some(g) = client.find_nodegroup(name, &group).await? {
                out.push(g);
            }
        }
        Ok(out)
    }

    /// Starts `change`; the update to wait for, if AWS made one.
    async fn start(
        &self,
        client: &EksClient,
        config: &EksConfig,
        cluster: &eks::Cluster,
        change: &EksChange,
    ) -> Result<Option<UpdateRef>, ProvisionError> {
        let name = &config.display_name;
        let update = |nodegroup: Option<&str>, u: eks::Update| UpdateRef {
            nodegroup: nodegroup.map(str::to_owned),
            id: u.id,
        };
        Ok(match change {
            EksChange::UpgradeControlPlane { to, .. } => {
                Some(update(None, client.update_cluster_version(name, to).await?))
            }
            EksChange::UpgradeNodegroup { name: group, to, .. } => {
                Some(update(Some(group), client.update_nodegroup_version(name, group, Some(to)).await?))
            }
            EksChange::CreateNodegroup(group) => {
                let Some(g) = config.node_groups.iter().find(|g| &g.nodegroup_name == group) else {
                    return Err(ProvisionError::permanent(format!(
                        "node group {group} vanished from the config"
                    )));
                };
                client.create_nodegroup(name, &eks::nodegroup_for_create(config, g)).await?;
                None
            }
            EksChange::Scale { name: group, scaling } => {
                Some(update(Some(group), client.update_nodegroup_scaling(name, group, *scaling).await?))
            }
            EksChange::DeleteNodegroup(group) => {
                client.delete_nodegroup(name, group).await?;
                None
            }
            EksChange::Tag => {
                client.tag_resource(&cluster.arn, &config.tags).await?;
                None
            }
        })
    }
}

#[async_trait]
impl Provisioner for EksProvisioner {
    fn driver(&self) -> &str {
        eks::DRIVER
    }

    fn validate(&self, cluster: &Cluster) -> Result<(), ProvisionError> {
        eks::validate(Self::config(cluster)?)
    }

    async fn reconcile(&self, cluster: &Cluster, ctx: &ProvisionContext) -> Result<Progress, ProvisionError> {
        let config = Self::config(cluster)?;
        eks::validate(config)?;
        let client = self.client(cluster, config).await?;
        let name = &config.display_name;
        if let Some(waiting) = self.update_in_flight(cluster, &client, name).await? {
            return Ok(waiting);
        }
        if ctx.cancel.is_cancelled() {
            return Err(ProvisionError::Cancelled);
        }
        let Some(have) = client.find_cluster(name).await? else {
            if config.imported {
                return Err(ProvisionError::permanent(format!(
                    "EKS cluster {name:?} not found in {}: an imported cluster must exist",
                    client.region()
                )));
            }
            client.create_cluster(&eks::cluster_for_create(config)).await?;
            let message = format!("creating EKS cluster {name}");
            return Ok(Progress::InProgress {
                progress: progress(message, StepState::Running, StepState::Pending),
                after: POLL,
            });
        };
        let groups = self.nodegroups(&client, name).await?;
        let upstream = eks::upstream_spec(config, &have, &groups);
        let phase = format!("{:?}", have.status).to_uppercase();
        self.hosted.observed(cluster, STATUS, upstream, &phase).await?;
        match have.status {
            ClusterStatus::Active => {}
            ClusterStatus::Failed => {
                return Err(ProvisionError::permanent(format!(
                    "AWS reports EKS cluster {name} FAILED: delete it and create it again"
                )));
            }
            _ => {
                let message = format!("EKS cluster {name} is {phase}");
                return Ok(Progress::InProgress {
                    progress: progress(message, StepState::Running, StepState::Pending),
                    after: POLL,
                });
            }
        }
        if let Some(g) = groups
            .iter()
            .find(|g| matches!(g.status, NodegroupStatus::CreateFailed | NodegroupStatus::DeleteFailed))
        {
            return Err(ProvisionError::permanent(format!(
                "AWS reports node group {} {:?}: {}",
                g.name,
                g.status,
                g.health_issues.join("; ")
            )));
        }
        if let Some(g) = groups.iter().find(|g| eks::busy(g)) {
            let message = format!("node group {} is {:?}", g.name, g.status).to_lowercase();
            return Ok(Progress::InProgress {
                progress: progress(message, StepState::Done, StepState::Running),
                after: POLL,
            });
        }
        if !config.imported
            && let Some(change) = eks::next_change(config, &have, &groups)
        {
            let update = self.start(&client, config, &have, &change).await?;
            let description = change.to_string();
            if let Some(u) = update {
                let id = serde_json::to_string(&u).map_err(|e| ProvisionError::permanent(e.to_string()))?;
                self.record(cluster, Some(HostedOperation { id, description: description.clone() })).await?;
            }
            return Ok(Progress::InProgress {
                progress: progress(description, StepState::Done, StepState::Running),
                after: POLL,
            });
        }
        if agent_joined(cluster) {
            return Ok(Progress::Done);
        }
        let Some(endpoint) = have.endpoint.clone().filter(|e| !e.is_empty()) else {
            return Ok(Progress::InProgress {
                progress: progress(
                    "waiting for AWS to report the cluster's endpoint",
                    StepState::Done,
                    StepState::Done,
                ),
                after: POLL,
            });
        };
        let downstream = Downstream {
            api_endpoint: endpoint,
            ca_pem: have.ca_pem().unwrap_or_default(),
            credential: DownstreamCredential::BearerToken(client.bearer_token(name)),
        };
        Ok(hand_over("EKS cluster active", downstream))
    }

    /// Deletes the node groups, then the cluster, unless it was imported; done once AWS no longer
    /// has it.
    async fn remove(&self, cluster: &Cluster, _ctx: &ProvisionContext) -> Result<Progress, ProvisionError> {
        let Ok(config) = Self::config(cluster) else { return Ok(Progress::Done) };
        if config.imported {
            return Ok(Progress::Done);
        }
        let client = match self.client(cluster, config).await {
            Ok(client) => client,
            // Never signed in (a credential the creator may not use): nothing was made at AWS.
            Err(e) if never_made(&e, cluster.status.eks_status.as_deref()) => return Ok(Progress::Done),
            Err(e) => return Err(e),
        };
        let name = &config.display_name;
        let Some(have) = client.find_cluster(name).await? else { return Ok(Progress::Done) };
        let groups = self.nodegroups(&client, name).await?;
        let waiting = |message: String| {
            Ok(Progress::InProgress {
                progress: progress(message, StepState::Running, StepState::Pending),
                after: POLL,
            })
        };
        if !groups.is_empty() {
            for g in groups.iter().filter(|g| g.status != NodegroupStatus::Deleting) {
                match client.delete_nodegroup(name, &g.name).await {
                    Ok(_) => {}
                    Err(e) if e.is_not_found() || e.is_transient() => {}
                    Err(e) => return Err(e.into()),
                }
            }
            let names: Vec<&str> = groups.iter().map(|g| g.name.as_str()).collect();
            return waiting(format!("deleting the node groups of EKS cluster {name}: {}", names.join(", ")));
        }
        if have.status != ClusterStatus::Deleting {
            match client.delete_cluster(name).await {
                Ok(_) => {}
                Err(e) if e.is_not_found() => return Ok(Progress::Done),
                Err(e) if e.is_transient() => {}
                Err(e) => return Err(e.into()),
            }
        }
        waiting(format!("deleting EKS cluster {name}"))
    }
}
