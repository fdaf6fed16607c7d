//! The EKS calls through the official AWS SDK (`aws-sdk-eks`, feature `eks`), configured from a
//! cloud credential's static keys, a region and an optional endpoint URL — no `aws-config`, no
//! environment or profile lookup. Every request sent (retries included) is counted; throttling and
//! 5xx answers are retried by the SDK's standard strategy (exponential backoff with jitter, a
//! retry quota), which waits what `x-amz-retry-after` asks and, with [`RetryAfterClassifier`], what
//! a standard `Retry-After` asks, up to the policy's `max_backoff`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use aws_sdk_eks::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_eks::config::retry::{ClassifyRetry, RetryAction, RetryConfig};
use aws_sdk_eks::config::timeout::TimeoutConfig;
use aws_sdk_eks::config::{BehaviorVersion, ConfigBag, Credentials, Intercept, Region, RuntimeComponents};
use aws_sdk_eks::error::{BoxError, DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_eks::types as aws;
use aws_smithy_runtime_api::client::interceptors::context::InterceptorContext;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::retries::classifiers::{RetryClassifierPriority, RetryReason};
use aws_smithy_types::retry::ErrorKind;
use secrecy::{ExposeSecret, SecretString};
use tokio_util::sync::CancellationToken;

use super::token::{AwsKeys, bearer_token};
use super::types::{
    Cluster, ClusterConfigUpdate, ClusterCreate, ClusterStatus, Nodegroup, NodegroupCreate, NodegroupStatus,
    Scaling, Update, UpdateStatus,
};
use super::{EksError, Result};
use crate::hosted::credentials::CloudSecret;

/// How many requests a client (or several sharing it) sent.
#[derive(Debug, Default)]
pub struct ApiCalls {
    api_calls: AtomicU64,
}

impl ApiCalls {
    /// Requests sent to EKS, retries included.
    pub fn api_calls(&self) -> u64 {
        self.api_calls.load(Ordering::Relaxed)
    }
}

/// Counts every attempt the SDK transmits.
#[derive(Debug)]
struct CountAttempts(Arc<ApiCalls>);

impl Intercept for CountAttempts {
    fn name(&self) -> &'static str {
        "rancher-eks-call-counter"
    }

    fn read_before_transmit(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> std::result::Result<(), BoxError> {
        self.0.api_calls.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

/// Makes the SDK honour a standard `Retry-After` (seconds or an HTTP date), which its own
/// classifiers ignore (they read AWS's `x-amz-retry-after` only): a 429 is a throttling error, and
/// a response already judged retryable without a delay gets the header's.
#[derive(Debug, Default)]
pub struct RetryAfterClassifier;

impl ClassifyRetry for RetryAfterClassifier {
    fn classify_retry(&self, ctx: &InterceptorContext) -> RetryAction {
        self.classify_retry_v2(ctx, &RetryAction::NoActionIndicated)
    }

    fn classify_retry_v2(&self, ctx: &InterceptorContext, previous: &RetryAction) -> RetryAction {
        let Some(resp) = ctx.response() else { return RetryAction::NoActionIndicated };
        let delay = resp.headers().get("retry-after").and_then(retry_after);
        match (previous, delay) {
            (
                RetryAction::RetryIndicated(RetryReason::RetryableError { kind, retry_after: None }),
                Some(d),
            ) => RetryAction::retryable_error_with_explicit_delay(*kind, d),
            (RetryAction::NoActionIndicated, d) if resp.status().as_u16() == 429 => match d {
                Some(d) => RetryAction::retryable_error_with_explicit_delay(ErrorKind::ThrottlingError, d),
                None => RetryAction::throttling_error(),
            },
            _ => RetryAction::NoActionIndicated,
        }
    }

    fn name(&self) -> &'static str {
        "Retry-After"
    }

    fn priority(&self) -> RetryClassifierPriority {
        // After the SDK's own (the transient-error classifier runs last of them).
        RetryClassifierPriority::run_after(RetryClassifierPriority::transient_error_classifier())
    }
}

/// A `Retry-After` value: delay-seconds or an HTTP date.
pub(crate) fn retry_after(v: &str) -> Option<Duration> {
    let v = v.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = jiff::fmt::rfc2822::parse(v).ok()?.timestamp();
    let wait = at.duration_since(jiff::Timestamp::now());
    Some(Duration::try_from(wait).unwrap_or(Duration::ZERO))
}

/// How throttled and failing calls are retried (the SDK's standard strategy).
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    /// The most times one call is sent (at least 1).
    pub max_attempts: u32,
    /// The first backoff; doubled (with jitter) on each retry.
    pub initial_backoff: Duration,
    /// The longest wait, also the cap on a server-asked delay.
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(20),
        }
    }
}

