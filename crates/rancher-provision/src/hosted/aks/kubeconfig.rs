//! The admin kubeconfig from `listClusterAdminCredential`
//! (`{"kubeconfigs": [{"name": "clusterAdmin", "value": "<base64 kubeconfig>"}]}`), kept secret, and
//! what a provisioner needs from it: the server, its CA, and the admin's token or client certificate.

use base64::Engine as _;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::Value;

use super::error::{AksError, Result};

/// A cluster's admin kubeconfig (YAML). Debug shows no credential.
#[derive(Clone)]
pub struct AdminKubeconfig {
    yaml: SecretString,
}

impl std::fmt::Debug for AdminKubeconfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminKubeconfig([redacted])")
    }
}

/// How to reach and authenticate to the cluster, from its kubeconfig's current context.
/// Debug shows no token or key.
#[derive(Clone)]
pub struct KubeconfigAccess {
    /// The API server URL.
    pub server: String,
    /// The API server's CA (PEM), when the kubeconfig has one.
    pub ca_pem: Option<String>,
    /// A bearer token, when the user has one.
    pub token: Option<SecretString>,
    /// A client certificate (PEM), when the user has one.
    pub client_certificate_pem: Option<String>,
    /// The client certificate's key (PEM).
    pub client_key_pem: Option<SecretString>,
}

impl std::fmt::Debug for KubeconfigAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeconfigAccess")
            .field("server", &self.server)
            .field("ca_pem", &self.ca_pem.as_ref().map(|_| "[set]"))
            .field("token", &self.token.as_ref().map(|_| "[redacted]"))
            .field("client_certificate_pem", &self.client_certificate_pem.as_ref().map(|_| "[set]"))
            .field("client_key_pem", &self.client_key_pem.as_ref().map(|_| "[redacted]"))
            .finish()
    }
}

#[derive(Deserialize)]
struct Kubeconfig {
    #[serde(default)]
    clusters: Vec<Named<ClusterEntry>>,
    #[serde(default)]
    users: Vec<Named<UserEntry>>,
    #[serde(default)]
    contexts: Vec<Named<ContextEntry>>,
    #[serde(default, rename = "current-context")]
    current_context: String,
}

#[derive(Deserialize)]
struct Named<T> {
    #[serde(default)]
    name: String,
    #[serde(alias = "cluster", alias = "user", alias = "context")]
    entry: T,
}

#[derive(Deserialize)]
struct ClusterEntry {
    server: String,
    #[serde(default, rename = "certificate-authority-data")]
    ca_data: Option<String>,
}

#[derive(Deserialize, Default)]
struct UserEntry {
    #[serde(default)]
    token: Option<String>,
    #[serde(default, rename = "client-certificate-data")]
    cert_data: Option<String>,
    #[serde(default, rename = "client-key-data")]
    key_data: Option<String>,
}

#[derive(Deserialize)]
struct ContextEntry {
    cluster: String,
    #[serde(default)]
    user: String,
}

fn b64(field: &str, v: &str) -> Result<String> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(v.trim())
        .map_err(|e| AksError::InvalidResponse(format!("kubeconfig {field}: not base64: {e}")))?;
    String::from_utf8(bytes).map_err(|_| AksError::InvalidResponse(format!("kubeconfig {field}: not text")))
}

impl AdminKubeconfig {
    /// Reads Azure's `CredentialResults`, taking the `clusterAdmin` entry (or the only one).
    pub(crate) fn from_credential_results(v: &Value) -> Result<AdminKubeconfig> {
        let list = v["kubeconfigs"].as_array().filter(|l| !l.is_empty()).ok_or_else(|| {
            AksError::InvalidResponse("listClusterAdminCredential returned no kubeconfig".into())
        })?;
        let entry = list.iter().find(|k| k["name"] == "clusterAdmin").unwrap_or(&list[0]);
        let value = entry["value"]
            .as_str()
            .ok_or_else(|| AksError::InvalidResponse("the kubeconfig entry has no value".into()))?;
        Ok(AdminKubeconfig { yaml: SecretString::from(b64("value", value)?) })
    }

    /// The kubeconfig's YAML (a credential: keep it sealed).
    pub fn yaml(&self) -> &SecretString {
        &self.yaml
    }

    /// The server, CA and credential of the current context (or the first entries).
    ///
    /// # Errors
    /// [`AksError::InvalidResponse`] for YAML that is not a kubeconfig.
    pub fn access(&self) -> Result<KubeconfigAccess> {
        let kc: Kubeconfig = serde_saphyr::from_str(self.yaml.expose_secret())
            .map_err(|e| AksError::InvalidResponse(format!("admin kubeconfig: {e}")))?;
        let ctx = kc.contexts.iter().find(|c| c.name == kc.current_context).or(kc.contexts.first());
        let cluster = match ctx {
            Some(c) => kc.clusters.iter().find(|k| k.name == c.entry.cluster),
            None => kc.clusters.first(),
        }
        .ok_or_else(|| AksError::InvalidResponse("admin kubeconfig has no cluster".into()))?;
        let user = match ctx {
            Some(c) => kc.users.iter().find(|u| u.name == c.entry.user),
            None => kc.users.first(),
        };
        let empty = UserEntry::default();
        let u = user.map_or(&empty, |u| &u.entry);
        Ok(KubeconfigAccess {
            server: cluster.entry.server.clone(),
            ca_pem: cluster
                .entry
                .ca_data
                .as_deref()
                .map(|d| b64("certificate-authority-data", d))
                .transpose()?,
            token: u.token.clone().map(SecretString::from),
            client_certificate_pem: u
                .cert_data
                .as_deref()
                .map(|d| b64("client-certificate-data", d))
                .transpose()?,
            client_key_pem: u
                .key_data
                .as_deref()
                .map(|d| b64("client-key-data", d).map(SecretString::from))
                .transpose()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_current_context() {
        let e = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let yaml = format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: c1\nclusters:\n- name: other\n  cluster:\n    server: https://wrong\n\
             - name: c1\n  cluster:\n    server: https://c1.example:443\n    certificate-authority-data: {}\n\
             contexts:\n- name: c1\n  context:\n    cluster: c1\n    user: admin\n\
             users:\n- name: admin\n  user:\n    token: s3cret\n",
            e("-----BEGIN CERTIFICATE-----\n")
        );
        let results = serde_json::json!({"kubeconfigs": [{"name": "clusterAdmin", "value": e(&yaml)}]});
        let kc = AdminKubeconfig::from_credential_results(&results).unwrap();
        assert!(!format!("{kc:?}").contains("s3cret"));
        let a = kc.access().unwrap();
        assert_eq!(a.server, "https://c1.example:443");
        assert_eq!(a.ca_pem.as_deref(), Some("-----BEGIN CERTIFICATE-----\n"));
        assert_eq!(a.token.as_ref().map(|t| t.expose_secret().to_owned()).as_deref(), Some("s3cret"));
        assert!(!format!("{a:?}").contains("s3cret"));
        assert!(AdminKubeconfig::from_credential_results(&serde_json::json!({"kubeconfigs": []})).is_err());
    }
}
