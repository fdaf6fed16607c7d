//! The commands themselves: dispatch, and clusters, projects, users and kubeconfigs (sessions,
//! members, tokens, cloud credentials and joining clusters have their own modules).

use http::Method;
use rancher_core::model::Cluster;
use serde_json::{Value, json};

use super::client::ApiClient;
use super::config::{CliConfig, Context};
use super::error::CliError;
use super::hosted::{self, Engine};
use super::output::{Format, age, structured, table};
use super::{Cli, ClusterCommand, Command, KubeconfigFormat, ProjectCommand};
use super::{import, members, session, tokens};

pub(super) async fn run(cli: Cli) -> Result<String, CliError> {
    let wanted = cli.context.as_deref();
    match cli.command {
        Command::Login(args) => session::login(args).await,
        Command::Logout => session::logout(wanted).await,
        Command::Context(c) => session::context(c).await,
        Command::Cluster(c) => cluster(&logged_in(wanted)?.1, c).await,
        Command::Project(c) => project(&logged_in(wanted)?.1, c).await,
        Command::User(c) => super::users::run(&logged_in(wanted)?.1, c).await,
        Command::Wait(args) => super::wait::run(&logged_in(wanted)?.1, args).await,
        Command::Settings(c) => super::settings::run(&logged_in(wanted)?.1, c).await,
        Command::Principal(c) => super::principals::run(&logged_in(wanted)?.1, c).await,
        Command::Completion { shell } => Ok(completion(shell)),
        Command::Audit(args) => super::admin::audit(&logged_in(wanted)?.1, args).await,
        Command::Provisioner(c) => super::admin::provisioner(&logged_in(wanted)?.1, c).await,
        Command::Roletemplate(c) => super::roles::role_template(&logged_in(wanted)?.1, c).await,
        Command::Globalrole(c) => super::roles::global_role(&logged_in(wanted)?.1, c).await,
        Command::Namespace(c) => super::namespaces::run(&logged_in(wanted)?.1, c).await,
        Command::Token(c) => {
            let (ctx, client) = logged_in(wanted)?;
            match c {
                super::TokenCommand::Ls(o) => tokens::ls(&client, &ctx, o.output).await,
                super::TokenCommand::Rm { id } => tokens::rm(&client, &ctx, &id).await,
            }
        }
        Command::Credential(c) => super::credentials::run(&logged_in(wanted)?.1, c).await,
        Command::Kubeconfig { cluster, output } => kubeconfig(&logged_in(wanted)?.1, &cluster, output).await,
        Command::Kubectl(args) => {
            let (ctx, client) = logged_in(wanted)?;
            super::kubectl::run(&ctx, &client, args).await
        }
    }
}

/// The completion script for `shell`.
fn completion(shell: clap_complete::Shell) -> String {
    use clap::CommandFactory;
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "rancherctl", &mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// The context the command uses (`--context` or the current one) and a client for it.
fn logged_in(wanted: Option<&str>) -> Result<(Context, ApiClient), CliError> {
    let cfg = CliConfig::load()?;
    let ctx = cfg.select(wanted)?.clone();
    let client = ApiClient::from_context(&ctx)?;
    Ok((ctx, client))
}

pub(super) fn data(list: Value) -> Vec<Value> {
    match list.get("data") {
        Some(Value::Array(items)) => items.clone(),
        _ => Vec::new(),
    }
}

pub(super) fn str_at<'a>(v: &'a Value, path: &[&str]) -> &'a str {
    let mut cur = v;
    for p in path {
        match cur.get(p) {
            Some(next) => cur = next,
            None => return "",
        }
    }
    cur.as_str().unwrap_or("")
}

fn created(v: &Value) -> Option<jiff::Timestamp> {
    str_at(v, &["metadata", "creationTimestamp"]).parse().ok()
}

pub(super) fn list_output(
    fmt: Format,
    items: Vec<Value>,
    headers: &[&str],
    row: impl Fn(&Value) -> Vec<String>,
) -> Result<String, CliError> {
    match fmt {
        Format::Table => Ok(table(headers, &items.iter().map(row).collect::<Vec<_>>())),
        _ => structured(&fmt, &json!({ "data": items })),
    }
}

fn one_output(
    fmt: Format,
    item: Value,
    headers: &[&str],
    row: impl Fn(&Value) -> Vec<String>,
) -> Result<String, CliError> {
    match fmt {
        Format::Table => Ok(table(headers, &[row(&item)])),
        _ => structured(&fmt, &item),
    }
}

const CLUSTER_COLUMNS: &[&str] = &["NAME", "STATE", "PROVIDER", "VERSION", "NODES", "AGE"];