/// How an [`EksClient`] reaches AWS.
#[derive(Clone, Debug)]
pub struct EksOptions {
    /// Another endpoint than AWS's (`https://…`, or `http://` on a loopback address for a stand-in).
    pub endpoint_url: Option<String>,
    /// Retries.
    pub retry: RetryPolicy,
    /// Where requests are counted; share one to count several clients.
    pub calls: Arc<ApiCalls>,
    /// The limit on one attempt.
    pub request_timeout: Duration,
}

impl Default for EksOptions {
    fn default() -> Self {
        EksOptions {
            endpoint_url: None,
            retry: RetryPolicy::default(),
            calls: Arc::default(),
            request_timeout: Duration::from_secs(60),
        }
    }
}

/// A client of the EKS API in one region, signed with one credential's keys. Cheap to clone.
#[derive(Clone)]
pub struct EksClient {
    sdk: aws_sdk_eks::Client,
    keys: AwsKeys,
    region: String,
    endpoint: Option<String>,
    calls: Arc<ApiCalls>,
}

impl std::fmt::Debug for EksClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EksClient")
            .field("region", &self.region)
            .field("endpoint", &self.endpoint)
            .field("access_key_id", &self.keys.access_key_id)
            .finish_non_exhaustive()
    }
}

/// Checks an endpoint override: HTTPS, or plain HTTP to a loopback address only.
fn check_endpoint(url: &str) -> Result<()> {
    let u = url::Url::parse(url).map_err(|e| EksError::Config(format!("endpoint URL {url:?}: {e}")))?;
    let loopback = match u.host() {
        Some(url::Host::Ipv4(a)) => a.is_loopback(),
        Some(url::Host::Ipv6(a)) => a.is_loopback(),
        Some(url::Host::Domain(d)) => d == "localhost",
        None => false,
    };
    match u.scheme() {
        "https" => Ok(()),
        "http" if loopback => Ok(()),
        _ => Err(EksError::Config(format!(
            "endpoint URL {url:?}: HTTPS, or plain HTTP to a loopback address only"
        ))),
    }
}

