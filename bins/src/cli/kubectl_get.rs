//! `rancherctl kubectl --all-clusters -- get …` read by rancherctl itself: the resource is found once
//! in the discovery of the first cluster that answers, then each cluster is one request through the
//! server's proxy over the same pooled HTTPS client, answered with the API server's own table
//! (`as=Table`, the columns `kubectl get` prints). A thousand clusters are a thousand requests instead
//! of a thousand kubectl processes that each start, read discovery and connect (on two cores that was
//! some 0.18 s a cluster). What it does not read as kubectl would — another verb, several resources
//! or names, `-o` other than `wide` or `name`, a flag it does not know, a resource the first cluster
//! does not serve — runs kubectl per cluster instead.

use std::sync::Arc;
use std::time::Duration;

use http::Method;
use serde_json::Value;

use super::client::ApiClient;
use super::error::CliError;
use super::kubectl::{Outcome, ask_each};

/// A `get` rancherctl reads itself.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct GetPlan {
    resource: String,
    name: Option<String>,
    namespace: Option<String>,
    all_namespaces: bool,
    selector: Option<String>,
    field_selector: Option<String>,
    output: Output,
}

#[derive(Debug, Default, PartialEq, Eq, Clone, Copy)]
enum Output {
    #[default]
    Table,
    Wide,
    Name,
}

impl GetPlan {
    /// The plan of kubectl's arguments, or `None` when kubectl should run them.
    pub(super) fn parse(args: &[String]) -> Option<GetPlan> {
        let (verb, rest) = args.split_first()?;
        if verb != "get" {
            return None;
        }
        let mut plan = GetPlan::default();
        let mut positional = Vec::new();
        let mut it = rest.iter();
        while let Some(arg) = it.next() {
            let mut value = |long: &str, short: Option<&str>| -> Option<Option<String>> {
                if let Some(v) = arg.strip_prefix(long).and_then(|r| r.strip_prefix('=')) {
                    return Some(Some(v.to_owned()));
                }
                if arg == long || short.is_some_and(|s| arg == s) {
                    return Some(it.next().cloned());
                }
                let attached = short.and_then(|s| arg.strip_prefix(s)).filter(|v| !v.is_empty());
                attached.map(|v| Some(v.trim_start_matches('=').to_owned()))
            };
            if let Some(v) = value("--namespace", Some("-n")) {
                plan.namespace = Some(v?);
            } else if let Some(v) = value("--selector", Some("-l")) {
                plan.selector = Some(v?);
            } else if let Some(v) = value("--field-selector", None) {
                plan.field_selector = Some(v?);
            } else if let Some(v) = value("--output", Some("-o")) {
                plan.output = match v?.as_str() {
                    "wide" => Output::Wide,
                    "name" => Output::Name,
                    _ => return None,
                };
            } else if arg == "-A" || arg == "--all-namespaces" {
                plan.all_namespaces = true;
            } else if arg == "--no-headers" {
                // The merged table has its header either way.
            } else if arg.starts_with('-') {
                return None;
            } else {
                positional.push(arg.clone());
            }
        }
        let (resource, names) = positional.split_first()?;
        if resource.contains([',', '/']) || names.len() > 1 || (plan.all_namespaces && !names.is_empty()) {
            return None;
        }
        plan.resource = resource.to_lowercase();
        plan.name = names.first().cloned();
        Some(plan)
    }
}

/// Where a resource is served.
#[derive(Debug, PartialEq, Eq)]
struct Resolved {
    /// `/api/v1` or `/apis/<group>/<version>`.
    prefix: String,
    plural: String,
    namespaced: bool,
    /// `kind.group` in lower case as `-o name` prints it (`node`, `deployment.apps`).
    name_prefix: String,
}

/// Finds `resource` (plural, singular, short name or kind, optionally `.group`) as kubectl would:
/// the core group first, then the other groups in the server's order at their preferred versions.
async fn resolve(client: &ApiClient, cluster: &str, resource: &str) -> Result<Option<Resolved>, CliError> {
    let base = format!("/k8s/clusters/{cluster}");
    let (name, group) = match resource.split_once('.') {
        Some((n, g)) => (n, Some(g)),
        None => (resource, None),
    };
    if group.is_none() || group == Some("") {
        let core = client.call(Method::GET, &format!("{base}/api/v1"), None).await?;
        if let Some(r) = find(&core, name, "/api/v1", "") {
            return Ok(Some(r));
        }
    }
    let groups = client.call(Method::GET, &format!("{base}/apis"), None).await?;
    for g in groups["groups"].as_array().into_iter().flatten() {
        let gname = g["name"].as_str().unwrap_or_default();
        if group.is_some_and(|want| want != gname && !gname.starts_with(&format!("{want}."))) {
            continue;
        }
        let Some(gv) = g["preferredVersion"]["groupVersion"].as_str() else { continue };
        let list = client.call(Method::GET, &format!("{base}/apis/{gv}"), None).await?;
        if let Some(r) = find(&list, name, &format!("/apis/{gv}"), gname) {
            return Ok(Some(r));
        }
    }
    Ok(None)
}

