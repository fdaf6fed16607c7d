//! CloudCredential: the keys a provisioner signs in to a cloud with (AWS access keys, a GCP
//! service-account key, an Azure client credential), kept apart from the clusters that name them.
//!
//! Field names are Rancher's (`amazonec2credentialConfig.accessKey`,
//! `googlecredentialConfig.authEncodedJson`, `azurecredentialConfig.clientSecret`, …). The secret fields hold sealed text once stored; the server
//! seals them and never returns them. `Debug` never shows them either, sealed or not.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::{ConditionsOnly, management_kind};

management_kind!(
    /// A cloud credential. Cluster-scoped (Rancher keeps them in `cattle-global-data`); Rancher names
    /// them `cc-xxxxx`. Only its owner (label [`CREATOR_ID_LABEL`]) and admins see or use it.
    CloudCredential, "cloudcredentials", namespaced = false, CloudCredentialSpec, ConditionsOnly
);

/// The label holding the user id of a credential's owner (who created it). Set by the server.
pub const CREATOR_ID_LABEL: &str = "field.cattle.io/creatorId";

/// The Azure cloud used when a credential names none.
pub const AZURE_PUBLIC_CLOUD: &str = "AzurePublicCloud";
/// The Azure clouds a credential may name.
pub const AZURE_ENVIRONMENTS: &[&str] =
    &[AZURE_PUBLIC_CLOUD, "AzureChinaCloud", "AzureUSGovernmentCloud", "AzureGermanCloud"];

impl CloudCredential {
    /// The owner's user id (empty when the label is missing).
    pub fn owner(&self) -> &str {
        self.metadata.labels.get(CREATOR_ID_LABEL).map_or("", String::as_str)
    }
}

/// A credential's settings: exactly one of the three configs.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct CloudCredentialSpec {
    /// The name people see.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub display_name: String,
    /// Free text.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// AWS access keys (EKS, the amazonec2 machine driver).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amazonec2credential_config: Option<Amazonec2CredentialConfig>,
    /// A GCP service-account key (GKE, the google machine driver).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub googlecredential_config: Option<GoogleCredentialConfig>,
    /// An Azure client credential (AKS, the azure machine driver).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub azurecredential_config: Option<AzureCredentialConfig>,
}

/// The cloud a credential is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloudProvider {
    /// `amazonec2credentialConfig`.
    Aws,
    /// `googlecredentialConfig`.
    Gcp,
    /// `azurecredentialConfig`.
    Azure,
}

impl fmt::Display for CloudProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CloudProvider::Aws => "aws",
            CloudProvider::Gcp => "gcp",
            CloudProvider::Azure => "azure",
        })
    }
}

/// AWS access keys.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct Amazonec2CredentialConfig {
    /// The access key id (`AKIA…`).
    #[serde(default)]
    pub access_key: String,
    /// The secret access key. Secret: sealed at rest, never returned.
    #[serde(default)]
    pub secret_key: String,
    /// The region used when a cluster names none (`us-west-2`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub default_region: String,
}

/// A GCP service-account key.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct GoogleCredentialConfig {
    /// The service-account key file's JSON text (`type: service_account`, `client_email`,
    /// `private_key`, `token_uri`, …). Secret: sealed at rest, never returned.
    #[serde(default)]
    pub auth_encoded_json: String,
}

/// An Azure client credential (a service principal).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct AzureCredentialConfig {
    /// The application (client) id, a UUID.
    #[serde(default)]
    pub client_id: String,
    /// The client secret. Secret: sealed at rest, never returned.
    #[serde(default)]
    pub client_secret: String,
    /// The subscription id, a UUID.
    #[serde(default)]
    pub subscription_id: String,
    /// The directory (tenant) id, a UUID.
    #[serde(default)]
    pub tenant_id: String,
    /// The Azure cloud: one of [`AZURE_ENVIRONMENTS`] (default `AzurePublicCloud`).
    #[serde(default = "azure_public_cloud")]
    pub environment: String,
}

fn azure_public_cloud() -> String {
    AZURE_PUBLIC_CLOUD.to_owned()
}

