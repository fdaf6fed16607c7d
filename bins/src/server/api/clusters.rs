//! Clusters and projects. New clusters need nothing more here: rancher-core's `ClusterController`,
//! started by `Server::run`, watches the store and reconciles them. A cluster carries the clean-up
//! finalizer from its creation, so deleting it removes everything of it before the name can be used
//! again (see [`cleanup`](crate::server::cleanup)); what is made for a cluster or project records
//! its uid.

use async_trait::async_trait;
use rancher_core::model::{Cluster, ClusterRoleTemplateBinding, ClusterRoleTemplateBindingSpec, Project};
use rancher_core::store::{Api, StoreError};

use super::kind::{ApiKind, Ctx, generated_name};
use crate::server::cleanup::owner::{self, CLUSTER_UID_ANNOTATION};
use crate::server::cleanup::{CLUSTER_FINALIZER, leftovers};
use crate::server::error::{ApiError, ApiResult};

/// The cluster `name` when it exists and is not being deleted; otherwise an error on `field`.
pub(crate) async fn live_cluster(cx: &Ctx<'_>, name: &str, field: &str) -> ApiResult<Cluster> {
    match Api::<Cluster>::all(cx.state.store.clone()).get_opt(name).await? {
        Some(c) if c.metadata.deletion_timestamp.is_none() => Ok(c),
        Some(_) => Err(ApiError::invalid_field(field, format!("cluster {name:?} is being deleted"))),
        None => Err(ApiError::invalid_field(field, format!("cluster {name:?} not found"))),
    }
}

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
        // Nothing provisions a cluster here: an imported one and a "generic" one (all but the local
        // cluster) are both joined by an agent, and follow its connection as Rancher's imported ones do.
        if !self.spec.internal {
            self.status.driver = crate::server::registration::IMPORTED_DRIVER.to_owned();
        }
        if !self.metadata.finalizers.iter().any(|f| f == CLUSTER_FINALIZER) {
            self.metadata.finalizers.push(CLUSTER_FINALIZER.to_owned());
        }
        Ok(())
    }

    /// The clean-up finalizer stays: a client cannot make a deletion skip the clean-up.
    async fn prepare_update(&mut self, old: &Self, _cx: &Ctx<'_>) -> ApiResult<()> {
        let held = |c: &Cluster| c.metadata.finalizers.iter().any(|f| f == CLUSTER_FINALIZER);
        if held(old) && !held(self) {
            self.metadata.finalizers.push(CLUSTER_FINALIZER.to_owned());
        }
        Ok(())
    }

    /// The creator owns the new cluster, as in Rancher: a `cluster-owner` binding in its namespace.
    /// An imported cluster, and a "generic" one (no provisioner: all but the local cluster), also gets
    /// its registration token, as in Rancher: either one is joined by applying the import manifest.
    async fn after_create(&self, cx: &Ctx<'_>) -> ApiResult<()> {
        if !self.spec.internal {
            cx.state
                .registration
                .ensure_default_token(self)
                .await
                .map_err(|e| ApiError::Internal(format!("creating the registration token: {e}")))?;
        }
        let mut crtb = ClusterRoleTemplateBinding::new(
            &format!("creator-{}", cx.caller.user_id()),
            ClusterRoleTemplateBindingSpec {
                user_name: cx.caller.user_id().to_owned(),
                cluster_name: self.metadata.name.clone(),
                role_template_name: "cluster-owner".into(),
                ..Default::default()
            },
        );
        owner::stamp(&mut crtb.metadata, CLUSTER_UID_ANNOTATION, &self.metadata);
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
        let current = live_cluster(cx, &cluster, "spec.clusterName").await?;
        owner::stamp(&mut self.metadata, CLUSTER_UID_ANNOTATION, &current.metadata);
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
        owner::preserve(&mut self.metadata, &old.metadata, CLUSTER_UID_ANNOTATION);
        Ok(())
    }

    /// The project's role template bindings go with it (the orphan sweep retries what fails here).
    async fn after_delete(&self, cx: &Ctx<'_>) {
        if let Err(e) = leftovers::remove_project_leftovers(&cx.state.store, self).await {
            tracing::warn!(project = %self.metadata.name, "removing a deleted project's bindings: {e}");
        }
    }
}