impl EksClient {
    /// A client for `region` signing with `keys`.
    ///
    /// # Errors
    /// [`EksError::Config`] for a region that is not one or an unusable endpoint URL.
    pub fn new(keys: AwsKeys, region: &str, options: EksOptions) -> Result<EksClient> {
        super::validate::region(region).map_err(|m| EksError::Config(format!("region: {m}")))?;
        if let Some(u) = &options.endpoint_url {
            check_endpoint(u)?;
        }
        let creds = Credentials::new(
            &keys.access_key_id,
            keys.secret_access_key.expose_secret(),
            keys.session_token.as_ref().map(|t| t.expose_secret().to_owned()),
            None,
            "rancher-cloud-credential",
        );
        let retry = RetryConfig::standard()
            .with_max_attempts(options.retry.max_attempts.max(1))
            .with_initial_backoff(options.retry.initial_backoff)
            .with_max_backoff(options.retry.max_backoff);
        let timeouts = TimeoutConfig::builder()
            .connect_timeout(Duration::from_secs(15))
            .operation_attempt_timeout(options.request_timeout)
            .build();
        let mut config = aws_sdk_eks::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(region.to_owned()))
            .credentials_provider(creds)
            .retry_config(retry)
            .timeout_config(timeouts)
            .retry_classifier(RetryAfterClassifier)
            .interceptor(CountAttempts(options.calls.clone()));
        if let Some(u) = &options.endpoint_url {
            config = config.endpoint_url(u.trim_end_matches('/'));
        }
        Ok(EksClient {
            sdk: aws_sdk_eks::Client::from_conf(config.build()),
            keys,
            region: region.to_owned(),
            endpoint: options.endpoint_url,
            calls: options.calls,
        })
    }

    /// A client from a `CloudSecret::Aws`, in `region` (the secret's default region when empty).
    ///
    /// # Errors
    /// [`EksError::Config`] for another cloud's secret, no region, or as [`new`](Self::new).
    pub fn from_secret(secret: &CloudSecret, region: &str, options: EksOptions) -> Result<EksClient> {
        let keys = AwsKeys::from_secret(secret).ok_or_else(|| {
            EksError::Config(format!("the cloud credential is a {} one, not AWS", secret.provider()))
        })?;
        let region = match (region, secret) {
            ("", CloudSecret::Aws { default_region, .. }) => default_region.as_str(),
            (r, _) => r,
        };
        EksClient::new(keys, region, options)
    }

    /// The request counters.
    pub fn calls(&self) -> &Arc<ApiCalls> {
        &self.calls
    }

    /// The region.
    pub fn region(&self) -> &str {
        &self.region
    }

    /// A bearer token for `cluster`'s API server as this client's identity (see
    /// [`bearer_token`](super::bearer_token)); make a new one within [`TOKEN_LIFETIME`](super::TOKEN_LIFETIME).
    pub fn bearer_token(&self, cluster: &str) -> SecretString {
        bearer_token(&self.keys, &self.region, cluster, jiff::Timestamp::now())
    }

    // ---- clusters ----

    /// `CreateCluster`: starts creating the control plane.
    ///
    /// # Errors
    /// [`EksError::InUse`] when the name is taken; any [`EksError`].
    pub async fn create_cluster(&self, c: &ClusterCreate) -> Result<Cluster> {
        const OP: &str = "CreateCluster";
        let vpc = aws::VpcConfigRequest::builder()
            .set_subnet_ids(Some(c.subnets.clone()))
            .set_security_group_ids(non_empty(&c.security_groups))
            .set_endpoint_public_access(c.public_access)
            .set_endpoint_private_access(c.private_access)
            .set_public_access_cidrs(non_empty(&c.public_access_sources))
            .build();
        let out = self
            .sdk
            .create_cluster()
            .name(&c.name)
            .set_version(c.version.clone())
            .role_arn(&c.role_arn)
            .resources_vpc_config(vpc)
            .set_logging(logging(Some(&c.logging_types)))
            .set_tags(tags(&c.tags))
            .send()
            .await
            .map_err(|e| sdk_err(OP, e))?;
        out.cluster().map(cluster).ok_or_else(|| missing(OP, "cluster"))
    }

    /// `DescribeCluster`: status, endpoint, CA, version.
    ///
    /// # Errors
    /// [`EksError::NotFound`]; any [`EksError`].
    pub async fn describe_cluster(&self, name: &str) -> Result<Cluster> {
        const OP: &str = "DescribeCluster";
        let out = self.sdk.describe_cluster().name(name).send().await.map_err(|e| sdk_err(OP, e))?;
        out.cluster().map(cluster).ok_or_else(|| missing(OP, "cluster"))
    }

    /// `DescribeCluster`, with a missing cluster as `None`.
    ///
    /// # Errors
    /// Any [`EksError`] but [`EksError::NotFound`].
    pub async fn find_cluster(&self, name: &str) -> Result<Option<Cluster>> {
        found(self.describe_cluster(name).await)
    }

    /// `ListClusters`: every cluster's name in the region (all pages).
    ///
    /// # Errors
    /// Any [`EksError`].
    pub async fn list_clusters(&self) -> Result<Vec<String>> {
        const OP: &str = "ListClusters";
        let mut names = Vec::new();
        let mut next: Option<String> = None;
        loop {
            let out =
                self.sdk.list_clusters().set_next_token(next).send().await.map_err(|e| sdk_err(OP, e))?;
            names.extend(out.clusters().iter().cloned());
            match out.next_token() {
                Some(t) if !t.is_empty() => next = Some(t.to_owned()),
                _ => return Ok(names),
            }
        }
    }

    /// `DeleteCluster`: starts deleting the control plane (its node groups must be gone).
    ///
    /// # Errors
    /// [`EksError::NotFound`] when it is gone already; [`EksError::InUse`] while node groups remain.
    pub async fn delete_cluster(&self, name: &str) -> Result<Cluster> {
        const OP: &str = "DeleteCluster";
        let out = self.sdk.delete_cluster().name(name).send().await.map_err(|e| sdk_err(OP, e))?;
        out.cluster().map(cluster).ok_or_else(|| missing(OP, "cluster"))
    }

    /// `UpdateClusterVersion`: starts upgrading the control plane one minor version.
    ///
    /// # Errors
    /// [`EksError::InUse`] while another update runs; any [`EksError`].
    pub async fn update_cluster_version(&self, name: &str, version: &str) -> Result<Update> {
        const OP: &str = "UpdateClusterVersion";
        let out = self
            .sdk
            .update_cluster_version()
            .name(name)
            .version(version)
            .send()
            .await
            .map_err(|e| sdk_err(OP, e))?;
        out.update().map(update).ok_or_else(|| missing(OP, "update"))
    }

    /// `UpdateClusterConfig`: endpoint access and logging.
    ///
    /// # Errors
    /// [`EksError::Config`] for an empty change; any [`EksError`].
    pub async fn update_cluster_config(&self, name: &str, change: &ClusterConfigUpdate) -> Result<Update> {
        const OP: &str = "UpdateClusterConfig";
        if change.is_empty() {
            return Err(EksError::Config(format!("{OP}: nothing to change")));
        }
        let access = change.public_access.is_some()
            || change.private_access.is_some()
            || change.public_access_sources.is_some();
        let vpc = access.then(|| {
            aws::VpcConfigRequest::builder()
                .set_endpoint_public_access(change.public_access)
                .set_endpoint_private_access(change.private_access)
                .set_public_access_cidrs(change.public_access_sources.clone())
                .build()
        });
        let out = self
            .sdk
            .update_cluster_config()
            .name(name)
            .set_resources_vpc_config(vpc)
            .set_logging(change.logging_types.as_ref().and_then(|t| logging(Some(t))))
            .send()
            .await
            .map_err(|e| sdk_err(OP, e))?;
        out.update().map(update).ok_or_else(|| missing(OP, "update"))
    }

    /// `TagResource`: adds (or overwrites) tags on a cluster or node group (its ARN).
    ///
    /// # Errors
    /// Any [`EksError`].
    pub async fn tag_resource(&self, arn: &str, tags_to_set: &BTreeMap<String, String>) -> Result<()> {
        const OP: &str = "TagResource";
        self.sdk
            .tag_resource()
            .resource_arn(arn)
            .set_tags(tags(tags_to_set))
            .send()
            .await
            .map_err(|e| sdk_err(OP, e))?;
        Ok(())
    }

    // ---- node groups ----

    /// `CreateNodegroup`: starts creating a managed node group in `cluster`.
    ///
    /// # Errors
    /// [`EksError::InUse`] when the name is taken; any [`EksError`].
    pub async fn create_nodegroup(&self, cluster: &str, ng: &NodegroupCreate) -> Result<Nodegroup> {
        const OP: &str = "CreateNodegroup";
        let out = self
            .sdk
            .create_nodegroup()
            .cluster_name(cluster)
            .nodegroup_name(&ng.name)
            .node_role(&ng.node_role)
            .set_subnets(Some(ng.subnets.clone()))
            .set_instance_types(non_empty(&ng.instance_types))
            .set_disk_size(ng.disk_size)
            .scaling_config(scaling_config(ng.scaling))
            .set_labels(tags(&ng.labels))
            .set_tags(tags(&ng.tags))
            .set_version(ng.version.clone())
            .send()
            .await
            .map_err(|e| sdk_err(OP, e))?;
        out.nodegroup().map(nodegroup).ok_or_else(|| missing(OP, "nodegroup"))
    }

    /// `DescribeNodegroup`.
    ///
    /// # Errors
    /// [`EksError::NotFound`]; any [`EksError`].
    pub async fn describe_nodegroup(&self, cluster: &str, name: &str) -> Result<Nodegroup> {
        const OP: &str = "DescribeNodegroup";
        let out = self
            .sdk
            .describe_nodegroup()
            .cluster_name(cluster)
            .nodegroup_name(name)
            .send()
            .await
            .map_err(|e| sdk_err(OP, e))?;
        out.nodegroup().map(nodegroup).ok_or_else(|| missing(OP, "nodegroup"))
    }

    /// `DescribeNodegroup`, with a missing group as `None`.
    ///
    /// # Errors
    /// Any [`EksError`] but [`EksError::NotFound`].
    pub async fn find_nodegroup(&self, cluster: &str, name: &str) -> Result<Option<Nodegroup>> {
        found(self.describe_nodegroup(cluster, name).await)
    }

    /// `ListNodegroups`: the node groups' names (all pages).
    ///
    /// # Errors
    /// [`EksError::NotFound`] when the cluster is not there; any [`EksError`].
    pub async fn list_nodegroups(&self, cluster: &str) -> Result<Vec<String>> {
        const OP: &str = "ListNodegroups";
        let mut names = Vec::new();
        let mut next: Option<String> = None;
        loop {
            let out = self
                .sdk
                .list_nodegroups()
                .cluster_name(cluster)
                .set_next_token(next)
                .send()
                .await
                .map_err(|e| sdk_err(OP, e))?;
            names.extend(out.nodegroups().iter().cloned());
            match out.next_token() {
                Some(t) if !t.is_empty() => next = Some(t.to_owned()),
                _ => return Ok(names),
            }
        }
    }

    /// `UpdateNodegroupConfig` with a new scaling config (the parts set in `scaling`).
    ///
    /// # Errors
    /// [`EksError::InUse`] while another update runs; any [`EksError`].
    pub async fn update_nodegroup_scaling(
        &self,
        cluster: &str,
        name: &str,
        scaling: Scaling,
    ) -> Result<Update> {
        const OP: &str = "UpdateNodegroupConfig";
        let out = self
            .sdk
            .update_nodegroup_config()
            .cluster_name(cluster)
            .nodegroup_name(name)
            .scaling_config(scaling_config(scaling))
            .send()
            .await
            .map_err(|e| sdk_err(OP, e))?;
        out.update().map(update).ok_or_else(|| missing(OP, "update"))
    }

    /// `UpdateNodegroupVersion`: the nodes to `version` (the control plane's when `None`).
    ///
    /// # Errors
    /// [`EksError::InUse`] while another update runs; any [`EksError`].
    pub async fn update_nodegroup_version(
        &self,
        cluster: &str,
        name: &str,
        version: Option<&str>,
    ) -> Result<Update> {
        const OP: &str = "UpdateNodegroupVersion";
        let out = self
            .sdk
            .update_nodegroup_version()
            .cluster_name(cluster)
            .nodegroup_name(name)
            .set_version(version.map(str::to_owned))
            .send()
            .await
            .map_err(|e| sdk_err(OP, e))?;
        out.update().map(update).ok_or_else(|| missing(OP, "update"))
    }

    /// `DeleteNodegroup`: starts deleting the node group.
    ///
    /// # Errors
    /// [`EksError::NotFound`] when it is gone already; any [`EksError`].
    pub async fn delete_nodegroup(&self, cluster: &str, name: &str) -> Result<Nodegroup> {
        const OP: &str = "DeleteNodegroup";
        let out = self
            .sdk
            .delete_nodegroup()
            .cluster_name(cluster)
            .nodegroup_name(name)
            .send()
            .await
            .map_err(|e| sdk_err(OP, e))?;
        out.nodegroup().map(nodegroup).ok_or_else(|| missing(OP, "nodegroup"))
    }

    // ---- updates and waiting ----

    /// `DescribeUpdate`: how far an update of `cluster` (or of its node group) got.
    ///
    /// # Errors
    /// [`EksError::NotFound`]; any [`EksError`].
    pub async fn describe_update(&self, cluster: &str, nodegroup: Option<&str>, id: &str) -> Result<Update> {
        const OP: &str = "DescribeUpdate";
        let out = self
            .sdk
            .describe_update()
            .name(cluster)
            .set_nodegroup_name(nodegroup.map(str::to_owned))
            .update_id(id)
            .send()
            .await
            .map_err(|e| sdk_err(OP, e))?;
        out.update().map(update).ok_or_else(|| missing(OP, "update"))
    }

    /// Polls an update every `poll` until it is `Successful`, for at most `deadline`.
    ///
    /// # Errors
    /// [`EksError::UpdateFailed`] when it ends `Failed` or `Cancelled`; [`EksError::Timeout`];
    /// [`EksError::Cancelled`]; any [`EksError`] of the polls.
    pub async fn wait_update(
        &self,
        cluster: &str,
        nodegroup: Option<&str>,
        id: &str,
        wait: Wait<'_>,
    ) -> Result<Update> {
        let what = format!("update {id} of {cluster}");
        poll(&what, "Successful", wait, || async {
            let u = self.describe_update(cluster, nodegroup, id).await?;
            match u.status {
                UpdateStatus::Successful => Ok(Polled::Done(u)),
                UpdateStatus::Failed | UpdateStatus::Cancelled => Err(EksError::UpdateFailed {
                    update_id: u.id.clone(),
                    kind: u.kind.clone(),
                    status: format!("{:?}", u.status),
                    errors: u.errors.join("; "),
                }),
                _ => Ok(Polled::NotYet(format!("{:?}", u.status))),
            }
        })
        .await
    }

    /// Polls the cluster until it is `ACTIVE`.
    ///
    /// # Errors
    /// [`EksError::Failed`] when it turns `FAILED`; [`EksError::Timeout`]; [`EksError::Cancelled`];
    /// any [`EksError`] of the polls.
    pub async fn wait_cluster_active(&self, name: &str, wait: Wait<'_>) -> Result<Cluster> {
        poll(&format!("cluster {name}"), "ACTIVE", wait, || async {
            let c = self.describe_cluster(name).await?;
            match &c.status {
                ClusterStatus::Active => Ok(Polled::Done(c)),
                ClusterStatus::Failed => Err(EksError::Failed {
                    what: format!("cluster {name}"),
                    status: "FAILED".into(),
                    detail: String::new(),
                }),
                s => Ok(Polled::NotYet(format!("{s:?}"))),
            }
        })
        .await
    }

    /// Polls until the cluster is gone (`ResourceNotFoundException`).
    ///
    /// # Errors
    /// [`EksError::Timeout`]; [`EksError::Cancelled`]; any [`EksError`] of the polls.
    pub async fn wait_cluster_gone(&self, name: &str, wait: Wait<'_>) -> Result<()> {
        poll(&format!("cluster {name}"), "deleted", wait, || async {
            Ok(match self.find_cluster(name).await? {
                None => Polled::Done(()),
                Some(c) => Polled::NotYet(format!("{:?}", c.status)),
            })
        })
        .await
    }

    /// Polls the node group until it is `ACTIVE`.
    ///
    /// # Errors
    /// [`EksError::Failed`] when it turns `CREATE_FAILED` or `DEGRADED`; [`EksError::Timeout`];
    /// [`EksError::Cancelled`]; any [`EksError`] of the polls.
    pub async fn wait_nodegroup_active(
        &self,
        cluster: &str,
        name: &str,
        wait: Wait<'_>,
    ) -> Result<Nodegroup> {
        let what = format!("node group {name} of {cluster}");
        poll(&what, "ACTIVE", wait, || async {
            let ng = self.describe_nodegroup(cluster, name).await?;
            match &ng.status {
                NodegroupStatus::Active => Ok(Polled::Done(ng)),
                NodegroupStatus::CreateFailed | NodegroupStatus::Degraded => Err(EksError::Failed {
                    what: what.clone(),
                    status: format!("{:?}", ng.status),
                    detail: ng.health_issues.join("; "),
                }),
                s => Ok(Polled::NotYet(format!("{s:?}"))),
            }
        })
        .await
    }

    /// Polls until the node group is gone.
    ///
    /// # Errors
    /// [`EksError::Failed`] on `DELETE_FAILED`; [`EksError::Timeout`]; [`EksError::Cancelled`]; any
    /// [`EksError`] of the polls.
    pub async fn wait_nodegroup_gone(&self, cluster: &str, name: &str, wait: Wait<'_>) -> Result<()> {
        let what = format!("node group {name} of {cluster}");
        poll(&what, "deleted", wait, || async {
            match self.find_nodegroup(cluster, name).await? {
                None => Ok(Polled::Done(())),
                Some(ng) if ng.status == NodegroupStatus::DeleteFailed => Err(EksError::Failed {
                    what: what.clone(),
                    status: "DELETE_FAILED".into(),
                    detail: ng.health_issues.join("; "),
                }),
                Some(ng) => Ok(Polled::NotYet(format!("{:?}", ng.status))),
            }
        })
        .await
    }
}

