//! Clusters and projects. A new cluster is checked by the provisioner of its `spec.driver` and then
//! needs nothing more here: the provisioning controller and rancher-core's `ClusterController`,
//! started by `Server::run`, reconcile it (see [`provisioning`](crate::server::provisioning)). A
//! cluster carries the clean-up finalizer from its creation, so deleting it removes everything of it before the name can be used
//! again (see [`cleanup`](crate::server::cleanup)); what is made for a cluster or project records
//! its uid.

use async_trait::async_trait;
use rancher_core::model::{
    CREATOR_ID_ANNOTATION, Cluster, ClusterRoleTemplateBinding, ClusterRoleTemplateBindingSpec, Project,
};
use rancher_core::store::{Api, StoreError};
use rancher_provision::hosted::{eks, gke};
use rancher_provision::{ProvisionError, rke};
use serde_json::{Map, Value};

use super::creator;
use super::kind::{ApiKind, Ctx, generated_name};
use super::rancher_shape::{self, CLUSTER_ID, DESCRIPTION, PROJECT_NAME};
use crate::server::cleanup::owner::{self, CLUSTER_UID_ANNOTATION};
use crate::server::cleanup::{CLUSTER_FINALIZER, leftovers};
use crate::server::cloud_credentials::{StoreCredentials, credential_fields, credentials_named_by};
use crate::server::error::{ApiError, ApiResult};
use crate::server::provisioning::{AKS_DRIVER, PROVISION_FINALIZER, rke_keys};
use crate::server::registration::IMPORTED_DRIVER;
use crate::server::services::access::GrantScope;
use crate::server::tenancy::system_projects::{
    ASSIGNED_ANNOTATION, DEFAULT_PROJECT_LABEL, SYSTEM_PROJECT_LABEL,
};

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

    const MEMBER_MANAGED: bool = true;
    const SEEN_FROM_PROJECTS: bool = true;

    fn grant_scope(&self) -> Option<GrantScope> {
        Some(GrantScope { cluster: self.metadata.name.clone(), project: None })
    }

    /// Clusters are created by global roles only.
    fn create_scope(&self) -> Option<GrantScope> {
        None
    }

    /// Rancher's `state`: the one word its UI and CLI show (`active`, `waiting`, …).
    fn rancher_fields_out(&self, map: &mut Map<String, Value>) {
        map.insert("state".into(), self.state().as_str().into());
    }

    async fn prepare_create(&mut self, cx: &Ctx<'_>) -> ApiResult<()> {
        if self.metadata.name.is_empty() && self.metadata.generate_name.is_none() {
            self.metadata.name = generated_name("c-");
        }
        if self.spec.display_name.is_empty() {
            self.spec.display_name = self.metadata.name.clone();
        }
        check_endpoint(&self.spec)?;
        // Every cluster but the local one is provisioned by the provisioner of its `spec.driver`
        // (empty: `imported`, joined by an agent as Rancher's imported and "generic" ones are).
        if !self.spec.internal {
            // An engine config names its driver (as in Rancher, where it is the cluster's kind).
            if let Some((field, engine)) = engine_config(self)? {
                if self.spec.driver.is_empty() {
                    engine.clone_into(&mut self.spec.driver);
                } else if self.spec.driver != engine {
                    return Err(ApiError::invalid_field(
                        "spec.driver",
                        format!(
                            "a cluster with spec.{field} is provisioned by the {engine:?} driver, not {:?}",
                            self.spec.driver
                        ),
                    ));
                }
                seal_rke_keys(self, None, cx)?;
            }
            // The creator is who asked, whatever the request says: the cluster uses their cloud
            // credentials.
            self.metadata
                .annotations
                .insert(CREATOR_ID_ANNOTATION.to_owned(), cx.caller.user_id().to_owned());
            check_credentials(self, None, cx).await?;
            let driver =
                if self.spec.driver.is_empty() { IMPORTED_DRIVER } else { self.spec.driver.as_str() };
            let provisioners = &cx.state.provisioners;
            let provisioner = provisioners
                .get(driver)
                .ok_or_else(|| ApiError::invalid_field("spec.driver", provisioners.unknown(driver)))?;
            provisioner.validate(self).map_err(invalid_spec)?;
            cx.warn(provisioner.warnings(self));
            self.status.driver = driver.to_owned();
            hold(self, PROVISION_FINALIZER);
        } else if !self.spec.driver.is_empty() {
            return Err(ApiError::invalid_field("spec.driver", "the local cluster is not provisioned"));
        } else if let Some((field, _)) = engine_config(self)? {
            return Err(ApiError::invalid_field(
                &format!("spec.{field}"),
                "the local cluster is not provisioned",
            ));
        }
        hold(self, CLUSTER_FINALIZER);
        Ok(())
    }

    /// The finalizers stay: a client cannot make a deletion skip the clean-up or the provisioner's
    /// removal. The driver is fixed at creation (empty in an update: unchanged), and a changed spec
    /// is checked by its provisioner.
    async fn prepare_update(&mut self, old: &Self, cx: &Ctx<'_>) -> ApiResult<()> {
        for finalizer in [CLUSTER_FINALIZER, PROVISION_FINALIZER] {
            if old.metadata.finalizers.iter().any(|f| f == finalizer) {
                hold(self, finalizer);
            }
        }
        if self.spec.driver.is_empty() {
            self.spec.driver = old.spec.driver.clone();
        }
        if self.spec.driver != old.spec.driver {
            return Err(ApiError::invalid_field("spec.driver", "the driver cannot change after creation"));
        }
        if self.spec.local_cluster_auth_endpoint != old.spec.local_cluster_auth_endpoint {
            check_endpoint(&self.spec)?;
        }
        // Who created the cluster stays as recorded.
        match old.metadata.annotations.get(CREATOR_ID_ANNOTATION) {
            Some(creator) => {
                self.metadata.annotations.insert(CREATOR_ID_ANNOTATION.to_owned(), creator.clone())
            }
            None => self.metadata.annotations.remove(CREATOR_ID_ANNOTATION),
        };
        if let Some((field, engine)) = engine_config(self)?
            && self.spec.driver != engine
        {
            return Err(ApiError::invalid_field(
                &format!("spec.{field}"),
                format!("only clusters of the {engine:?} driver have a {field}"),
            ));
        }
        if self.spec.rke_config.is_some() {
            seal_rke_keys(self, old.spec.rke_config.as_deref(), cx)?;
        }
        check_credentials(self, Some(old), cx).await?;
        if self.spec != old.spec
            && let Some(provisioner) = cx.state.provisioners.get(&old.status.driver)
        {
            provisioner.validate(self).map_err(invalid_spec)?;
            cx.warn(provisioner.warnings(self));
        }
        Ok(())
    }

    /// The SSH keys of an `rkeConfig` never leave the server: `"[sealed]"` stands for each.
    fn redact(&mut self) {
        if let Some(cfg) = &mut self.spec.rke_config {
            rke_keys::redact(cfg);
        }
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

/// Every cloud credential `cluster` names that `old` did not must be one the caller may use (see
/// [`StoreCredentials::usable_by`]); otherwise a 422 on the field, saying "not found" as the API
/// does for a credential the caller may not see.
async fn check_credentials(cluster: &Cluster, old: Option<&Cluster>, cx: &Ctx<'_>) -> ApiResult<()> {
    let before = old.map(credentials_named_by).unwrap_or_default();
    let source = StoreCredentials::new(cx.state.store.clone(), cx.state.sealer.clone());
    for (field, name) in credential_fields(cluster) {
        if before.contains(&name) {
            continue;
        }
        if !source.usable_by(&name, cx.caller.user_id()).await? {
            return Err(ApiError::invalid_field(
                &field,
                format!(
                    "cloud credential {name:?} not found: create it (rancherctl credential create) or name another"
                ),
            ));
        }
    }
    Ok(())
}

/// The engine config of `cluster` (`rkeConfig`, `gkeConfig`, `aksConfig`) and the driver it names;
/// more than one is refused.
fn engine_config(cluster: &Cluster) -> ApiResult<Option<(&'static str, &'static str)>> {
    let spec = &cluster.spec;
    let given: Vec<(&str, &str)> = [
        (spec.rke_config.is_some(), "rkeConfig", rke::DRIVER),
        (spec.gke_config.is_some(), "gkeConfig", gke::DRIVER),
        (spec.aks_config.is_some(), "aksConfig", AKS_DRIVER),
        (spec.eks_config.is_some(), "eksConfig", eks::DRIVER),
    ]
    .into_iter()
    .filter(|(set, ..)| *set)
    .map(|(_, field, driver)| (field, driver))
    .collect();
    match given.as_slice() {
        [] => Ok(None),
        [one] => Ok(Some(*one)),
        [(a, _), (b, _), ..] => Err(ApiError::invalid_field(
            &format!("spec.{b}"),
            format!("a cluster has one engine config; it has {a} too"),
        )),
    }
}

/// Seals the plain SSH keys of the cluster's `rkeConfig` (`"[sealed]"` keeps `old`'s).
fn seal_rke_keys(
    cluster: &mut Cluster,
    old: Option<&rancher_core::model::RkeConfig>,
    cx: &Ctx<'_>,
) -> ApiResult<()> {
    match &mut cluster.spec.rke_config {
        Some(cfg) => rke_keys::seal(cfg, old, &cx.state.sealer).map_err(invalid_spec),
        None => Ok(()),
    }
}

/// Adds `finalizer` to `cluster` unless it is there.
fn hold(cluster: &mut Cluster, finalizer: &str) {
    if !cluster.metadata.finalizers.iter().any(|f| f == finalizer) {
        cluster.metadata.finalizers.push(finalizer.to_owned());
    }
}

/// A provisioner's verdict on a spec as the 422 a client receives.
fn invalid_spec(e: ProvisionError) -> ApiError {
    match e {
        ProvisionError::InvalidSpec { field, message } => ApiError::invalid_field(&field, message),
        other => ApiError::invalid_field("spec", other.to_string()),
    }
}

/// Refuses a display name another live project of `cluster` has: people name projects by it.
async fn unique_display_name(cx: &Ctx<'_>, cluster: &str, project: &Project) -> ApiResult<()> {
    let name = &project.spec.display_name;
    let others = Api::<Project>::namespaced(cx.state.store.clone(), cluster).list().await?;
    match others.iter().find(|p| {
        p.spec.display_name == *name
            && p.metadata.name != project.metadata.name
            && p.metadata.deletion_timestamp.is_none()
    }) {
        Some(p) => Err(ApiError::AlreadyExists(format!(
            "project {name:?} already exists in cluster {cluster:?} (as {cluster}:{})",
            p.metadata.name
        ))),
        None => Ok(()),
    }
}

/// A project's id is `<cluster>:<p-xxxxx>`, its name always the server's, unique in the whole server
/// (so the namespace of its role template bindings is too); a name given in the body is what people
/// see (`spec.displayName`), as Rancher's `/v3` API treats `name`.
#[async_trait]
impl ApiKind for Project {
    const TYPE: &'static str = "project";

    const MEMBER_MANAGED: bool = true;
    const LIST_FILTERS: &'static [&'static str] = &["clusterId"];

    fn grant_scope(&self) -> Option<GrantScope> {
        let cluster = self.metadata.namespace.clone().filter(|n| !n.is_empty())?;
        Some(GrantScope { cluster, project: Some(self.metadata.name.clone()) })
    }

    /// A project is created by the roles held in its cluster.
    fn create_scope(&self) -> Option<GrantScope> {
        let cluster = self.metadata.namespace.clone().filter(|n| !n.is_empty())?;
        Some(GrantScope { cluster, project: None })
    }

    fn filter_value(&self, param: &str) -> Option<String> {
        (param == "clusterId").then(|| self.metadata.namespace.clone().unwrap_or_default())
    }

    fn namespace_from_spec(&self) -> Option<String> {
        Some(self.spec.cluster_name.clone())
    }

    fn rancher_fields_in(map: &mut Map<String, Value>) -> ApiResult<()> {
        rancher_shape::fields_in(map, &[PROJECT_NAME, CLUSTER_ID, DESCRIPTION])
    }

    fn rancher_fields_out(&self, map: &mut Map<String, Value>) {
        rancher_shape::fields_out(map, [("clusterId", self.spec.cluster_name.as_str())]);
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
        self.spec.cluster_name = cluster.clone();
        // Only the server makes a cluster's Default and System projects.
        for label in [DEFAULT_PROJECT_LABEL, SYSTEM_PROJECT_LABEL] {
            self.metadata.labels.remove(label);
        }
        self.metadata.annotations.remove(ASSIGNED_ANNOTATION);
        let given = std::mem::take(&mut self.metadata.name);
        self.metadata.generate_name = None;
        self.metadata.name = cx.state.project_names.new_name().await?;
        if self.spec.display_name.is_empty() {
            self.spec.display_name = if given.is_empty() { self.metadata.name.clone() } else { given };
        }
        unique_display_name(cx, &cluster, self).await
    }

    /// The creator owns the new project: see [`creator`].
    async fn after_create(&self, cx: &Ctx<'_>) -> ApiResult<()> {
        creator::make_project_owner(cx, self).await
    }

    async fn prepare_update(&mut self, old: &Self, cx: &Ctx<'_>) -> ApiResult<()> {
        if self.spec.cluster_name.is_empty() {
            self.spec.cluster_name = old.spec.cluster_name.clone();
        }
        if self.spec.cluster_name != old.spec.cluster_name {
            return Err(ApiError::invalid_field(
                "spec.clusterName",
                "a project cannot move to another cluster",
            ));
        }
        if self.spec.display_name.is_empty() {
            self.spec.display_name = old.spec.display_name.clone();
        }
        if self.spec.display_name != old.spec.display_name {
            unique_display_name(cx, &old.spec.cluster_name, self).await?;
        }
        owner::preserve(&mut self.metadata, &old.metadata, CLUSTER_UID_ANNOTATION);
        // Which project is a cluster's Default or System one is the server's to say.
        owner::preserve(&mut self.metadata, &old.metadata, ASSIGNED_ANNOTATION);
        for label in [DEFAULT_PROJECT_LABEL, SYSTEM_PROJECT_LABEL] {
            match old.metadata.labels.get(label) {
                Some(v) => self.metadata.labels.insert(label.to_owned(), v.clone()),
                None => self.metadata.labels.remove(label),
            };
        }
        Ok(())
    }

    /// The project's role template bindings go with it (the orphan sweep retries what fails here).
    async fn after_delete(&self, cx: &Ctx<'_>) {
        if let Err(e) = leftovers::remove_project_leftovers(&cx.state.store, self).await {
            tracing::warn!(project = %self.metadata.name, "removing a deleted project's bindings: {e}");
        }
    }
}

