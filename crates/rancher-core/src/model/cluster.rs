//! Cluster, Project and ClusterRegistrationToken.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{ConditionsOnly, management_kind};
use crate::{Condition, ConditionStatus, Conditions};

management_kind!(
    /// A downstream cluster, however it came to be (imported, built on SSH hosts, machine drivers or hosted).
    /// Cluster-scoped; Rancher names them `c-xxxxx`.
    Cluster, "clusters", namespaced = false, ClusterSpec, ClusterStatus
);

/// The annotation that records who created a cluster (Rancher's): set by the server from the
/// authenticated caller, never taken from a request.
pub const CREATOR_ID_ANNOTATION: &str = "field.cattle.io/creatorId";

/// A cloud operation a hosted provisioner started and waits for.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct HostedOperation {
    /// The cloud's id (or URL) of the operation.
    pub id: String,
    /// What it does, for people (`upgrading node pool a 1.29 → 1.30`).
    pub description: String,
}

/// What the user wants of a cluster.
///
/// The engine configs are boxed: a cluster has one at most, and a `Cluster` is copied into every
/// cache and queue that holds clusters, thousands of times on a big server.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct ClusterSpec {
    /// The name people see.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub display_name: String,
    /// Free text.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// True for the cluster the server itself runs in.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub internal: bool,
    /// How the cluster is brought into being (`imported`, …); which provisioner drives it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub imported_config: Option<ImportedConfig>,
    /// The provisioner that brings this cluster into being, by its driver name (`imported`, or one
    /// plugged into the server). Empty: `imported`. Fixed at creation; the server copies it to
    /// `status.driver`, which is what the provisioning controller dispatches on.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub driver: String,
    /// The driver's own settings, opaque to the server and checked by the driver's provisioner
    /// (Rancher spells these `<driver>Config`; one generic field serves every plugged-in driver).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver_config: Option<serde_json::Value>,
    /// A cluster built on SSH hosts (driver `rke`): Rancher's `cluster.yml`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rke_config: Option<Box<super::RkeConfig>>,
    /// A GKE cluster (driver `GKE`): created in Google Cloud, or registered when `imported`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gke_config: Option<Box<super::GkeConfig>>,
    /// An AKS cluster (driver `AKS`): created in Azure, or registered when `imported`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aks_config: Option<Box<super::AksConfig>>,
    /// An EKS cluster (driver `EKS`): created in AWS, or registered when `imported`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eks_config: Option<Box<super::EksConfig>>,
    /// Extra environment variables for the cluster agent.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub agent_env_vars: Vec<EnvVar>,
    /// The authorized cluster endpoint: a direct path to the downstream API server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_cluster_auth_endpoint: Option<LocalClusterAuthEndpoint>,
    /// The role template given to a project's members by default.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub default_cluster_role_for_project_members: String,
}

/// Settings of an imported (registered) cluster.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct ImportedConfig {
    /// Whether the import manifest should be applied for the user (not done by this server yet).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub private_registry: bool,
}

/// One environment variable.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct EnvVar {
    /// Name.
    pub name: String,
    /// Value.
    #[serde(default)]
    pub value: String,
}

/// The authorized cluster endpoint's settings.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct LocalClusterAuthEndpoint {
    /// Whether kubeconfigs get a direct context.
    #[serde(default)]
    pub enabled: bool,
    /// The FQDN (host:port) of the direct endpoint, if not the API server's own address.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub fqdn: String,
    /// PEM CA certificates for the direct endpoint.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub ca_certs: String,
}

/// What the cluster controller observed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct ClusterStatus {
    /// `Provisioned`, `Waiting`, `Connected`, `Ready`, `AgentDeployed`, …
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// How the cluster came to be: `imported`, `rke`, `EKS`, …
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub driver: String,
    /// The distribution, when known (`k3s`, `rke2`, …).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub provider: String,
    /// The downstream API server's address as the agent sees it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub api_endpoint: String,
    /// The downstream API server's CA (base64 PEM).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub ca_cert: String,
    /// Summed node capacity (`cpu`, `memory`, `pods`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub capacity: BTreeMap<String, String>,
    /// Summed node allocatable.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub allocatable: BTreeMap<String, String>,
    /// Digests of what the cluster's agent watches for the server's downstream syncs (namespaces
    /// in projects, the RBAC objects the server rendered, nodes without role labels), as last
    /// reported: a change tells the server to sync the cluster again.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub downstream_digests: BTreeMap<String, String>,
    /// Summed requests of running pods.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub requested: BTreeMap<String, String>,
    /// The downstream Kubernetes version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<KubernetesVersion>,
    /// Number of nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_count: Option<u32>,
    /// Number of pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_count: Option<u32>,
    /// The agent image running in the cluster.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub agent_image: String,
    /// What the provisioner last reported, step by step (the `Provisioned` condition summarises it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provisioning: Option<ProvisioningProgress>,
    /// The `metadata.generation` (the version of the spec) the provisioning controller last
    /// reconciled: the status speaks of an older spec while it is lower.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// When each certificate of a cluster built on hosts expires, by its name (`kube-apiserver`,
    /// `kube-node-<node>`); the `CertificatesExpiring` condition warns of those close to it.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub certificates_expiration: BTreeMap<String, CertExpiration>,
    /// The etcd snapshots of a cluster built on hosts, oldest first (Rancher's `etcdbackups`,
    /// one record each).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub etcd_snapshots: Vec<EtcdSnapshot>,
    /// A GKE cluster as Google reports it (Rancher's `gkeStatus`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gke_status: Option<Box<HostedStatus<super::GkeConfig>>>,
    /// An AKS cluster as Azure reports it (Rancher's `aksStatus`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aks_status: Option<Box<HostedStatus<super::AksConfig>>>,
    /// An EKS cluster as AWS reports it (Rancher's `eksStatus`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eks_status: Option<Box<HostedStatus<super::EksConfig>>>,
}