/// How a `wait_*` call polls: every `poll`, for at most `deadline`, until `cancel` fires.
#[derive(Clone, Copy, Debug)]
pub struct Wait<'a> {
    /// Between polls.
    pub poll: Duration,
    /// The longest wait.
    pub deadline: Duration,
    /// Stops waiting.
    pub cancel: &'a CancellationToken,
}

enum Polled<T> {
    Done(T),
    NotYet(String),
}

async fn poll<T, F, Fut>(what: &str, wanted: &'static str, wait: Wait<'_>, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Polled<T>>>,
{
    let until = tokio::time::Instant::now() + wait.deadline;
    loop {
        let last = match check().await? {
            Polled::Done(t) => return Ok(t),
            Polled::NotYet(last) => last,
        };
        let now = tokio::time::Instant::now();
        if now >= until {
            return Err(EksError::Timeout { what: what.to_owned(), wanted, last, waited: wait.deadline });
        }
        tokio::select! {
            () = wait.cancel.cancelled() => return Err(EksError::Cancelled),
            () = tokio::time::sleep(wait.poll.min(until - now)) => {}
        }
    }
}

fn found<T>(r: Result<T>) -> Result<Option<T>> {
    match r {
        Ok(t) => Ok(Some(t)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e),
    }
}

/// An SDK error as an [`EksError`] naming `operation`.
fn sdk_err<E>(operation: &'static str, e: SdkError<E, HttpResponse>) -> EksError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match &e {
        SdkError::ServiceError(ctx) => EksError::from_code(
            operation,
            ctx.raw().status().as_u16(),
            ctx.err().code().unwrap_or_default(),
            ctx.err().message().unwrap_or_default(),
        ),
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) => {
            EksError::Transport { operation, message: DisplayErrorContext(&e).to_string() }
        }
        SdkError::ConstructionFailure(_) => {
            EksError::Config(format!("{operation}: the request cannot be made: {}", DisplayErrorContext(&e)))
        }
        _ => EksError::InvalidResponse { operation, reason: DisplayErrorContext(&e).to_string() },
    }
}

