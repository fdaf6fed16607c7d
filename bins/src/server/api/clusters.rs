//! Clusters and projects. New clusters need nothing more here: rancher-core's `ClusterController`,
//! started by `Server::run`, watches the store and reconciles them.

use async_trait::async_trait;
use rancher_core::model::{Cluster, ClusterRoleTemplateBinding, ClusterRoleTemplateBindingSpec, Project};
use rancher_core::store::{Api, StoreError};

use super::kind::{ApiKind, Ctx, generated_name};
use crate::server::error::{ApiError, ApiResult};

#[async_trait]
impl ApiKind for Cluster {
    const TYPE: &'static str = "cluster";

    async fn prepare_create(&mut self, _cx: &Ctx<'_>) -> ApiResult<()> {
        if self.metadata.name.is_empty() && self.metadata.generate_name.is_none() {
            self.metadata.name = generated_name("c-");
        }
        if self.spec.display_name.is_empty() {
            self.spec.display_name = self.metadata.name.clone();
        }
        if self.spec.imported_config.is_some() {
            self.status.driver = crate::server::registration::IMPORTED_DRIVER.to_owned();
        }
        Ok(())
    }

    /// The creator owns the new cluster, as in Rancher: a `cluster-owner` binding in its namespace.
    /// An imported cluster also gets its registration token.
    async fn after_create(&self, cx: &Ctx<'_>) -> ApiResult<()> {
        if self.spec.imported_config.is_some() {
            cx.state
                .registration
                .ensure_default_token(&self.metadata.name)
                .await
                .map_err(|e| ApiError::Internal(format!("creating the registration token: {e}")))?;
        }
        let crtb = ClusterRoleTemplateBinding::new(
            &format!("creator-{}", cx.caller.user_id()),
            ClusterRoleTemplateBindingSpec {
                user_name: cx.caller.user_id().to_owned(),
                cluster_name: self.metadata.name.clone(),
                role_template_name: "cluster-owner".into(),
                ..Default::default()
            },
        );
        match Api::<ClusterRoleTemplateBinding>::namespaced(cx.state.store.clone(), &self.metadata.name)
            .create(&crtb)
            .await
        {
            Ok(_) | Err(StoreError::AlreadyExists { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

#[async_trait]
impl ApiKind for Project {
    const TYPE: &'static str = "project";

    fn namespace_from_spec(&self) -> Option<String> {
        Some(self.spec.cluster_name.clone())
    }

    async fn prepare_create(&mut self, cx: &Ctx<'_>) -> ApiResult<()> {
        let cluster = self.metadata.namespace.clone().unwrap_or_default();
        if !self.spec.cluster_name.is_empty() && self.spec.cluster_name != cluster {
            return Err(ApiError::invalid_field(
                "spec.clusterName",
                format!("{:?} does not match the namespace {cluster:?}", self.spec.cluster_name),
            ));
        }
        if Api::<Cluster>::all(cx.state.store.clone()).get_opt(&cluster).await?.is_none() {
            return Err(ApiError::invalid_field(
                "spec.clusterName",
                format!("cluster {cluster:?} not found"),
            ));
        }
        self.spec.cluster_name = cluster;
        if self.metadata.name.is_empty() && self.metadata.generate_name.is_none() {
            self.metadata.name = generated_name("p-");
        }
        if self.spec.display_name.is_empty() {
            self.spec.display_name = self.metadata.name.clone();
        }
        Ok(())
    }

    async fn prepare_update(&mut self, old: &Self, _cx: &Ctx<'_>) -> ApiResult<()> {
        if self.spec.cluster_name.is_empty() {
            self.spec.cluster_name = old.spec.cluster_name.clone();
        }
        if self.spec.cluster_name != old.spec.cluster_name {
            return Err(ApiError::invalid_field(
                "spec.clusterName",
                "a project cannot move to another cluster",
            ));
        }
        Ok(())
    }
}