/// `name` among the resources of one `APIResourceList`.
fn find(list: &Value, name: &str, prefix: &str, group: &str) -> Option<Resolved> {
    list["resources"].as_array()?.iter().find_map(|r| {
        let plural = r["name"].as_str()?;
        if plural.contains('/') {
            return None; // a subresource
        }
        let kind = r["kind"].as_str().unwrap_or_default().to_lowercase();
        let singular = r["singularName"].as_str().filter(|s| !s.is_empty()).unwrap_or(&kind);
        let short = r["shortNames"].as_array().into_iter().flatten().filter_map(Value::as_str);
        let hit = plural == name || singular == name || kind == name || short.into_iter().any(|s| s == name);
        hit.then(|| Resolved {
            prefix: prefix.to_owned(),
            plural: plural.to_owned(),
            namespaced: r["namespaced"].as_bool().unwrap_or(false),
            name_prefix: if group.is_empty() { kind.clone() } else { format!("{kind}.{group}") },
        })
    })
}

/// The table's columns and one cluster's rows.
struct Answer {
    columns: Vec<String>,
    rows: Vec<Vec<String>>,
}

/// Reads `plan` from every cluster, at most `concurrency` at once and each within `timeout`; `None`
/// when no cluster's discovery serves the resource (kubectl then runs).
pub(super) async fn fan_out(
    client: &ApiClient,
    plan: GetPlan,
    clusters: &[String],
    concurrency: u16,
    timeout: Duration,
) -> Result<Option<String>, CliError> {
    // Discovery from the first clusters that answer (one whose agent is away fails fast).
    let mut resolved = None;
    for cluster in clusters.iter().take(3) {
        if let Ok(found) = tokio::time::timeout(timeout, resolve(client, cluster, &plan.resource)).await
            && let Ok(found) = found
        {
            resolved = found;
            break;
        }
    }
    let Some(resolved) = resolved else { return Ok(None) };
    let (plan, resolved) = (Arc::new(plan), Arc::new(resolved));
    let answers = ask_each(clusters.to_vec(), concurrency, timeout, |cluster| {
        let (client, plan, resolved) = (client.clone(), plan.clone(), resolved.clone());
        async move {
            match read(&client, &plan, &resolved, &cluster).await {
                Err(CliError::Api(status)) => Err(status.message),
                Err(e) => Err(e.to_string()),
                Ok(answer) => Ok(answer),
            }
        }
    })
    .await?;
    let columns = answers
        .iter()
        .find_map(|(_, r)| r.as_ref().ok().map(|a| a.columns.clone()))
        .unwrap_or_else(|| vec!["OUTPUT".into()]);
    let outcomes = answers
        .into_iter()
        .map(|(cluster, result)| Outcome { cluster, result: result.map(|a| a.rows) })
        .collect();
    super::kubectl::merged(&columns, outcomes).map(Some)
}

/// One cluster's rows.
async fn read(client: &ApiClient, plan: &GetPlan, r: &Resolved, cluster: &str) -> Result<Answer, CliError> {
    let mut path = format!("/k8s/clusters/{cluster}{}", r.prefix);
    if r.namespaced && !plan.all_namespaces {
        path.push_str(&format!("/namespaces/{}", plan.namespace.as_deref().unwrap_or("default")));
    }
    path.push_str(&format!("/{}", r.plural));
    if let Some(name) = &plan.name {
        path.push_str(&format!("/{}", encode(name)));
    }
    let mut query = vec!["includeObject=Metadata".to_owned()];
    if let Some(s) = &plan.selector {
        query.push(format!("labelSelector={}", encode(s)));
    }
    if let Some(s) = &plan.field_selector {
        query.push(format!("fieldSelector={}", encode(s)));
    }
    let url = format!("{path}?{}", query.join("&"));
    let table = client.get_accepting(&url, TABLE).await?;
    Ok(render(plan, r, &table))
}

/// What kubectl asks for: the server-side table, or plain JSON from a server without tables.
const TABLE: &str = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json";

fn render(plan: &GetPlan, r: &Resolved, table: &Value) -> Answer {
    let namespace_column = plan.all_namespaces && r.namespaced;
    let meta =
        |row: &Value, field: &str| row["object"]["metadata"][field].as_str().unwrap_or_default().to_owned();
    let Some(rows) = table["rows"].as_array().filter(|_| table["kind"] == "Table") else {
        // Not a table: one row per object (or the one object), by name.
        let objects: Vec<&Value> = match table["items"].as_array() {
            Some(items) => items.iter().collect(),
            None => vec![table],
        };
        let rows = objects
            .iter()
            .map(|o| {
                let name = o["metadata"]["name"].as_str().unwrap_or_default();
                vec![format!("{}/{name}", r.name_prefix)]
            })
            .collect();
        return Answer { columns: vec!["NAME".into()], rows };
    };
    if plan.output == Output::Name {
        let rows = rows.iter().map(|row| vec![format!("{}/{}", r.name_prefix, meta(row, "name"))]).collect();
        return Answer { columns: vec!["NAME".into()], rows };
    }
    let defs = table["columnDefinitions"].as_array().cloned().unwrap_or_default();
    let shown: Vec<usize> = (0..defs.len())
        .filter(|&i| plan.output == Output::Wide || defs[i]["priority"].as_i64().unwrap_or(0) == 0)
        .collect();
    let mut columns: Vec<String> = Vec::new();
    if namespace_column {
        columns.push("NAMESPACE".into());
    }
    columns.extend(shown.iter().map(|&i| defs[i]["name"].as_str().unwrap_or_default().to_uppercase()));
    let rows = rows
        .iter()
        .map(|row| {
            let cells = row["cells"].as_array().map(Vec::as_slice).unwrap_or_default();
            let mut out = Vec::new();
            if namespace_column {
                out.push(meta(row, "namespace"));
            }
            out.extend(shown.iter().map(|&i| cell(cells.get(i))));
            out
        })
        .collect();
    Answer { columns, rows }
}

