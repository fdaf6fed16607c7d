//! The server's [`CredentialSource`]: opens a stored [`CloudCredential`] for a hosted provisioner —
//! when the cluster's creator owns it, or is an admin (whose global roles reach every credential) —
//! and [`clusters_using`], which finds the clusters that name a credential (a credential in use
//! cannot be deleted).

use std::sync::Arc;

use async_trait::async_trait;
use rancher_auth::rbac::{self, ResourceAttributes};
use rancher_core::Resource;
use rancher_core::model::{
    AWS_SECRET_FIELD, AZURE_SECRET_FIELD, CloudCredential, Cluster, GCP_SECRET_FIELD, GlobalRole,
    GlobalRoleBinding,
};
use rancher_core::store::{Api, Store, StoreError};
use rancher_provision::ProvisionError;
use rancher_provision::hosted::credentials::{CloudSecret, CredentialSource};
use secrecy::SecretString;
use serde_json::Value;

use super::auth::MANAGEMENT_GROUP;
use super::proxy::membership::global_rules;
use super::secrets::Sealer;

/// The namespace Rancher keeps cloud credentials in: a cluster may name one `cattle-global-data:cc-x`.
pub(crate) const RANCHER_NAMESPACE: &str = "cattle-global-data";

/// Opens the credentials stored as [`CloudCredential`] objects with the server's [`Sealer`].
pub(crate) struct StoreCredentials {
    store: Arc<dyn Store>,
    sealer: Arc<Sealer>,
}

impl StoreCredentials {
    /// A source over `store`, opening sealed fields with `sealer`.
    pub(crate) fn new(store: Arc<dyn Store>, sealer: Arc<Sealer>) -> Self {
        StoreCredentials { store, sealer }
    }

    /// Whether the global roles of `user` reach the credential `name` (admins': every credential).
    async fn may_use_any(&self, user: &str, name: &str) -> Result<bool, StoreError> {
        let grbs = Api::<GlobalRoleBinding>::all(self.store.clone()).list().await?;
        let roles = Api::<GlobalRole>::all(self.store.clone()).list().await?;
        let rules = global_rules(user, &grbs, &roles);
        Ok(rbac::allows(
            rules.iter(),
            &ResourceAttributes {
                verb: "get",
                api_group: MANAGEMENT_GROUP,
                resource: CloudCredential::PLURAL,
                name: Some(name),
            },
        ))
    }

    /// The plain text of one sealed field.
    fn open_field(&self, name: &str, field: &str, sealed: &str) -> Result<SecretString, ProvisionError> {
        self.sealer.open(sealed).map_err(|e| {
            ProvisionError::permanent(format!(
                "cloud credential {name:?}: {field}: {e} (was it stored by a server with another secrets \
                 key?): store the secret again"
            ))
        })
    }
}

impl std::fmt::Debug for StoreCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StoreCredentials")
    }
}

fn not_found(name: &str) -> ProvisionError {
    ProvisionError::permanent(format!(
        "cloud credential {name:?} not found: create it (rancherctl credential create) or name another"
    ))
}

#[async_trait]
impl CredentialSource for StoreCredentials {
    async fn open(&self, name: &str, owner: &str) -> Result<CloudSecret, ProvisionError> {
        let name = credential_name(name);
        let stored = Api::<CloudCredential>::all(self.store.clone())
            .get_opt(name)
            .await
            .map_err(|e| ProvisionError::transient(format!("reading cloud credential {name:?}: {e}")))?;
        let Some(cc) = stored else { return Err(not_found(name)) };
        let owns = !owner.is_empty() && cc.owner() == owner;
        if !owns
            && !self.may_use_any(owner, name).await.map_err(|e| {
                ProvisionError::transient(format!("reading the global roles of {owner:?}: {e}"))
            })?
        {
            // As the API answers a user who is not the owner: the credential is not theirs to know of.
            tracing::debug!(credential = name, owner, "a cluster's creator may not use this credential");
            return Err(not_found(name));
        }
        let spec = &cc.spec;
        if let Some(c) = &spec.amazonec2credential_config {
            return Ok(CloudSecret::Aws {
                access_key_id: c.access_key.clone(),
                secret_access_key: self.open_field(name, AWS_SECRET_FIELD, &c.secret_key)?,
                session_token: None,
                default_region: c.default_region.clone(),
            });
        }
        if let Some(c) = &spec.googlecredential_config {
            return Ok(CloudSecret::Gcp {
                service_account_json: self.open_field(name, GCP_SECRET_FIELD, &c.auth_encoded_json)?,
            });
        }
        if let Some(c) = &spec.azurecredential_config {
            return Ok(CloudSecret::Azure {
                client_id: c.client_id.clone(),
                client_secret: self.open_field(name, AZURE_SECRET_FIELD, &c.client_secret)?,
                tenant_id: c.tenant_id.clone(),
                subscription_id: c.subscription_id.clone(),
                environment: c.environment.clone(),
            });
        }
        Err(ProvisionError::permanent(format!("cloud credential {name:?} holds no cloud's config")))
    }
}