impl Default for AzureCredentialConfig {
    fn default() -> Self {
        AzureCredentialConfig {
            client_id: String::new(),
            client_secret: String::new(),
            subscription_id: String::new(),
            tenant_id: String::new(),
            environment: azure_public_cloud(),
        }
    }
}

// ---- Debug without secrets ----

/// What `Debug` shows for a secret field: whether one is set, never what it is.
fn secret(value: &str) -> &'static str {
    if value.is_empty() { "" } else { "<redacted>" }
}

impl fmt::Debug for Amazonec2CredentialConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Amazonec2CredentialConfig")
            .field("access_key", &self.access_key)
            .field("secret_key", &secret(&self.secret_key))
            .field("default_region", &self.default_region)
            .finish()
    }
}

impl fmt::Debug for GoogleCredentialConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GoogleCredentialConfig")
            .field("auth_encoded_json", &secret(&self.auth_encoded_json))
            .finish()
    }
}

impl fmt::Debug for AzureCredentialConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AzureCredentialConfig")
            .field("client_id", &self.client_id)
            .field("client_secret", &secret(&self.client_secret))
            .field("subscription_id", &self.subscription_id)
            .field("tenant_id", &self.tenant_id)
            .field("environment", &self.environment)
            .finish()
    }
}

// ---- secret fields ----

/// One secret field of a spec: its path (for errors) and its value, to seal, keep or redact.
pub struct SecretField<'a> {
    /// The field's path from the object (`spec.amazonec2credentialConfig.secretKey`).
    pub field: &'static str,
    /// The value.
    pub value: &'a mut String,
}

/// The path of the AWS secret key.
pub const AWS_SECRET_FIELD: &str = "spec.amazonec2credentialConfig.secretKey";
/// The path of the GCP key JSON.
pub const GCP_SECRET_FIELD: &str = "spec.googlecredentialConfig.authEncodedJson";
/// The path of the Azure client secret.
pub const AZURE_SECRET_FIELD: &str = "spec.azurecredentialConfig.clientSecret";

impl CloudCredentialSpec {
    /// The provider of the one config set.
    ///
    /// # Errors
    /// [`InvalidCredential`] on `spec` when none or several are set.
    pub fn provider(&self) -> Result<CloudProvider, InvalidCredential> {
        let set: Vec<CloudProvider> = [
            self.amazonec2credential_config.as_ref().map(|_| CloudProvider::Aws),
            self.googlecredential_config.as_ref().map(|_| CloudProvider::Gcp),
            self.azurecredential_config.as_ref().map(|_| CloudProvider::Azure),
        ]
        .into_iter()
        .flatten()
        .collect();
        match set.as_slice() {
            [one] => Ok(*one),
            [] => Err(InvalidCredential::new(
                "spec",
                "one of amazonec2credentialConfig, googlecredentialConfig or azurecredentialConfig is required",
            )),
            _ => Err(InvalidCredential::new(
                "spec",
                "exactly one of amazonec2credentialConfig, googlecredentialConfig or azurecredentialConfig \
                 may be set",
            )),
        }
    }

