//! The cloud credentials a hosted provisioner signs in with: [`CloudSecret`], opened for one call by
//! a [`CredentialSource`]. The server's source reads the stored `CloudCredential`, checks that the
//! cluster's creator may use it, and opens its sealed fields; [`StaticCredentials`] serves tests.

use std::collections::BTreeMap;
use std::fmt;

use async_trait::async_trait;
use secrecy::SecretString;

use crate::ProvisionError;

/// A cloud credential's secret, opened for one provisioner call. Debug shows no secret.
#[derive(Clone)]
pub enum CloudSecret {
    /// AWS access keys (`amazonec2credentialConfig`).
    Aws {
        /// The access key id (`AKIA…`); not a secret on its own.
        access_key_id: String,
        /// The secret access key.
        secret_access_key: SecretString,
        /// A session token, for temporary credentials.
        session_token: Option<SecretString>,
        /// The region used when a cluster names none (may be empty).
        default_region: String,
    },
    /// The service-account key JSON (`type`, `client_email`, `private_key`, `private_key_id`,
    /// `token_uri`, `project_id`).
    Gcp {
        /// The key file's text.
        service_account_json: SecretString,
    },
    /// An Azure client credential (`azurecredentialConfig`).
    Azure {
        /// The application (client) id.
        client_id: String,
        /// The client secret.
        client_secret: SecretString,
        /// The directory (tenant) id.
        tenant_id: String,
        /// The subscription id.
        subscription_id: String,
        /// The Azure cloud (`AzurePublicCloud`, `AzureChinaCloud`, `AzureUSGovernmentCloud`,
        /// `AzureGermanCloud`).
        environment: String,
    },
}

impl CloudSecret {
    /// The cloud: `aws`, `gcp` or `azure`.
    pub fn provider(&self) -> &'static str {
        match self {
            CloudSecret::Aws { .. } => "aws",
            CloudSecret::Gcp { .. } => "gcp",
            CloudSecret::Azure { .. } => "azure",
        }
    }
}

impl fmt::Debug for CloudSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const HIDDEN: &str = "<redacted>";
        match self {
            CloudSecret::Aws { access_key_id, session_token, default_region, .. } => f
                .debug_struct("Aws")
                .field("access_key_id", access_key_id)
                .field("secret_access_key", &HIDDEN)
                .field("session_token", &session_token.as_ref().map(|_| HIDDEN))
                .field("default_region", default_region)
                .finish(),
            CloudSecret::Gcp { .. } => f.debug_struct("Gcp").field("service_account_json", &HIDDEN).finish(),
            CloudSecret::Azure { client_id, tenant_id, subscription_id, environment, .. } => f
                .debug_struct("Azure")
                .field("client_id", client_id)
                .field("client_secret", &HIDDEN)
                .field("tenant_id", tenant_id)
                .field("subscription_id", subscription_id)
                .field("environment", environment)
                .finish(),
        }
    }
}

/// Opens the credential a cluster names (`<engine>Config.<x>CredentialSecret` / `cloudCredentialName`).
///
/// # Errors
/// [`ProvisionError::Permanent`] when the credential does not exist, the owner may not use it, or it
/// cannot be opened (a message naming the credential, never its secret); [`ProvisionError::Transient`]
/// when the store cannot be read.
#[async_trait]
pub trait CredentialSource: Send + Sync {
    /// `owner` is the cluster creator's user id: only its owner (or an admin's) credential may be used.
    async fn open(&self, name: &str, owner: &str) -> Result<CloudSecret, ProvisionError>;
}

/// Credentials held in memory, for tests and embedders without a store: each with its owner.
/// `owner` `"*"` lets anyone use it.
#[derive(Clone, Debug, Default)]
pub struct StaticCredentials {
    by_name: BTreeMap<String, (String, CloudSecret)>,
}

impl StaticCredentials {
    /// No credentials.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) the credential `name`, usable by `owner`.
    #[must_use]
    pub fn with(mut self, name: &str, owner: &str, secret: CloudSecret) -> Self {
        self.by_name.insert(name.to_owned(), (owner.to_owned(), secret));
        self
    }
}

#[async_trait]
impl CredentialSource for StaticCredentials {
    async fn open(&self, name: &str, owner: &str) -> Result<CloudSecret, ProvisionError> {
        match self.by_name.get(name) {
            Some((o, secret)) if o == owner || o == "*" => Ok(secret.clone()),
            // As the server's source: a credential another user owns is not found, not forbidden.
            _ => Err(ProvisionError::permanent(format!("cloud credential {name:?} not found"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;

    fn aws() -> CloudSecret {
        CloudSecret::Aws {
            access_key_id: "AKIAIOSFODNN7EXAMPLE".into(),
            secret_access_key: "wJalrXUtnFEMI-SECRET".into(),
            session_token: Some("SESSION-SECRET".into()),
            default_region: "us-west-2".into(),
        }
    }

    #[test]
    fn debug_shows_no_secret() {
        let gcp = CloudSecret::Gcp { service_account_json: "{\"private_key\":\"GCP-SECRET\"}".into() };
        let azure = CloudSecret::Azure {
            client_id: "c".into(),
            client_secret: "AZURE-SECRET".into(),
            tenant_id: "t".into(),
            subscription_id: "s".into(),
            environment: "AzurePublicCloud".into(),
        };
        for s in [aws(), gcp, azure] {
            let text = format!("{s:?} {s:#?}");
            assert!(!text.contains("SECRET"), "{text}");
            assert!(text.contains("<redacted>"), "{text}");
        }
        assert!(format!("{:?}", aws()).contains("AKIAIOSFODNN7EXAMPLE"));
    }

    #[tokio::test]
    async fn static_credentials_serve_their_owner_only() {
        let source = StaticCredentials::new().with("cc-aws", "u-owner", aws());
        let opened = source.open("cc-aws", "u-owner").await.unwrap();
        match opened {
            CloudSecret::Aws { secret_access_key, .. } => {
                assert_eq!(secret_access_key.expose_secret(), "wJalrXUtnFEMI-SECRET");
            }
            other => panic!("{other:?}"),
        }
        let e = source.open("cc-aws", "u-other").await.unwrap_err();
        assert!(!e.is_transient() && e.to_string().contains("\"cc-aws\" not found"), "{e}");
        assert!(source.open("cc-none", "u-owner").await.is_err());
    }
}