/// The authorized cluster endpoint's settings, which go into every kubeconfig of the cluster:
/// `fqdn` is `host[:port]` (an `https://` in front is taken, as Rancher's UI writes it), `caCerts`
/// PEM certificates.
fn check_endpoint(spec: &rancher_core::model::ClusterSpec) -> ApiResult<()> {
    let Some(ace) = &spec.local_cluster_auth_endpoint else { return Ok(()) };
    if !ace.fqdn.is_empty() {
        let field = "spec.localClusterAuthEndpoint.fqdn";
        let bad = || ApiError::invalid_field(field, format!("{:?} must be host[:port]", ace.fqdn));
        let host_port = ace.fqdn.strip_prefix("https://").unwrap_or(&ace.fqdn);
        if host_port.is_empty() || host_port.contains(['/', '?', '#', '@', ' ']) || host_port.len() > 255 {
            return Err(bad());
        }
        let url = url::Url::parse(&format!("https://{host_port}")).map_err(|_| bad())?;
        if url.host_str().is_none_or(str::is_empty) {
            return Err(bad());
        }
    }
    if !ace.ca_certs.is_empty() {
        crate::server::cluster_ca::certificates(&ace.ca_certs)
            .map_err(|e| ApiError::invalid_field("spec.localClusterAuthEndpoint.caCerts", e.to_string()))?;
    }
    Ok(())
}