fn missing(operation: &'static str, what: &str) -> EksError {
    EksError::InvalidResponse { operation, reason: format!("no {what} in the answer") }
}

fn non_empty(v: &[String]) -> Option<Vec<String>> {
    (!v.is_empty()).then(|| v.to_vec())
}

fn tags(t: &BTreeMap<String, String>) -> Option<std::collections::HashMap<String, String>> {
    (!t.is_empty()).then(|| t.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
}

/// `types` switched on, every other log type switched off (so a later change can turn some off).
fn logging(types: Option<&Vec<String>>) -> Option<aws::Logging> {
    let on: Vec<aws::LogType> = types?.iter().map(|t| aws::LogType::from(t.as_str())).collect();
    let off: Vec<aws::LogType> =
        super::LOG_TYPES.iter().map(|t| aws::LogType::from(*t)).filter(|t| !on.contains(t)).collect();
    let mut setups = Vec::new();
    if !on.is_empty() {
        setups.push(aws::LogSetup::builder().set_types(Some(on)).enabled(true).build());
    }
    if !off.is_empty() {
        setups.push(aws::LogSetup::builder().set_types(Some(off)).enabled(false).build());
    }
    Some(aws::Logging::builder().set_cluster_logging(Some(setups)).build())
}

fn scaling_config(s: Scaling) -> aws::NodegroupScalingConfig {
    aws::NodegroupScalingConfig::builder()
        .set_min_size(s.min_size)
        .set_max_size(s.max_size)
        .set_desired_size(s.desired_size)
        .build()
}

fn map(m: Option<&std::collections::HashMap<String, String>>) -> BTreeMap<String, String> {
    m.map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()).unwrap_or_default()
}

