//! `rancherctl cluster snapshot ls|create|restore`: the etcd snapshots of a cluster built on
//! hosts — listed from its `status.etcdSnapshots`, taken with its `backupEtcd` action, restored
//! with `restoreFromEtcdBackup` (then followed as `cluster update` is).

use http::Method;
use serde_json::{Value, json};

use super::ClusterSnapshotCommand;
use super::client::ApiClient;
use super::commands::path_segment;
use super::error::CliError;
use super::output::{Format, structured, table};

/// Runs one `cluster snapshot` command.
pub(super) async fn run(client: &ApiClient, cmd: ClusterSnapshotCommand) -> Result<String, CliError> {
    match cmd {
        ClusterSnapshotCommand::Ls { cluster, out } => {
            let c =
                client.call(Method::GET, &format!("/v3/clusters/{}", path_segment(&cluster)?), None).await?;
            let list = c.pointer("/status/etcdSnapshots").cloned().unwrap_or(json!([]));
            if out.output != Format::Table {
                return structured(&out.output, &list);
            }
            let items = list.as_array().cloned().unwrap_or_default();
            if items.is_empty() {
                return Ok(format!("cluster {cluster} has no etcd snapshots\n"));
            }
            Ok(render(&items))
        }
        ClusterSnapshotCommand::Create { cluster, out } => {
            let path = format!("/v3/clusters/{}?action=backupEtcd", path_segment(&cluster)?);
            let answer = client.call(Method::POST, &path, Some(&json!({}))).await?;
            if out.output != Format::Table {
                return structured(&out.output, answer.get("snapshot").unwrap_or(&Value::Null));
            }
            let message = answer.get("message").and_then(Value::as_str).unwrap_or("snapshot taken");
            Ok(format!("{message}\n"))
        }
        ClusterSnapshotCommand::Restore { cluster, snapshot, follow } => {
            let path = format!("/v3/clusters/{}?action=restoreFromEtcdBackup", path_segment(&cluster)?);
            let answer = client.call(Method::POST, &path, Some(&json!({"etcdBackupId": snapshot}))).await?;
            let message = answer.get("message").and_then(Value::as_str).unwrap_or("restore requested");
            if follow.no_wait {
                return Ok(format!("{message}; follow it with: rancherctl cluster get {cluster}\n"));
            }
            println!("{message}");
            // The request is a change of the spec: follow the generation it made.
            let c =
                client.call(Method::GET, &format!("/v3/clusters/{}", path_segment(&cluster)?), None).await?;
            let generation = c.pointer("/metadata/generation").and_then(Value::as_i64).unwrap_or(0);
            let (summary, _) =
                super::follow::follow(client, &cluster, follow.timeout, false, generation).await?;
            Ok(summary)
        }
    }
}

/// NAME, KIND, CREATED, SIZE, HOSTS, S3 (the object's key, or `upload failed: why`).
fn render(items: &[Value]) -> String {
    let s = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|v| {
            let hosts: Vec<&str> = v
                .get("hosts")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            let s3 = match v.get("s3") {
                Some(c) if !s(c, "error").is_empty() => format!("upload failed: {}", s(c, "error")),
                Some(c) => format!("s3://{}/{}", s(c, "bucket"), s(c, "key")),
                None => "-".to_owned(),
            };
            let size = v.get("size").and_then(Value::as_u64).map_or("?".to_owned(), |n| n.to_string());
            vec![s(v, "name"), s(v, "kind"), s(v, "createdAt"), size, hosts.join(","), s3]
        })
        .collect();
    table(&["NAME", "KIND", "CREATED", "SIZE", "HOSTS", "S3"], &rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_shows_each_snapshot_and_where_its_copy_went() {
        let items = json!([
            {"name": "c1-manual-1", "kind": "manual", "createdAt": "2026-12-03T15:04:05Z", "size": 20512,
             "sha256": "ab", "hosts": ["n1", "n2"], "s3": {"bucket": "snaps", "key": "prod/c1-manual-1.db"}},
            {"name": "c1-recurring-2", "kind": "recurring", "createdAt": "2026-12-03T16:00:00Z", "size": 7,
             "hosts": ["n1"], "s3": {"bucket": "snaps", "error": "connection refused"}},
            {"name": "c1-manual-3", "kind": "manual", "createdAt": "2026-12-03T17:00:00Z", "size": 9, "hosts": []},
        ]);
        assert_eq!(
            render(items.as_array().unwrap()),
            "NAME            KIND       CREATED               SIZE   HOSTS  S3\n\
             c1-manual-1     manual     2026-12-03T15:04:05Z  20512  n1,n2  s3://snaps/prod/c1-manual-1.db\n\
             c1-recurring-2  recurring  2026-12-03T16:00:00Z  7      n1     upload failed: connection refused\n\
             c1-manual-3     manual     2026-12-03T17:00:00Z  9             -\n"
        );
    }
}
