//! `rancherctl cluster node add|rm`: one host more or less in a cluster built on hosts — the
//! cluster's `rkeConfig.nodes` changed (read, changed, written back with the version read), then the
//! rollout followed as `cluster update --rke` does. `--force` marks hosts gone for good
//! ([`ABANDON_HOSTS_ANNOTATION`]).

use http::Method;
use rancher_core::model::{RkeConfig, RkeNode};
use rancher_provision::rke::{ABANDON_HOSTS_ANNOTATION, node_name, validate};
use serde_json::Value;

use super::client::ApiClient;
use super::commands::path_segment;
use super::error::CliError;
use super::output::Format;
use super::{ClusterNodeCommand, FollowArgs};

/// Runs one `cluster node` command.
pub(super) async fn run(client: &ApiClient, cmd: ClusterNodeCommand) -> Result<String, CliError> {
    match cmd {
        ClusterNodeCommand::Add {
            cluster,
            address,
            roles,
            hostname_override,
            internal_address,
            user,
            port,
            ssh_key_path,
            follow,
        } => {
            let mut node = RkeNode {
                address,
                role: roles,
                hostname_override,
                internal_address,
                user,
                port,
                ssh_key_path,
                ..Default::default()
            };
            if let Some(note) =
                super::rke::inline(&mut node.ssh_key, &mut node.ssh_key_path, "--ssh-key-path")?
            {
                eprintln!("note: {note}");
            }
            let name = node_name(&node);
            change(
                client,
                &cluster,
                &follow,
                |cluster, cfg| {
                    if cfg.nodes.iter().any(|n| node_name(n) == name) {
                        return Err(CliError::Input(format!("cluster {cluster} has a host {name} already")));
                    }
                    cfg.nodes.push(node.clone());
                    Ok(())
                },
                &[],
            )
            .await
        }
        ClusterNodeCommand::Rm { cluster, node, force, follow } => {
            let abandon = if force { vec![node.clone()] } else { vec![] };
            change(
                client,
                &cluster,
                &follow,
                |cluster, cfg| {
                    let before = cfg.nodes.len();
                    cfg.nodes.retain(|n| node_name(n) != node);
                    if cfg.nodes.len() == before {
                        return Err(CliError::Input(format!("cluster {cluster} has no host {node}")));
                    }
                    Ok(())
                },
                &abandon,
            )
            .await
        }
    }
}

/// Marks `nodes` of `cluster` (all its hosts when empty) as gone for good.
pub(super) async fn abandon(client: &ApiClient, cluster: &str, nodes: &[String]) -> Result<(), CliError> {
    let path = format!("/v3/clusters/{}", path_segment(cluster)?);
    let mut object = client.call(Method::GET, &path, None).await?;
    mark(&mut object, nodes);
    client.call(Method::PUT, &path, Some(&object)).await.map(drop)
}

/// Adds `nodes` (all hosts when empty: `*`) to the object's abandon annotation.
fn mark(object: &mut Value, nodes: &[String]) {
    let annotations = &mut object["metadata"]["annotations"];
    if !annotations.is_object() {
        *annotations = Value::Object(Default::default());
    }
    let mut names: Vec<String> = annotations[ABANDON_HOSTS_ANNOTATION]
        .as_str()
        .map(|v| v.split(',').map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect())
        .unwrap_or_default();
    if nodes.is_empty() {
        names = vec!["*".to_owned()];
    }
    for n in nodes {
        if !names.contains(n) {
            names.push(n.clone());
        }
    }
    annotations[ABANDON_HOSTS_ANNOTATION] = Value::String(names.join(","));
}

/// Reads `cluster`, lets `edit` change its `rkeConfig` (checked as `create --rke` checks a file),
/// marks `abandon`, writes it back and follows the rollout.
async fn change(
    client: &ApiClient,
    cluster: &str,
    follow: &FollowArgs,
    edit: impl FnOnce(&str, &mut RkeConfig) -> Result<(), CliError>,
    abandon: &[String],
) -> Result<String, CliError> {
    let path = format!("/v3/clusters/{}", path_segment(cluster)?);
    let mut object = client.call(Method::GET, &path, None).await?;
    let mut cfg: RkeConfig = match object.pointer("/spec/rkeConfig") {
        Some(v) if !v.is_null() => serde_json::from_value(v.clone()).map_err(|e| {
            CliError::Http(format!("the server's rkeConfig of {cluster} does not parse: {e}"))
        })?,
        _ => {
            return Err(CliError::Input(format!(
                "cluster {cluster} is not built on hosts (it has no rkeConfig)"
            )));
        }
    };
    edit(cluster, &mut cfg)?;
    validate(&cfg).map_err(|e| CliError::Input(e.to_string()))?;
    object["spec"]["rkeConfig"] =
        serde_json::to_value(&cfg).map_err(|e| CliError::Input(format!("encoding the rkeConfig: {e}")))?;
    if !abandon.is_empty() {
        mark(&mut object, abandon);
    }
    let (updated, warnings) = client.call_with_warnings(Method::PUT, &path, Some(&object)).await?;
    for w in warnings {
        eprintln!("Warning: {w}");
    }
    let generation = updated.pointer("/metadata/generation").and_then(Value::as_i64).unwrap_or(0);
    let wait = (!follow.no_wait).then_some(follow.timeout);
    let done = format!("cluster {cluster} updated\n");
    super::follow::report_or_follow(client, cluster, Format::Table, wait, generation, &updated, done).await
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn abandoned_hosts_add_up_and_all_means_all() {
        let mut o = json!({"metadata": {"name": "c"}});
        mark(&mut o, &["node5".into()]);
        mark(&mut o, &["node6".into(), "node5".into()]);
        assert_eq!(o["metadata"]["annotations"][ABANDON_HOSTS_ANNOTATION], "node5,node6");
        let annotations: std::collections::BTreeMap<String, String> =
            serde_json::from_value(o["metadata"]["annotations"].clone()).unwrap();
        assert!(rancher_provision::rke::is_abandoned(&annotations, "node6"));
        assert!(!rancher_provision::rke::is_abandoned(&annotations, "node1"));
        mark(&mut o, &[]);
        assert_eq!(o["metadata"]["annotations"][ABANDON_HOSTS_ANNOTATION], "*");
    }
}