fn cluster(c: &aws::Cluster) -> Cluster {
    let vpc = c.resources_vpc_config();
    let logging_types = c
        .logging()
        .map(|l| {
            l.cluster_logging()
                .iter()
                .filter(|s| s.enabled() == Some(true))
                .flat_map(|s| s.types().iter().map(|t| t.as_str().to_owned()))
                .collect()
        })
        .unwrap_or_default();
    Cluster {
        name: c.name().unwrap_or_default().to_owned(),
        arn: c.arn().unwrap_or_default().to_owned(),
        status: ClusterStatus::parse(c.status().map(|s| s.as_str()).unwrap_or_default()),
        version: c.version().map(str::to_owned),
        platform_version: c.platform_version().map(str::to_owned),
        endpoint: c.endpoint().filter(|e| !e.is_empty()).map(str::to_owned),
        certificate_authority_data: c.certificate_authority().and_then(|a| a.data()).map(str::to_owned),
        role_arn: c.role_arn().map(str::to_owned),
        subnets: vpc.map(|v| v.subnet_ids().to_vec()).unwrap_or_default(),
        security_groups: vpc.map(|v| v.security_group_ids().to_vec()).unwrap_or_default(),
        public_access: vpc.map(|v| v.endpoint_public_access()),
        private_access: vpc.map(|v| v.endpoint_private_access()),
        public_access_sources: vpc.map(|v| v.public_access_cidrs().to_vec()).unwrap_or_default(),
        logging_types,
        tags: map(c.tags()),
    }
}