fn cluster_row(v: &Value) -> Vec<String> {
    let name =
        v.get("id").and_then(Value::as_str).unwrap_or_else(|| str_at(v, &["metadata", "name"])).to_owned();
    let cluster: Option<Cluster> = serde_json::from_value(v.clone()).ok();
    let dash = |s: &str| if s.is_empty() { "-".to_owned() } else { s.to_owned() };
    let state = cluster.as_ref().map_or("unknown".to_owned(), |c| c.state().to_string());
    let provider = dash(
        cluster
            .as_ref()
            .map(|c| {
                if c.status.provider.is_empty() { c.status.driver.clone() } else { c.status.provider.clone() }
            })
            .as_deref()
            .unwrap_or(""),
    );
    let version =
        dash(cluster.as_ref().and_then(|c| c.status.version.as_ref()).map_or("", |v| v.git_version.as_str()));
    let nodes = cluster.as_ref().and_then(|c| c.status.node_count).map_or("-".to_owned(), |n| n.to_string());
    vec![name, state, provider, version, nodes, age(created(v))]
}

/// The cluster's provisioning steps (one per host for clusters built on hosts) as a table after a
/// blank line; empty when the cluster has none.
fn provisioning_steps(v: &Value) -> String {
    let Some(p) = v.pointer("/status/provisioning") else { return String::new() };
    let steps = p.get("steps").and_then(Value::as_array).cloned().unwrap_or_default();
    if steps.is_empty() {
        return String::new();
    }
    let rows: Vec<Vec<String>> = steps
        .iter()
        .map(|s| ["name", "state", "message"].map(|k| str_at(s, &[k]).to_owned()).to_vec())
        .collect();
    let message = str_at(p, &["message"]);
    format!("\n{message}\n{}", table(&["STEP", "STATE", "DETAIL"], &rows))
}

async fn cluster(client: &ApiClient, cmd: ClusterCommand) -> Result<String, CliError> {
    match cmd {
        ClusterCommand::Ls(o) => {
            let items = data(client.call(Method::GET, "/v3/clusters", None).await?);
            list_output(o.output, items, CLUSTER_COLUMNS, cluster_row)
        }
        ClusterCommand::Create { name, description, rke: Some(file), no_wait, timeout, out, .. } => {
            let wait = (!no_wait).then_some(timeout);
            super::rke::create(client, &name, &description, &file, out.output, wait).await
        }
        ClusterCommand::Create { name, description, gke: Some(file), no_wait, timeout, out, .. } => {
            let wait = (!no_wait).then_some(timeout);
            hosted::create(client, &name, &description, Engine::Gke, &file, out.output, wait).await
        }
        ClusterCommand::Create { name, description, aks: Some(file), no_wait, timeout, out, .. } => {
            let wait = (!no_wait).then_some(timeout);
            hosted::create(client, &name, &description, Engine::Aks, &file, out.output, wait).await
        }
        ClusterCommand::Create { name, description, eks: Some(file), no_wait, timeout, out, .. } => {
            let wait = (!no_wait).then_some(timeout);
            hosted::create(client, &name, &description, Engine::Eks, &file, out.output, wait).await
        }
        ClusterCommand::Update { name, rke, gke, aks, eks, no_wait, timeout, out } => {
            let wait = (!no_wait).then_some(timeout);
            let hosted = [(gke, Engine::Gke), (aks, Engine::Aks), (eks, Engine::Eks)]
                .into_iter()
                .find_map(|(file, engine)| file.map(|f| (f, engine)));
            match (rke, hosted) {
                (Some(file), _) => super::rke::update(client, &name, &file, out.output, wait).await,
                (None, Some((file, engine))) => {
                    hosted::update(client, &name, engine, &file, out.output, wait).await
                }
                (None, None) => {
                    Err(CliError::Input("give the new config: --rke, --gke, --aks or --eks FILE".into()))
                }
            }
        }
        ClusterCommand::RotateCerts { name, new_ca, services, no_wait, timeout } => {
            super::certs::rotate(client, &name, new_ca, &services, (!no_wait).then_some(timeout)).await
        }
        ClusterCommand::Certs { name, out } => super::certs::show(client, &name, out.output).await,
        ClusterCommand::Rkestate { name, file } => super::rke::rkestate(client, &name, file.as_deref()).await,
        ClusterCommand::AdminKubeconfig { name, file } => {
            super::rke::admin_kubeconfig(client, &name, file.as_deref()).await
        }
        ClusterCommand::Create { name, description, import, out, .. } => {
            import::create(client, &name, &description, import, out.output).await
        }
        ClusterCommand::ImportCommand { name, out } => {
            import::import_command(client, &name, out.output).await
        }
        ClusterCommand::Edit(args) => super::cluster_edit::edit(client, args).await,
        ClusterCommand::Members(c) => members::cluster(client, c).await,
        ClusterCommand::Get { name, out } => {
            let c = client.call(Method::GET, &format!("/v3/clusters/{}", path_segment(&name)?), None).await?;
            let steps = provisioning_steps(&c);
            let mut shown = one_output(out.output.clone(), c, CLUSTER_COLUMNS, cluster_row)?;
            if out.output == Format::Table {
                shown.push_str(&steps);
            }
            Ok(shown)
        }
        ClusterCommand::Rm { name, force } => {
            if force {
                super::nodes::abandon(client, &name, &[]).await?;
            }
            client.call(Method::DELETE, &format!("/v3/clusters/{}", path_segment(&name)?), None).await?;
            Ok(format!("cluster {name} deleted\n"))
        }
        ClusterCommand::Node(c) => super::nodes::run(client, c).await,
        ClusterCommand::Snapshot(c) => super::snapshots::run(client, c).await,
    }
}