/// A hosted cluster as its cloud reports it, in the terms of its engine config: what a reader
/// compares with the spec to see what is still to change.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct HostedStatus<C> {
    /// The cluster as the cloud has it (Rancher's `upstreamSpec`); only the fields the cloud reports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream_spec: Option<C>,
    /// The cloud's own state of the cluster (`RUNNING`, `Succeeded`, `ACTIVE`, …).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub phase: String,
    /// The cloud's operation in flight that the provisioner started (its id or URL), and what it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<HostedOperation>,
}

/// One etcd snapshot of a cluster built on hosts, as its status lists it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct EtcdSnapshot {
    /// `<cluster>-<manual|recurring>-<UTC YYYYMMDDhhmmss>`: what a restore names.
    pub name: String,
    /// `manual` (asked for) or `recurring` (taken on the schedule; retention removes old ones).
    pub kind: String,
    /// When it was taken (RFC 3339).
    pub created_at: String,
    /// Its size in bytes.
    pub size: u64,
    /// Its SHA-256, lower-case hex.
    pub sha256: String,
    /// The etcd hosts (node names) that hold it under `<prefix_path>/opt/rke/etcd-snapshots/`.
    #[serde(default)]
    pub hosts: Vec<String>,
    /// Its copy in S3-compatible storage, when the cluster has `backup_config.s3backupconfig`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3: Option<EtcdSnapshotS3>,
}

/// Where a snapshot went in S3-compatible storage, or why it did not.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct EtcdSnapshotS3 {
    /// The bucket.
    pub bucket: String,
    /// The object's key; empty when the upload failed.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub key: String,
    /// Why the upload failed; empty when it succeeded.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub error: String,
}

/// When one certificate expires.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct CertExpiration {
    /// Its `notAfter`, RFC 3339.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub expiration_date: String,
    /// Its subject's common name (the user name of a client certificate).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub common_name: String,
}

/// A provisioner's progress as a client can draw it: a message and the steps, each with its state.
///
/// ```
/// use rancher_core::model::{ProvisioningProgress, StepState};
///
/// let progress = ProvisioningProgress::new("creating machines")
///     .step("network", StepState::Done, "")
///     .step("machines", StepState::Running, "2 of 3 running")
///     .step("kubernetes", StepState::Pending, "");
/// assert_eq!((progress.done(), progress.total()), (1, 3));
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct ProvisioningProgress {
    /// What is happening now, in a sentence.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// The steps, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<ProvisioningStep>,
}

impl ProvisioningProgress {
    /// Progress with a message and no steps yet.
    pub fn new(message: impl Into<String>) -> Self {
        ProvisioningProgress { message: message.into(), steps: Vec::new() }
    }

    /// Adds a step (builder style).
    pub fn step(mut self, name: impl Into<String>, state: StepState, message: impl Into<String>) -> Self {
        self.steps.push(ProvisioningStep {
            name: name.into(),
            state,
            message: message.into(),
            ..Default::default()
        });
        self
    }

    /// How many steps are done.
    pub fn done(&self) -> usize {
        self.steps.iter().filter(|s| s.state == StepState::Done).count()
    }

    /// How many steps there are.
    pub fn total(&self) -> usize {
        self.steps.len()
    }
}

/// One step of a provisioner's work.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct ProvisioningStep {
    /// What the step does (`machines`, `etcd`, `agent connected`).
    pub name: String,
    /// Where it stands.
    #[serde(default)]
    pub state: StepState,
    /// Detail, e.g. `2 of 3 machines running`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// When it first started running (unset for a provisioner that does not record it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "schema", schemars(with = "Option<String>"))]
    pub started_at: Option<jiff::Timestamp>,
    /// When it last finished (done or failed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "schema", schemars(with = "Option<String>"))]
    pub finished_at: Option<jiff::Timestamp>,
}

/// Where one provisioning step stands.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub enum StepState {
    /// Not started.
    #[default]
    Pending,
    /// Under way.
    Running,
    /// Finished.
    Done,
    /// Failed (the progress message says why).
    Failed,
}