fn nodegroup(n: &aws::Nodegroup) -> Nodegroup {
    let s = n.scaling_config();
    Nodegroup {
        name: n.nodegroup_name().unwrap_or_default().to_owned(),
        cluster_name: n.cluster_name().unwrap_or_default().to_owned(),
        status: NodegroupStatus::parse(n.status().map(|s| s.as_str()).unwrap_or_default()),
        version: n.version().map(str::to_owned),
        release_version: n.release_version().map(str::to_owned),
        instance_types: n.instance_types().to_vec(),
        disk_size: n.disk_size(),
        scaling: Scaling {
            min_size: s.and_then(|s| s.min_size()),
            max_size: s.and_then(|s| s.max_size()),
            desired_size: s.and_then(|s| s.desired_size()),
        },
        labels: map(n.labels()),
        tags: map(n.tags()),
        node_role: n.node_role().map(str::to_owned),
        subnets: n.subnets().to_vec(),
        health_issues: n
            .health()
            .map(|h| {
                h.issues()
                    .iter()
                    .map(|i| {
                        format!(
                            "{}: {}",
                            i.code().map(|c| c.as_str()).unwrap_or_default(),
                            i.message().unwrap_or_default()
                        )
                    })
                    .collect()
            })
            .unwrap_or_default(),
    }
}

