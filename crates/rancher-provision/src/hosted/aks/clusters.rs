//! The calls: resource groups, managed clusters, agent pools, admin credentials
//! (REST reference: "Resource Groups", "Managed Clusters", "Agent Pools" on learn.microsoft.com).

use std::collections::BTreeMap;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::client::AksClient;
use super::error::{AksError, Result};
use super::kubeconfig::AdminKubeconfig;
use super::operation::Operation;
use super::types::{AgentPool, ManagedCluster, Page, ResourceGroup};
use super::{API_VERSION, RESOURCES_API_VERSION};

/// A path segment from a name: never empty, never able to change the path.
fn seg<'a>(what: &str, name: &'a str) -> Result<&'a str> {
    let ok = !name.is_empty()
        && !name.chars().any(|c| matches!(c, '/' | '?' | '#' | '%' | '\\') || c.is_control());
    if ok {
        Ok(name)
    } else {
        Err(AksError::InvalidConfig {
            field: what.to_owned(),
            message: format!("{name:?} is not a valid name"),
        })
    }
}

impl AksClient {
    fn rg_path(&self, rg: &str) -> Result<String> {
        Ok(format!(
            "/subscriptions/{}/resourcegroups/{}",
            self.creds.subscription_id,
            seg("resourceGroup", rg)?
        ))
    }

    fn cluster_path(&self, rg: &str, name: &str) -> Result<String> {
        Ok(format!(
            "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.ContainerService/managedClusters/{}",
            self.creds.subscription_id,
            seg("resourceGroup", rg)?,
            seg("clusterName", name)?
        ))
    }

    fn pool_path(&self, rg: &str, cluster: &str, pool: &str) -> Result<String> {
        Ok(format!("{}/agentPools/{}", self.cluster_path(rg, cluster)?, seg("nodePools.name", pool)?))
    }

    // ---- resource groups ----