/// A credential's name as a cluster may give it: `cc-x`, or Rancher's `cattle-global-data:cc-x`.
pub(crate) fn credential_name(reference: &str) -> &str {
    reference.strip_prefix(RANCHER_NAMESPACE).and_then(|r| r.strip_prefix(':')).unwrap_or(reference)
}

/// Whether a field of an engine config names a credential: Rancher's `amazonCredentialSecret`,
/// `googleCredentialSecret`, `azureCredentialSecret` (any `…CredentialSecret`) and `cloudCredentialName`.
fn names_a_credential(key: &str) -> bool {
    key == "cloudCredentialName" || key.ends_with("CredentialSecret")
}

/// The credentials a cluster's spec names: in `driverConfig` and in every `<engine>Config` object
/// (`eksConfig`, `gkeConfig`, `aksConfig`, …), at their top level.
pub(crate) fn credentials_named_by(cluster: &Cluster) -> Vec<String> {
    credential_fields(cluster).into_iter().map(|(_, name)| name).collect()
}

/// Each field of a cluster's spec that names a credential (`spec.gkeConfig.googleCredentialSecret`),
/// with the credential's name.
pub(crate) fn credential_fields(cluster: &Cluster) -> Vec<(String, String)> {
    let Ok(Value::Object(spec)) = serde_json::to_value(&cluster.spec) else { return vec![] };
    spec.iter()
        .filter(|(key, _)| key.ends_with("Config"))
        .filter_map(|(section, config)| Some((section, config.as_object()?)))
        .flat_map(|(section, config)| config.iter().map(move |(key, v)| (section, key, v)))
        .filter(|(_, key, _)| names_a_credential(key))
        .filter_map(|(section, key, v)| Some((format!("spec.{section}.{key}"), v.as_str()?)))
        .filter(|(_, v)| !v.is_empty())
        .map(|(field, v)| (field, credential_name(v).to_owned()))
        .collect()
}

impl StoreCredentials {
    /// Whether `user` may name the credential `reference` in a cluster: it exists and is theirs, or
    /// their global roles reach it (admins). Whoever points a cluster at a credential must be
    /// able to use it, or a member of an admin's cluster could spend another team's cloud account.
    ///
    /// # Errors
    /// The store's.
    pub(crate) async fn usable_by(&self, reference: &str, user: &str) -> Result<bool, StoreError> {
        let name = credential_name(reference);
        let Some(cc) = Api::<CloudCredential>::all(self.store.clone()).get_opt(name).await? else {
            return Ok(false);
        };
        Ok((!user.is_empty() && cc.owner() == user) || self.may_use_any(user, name).await?)
    }
}