fn update(u: &aws::Update) -> Update {
    Update {
        id: u.id().unwrap_or_default().to_owned(),
        status: UpdateStatus::parse(u.status().map(|s| s.as_str()).unwrap_or_default()),
        kind: u.r#type().map(|t| t.as_str().to_owned()).unwrap_or_default(),
        errors: u
            .errors()
            .iter()
            .map(|e| {
                format!(
                    "{}: {}",
                    e.error_code().map(|c| c.as_str()).unwrap_or_default(),
                    e.error_message().unwrap_or_default()
                )
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_is_read_as_seconds_or_an_http_date() {
        assert_eq!(retry_after("3"), Some(Duration::from_secs(3)));
        assert_eq!(retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), Some(Duration::ZERO));
        assert_eq!(retry_after("soon"), None);
    }

    #[test]
    fn endpoints_are_https_or_loopback_http() {
        check_endpoint("https://eks.example").unwrap();
        check_endpoint("http://127.0.0.1:5000").unwrap();
        check_endpoint("http://localhost:5000").unwrap();
        assert!(check_endpoint("http://eks.example").is_err());
        assert!(check_endpoint("not a url").is_err());
    }

    #[test]
    fn a_client_needs_aws_keys_and_a_region_and_hides_the_secret() {
        let azure = CloudSecret::Azure {
            client_id: "c".into(),
            client_secret: "AZ-SECRET".into(),
            tenant_id: "t".into(),
            subscription_id: "s".into(),
            environment: "AzurePublicCloud".into(),
        };
        let e = EksClient::from_secret(&azure, "us-west-2", EksOptions::default()).unwrap_err();
        assert_eq!(e.to_string(), "EKS client: the cloud credential is a azure one, not AWS");
        let aws = CloudSecret::Aws {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: "THE-SECRET".into(),
            session_token: None,
            default_region: String::new(),
        };
        assert!(EksClient::from_secret(&aws, "", EksOptions::default()).is_err(), "no region anywhere");
        let c = EksClient::from_secret(&aws, "eu-west-1", EksOptions::default()).unwrap();
        let text = format!("{c:?}");
        assert!(
            text.contains("AKIDEXAMPLE") && text.contains("eu-west-1") && !text.contains("THE-SECRET"),
            "{text}"
        );
    }
}
