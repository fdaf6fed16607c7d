//! `POST /v3/clusters/<id>?action=generateKubeconfig`: a kubeconfig for one cluster, with a new
//! `kubeconfig` token (cluster-scoped when the authorized cluster endpoint is on), a context through
//! the server's proxy and, with the endpoint on, a `<cluster>-fqdn` context straight to the cluster.

use std::collections::BTreeMap;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use http::HeaderMap;
use rancher_auth::proxy::UserInfo;
use rancher_core::model::Cluster;
use rancher_core::store::Api;
use serde::Serialize;
use serde_json::{Value, json};

use crate::server::api;
use crate::server::auth::Caller;
use crate::server::cluster_downloads::{self, Download};
use crate::server::error::{ApiError, ApiResult};
use crate::server::services::access::may_reach_cluster;
use crate::server::services::tokens::{self, TokenRequest};
use crate::server::state::AppState;

/// Default lifetime of kubeconfig tokens: 30 days, in milliseconds.
pub const DEFAULT_KUBECONFIG_TOKEN_TTL_MS: i64 = 30 * 24 * 3600 * 1000;

#[derive(Serialize)]
struct NamedCluster {
    name: String,
    cluster: ClusterEntry,
}

#[derive(Serialize)]
struct ClusterEntry {
    server: String,
    #[serde(rename = "certificate-authority-data", skip_serializing_if = "String::is_empty")]
    certificate_authority_data: String,
}

#[derive(Serialize)]
struct NamedUser {
    name: String,
    user: UserEntry,
}

#[derive(Serialize)]
struct UserEntry {
    token: String,
}

#[derive(Serialize)]
struct NamedContext {
    name: String,
    context: ContextEntry,
}

#[derive(Serialize)]
struct ContextEntry {
    cluster: String,
    user: String,
}

#[derive(Serialize)]
struct Kubeconfig {
    #[serde(rename = "apiVersion")]
    api_version: &'static str,
    kind: &'static str,
    clusters: Vec<NamedCluster>,
    users: Vec<NamedUser>,
    contexts: Vec<NamedContext>,
    #[serde(rename = "current-context")]
    current_context: String,
}

/// `certificate-authority-data` from a PEM bundle or from an already base64-encoded one.
fn ca_data(ca: &str) -> String {
    let ca = ca.trim();
    if ca.is_empty() {
        String::new()
    } else if ca.starts_with("-----BEGIN") {
        base64::engine::general_purpose::STANDARD.encode(format!("{ca}\n"))
    } else {
        ca.to_owned()
    }
}

/// The direct (authorized cluster endpoint) server and CA of a cluster, when it is enabled.
fn direct_endpoint(cluster: &Cluster) -> Option<(String, String)> {
    let ace = cluster.spec.local_cluster_auth_endpoint.as_ref().filter(|a| a.enabled)?;
    let server = if ace.fqdn.is_empty() {
        cluster.status.api_endpoint.clone()
    } else if ace.fqdn.starts_with("https://") {
        ace.fqdn.clone()
    } else {
        format!("https://{}", ace.fqdn)
    };
    if server.is_empty() {
        return None;
    }
    let ca = if ace.ca_certs.is_empty() { &cluster.status.ca_cert } else { &ace.ca_certs };
    Some((server, ca_data(ca)))
}

