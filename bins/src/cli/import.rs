//! Joining a Kubernetes cluster to a cluster of the server: `cluster create` (imported or "generic",
//! both get a registration token) and `cluster import-command` print the import command and the
//! agent's command line with the registration token already decoded, and return at once.

use http::Method;
use serde_json::{Value, json};

use super::client::ApiClient;
use super::commands::{path_segment, str_at};
use super::error::CliError;
use super::output::{Format, structured};

/// The name of the registration token the server makes for every cluster.
const DEFAULT_TOKEN: &str = "default-token";

/// How to join a cluster, from its registration token and the server's CA.
struct JoinCommands {
    /// `kubectl apply -f <manifest URL>`.
    command: String,
    /// `curl --insecure -sfL <manifest URL> | kubectl apply -f -`.
    insecure_command: String,
    /// The agent as a process: `CATTLE_SERVER=… CATTLE_CA_CHECKSUM=… CATTLE_TOKEN=… rancher-agent …`.
    agent_command: String,
    /// True when the server's CA is its own (not one kubectl trusts already).
    private_ca: bool,
}

async fn join_commands(client: &ApiClient, cluster: &str) -> Result<(Value, JoinCommands), CliError> {
    let path = format!("/v3/clusterregistrationtokens/{}:{DEFAULT_TOKEN}", path_segment(cluster)?);
    let crt = match client.call(Method::GET, &path, None).await {
        Err(CliError::Api(s)) if s.code == 404 => {
            return Err(CliError::Input(format!(
                "cluster {cluster:?} has no registration token: it does not exist, or it was created before \
                 the server gave one to every cluster (delete it and create it again)"
            )));
        }
        other => other?,
    };
    let manifest_url = str_at(&crt, &["status", "manifestUrl"]);
    let token = str_at(&crt, &["status", "token"]);
    if manifest_url.is_empty() || token.is_empty() {
        return Err(CliError::Http(format!("the registration token of {cluster:?} carries no manifest URL")));
    }
    // What agents dial is the server's external URL, the origin of the manifest URL.
    let server = url::Url::parse(manifest_url)
        .map(|u| u.origin().ascii_serialization())
        .map_err(|e| CliError::Http(format!("the manifest URL {manifest_url:?} is not a URL: {e}")))?;
    let ca = client.call(Method::GET, "/v3/settings/cacerts", None).await?;
    let ca_pem = str_at(&ca, &["value"]);
    let checksum = if ca_pem.is_empty() {
        String::new()
    } else {
        rancher_tunnel::ca_checksum(crate::protocol::normalize_ca(ca_pem).as_bytes())
    };
    let mut agent = format!("CATTLE_SERVER={server} ");
    if !checksum.is_empty() {
        agent.push_str(&format!("CATTLE_CA_CHECKSUM={checksum} "));
    }
    agent.push_str(&format!("CATTLE_TOKEN={token} rancher-agent --kubeconfig KUBECONFIG"));
    let cmds = JoinCommands {
        command: str_at(&crt, &["status", "command"]).to_owned(),
        insecure_command: str_at(&crt, &["status", "insecureCommand"]).to_owned(),
        agent_command: agent,
        private_ca: !ca_pem.is_empty(),
    };
    Ok((crt, cmds))
}

fn instructions(cluster: &str, c: &JoinCommands) -> String {
    let mut out = format!(
        "To join a Kubernetes cluster as {cluster}, run against it (kubectl's current context):\n  {}\n",
        c.command
    );
    if c.private_ca {
        out.push_str(&format!(
            "or, as kubectl does not trust this server's certificate (its CA is the server's own):\n  {}\n",
            c.insecure_command
        ));
    }
    out.push_str(&format!(
        "Or run the agent as a process, KUBECONFIG being a kubeconfig of that cluster:\n  {}\n\
         The cluster becomes active when its agent connects (rancherctl cluster get {cluster}); \
         `rancherctl cluster import-command {cluster}` prints this again.\n",
        c.agent_command
    ));
    out
}

fn structured_join(
    fmt: Format,
    cluster: Option<Value>,
    crt: Value,
    c: &JoinCommands,
) -> Result<String, CliError> {
    let mut v = json!({
        "clusterRegistrationToken": crt,
        "command": c.command,
        "insecureCommand": c.insecure_command,
        "agentCommand": c.agent_command,
    });
    if let Some(cluster) = cluster {
        v["cluster"] = cluster;
    }
    structured(&fmt, &v)
}

/// `rancherctl cluster create NAME [--import]`.
pub(super) async fn create(
    client: &ApiClient,
    name: &str,
    description: &str,
    import: bool,
    fmt: Format,
) -> Result<String, CliError> {
    let mut body = json!({
        "metadata": { "name": name },
        "spec": { "displayName": name, "description": description },
    });
    if import {
        body["spec"]["importedConfig"] = json!({});
    }
    let created = client.call(Method::POST, "/v3/clusters", Some(&body)).await?;
    let id = created.get("id").and_then(Value::as_str).unwrap_or(name).to_owned();
    let (crt, cmds) = match join_commands(client, &id).await {
        Err(CliError::Api(s)) if s.code == 403 && fmt == Format::Table => {
            return Ok(format!(
                "cluster {id} created.\nYou may not read its registration token ({}): an administrator can \
                 print how to join it with `rancherctl cluster import-command {id}`.\n",
                s.message
            ));
        }
        other => other?,
    };
    match fmt {
        Format::Table => Ok(format!("cluster {id} created.\n{}", instructions(&id, &cmds))),
        _ => structured_join(fmt, Some(created), crt, &cmds),
    }
}

/// `rancherctl cluster import-command NAME`.
pub(super) async fn import_command(client: &ApiClient, name: &str, fmt: Format) -> Result<String, CliError> {
    let (crt, cmds) = join_commands(client, name).await?;
    match fmt {
        Format::Table => Ok(instructions(name, &cmds)),
        _ => structured_join(fmt, None, crt, &cmds),
    }
}
