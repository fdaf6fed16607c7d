//! `rancherctl namespace ls|move`: a connected cluster's namespaces and the projects they are in
//! (`GET /v3/clusters/<c>/namespaces`, `POST /v3/clusters/<c>/namespaces/<ns>?action=move`), and
//! finding a project by its id or display name.

use clap::Subcommand;
use http::Method;
use serde_json::{Value, json};

use super::OutputArg;
use super::client::ApiClient;
use super::error::CliError;
use super::output::{Format, structured, table};

/// `rancherctl namespace …`.
#[derive(Debug, Subcommand)]
pub enum NamespaceCommand {
    /// List a connected cluster's namespaces and their projects (those of your projects; all of
    /// them for cluster owners and admins).
    #[command(alias = "list")]
    Ls {
        /// The cluster's id.
        cluster: String,
        /// Output format.
        #[command(flatten)]
        out: OutputArg,
    },
    /// Move a namespace into a project, or out of every project with --none.
    Move {
        /// The cluster's id.
        cluster: String,
        /// The namespace.
        namespace: String,
        /// The project: its id (`CLUSTER:p-xxxxx` or `p-xxxxx`) or its display name.
        #[arg(required_unless_present = "none")]
        project: Option<String>,
        /// Take the namespace out of every project.
        #[arg(long, conflicts_with = "project")]
        none: bool,
        /// Output format.
        #[command(flatten)]
        out: OutputArg,
    },
}

const COLUMNS: &[&str] = &["NAME", "PROJECT", "STATE"];

fn text<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

/// Refuses values that would change the request path.
fn segment(s: &str) -> Result<&str, CliError> {
    if s.is_empty() || s.contains(['/', '?', '#', '%', ' ']) {
        return Err(CliError::Input(format!("{s:?} is not a valid name")));
    }
    Ok(s)
}

/// The id (`CLUSTER:p-xxxxx`) of the project of `cluster` that `given` names: its id, its name
/// (`p-xxxxx`) or its display name — exactly one of the projects the caller can see.
///
/// # Errors
/// [`CliError::Input`] when no project, or more than one, has that display name.
pub(crate) async fn resolve_project(
    client: &ApiClient,
    cluster: &str,
    given: &str,
) -> Result<String, CliError> {
    let list = client.call(Method::GET, "/v3/projects", None).await?;
    let projects: Vec<&Value> = list
        .get("data")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter().filter(|p| text(p, "id").split_once(':').is_some_and(|(c, _)| c == cluster)).collect()
        })
        .unwrap_or_default();
    let by_id = |id: &str| projects.iter().find(|p| text(p, "id") == id).map(|p| text(p, "id").to_owned());
    if let Some(id) = by_id(given).or_else(|| by_id(&format!("{cluster}:{given}"))) {
        return Ok(id);
    }
    let display = given.strip_prefix(&format!("{cluster}:")).unwrap_or(given);
    let named: Vec<&str> = projects
        .iter()
        .filter(|p| p.pointer("/spec/displayName").and_then(Value::as_str) == Some(display))
        .map(|p| text(p, "id"))
        .collect();
    match named.as_slice() {
        [one] => Ok((*one).to_owned()),
        [] => {
            let known: Vec<String> = projects
                .iter()
                .map(|p| {
                    let shown = p.pointer("/spec/displayName").and_then(Value::as_str).unwrap_or("");
                    format!("{} ({shown})", text(p, "id"))
                })
                .collect();
            Err(CliError::Input(if known.is_empty() {
                format!("no project {display:?} in cluster {cluster:?}, which has no projects you can see")
            } else {
                format!("no project {display:?} in cluster {cluster:?} (there: {})", known.join(", "))
            }))
        }
        many => Err(CliError::Input(format!(
            "{} projects of cluster {cluster:?} are named {display:?}: give one of their ids ({})",
            many.len(),
            many.join(", ")
        ))),
    }
}

/// Runs `rancherctl namespace …`; returns what to print.
pub(super) async fn run(client: &ApiClient, cmd: NamespaceCommand) -> Result<String, CliError> {
    match cmd {
        NamespaceCommand::Ls { cluster, out } => {
            let fmt = out.output;
            let path = format!("/v3/clusters/{}/namespaces", segment(&cluster)?);
            let list = client.call(Method::GET, &path, None).await?;
            let items = list.get("data").and_then(Value::as_array).cloned().unwrap_or_default();
            match fmt {
                Format::Table => {
                    let rows: Vec<Vec<String>> = items
                        .iter()
                        .map(|n| {
                            let project = n.get("projectId").and_then(Value::as_str).unwrap_or("-");
                            vec![text(n, "name").to_owned(), project.to_owned(), text(n, "state").to_owned()]
                        })
                        .collect();
                    Ok(table(COLUMNS, &rows))
                }
                _ => structured(&fmt, &json!({ "data": items })),
            }
        }
        NamespaceCommand::Move { cluster, namespace, project, none, out } => {
            let fmt = out.output;
            let to = match (project, none) {
                (Some(p), false) => Some(resolve_project(client, &cluster, &p).await?),
                (None, true) => None,
                _ => return Err(CliError::Input("name a PROJECT, or --none".into())),
            };
            let path = format!(
                "/v3/clusters/{}/namespaces/{}?action=move",
                segment(&cluster)?,
                segment(&namespace)?
            );
            let moved = client.call(Method::POST, &path, Some(&json!({ "projectId": to }))).await?;
            match (&fmt, &to) {
                (Format::Table, Some(p)) => Ok(format!("namespace {namespace} moved to project {p}\n")),
                (Format::Table, None) => Ok(format!("namespace {namespace} is in no project now\n")),
                _ => structured(&fmt, &moved),
            }
        }
    }
}