/// Renders the kubeconfig YAML.
fn render(
    server_url: &str,
    server_ca_pem: &str,
    cluster: &Cluster,
    token: &str,
) -> Result<String, serde_saphyr::SerializeError> {
    let id = &cluster.metadata.name;
    let name = if rancher_core::validation::dns1123_label(&cluster.spec.display_name).is_ok() {
        cluster.spec.display_name.clone()
    } else {
        id.clone()
    };
    let mut clusters = vec![NamedCluster {
        name: name.clone(),
        cluster: ClusterEntry {
            server: format!("{}/k8s/clusters/{id}", server_url.trim_end_matches('/')),
            certificate_authority_data: ca_data(server_ca_pem),
        },
    }];
    let mut contexts = vec![NamedContext {
        name: name.clone(),
        context: ContextEntry { cluster: name.clone(), user: name.clone() },
    }];
    if let Some((server, ca)) = direct_endpoint(cluster) {
        let fqdn = format!("{name}-fqdn");
        clusters.push(NamedCluster {
            name: fqdn.clone(),
            cluster: ClusterEntry { server, certificate_authority_data: ca },
        });
        contexts.push(NamedContext {
            name: fqdn.clone(),
            context: ContextEntry { cluster: fqdn, user: name.clone() },
        });
    }
    let config = Kubeconfig {
        api_version: "v1",
        kind: "Config",
        clusters,
        users: vec![NamedUser { name: name.clone(), user: UserEntry { token: token.to_owned() } }],
        contexts,
        current_context: name,
    };
    serde_saphyr::to_string(&config)
}

/// The caller as the proxy sees them, for the access check.
pub(crate) fn caller_identity(caller: &Caller) -> UserInfo {
    let user = &caller.user;
    let principal =
        user.spec.principal_ids.first().cloned().unwrap_or_else(|| format!("local://{}", user.metadata.name));
    UserInfo {
        username: user.metadata.name.clone(),
        uid: String::new(),
        groups: user.status.group_principals.clone(),
        extra: BTreeMap::from([("principalid".to_owned(), vec![principal])]),
    }
}

/// The actions `POST /v3/clusters/<id>?action=…` knows.
const CLUSTER_ACTIONS: &str = "generateKubeconfig, exportState, exportAdminKubeconfig, rotateCertificates, \
                               backupEtcd, restoreFromEtcdBackup";

/// `POST /v3/clusters/<id>?action=…`: `generateKubeconfig` here, the downloads of a cluster built on
/// hosts in [`cluster_downloads`](crate::server::cluster_downloads), and `rotateCertificates`,
/// `backupEtcd` and `restoreFromEtcdBackup` in [`api`](crate::server::api::rotate_certificates).
pub(crate) async fn cluster_action(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let action = crate::server::api::query_value(query.as_deref(), "action");
    match action.as_deref() {
        Some("generateKubeconfig") => generate_kubeconfig(&state, &caller, &id).await.into_response(),
        Some(api::ROTATE_CERTIFICATES) => {
            api::rotate_certificates(&state, &caller, &id, &headers, body).await.into_response()
        }
        Some(api::BACKUP_ETCD) => {
            api::backup_etcd(&state, &caller, &id, &headers, body).await.into_response()
        }
        Some(api::RESTORE_FROM_ETCD_BACKUP) => {
            api::restore_from_etcd_backup(&state, &caller, &id, &headers, body).await.into_response()
        }
        Some(other) => match Download::of_action(other) {
            Some(what) => cluster_downloads::serve(&state, &caller, &id, what).await,
            None => ApiError::BadRequest(format!(
                "unknown action {other:?} on clusters (known: {CLUSTER_ACTIONS})"
            ))
            .into_response(),
        },
        None => ApiError::MethodNotAllowed(format!(
            "POST on a cluster needs ?action=ACTION (one of {CLUSTER_ACTIONS})"
        ))
        .into_response(),
    }
}