/// A cell as kubectl prints it.
fn cell(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => "<none>".into(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

/// Percent-encodes a path segment or query value.
fn encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn plan(args: &str) -> Option<GetPlan> {
        GetPlan::parse(&args.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
    }

    #[test]
    fn reads_kubectl_get_arguments_or_leaves_them_to_kubectl() {
        let p = plan("get pods -n kube-system -l app=web --no-headers -o wide").unwrap();
        assert_eq!(p.resource, "pods");
        assert_eq!((p.namespace.as_deref(), p.selector.as_deref()), (Some("kube-system"), Some("app=web")));
        assert_eq!(p.output, Output::Wide);
        let p = plan("get Deployments.apps web --namespace=prod -oname").unwrap();
        assert_eq!((p.resource.as_str(), p.name.as_deref()), ("deployments.apps", Some("web")));
        assert_eq!((p.namespace.as_deref(), p.output), (Some("prod"), Output::Name));
        assert!(plan("get nodes -A").unwrap().all_namespaces);
        // kubectl's: other verbs, formats, flags, several resources or names.
        for args in [
            "describe nodes",
            "get nodes -o yaml",
            "get nodes --watch",
            "get nodes,pods",
            "get node/a",
            "get nodes a b",
            "get",
            "get pods -n",
            "get pods -A web",
        ] {
            assert_eq!(plan(args), None, "{args}");
        }
    }

    #[test]
    fn finds_resources_by_every_name_kubectl_takes() {
        let list = json!({"resources": [
            {"name": "pods", "singularName": "pod", "namespaced": true, "kind": "Pod", "shortNames": ["po"]},
            {"name": "pods/log", "singularName": "", "namespaced": true, "kind": "Pod"},
            {"name": "nodes", "singularName": "", "namespaced": false, "kind": "Node", "shortNames": ["no"]},
        ]});
        for name in ["pods", "pod", "po"] {
            let r = find(&list, name, "/api/v1", "").unwrap();
            assert_eq!((r.plural.as_str(), r.namespaced, r.name_prefix.as_str()), ("pods", true, "pod"));
        }
        let r = find(&list, "node", "/api/v1", "").unwrap();
        assert_eq!((r.plural.as_str(), r.namespaced), ("nodes", false));
        assert_eq!(find(&list, "log", "/api/v1", ""), None);
        let r = find(&list, "no", "/apis/x.io/v1", "x.io").unwrap();
        assert_eq!((r.prefix.as_str(), r.name_prefix.as_str()), ("/apis/x.io/v1", "node.x.io"));
    }

    #[test]
    fn renders_the_servers_table_as_kubectl_prints_it() {
        let table = json!({"kind": "Table", "columnDefinitions": [
            {"name": "Name", "priority": 0}, {"name": "Status", "priority": 0}, {"name": "Internal-IP", "priority": 1}
        ], "rows": [
            {"cells": ["n1", "Ready", "10.0.0.1"], "object": {"metadata": {"name": "n1", "namespace": "ns"}}},
            {"cells": ["n2", null], "object": {"metadata": {"name": "n2", "namespace": "ns"}}},
        ]});
        let r = Resolved {
            prefix: "/api/v1".into(),
            plural: "pods".into(),
            namespaced: true,
            name_prefix: "pod".into(),
        };
        let a = render(&plan("get pods").unwrap(), &r, &table);
        assert_eq!(a.columns, ["NAME", "STATUS"]);
        assert_eq!(a.rows, [vec!["n1", "Ready"], vec!["n2", "<none>"]]);
        let a = render(&plan("get pods -A -o wide").unwrap(), &r, &table);
        assert_eq!(a.columns, ["NAMESPACE", "NAME", "STATUS", "INTERNAL-IP"]);
        assert_eq!(a.rows[0], ["ns", "n1", "Ready", "10.0.0.1"]);
        let a = render(&plan("get pods -o name").unwrap(), &r, &table);
        assert_eq!(a.rows, [vec!["pod/n1"], vec!["pod/n2"]]);
        // A server without tables: names from the list.
        let list = json!({"kind": "PodList", "items": [{"metadata": {"name": "p"}}]});
        assert_eq!(render(&plan("get pods").unwrap(), &r, &list).rows, [vec!["pod/p"]]);
    }
}