/// The clusters whose spec names the credential `name` (see [`credentials_named_by`]), sorted. A
/// cluster being deleted counts: its provisioner needs the credential to remove what it made.
///
/// # Errors
/// The store's.
pub(crate) async fn clusters_using(store: &Arc<dyn Store>, name: &str) -> Result<Vec<String>, StoreError> {
    let mut out: Vec<String> = Api::<Cluster>::all(store.clone())
        .list()
        .await?
        .into_iter()
        .filter(|c| credentials_named_by(c).iter().any(|n| n == name))
        .map(|c| c.metadata.name)
        .collect();
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use rancher_core::model::{
        Amazonec2CredentialConfig, CREATOR_ID_LABEL, CloudCredentialSpec, ClusterSpec, GlobalRoleBindingSpec,
        GlobalRoleSpec, PolicyRule,
    };
    use rancher_core::store::MemoryStore;
    use secrecy::ExposeSecret;
    use serde_json::json;

    use super::*;

    fn cluster(name: &str, driver_config: Value) -> Cluster {
        Cluster::new(name, ClusterSpec { driver_config: Some(driver_config), ..Default::default() })
    }

    #[test]
    fn finds_the_credentials_a_cluster_names() {
        let c = cluster("c-1", json!({"amazonCredentialSecret": "cattle-global-data:cc-aws", "region": "x"}));
        assert_eq!(credentials_named_by(&c), ["cc-aws"]);
        let c = cluster("c-2", json!({"cloudCredentialName": "cc-gcp", "googleCredentialSecret": ""}));
        assert_eq!(credentials_named_by(&c), ["cc-gcp"]);
        assert!(credentials_named_by(&cluster("c-3", json!({"region": "cc-aws"}))).is_empty());
        assert_eq!(credential_name("cattle-global-data:cc-x"), "cc-x");
        assert_eq!(credential_name("other:cc-x"), "other:cc-x");
    }

    async fn stored(store: &Arc<dyn Store>, sealer: &Sealer, owner: &str) {
        let mut cc = CloudCredential::new(
            "cc-aws",
            CloudCredentialSpec {
                amazonec2credential_config: Some(Amazonec2CredentialConfig {
                    access_key: "AKIAIOSFODNN7EXAMPLE".into(),
                    secret_key: sealer.seal("wJalrXUtnFEMI-UNIT"),
                    default_region: "us-west-2".into(),
                }),
                ..Default::default()
            },
        );
        cc.metadata.labels.insert(CREATOR_ID_LABEL.into(), owner.into());
        Api::<CloudCredential>::all(store.clone()).create(&cc).await.unwrap();
    }

    #[tokio::test]
    async fn opens_for_the_owner_and_admins_only() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let sealer = Arc::new(Sealer::from_key(&[3; 32]));
        stored(&store, &sealer, "u-owner").await;
        let admin_rules = vec![PolicyRule {
            verbs: vec!["*".into()],
            api_groups: vec!["*".into()],
            resources: vec!["*".into()],
            ..Default::default()
        }];
        Api::<GlobalRole>::all(store.clone())
            .create(&GlobalRole::new("admin", GlobalRoleSpec { rules: admin_rules, ..Default::default() }))
            .await
            .unwrap();
        let grb = GlobalRoleBindingSpec {
            user_name: "u-admin".into(),
            global_role_name: "admin".into(),
            ..Default::default()
        };
        Api::<GlobalRoleBinding>::all(store.clone())
            .create(&GlobalRoleBinding::new("grb-a", grb))
            .await
            .unwrap();

        let source = StoreCredentials::new(store.clone(), sealer.clone());
        for (reference, user) in [("cc-aws", "u-owner"), ("cattle-global-data:cc-aws", "u-admin")] {
            match source.open(reference, user).await.unwrap() {
                CloudSecret::Aws { secret_access_key, access_key_id, .. } => {
                    assert_eq!(secret_access_key.expose_secret(), "wJalrXUtnFEMI-UNIT");
                    assert_eq!(access_key_id, "AKIAIOSFODNN7EXAMPLE");
                }
                other => panic!("{other:?}"),
            }
        }
        for (reference, user) in [("cc-aws", "u-other"), ("cc-aws", ""), ("cc-none", "u-owner")] {
            let e = source.open(reference, user).await.unwrap_err();
            assert!(!e.is_transient() && e.to_string().contains("not found"), "{e}");
        }
        // Another server's key: a permanent error naming the credential and the field.
        let other = StoreCredentials::new(store, Arc::new(Sealer::from_key(&[4; 32])));
        let e = other.open("cc-aws", "u-owner").await.unwrap_err().to_string();
        assert!(e.contains("cc-aws") && e.contains(AWS_SECRET_FIELD) && !e.contains("UNIT"), "{e}");
    }
}
