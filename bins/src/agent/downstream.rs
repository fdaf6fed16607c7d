//! The agent's side of its own cluster: a `kube::Client` (from `--kubeconfig` or the in-cluster
//! service account), and the [`ClusterParams`] it hands to the server — the API server address,
//! a bearer credential and the CA.

use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::PostParams;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};
use secrecy::ExposeSecret;

use super::AgentError;
use crate::protocol::connect::{ClusterParams, split_host_port};

/// Namespace and service account the import manifest creates for the agent.
pub(crate) const AGENT_NAMESPACE: &str = "cattle-system";
/// The agent's service account (bound to `cattle-admin`).
pub(crate) const AGENT_SERVICE_ACCOUNT: &str = "cattle";
/// Lifetime asked for when the agent has to mint a service-account token (kubeconfig without a
/// token): one year; the agent asks again on every start.
const MINTED_TOKEN_SECONDS: i64 = 365 * 24 * 3600;

/// The agent's access to its cluster.
pub(crate) struct Downstream {
    /// A client for the agent's own reads (nodes, pods, version).
    pub(crate) client: Client,
    /// What the server needs to reach the same API server through the tunnel.
    pub(crate) params: ClusterParams,
    /// The configuration the client was built from (for clients of other addresses of the same
    /// API server).
    pub(crate) config: Config,
}

fn der_to_pem(der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        pem.push_str(&String::from_utf8_lossy(chunk));
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE-----\n");
    pem
}

/// `host:port` of the API server URL (port 443 when the URL has none).
pub(crate) fn address_of(url: &http::Uri) -> Result<String, AgentError> {
    let host =
        url.host().ok_or_else(|| AgentError::Downstream(format!("the API server URL {url} has no host")))?;
    if url.scheme_str() != Some("https") {
        return Err(AgentError::Downstream(format!(
            "the API server URL {url} is not https: the server only reaches API servers over TLS"
        )));
    }
    let port = url.port_u16().unwrap_or(443);
    let address = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    split_host_port(&address).ok_or_else(|| {
        AgentError::Downstream(format!("the API server address {address:?} is not host:port"))
    })?;
    Ok(address)
}

async fn load_config(kubeconfig: Option<&Path>) -> Result<Config, AgentError> {
    match kubeconfig {
        Some(path) => {
            let kc = Kubeconfig::read_from(path)
                .map_err(|e| AgentError::Downstream(format!("kubeconfig {}: {e}", path.display())))?;
            Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
                .await
                .map_err(|e| AgentError::Downstream(format!("kubeconfig {}: {e}", path.display())))
        }
        None => Config::incluster().map_err(|e| {
            AgentError::Downstream(format!("no --kubeconfig and not running in a cluster: {e}"))
        }),
    }
}

fn ca_pem_of(config: &Config) -> Result<String, AgentError> {
    if let Some(path) = &config.root_cert_file {
        return std::fs::read_to_string(path)
            .map_err(|e| AgentError::Downstream(format!("the cluster CA {}: {e}", path.display())));
    }
    match &config.root_cert {
        Some(certs) if !certs.is_empty() => Ok(certs.iter().map(|der| der_to_pem(der)).collect()),
        _ => Err(AgentError::Downstream(
            "the kubeconfig names no certificate authority for the API server; the server verifies the \
             API server's certificate and needs it"
                .into(),
        )),
    }
}

/// The bearer credential the server will use: the kubeconfig's (or in-cluster) token, else a
/// token minted for the `cattle-system/cattle` service account the import manifest created.
async fn credential(config: &Config, client: &Client) -> Result<String, AgentError> {
    if let Some(token) = &config.auth_info.token {
        return Ok(token.expose_secret().trim().to_owned());
    }
    if let Some(file) = &config.auth_info.token_file {
        let token = std::fs::read_to_string(file)
            .map_err(|e| AgentError::Downstream(format!("service account token {file}: {e}")))?;
        return Ok(token.trim().to_owned());
    }
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), AGENT_NAMESPACE);
    if has_client_certificate(config) {
        ensure_agent_account(client).await?;
    }
    let request = TokenRequest {
        spec: TokenRequestSpec { expiration_seconds: Some(MINTED_TOKEN_SECONDS), ..Default::default() },
        ..Default::default()
    };
    let minted = sas
        .create_token_request(AGENT_SERVICE_ACCOUNT, &PostParams::default(), &request)
        .await
        .map_err(|e| {
            AgentError::DownstreamCall(format!(
                "the kubeconfig has no token, and minting one for service account \
                 {AGENT_NAMESPACE}/{AGENT_SERVICE_ACCOUNT} failed (was the import manifest applied?): {e}"
            ))
        })?;
    minted
        .status
        .map(|s| s.token)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| AgentError::Downstream("the TokenRequest came back without a token".into()))
}

fn has_client_certificate(config: &Config) -> bool {
    let a = &config.auth_info;
    a.client_certificate.is_some() || a.client_certificate_data.is_some()
}