/// `rancherctl kubeconfig CLUSTER`: the kubeconfig YAML the server generates, as is, or as JSON.
async fn kubeconfig(client: &ApiClient, cluster: &str, fmt: KubeconfigFormat) -> Result<String, CliError> {
    let path = format!("/v3/clusters/{}?action=generateKubeconfig", path_segment(cluster)?);
    let out = client.call(Method::POST, &path, None).await?;
    let config = out
        .get("config")
        .and_then(Value::as_str)
        .ok_or_else(|| CliError::Http("the server's generateKubeconfig answer has no \"config\"".into()))?;
    if fmt == KubeconfigFormat::Json {
        let doc: Value = serde_saphyr::from_str(config)
            .map_err(|e| CliError::Http(format!("the server's kubeconfig is not YAML: {e}")))?;
        return structured(&Format::Json, &doc);
    }
    let mut config = config.to_owned();
    if !config.ends_with('\n') {
        config.push('\n');
    }
    Ok(config)
}

/// Refuses values that would change the request path.
pub(super) fn path_segment(s: &str) -> Result<&str, CliError> {
    if s.is_empty() || s.contains(['/', '?', '#', '%', ' ']) {
        return Err(CliError::Input(format!("{s:?} is not a valid name")));
    }
    Ok(s)
}

const PROJECT_COLUMNS: &[&str] = &["ID", "NAME", "CLUSTER", "AGE"];

fn project_row(v: &Value) -> Vec<String> {
    vec![
        str_at(v, &["id"]).to_owned(),
        str_at(v, &["spec", "displayName"]).to_owned(),
        str_at(v, &["spec", "clusterName"]).to_owned(),
        age(created(v)),
    ]
}

fn split_project(id: &str) -> Result<(&str, &str), CliError> {
    id.split_once(':')
        .filter(|(c, p)| !c.is_empty() && !p.is_empty())
        .ok_or_else(|| CliError::Input(format!("{id:?}: a project is named CLUSTER:NAME")))
}

async fn project(client: &ApiClient, cmd: ProjectCommand) -> Result<String, CliError> {
    match cmd {
        ProjectCommand::Members(c) => members::project(client, c).await,
        ProjectCommand::Ls { cluster, out } => {
            let items: Vec<Value> = data(client.call(Method::GET, "/v3/projects", None).await?)
                .into_iter()
                .filter(|p| cluster.as_deref().is_none_or(|c| str_at(p, &["spec", "clusterName"]) == c))
                .collect();
            list_output(out.output, items, PROJECT_COLUMNS, project_row)
        }
        ProjectCommand::Create { cluster, name, display_name, out } => {
            let (cluster, name) = match (cluster.split_once(':'), name) {
                (Some((c, n)), None) => (c.to_owned(), n.to_owned()),
                (None, Some(n)) => (cluster, n),
                _ => return Err(CliError::Input("give CLUSTER NAME: `project create edge team`".into())),
            };
            split_project(&format!("{cluster}:{name}"))?;
            let body = json!({
                "clusterId": cluster,
                "name": display_name.as_deref().unwrap_or(&name),
            });
            let created = client.call(Method::POST, "/v3/projects", Some(&body)).await?;
            match out.output {
                Format::Table => Ok(format!(
                    "project {} created ({})\n",
                    str_at(&created, &["id"]),
                    str_at(&created, &["spec", "displayName"])
                )),
                _ => structured(&out.output, &created),
            }
        }
        ProjectCommand::Edit { id, display_name, description } => {
            if display_name.is_none() && description.is_none() {
                return Err(CliError::Input(
                    "nothing to change: give --display-name or --description".into(),
                ));
            }
            let (cluster, name) = split_project(&id)?;
            let found = super::namespaces::resolve_project(client, cluster, name).await?;
            let (cluster, name) = split_project(&found)?;
            let path = format!("/v3/projects/{}:{}", path_segment(cluster)?, path_segment(name)?);
            let mut project = client.call(Method::GET, &path, None).await?;
            if let Some(d) = display_name {
                project["spec"]["displayName"] = Value::String(d);
            }
            if let Some(d) = description {
                project["spec"]["description"] = Value::String(d);
            }
            client.call(Method::PUT, &path, Some(&project)).await?;
            Ok(format!("project {found} updated\n"))
        }
        ProjectCommand::Rm { id } => {
            let (cluster, name) = split_project(&id)?;
            // A display name is looked up; an id the caller cannot list is tried as given.
            let id = match super::namespaces::resolve_project(client, cluster, name).await {
                Ok(found) => found,
                Err(CliError::Input(m)) if m.starts_with("no project") => id.clone(),
                Err(e) => return Err(e),
            };
            let (cluster, name) = split_project(&id)?;
            let path = format!("/v3/projects/{}:{}", path_segment(cluster)?, path_segment(name)?);
            client.call(Method::DELETE, &path, None).await?;
            Ok(format!("project {id} deleted\n"))
        }
    }
}