    /// The resource group, or `None` when there is none.
    ///
    /// # Errors
    /// Credentials, throttling, transport and API errors.
    pub async fn get_resource_group(&self, name: &str) -> Result<Option<ResourceGroup>> {
        let url = self.url(&self.rg_path(name)?, RESOURCES_API_VERSION)?;
        match self.get_json(url, name).await {
            Ok(g) => Ok(Some(g)),
            Err(AksError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Creates the resource group in `location` unless it exists (as aks-operator does before
    /// creating a cluster); `true` when it created it. An existing group is left as it is.
    ///
    /// # Errors
    /// As [`get_resource_group`](Self::get_resource_group).
    pub async fn ensure_resource_group(
        &self,
        name: &str,
        location: &str,
        tags: &BTreeMap<String, String>,
    ) -> Result<bool> {
        if self.get_resource_group(name).await?.is_some() {
            return Ok(false);
        }
        let url = self.url(&self.rg_path(name)?, RESOURCES_API_VERSION)?;
        let body = json!({ "location": location, "tags": tags });
        self.send(Method::PUT, url, Some(&body), name).await?;
        Ok(true)
    }

    /// Deletes the resource group and everything in it; a missing group is already deleted.
    ///
    /// # Errors
    /// As [`get_resource_group`](Self::get_resource_group).
    pub async fn delete_resource_group(&self, name: &str) -> Result<Operation> {
        let url = self.url(&self.rg_path(name)?, RESOURCES_API_VERSION)?;
        match self.send(Method::DELETE, url, None, name).await {
            Ok(a) => Ok(Operation::from_answer(&a)),
            Err(AksError::NotFound { .. }) => Ok(Operation::completed()),
            Err(e) => Err(e),
        }
    }

    // ---- managed clusters ----

    /// The managed cluster (provisioning and power state, fqdn, versions, pools), or `None`.
    ///
    /// # Errors
    /// Credentials, throttling, transport and API errors.
    pub async fn get_cluster(&self, rg: &str, name: &str) -> Result<Option<ManagedCluster>> {
        let url = self.url(&self.cluster_path(rg, name)?, API_VERSION)?;
        match self.get_json(url, name).await {
            Ok(c) => Ok(Some(c)),
            Err(AksError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Creates the cluster, or updates it to `cluster` (a PUT of the whole resource: for an update,
    /// start from [`get_cluster`](Self::get_cluster)). Returns Azure's answer (provisioningState
    /// `Creating`/`Updating`/…) and the operation to wait for.
    ///
    /// # Errors
    /// [`AksError::Conflict`] while another operation runs on the cluster; [`AksError::Api`] with
    /// Azure's reason for a refused spec; credentials, throttling, transport.
    pub async fn create_or_update_cluster(
        &self,
        rg: &str,
        name: &str,
        cluster: &ManagedCluster,
    ) -> Result<(ManagedCluster, Operation)> {
        let url = self.url(&self.cluster_path(rg, name)?, API_VERSION)?;
        let body = serde_json::to_value(cluster).map_err(|e| AksError::InvalidResponse(e.to_string()))?;
        let answer = self.send(Method::PUT, url, Some(&body), name).await?;
        Ok((answer.json("managed cluster")?, Operation::from_answer(&answer)))
    }

    /// Upgrades the control plane to `version` (GET, then PUT with `kubernetesVersion`: two calls).
    /// The pools keep their `orchestratorVersion`; upgrade each with [`upgrade_pool`](Self::upgrade_pool).
    ///
    /// # Errors
    /// [`AksError::NotFound`] when the cluster is gone; as [`create_or_update_cluster`](Self::create_or_update_cluster).
    pub async fn upgrade_control_plane(&self, rg: &str, name: &str, version: &str) -> Result<Operation> {
        let mut c = self.require_cluster(rg, name).await?;
        c.properties.kubernetes_version = Some(version.to_owned());
        Ok(self.create_or_update_cluster(rg, name, &c).await?.1)
    }

    async fn require_cluster(&self, rg: &str, name: &str) -> Result<ManagedCluster> {
        self.get_cluster(rg, name).await?.ok_or_else(|| AksError::NotFound {
            what: format!("managed cluster {rg}/{name}"),
            body: Default::default(),
        })
    }

    /// Replaces the cluster's Azure tags (`PATCH` with `{"tags": …}`).
    ///
    /// # Errors
    /// As [`create_or_update_cluster`](Self::create_or_update_cluster).
    pub async fn update_tags(
        &self,
        rg: &str,
        name: &str,
        tags: &BTreeMap<String, String>,
    ) -> Result<Operation> {
        let url = self.url(&self.cluster_path(rg, name)?, API_VERSION)?;
        let answer = self.send(Method::PATCH, url, Some(&json!({ "tags": tags })), name).await?;
        Ok(Operation::from_answer(&answer))
    }

    /// Deletes the cluster; one that is already gone is deleted (a completed operation).
    ///
    /// # Errors
    /// [`AksError::Conflict`] while another operation runs; credentials, throttling, transport.
    pub async fn delete_cluster(&self, rg: &str, name: &str) -> Result<Operation> {
        let url = self.url(&self.cluster_path(rg, name)?, API_VERSION)?;
        match self.send(Method::DELETE, url, None, name).await {
            Ok(a) if a.status == StatusCode::NO_CONTENT => Ok(Operation::completed()),
            Ok(a) => Ok(Operation::from_answer(&a)),
            Err(AksError::NotFound { .. }) => Ok(Operation::completed()),
            Err(e) => Err(e),
        }
    }

    /// The subscription's managed clusters, or one resource group's (for import), every page.
    ///
    /// # Errors
    /// Credentials, throttling, transport and API errors.
    pub async fn list_clusters(&self, rg: Option<&str>) -> Result<Vec<ManagedCluster>> {
        let path = match rg {
            Some(rg) => format!(
                "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.ContainerService/managedClusters",
                self.creds.subscription_id,
                seg("resourceGroup", rg)?
            ),
            None => format!(
                "/subscriptions/{}/providers/Microsoft.ContainerService/managedClusters",
                self.creds.subscription_id
            ),
        };
        self.list_pages(self.url(&path, API_VERSION)?, "managed clusters").await
    }

    async fn list_pages<T: serde::de::DeserializeOwned>(
        &self,
        first: url::Url,
        what: &str,
    ) -> Result<Vec<T>> {
        let mut out = Vec::new();
        let mut next = Some(first);
        let mut pages = 0;
        while let Some(url) = next.take() {
            pages += 1;
            if pages > 1000 {
                return Err(AksError::InvalidResponse(format!("{what}: more than 1000 pages")));
            }
            let page: Page<T> = self.get_json(url, what).await?;
            out.extend(page.value);
            if let Some(link) = page.next_link.filter(|l| !l.is_empty()) {
                let url = url::Url::parse(&link)
                    .map_err(|e| AksError::InvalidResponse(format!("{what}: nextLink {link:?}: {e}")))?;
                next = Some(url);
            }
        }
        Ok(out)
    }

    /// The cluster's admin kubeconfig (`listClusterAdminCredential`, the `clusterAdmin` entry).
    ///
    /// # Errors
    /// [`AksError::NotFound`] when the cluster is gone; [`AksError::InvalidResponse`] when Azure's
    /// answer holds no kubeconfig; credentials, throttling, transport.
    pub async fn admin_kubeconfig(&self, rg: &str, name: &str) -> Result<AdminKubeconfig> {
        let url =
            self.url(&format!("{}/listClusterAdminCredential", self.cluster_path(rg, name)?), API_VERSION)?;
        let answer = self.send(Method::POST, url, None, name).await?;
        let v: Value = answer.json("credential results")?;
        AdminKubeconfig::from_credential_results(&v)
    }

    // ---- agent pools ----

    /// The cluster's agent pools.
    ///
    /// # Errors
    /// [`AksError::NotFound`] when the cluster is gone; credentials, throttling, transport.
    pub async fn list_pools(&self, rg: &str, cluster: &str) -> Result<Vec<AgentPool>> {
        let url = self.url(&format!("{}/agentPools", self.cluster_path(rg, cluster)?), API_VERSION)?;
        self.list_pages(url, "agent pools").await
    }

    /// The agent pool, or `None`.
    ///
    /// # Errors
    /// Credentials, throttling, transport and API errors.
    pub async fn get_pool(&self, rg: &str, cluster: &str, pool: &str) -> Result<Option<AgentPool>> {
        let url = self.url(&self.pool_path(rg, cluster, pool)?, API_VERSION)?;
        match self.get_json(url, pool).await {
            Ok(p) => Ok(Some(p)),
            Err(AksError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Creates the pool, or updates it to `spec` (a PUT of the whole pool).
    ///
    /// # Errors
    /// [`AksError::Conflict`] while another operation runs on the cluster; [`AksError::Api`] with
    /// Azure's reason for a refused spec; credentials, throttling, transport.
    pub async fn create_or_update_pool(
        &self,
        rg: &str,
        cluster: &str,
        pool: &str,
        spec: &AgentPool,
    ) -> Result<(AgentPool, Operation)> {
        let url = self.url(&self.pool_path(rg, cluster, pool)?, API_VERSION)?;
        let body = serde_json::to_value(spec).map_err(|e| AksError::InvalidResponse(e.to_string()))?;
        let answer = self.send(Method::PUT, url, Some(&body), pool).await?;
        Ok((answer.json("agent pool")?, Operation::from_answer(&answer)))
    }

    async fn modify_pool(
        &self,
        rg: &str,
        cluster: &str,
        pool: &str,
        f: impl FnOnce(&mut AgentPool),
    ) -> Result<Operation> {
        let mut p = self.get_pool(rg, cluster, pool).await?.ok_or_else(|| AksError::NotFound {
            what: format!("agent pool {rg}/{cluster}/{pool}"),
            body: Default::default(),
        })?;
        f(&mut p);
        Ok(self.create_or_update_pool(rg, cluster, pool, &p).await?.1)
    }

    /// Sets the pool's node count (GET, then PUT: two calls).
    ///
    /// # Errors
    /// As [`create_or_update_pool`](Self::create_or_update_pool); NotFound for a missing pool.
    pub async fn scale_pool(&self, rg: &str, cluster: &str, pool: &str, count: i32) -> Result<Operation> {
        self.modify_pool(rg, cluster, pool, |p| p.properties.count = Some(count)).await
    }

    /// Upgrades the pool's nodes to `version` (its `orchestratorVersion`; GET, then PUT: two calls).
    ///
    /// # Errors
    /// As [`create_or_update_pool`](Self::create_or_update_pool); NotFound for a missing pool.
    pub async fn upgrade_pool(
        &self,
        rg: &str,
        cluster: &str,
        pool: &str,
        version: &str,
    ) -> Result<Operation> {
        self.modify_pool(rg, cluster, pool, |p| p.properties.orchestrator_version = Some(version.to_owned()))
            .await
    }

    /// Deletes the pool; one that is already gone is deleted.
    ///
    /// # Errors
    /// [`AksError::Conflict`] while another operation runs; credentials, throttling, transport.
    pub async fn delete_pool(&self, rg: &str, cluster: &str, pool: &str) -> Result<Operation> {
        let url = self.url(&self.pool_path(rg, cluster, pool)?, API_VERSION)?;
        match self.send(Method::DELETE, url, None, pool).await {
            Ok(a) if a.status == StatusCode::NO_CONTENT => Ok(Operation::completed()),
            Ok(a) => Ok(Operation::from_answer(&a)),
            Err(AksError::NotFound { .. }) => Ok(Operation::completed()),
            Err(e) => Err(e),
        }
    }
}