/// With a client certificate (a cluster the server built, whose plan gives its cluster agent an
/// administrator's certificate) no import manifest made the agent's account: the agent makes it —
/// the namespace, the service account and its binding to `cattle-admin` — as the manifest would.
/// What exists already is kept.
async fn ensure_agent_account(client: &Client) -> Result<(), AgentError> {
    use k8s_openapi::api::core::v1::Namespace;
    use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, RoleRef, Subject};
    use kube::api::ObjectMeta;

    fn meta(name: &str, namespace: Option<&str>) -> ObjectMeta {
        ObjectMeta {
            name: Some(name.to_owned()),
            namespace: namespace.map(str::to_owned),
            ..Default::default()
        }
    }
    async fn create<K>(api: Api<K>, object: K) -> Result<(), AgentError>
    where
        K: kube::Resource + Clone + serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
    {
        match api.create(&PostParams::default(), &object).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
            Err(e) => Err(AgentError::DownstreamCall(format!("creating the agent's account: {e}"))),
        }
    }
    create(
        Api::<Namespace>::all(client.clone()),
        Namespace { metadata: meta(AGENT_NAMESPACE, None), ..Default::default() },
    )
    .await?;
    create(
        Api::<ServiceAccount>::namespaced(client.clone(), AGENT_NAMESPACE),
        ServiceAccount { metadata: meta(AGENT_SERVICE_ACCOUNT, Some(AGENT_NAMESPACE)), ..Default::default() },
    )
    .await?;
    let all = || Some(vec!["*".to_owned()]);
    create(
        Api::<ClusterRole>::all(client.clone()),
        ClusterRole {
            metadata: meta("cattle-admin", None),
            rules: Some(vec![
                PolicyRule {
                    api_groups: all(),
                    resources: all(),
                    verbs: vec!["*".to_owned()],
                    ..Default::default()
                },
                PolicyRule { non_resource_urls: all(), verbs: vec!["*".to_owned()], ..Default::default() },
            ]),
            ..Default::default()
        },
    )
    .await?;
    create(
        Api::<ClusterRoleBinding>::all(client.clone()),
        ClusterRoleBinding {
            metadata: meta("cattle-admin-binding", None),
            role_ref: RoleRef {
                api_group: "rbac.authorization.k8s.io".into(),
                kind: "ClusterRole".into(),
                name: "cattle-admin".into(),
            },
            subjects: Some(vec![Subject {
                kind: "ServiceAccount".into(),
                name: AGENT_SERVICE_ACCOUNT.into(),
                namespace: Some(AGENT_NAMESPACE.into()),
                ..Default::default()
            }]),
        },
    )
    .await
}

/// Connects to the downstream cluster and gathers the parameters for the server.
///
/// # Errors
/// [`AgentError::Downstream`] naming what is missing (kubeconfig, CA, credential).
pub(crate) async fn connect(kubeconfig: Option<&Path>) -> Result<Downstream, AgentError> {
    connect_at(kubeconfig, None).await
}

/// [`connect`], or when the kubeconfig's API server cannot be used now (restarting, down), the same
/// through the first of `alternates` (`https://host:port` of the cluster's other API servers) that
/// can: the parameters still name the kubeconfig's API server (the agent's dialer sends its streams
/// to whichever one is ready), the client talks to the one that answered.
///
/// # Errors
/// The kubeconfig's API server's error when none of them can be used.
pub(crate) async fn connect_any(
    kubeconfig: Option<&Path>,
    alternates: &[String],
) -> Result<Downstream, AgentError> {
    let first = connect(kubeconfig).await;
    let Err(primary_error) = first else { return first };
    for alternate in alternates {
        let Ok(url) = alternate.parse::<http::Uri>() else { continue };
        match connect_at(kubeconfig, Some(url)).await {
            Ok(d) => {
                tracing::info!(api_server = %alternate, "the kubeconfig's API server cannot be used now: starting through another");
                return Ok(d);
            }
            Err(e) => tracing::debug!(api_server = %alternate, error = %e, "not usable either"),
        }
    }
    Err(primary_error)
}

/// The cluster through `via` (else the kubeconfig's API server), with parameters naming the
/// kubeconfig's API server.
async fn connect_at(kubeconfig: Option<&Path>, via: Option<http::Uri>) -> Result<Downstream, AgentError> {
    let mut config = load_config(kubeconfig).await?;
    let address = address_of(&config.cluster_url)?;
    if let Some(url) = via {
        config.cluster_url = url;
    }
    let ca_pem = ca_pem_of(&config)?;
    let client = Client::try_from(config.clone())
        .map_err(|e| AgentError::Downstream(format!("building the cluster client: {e}")))?;
    let token = credential(&config, &client).await?;
    let params = ClusterParams { address, token, ca_cert: STANDARD.encode(ca_pem.as_bytes()) };
    params.validate().map_err(|e| AgentError::Downstream(e.to_string()))?;
    Ok(Downstream { client, params, config })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_from_api_server_urls() {
        let a = |u: &str| address_of(&u.parse().unwrap());
        assert_eq!(a("https://127.0.0.1:6443").unwrap(), "127.0.0.1:6443");
        assert_eq!(a("https://kubernetes.default.svc").unwrap(), "kubernetes.default.svc:443");
        assert_eq!(a("https://[::1]:6443").unwrap(), "[::1]:6443");
        assert!(a("http://127.0.0.1:8080").unwrap_err().to_string().contains("not https"));
    }

    #[test]
    fn der_becomes_wrapped_pem() {
        let pem = der_to_pem(&[7u8; 100]);
        assert!(pem.starts_with("-----BEGIN CERTIFICATE-----\n"));
        assert!(pem.lines().all(|l| l.len() <= 64));
    }
}