/// The `/version` of a Kubernetes API server.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct KubernetesVersion {
    /// e.g. `v1.33.1`.
    pub git_version: String,
    /// e.g. `1`.
    #[serde(default)]
    pub major: String,
    /// e.g. `33`.
    #[serde(default)]
    pub minor: String,
    /// e.g. `linux/amd64`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub platform: String,
}

/// The one-word summary people see for a cluster, derived from its conditions the way Rancher's UI does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClusterState {
    /// Being deleted.
    Removing,
    /// Nothing observed yet.
    Pending,
    /// Being built by a provisioner.
    Provisioning,
    /// Waiting for the cluster agent to connect.
    Waiting,
    /// Connected and ready, and its provisioner is carrying out a change of its spec (or retrying
    /// one): Rancher's `updating`.
    Updating,
    /// Connected and ready.
    Active,
    /// Was active; the agent is gone or the cluster is not ready.
    Unavailable,
    /// A provisioner reported a failure.
    Error,
}

impl ClusterState {
    /// The lower-case word for tables: `active`, `waiting`, …
    pub fn as_str(self) -> &'static str {
        match self {
            ClusterState::Removing => "removing",
            ClusterState::Pending => "pending",
            ClusterState::Provisioning => "provisioning",
            ClusterState::Waiting => "waiting",
            ClusterState::Updating => "updating",
            ClusterState::Active => "active",
            ClusterState::Unavailable => "unavailable",
            ClusterState::Error => "error",
        }
    }
}

impl std::fmt::Display for ClusterState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Cluster {
    /// The id of the user who created the cluster (annotation [`CREATOR_ID_ANNOTATION`], set by the
    /// server); empty when unknown. Its cloud credentials are the ones the cluster may use.
    pub fn creator(&self) -> &str {
        self.metadata.annotations.get(CREATOR_ID_ANNOTATION).map_or("", String::as_str)
    }

    /// The summary state derived from the conditions.
    pub fn state(&self) -> ClusterState {
        let c = &self.status.conditions;
        let status_of = |t: &str| c.get_condition(t).map(|c| c.status);
        if self.metadata.deletion_timestamp.is_some() {
            ClusterState::Removing
        } else if status_of("Provisioned") == Some(ConditionStatus::False) {
            ClusterState::Error
        } else if status_of("Ready") == Some(ConditionStatus::True) {
            match status_of("Provisioned") {
                Some(ConditionStatus::Unknown) => ClusterState::Updating,
                _ => ClusterState::Active,
            }
        } else if status_of("Ready") == Some(ConditionStatus::False) {
            ClusterState::Unavailable
        } else if matches!(status_of("Waiting"), Some(ConditionStatus::Unknown | ConditionStatus::True)) {
            ClusterState::Waiting
        } else if status_of("Provisioned").is_some() {
            ClusterState::Provisioning
        } else {
            ClusterState::Pending
        }
    }
}

management_kind!(
    /// A group of namespaces in one cluster, with its own role bindings. Namespaced by its cluster's id;
    /// a namespace joins by the annotation `field.cattle.io/projectId: <cluster>:<project>`.
    Project, "projects", namespaced = true, ProjectSpec, ProjectStatus
);

/// What the user wants of a project.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct ProjectSpec {
    /// The name people see.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub display_name: String,
    /// Free text.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// The cluster the project belongs to.
    #[serde(default)]
    pub cluster_name: String,
    /// Quota across the project's namespaces (a Kubernetes ResourceQuota spec).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_quota: Option<serde_json::Value>,
    /// Quota given to each new namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_default_resource_quota: Option<serde_json::Value>,
    /// Default container limits (a LimitRange item).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_default_resource_limit: Option<serde_json::Value>,
}

/// What the project controller observed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct ProjectStatus {
    /// Conditions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The namespaces currently in the project, as last observed downstream.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,
}

management_kind!(
    /// The token a cluster agent presents when it registers an imported cluster. Namespaced by the cluster id.
    ClusterRegistrationToken, "clusterregistrationtokens", namespaced = true,
    ClusterRegistrationTokenSpec, ClusterRegistrationTokenStatus
);

/// Which cluster a registration token is for.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct ClusterRegistrationTokenSpec {
    /// The cluster's id.
    #[serde(default)]
    pub cluster_name: String,
}

/// The registration token's derived values. The token itself is a secret the server keeps encrypted or
/// hashed; these fields are what a user is shown.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct ClusterRegistrationTokenStatus {
    /// Conditions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The token, as stored by the server (see the server's docs for how it is protected at rest).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub token: String,
    /// `https://<server>/v3/import/<token>_<cluster>.yaml`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub manifest_url: String,
    /// `kubectl apply -f <manifestUrl>`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub command: String,
    /// `curl --insecure -sfL <manifestUrl> | kubectl apply -f -`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub insecure_command: String,
}

/// Used by kinds that report only conditions.
pub type EmptyStatus = ConditionsOnly;
