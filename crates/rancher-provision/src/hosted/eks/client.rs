//! The EKS calls through the official AWS SDK (`aws-sdk-eks`, feature `eks`), configured from a
//! cloud credential's static keys, a region and an optional endpoint URL — no `aws-config`, no
//! environment or profile lookup. Every request sent (retries included) is counted; throttling and
//! 5xx answers are retried as [`RetryPolicy`](super::RetryPolicy) says (see `retry.rs`). Each
//! error names its operation.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_eks::config::retry::RetryConfig;
use aws_sdk_eks::config::timeout::TimeoutConfig;
use aws_sdk_eks::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_eks::types as aws;
use secrecy::{ExposeSecret, SecretString};

use super::convert::{
    cluster, logging, missing, nodegroup, non_empty, scaling_config, sdk_err, tags, update,
};
use super::retry::{ApiCalls, CountAttempts, RetryAfterClassifier, RetryPolicy};
use super::token::{AwsKeys, bearer_token};
use super::types::{
    Cluster, ClusterConfigUpdate, ClusterCreate, Nodegroup, NodegroupCreate, Scaling, Update,
};
use super::{EksError, Result};
use crate::hosted::credentials::CloudSecret;

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
    pub(super) sdk: aws_sdk_eks::Client,
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
}

pub(super) fn found<T>(r: Result<T>) -> Result<Option<T>> {
    match r {
        Ok(t) => Ok(Some(t)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