/// `?action=generateKubeconfig`.
async fn generate_kubeconfig(state: &AppState, caller: &Caller, id: &str) -> ApiResult<Json<Value>> {
    let id = id.to_owned();
    let not_found = || ApiError::NotFound(format!("clusters \"{id}\" not found"));
    let cluster = Api::<Cluster>::all(state.store.clone()).get_opt(&id).await?.ok_or_else(not_found)?;
    if !may_reach_cluster(&state.store, caller, &id).await? {
        // The same answer as for a cluster that does not exist: ids are not probed.
        return Err(not_found());
    }
    let scoped = cluster.spec.local_cluster_auth_endpoint.as_ref().is_some_and(|a| a.enabled);
    let req = TokenRequest {
        cluster_name: if scoped { id.clone() } else { String::new() },
        ..TokenRequest::local(
            "kubeconfig",
            state.kubeconfig_token_ttl_ms,
            format!("kubeconfig for cluster {id}"),
            false,
        )
    };
    let (_, secret) = tokens::issue(&state.store, state.max_token_ttl_ms, &caller.user, req).await?;
    let config = render(state.registration.server_url(), &state.ca_pem, &cluster, &secret.expose())
        .map_err(|e| ApiError::Internal(format!("rendering the kubeconfig: {e}")))?;
    Ok(Json(json!({ "type": "generateKubeconfigOutput", "config": config })))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rancher_core::model::{ClusterSpec, LocalClusterAuthEndpoint};

    fn cluster(ace: Option<LocalClusterAuthEndpoint>) -> Cluster {
        let mut c = Cluster::new(
            "c-abcde",
            ClusterSpec {
                display_name: "prod".into(),
                local_cluster_auth_endpoint: ace,
                ..Default::default()
            },
        );
        c.status.api_endpoint = "https://10.0.0.1:6443".into();
        c.status.ca_cert = "Q0FDRVJU".into();
        c
    }

    fn parse(yaml: &str) -> Value {
        serde_saphyr::from_str(yaml).unwrap()
    }

    #[test]
    fn one_context_through_the_proxy() {
        let pem = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----";
        let y = parse(&render("https://rancher:8443/", pem, &cluster(None), "token-x:s3cret").unwrap());
        assert_eq!(y["current-context"], "prod");
        assert_eq!(y["clusters"].as_array().unwrap().len(), 1);
        assert_eq!(y["clusters"][0]["cluster"]["server"], "https://rancher:8443/k8s/clusters/c-abcde");
        let ca = y["clusters"][0]["cluster"]["certificate-authority-data"].as_str().unwrap();
        let decoded = base64::engine::general_purpose::STANDARD.decode(ca).unwrap();
        assert!(String::from_utf8(decoded).unwrap().starts_with("-----BEGIN CERTIFICATE-----"));
        assert_eq!(y["users"][0]["user"]["token"], "token-x:s3cret");
        assert_eq!(y["contexts"][0]["context"]["cluster"], "prod");
    }

    #[test]
    fn the_authorized_endpoint_adds_an_fqdn_context() {
        let ace = LocalClusterAuthEndpoint { enabled: true, ..Default::default() };
        let y = parse(&render("https://r", "", &cluster(Some(ace)), "t:s").unwrap());
        assert_eq!(y["clusters"][1]["name"], "prod-fqdn");
        assert_eq!(y["clusters"][1]["cluster"]["server"], "https://10.0.0.1:6443");
        assert_eq!(y["clusters"][1]["cluster"]["certificate-authority-data"], "Q0FDRVJU");
        assert_eq!(y["contexts"][1]["context"]["user"], "prod");
        assert!(y["clusters"][0]["cluster"].get("certificate-authority-data").is_none());

        let ace = LocalClusterAuthEndpoint {
            enabled: true,
            fqdn: "prod.example.com:443".into(),
            ca_certs: "-----BEGIN CERTIFICATE-----\nBBBB\n-----END CERTIFICATE-----".into(),
        };
        let y = parse(&render("https://r", "", &cluster(Some(ace)), "t:s").unwrap());
        assert_eq!(y["clusters"][1]["cluster"]["server"], "https://prod.example.com:443");
        let ca = y["clusters"][1]["cluster"]["certificate-authority-data"].as_str().unwrap();
        assert_ne!(ca, "Q0FDRVJU");
        let disabled = LocalClusterAuthEndpoint { enabled: false, ..Default::default() };
        let y = parse(&render("https://r", "", &cluster(Some(disabled)), "t:s").unwrap());
        assert_eq!(y["contexts"].as_array().unwrap().len(), 1);
    }
}