    /// The secret fields that are set (sealed or plain).
    pub fn secrets_mut(&mut self) -> Vec<SecretField<'_>> {
        let mut out = Vec::new();
        if let Some(c) = &mut self.amazonec2credential_config {
            out.push(SecretField { field: AWS_SECRET_FIELD, value: &mut c.secret_key });
        }
        if let Some(c) = &mut self.googlecredential_config {
            out.push(SecretField { field: GCP_SECRET_FIELD, value: &mut c.auth_encoded_json });
        }
        if let Some(c) = &mut self.azurecredential_config {
            out.push(SecretField { field: AZURE_SECRET_FIELD, value: &mut c.client_secret });
        }
        out
    }

    /// Fills in defaults: the Azure environment, and trims the identifiers people paste.
    pub fn normalize(&mut self) {
        if let Some(c) = &mut self.amazonec2credential_config {
            c.access_key = c.access_key.trim().to_owned();
            c.default_region = c.default_region.trim().to_owned();
        }
        if let Some(c) = &mut self.azurecredential_config {
            for id in [&mut c.client_id, &mut c.subscription_id, &mut c.tenant_id] {
                *id = id.trim().to_ascii_lowercase();
            }
            if c.environment.trim().is_empty() {
                c.environment = azure_public_cloud();
            }
        }
    }

    /// Checks every field. A secret value for which `plain` is false (already sealed and checked when
    /// it was stored) is not checked again. Messages never quote a secret.
    ///
    /// # Errors
    /// [`InvalidCredential`] naming the first field that is not acceptable.
    pub fn validate(&self, plain: impl Fn(&str) -> bool) -> Result<CloudProvider, InvalidCredential> {
        let provider = self.provider()?;
        if let Some(c) = &self.amazonec2credential_config {
            super::credential_checks::aws(c, &plain)?;
        }
        if let Some(c) = &self.googlecredential_config {
            super::credential_checks::gcp(c, &plain)?;
        }
        if let Some(c) = &self.azurecredential_config {
            super::credential_checks::azure(c, &plain)?;
        }
        Ok(provider)
    }
}

/// A credential field that is not acceptable.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct InvalidCredential {
    /// The field's path from the object (`spec.azurecredentialConfig.tenantId`).
    pub field: String,
    /// What is wrong, without the value when the field is a secret.
    pub message: String,
}

impl InvalidCredential {
    /// An error on `field`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        InvalidCredential { field: field.into(), message: message.into() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_names_are_ranchers() {
        let spec = CloudCredentialSpec {
            amazonec2credential_config: Some(Amazonec2CredentialConfig {
                access_key: "AKIAIOSFODNN7EXAMPLE".into(),
                secret_key: "s".into(),
                default_region: "us-west-2".into(),
            }),
            ..Default::default()
        };
        let v = serde_json::to_value(&spec).unwrap();
        assert_eq!(v["amazonec2credentialConfig"]["accessKey"], "AKIAIOSFODNN7EXAMPLE");
        assert_eq!(v["amazonec2credentialConfig"]["defaultRegion"], "us-west-2");
        let az: CloudCredentialSpec = serde_json::from_value(serde_json::json!({
            "azurecredentialConfig": {"clientId": "a", "clientSecret": "b", "subscriptionId": "c", "tenantId": "d"}
        }))
        .unwrap();
        assert_eq!(az.azurecredential_config.unwrap().environment, AZURE_PUBLIC_CLOUD);
        let g: CloudCredentialSpec =
            serde_json::from_value(serde_json::json!({"googlecredentialConfig": {"authEncodedJson": "{}"}}))
                .unwrap();
        assert_eq!(g.provider(), Ok(CloudProvider::Gcp));
    }

    #[test]
    fn debug_never_shows_a_secret() {
        let mut cc = CloudCredential::new(
            "cc-abcde",
            CloudCredentialSpec {
                amazonec2credential_config: Some(Amazonec2CredentialConfig {
                    access_key: "AKIAIOSFODNN7EXAMPLE".into(),
                    secret_key: "wJalrXUtnFEMI-DEBUG-SECRET".into(),
                    default_region: String::new(),
                }),
                googlecredential_config: Some(GoogleCredentialConfig {
                    auth_encoded_json: "{\"private_key\":\"GCP-DEBUG-SECRET\"}".into(),
                }),
                azurecredential_config: Some(AzureCredentialConfig {
                    client_secret: "AZURE-DEBUG-SECRET".into(),
                    ..Default::default()
                }),
                ..Default::default()
            },
        );
        cc.metadata.labels.insert(CREATOR_ID_LABEL.into(), "u-owner".into());
        let text = format!("{cc:?} {cc:#?}");
        for s in ["DEBUG-SECRET", "wJalr"] {
            assert!(!text.contains(s), "{text}");
        }
        assert!(text.contains("AKIAIOSFODNN7EXAMPLE") && text.contains("<redacted>"), "{text}");
        assert_eq!(cc.owner(), "u-owner");
        assert_eq!(cc.spec.secrets_mut().len(), 3);
    }
}
