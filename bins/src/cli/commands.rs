//! The commands themselves.

use std::io::BufRead;

use http::Method;
use rancher_core::model::Cluster;
use serde_json::{Value, json};

use super::client::ApiClient;
use super::config::CliConfig;
use super::error::CliError;
use super::output::{Format, age, structured, table};
use super::{Cli, ClusterCommand, Command, LoginArgs, ProjectCommand, UserCommand};

pub(super) async fn run(cli: Cli) -> Result<String, CliError> {
    let fmt = cli.output;
    match cli.command {
        Command::Login(args) => login(args).await,
        Command::Logout => logout().await,
        Command::Cluster(c) => cluster(&logged_in()?, fmt, c).await,
        Command::Project(c) => project(&logged_in()?, fmt, c).await,
        Command::User(c) => user(&logged_in()?, fmt, c).await,
        Command::Namespace(c) => super::namespaces::run(&logged_in()?, fmt, c).await,
        Command::Kubeconfig { cluster } => kubeconfig(&logged_in()?, &cluster).await,
    }
}

fn logged_in() -> Result<ApiClient, CliError> {
    ApiClient::from_config(&CliConfig::load()?)
}

async fn login(args: LoginArgs) -> Result<String, CliError> {
    let cacert = match &args.cacert {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .map_err(|e| CliError::Input(format!("--cacert {}: {e}", path.display())))?,
        ),
        None => None,
    };
    let client = ApiClient::new(&args.server, cacert.as_deref(), args.insecure, None)?;
    let (token, who) = if args.oidc {
        super::oidc_login::login(&client, super::oidc_login::CALLBACK_TIMEOUT).await?
    } else {
        password_login(&client, &args).await?
    };
    let cfg = CliConfig { server: client.base().to_owned(), token, cacert, insecure: args.insecure };
    let path = cfg.save()?;
    Ok(format!("logged in to {} as {who} (saved to {})\n", cfg.server, path.display()))
}

/// Username and password login: the token and the username.
async fn password_login(client: &ApiClient, args: &LoginArgs) -> Result<(String, String), CliError> {
    let username = args.username.clone().ok_or_else(|| CliError::Input("--username is required".into()))?;
    let password = match (args.password.clone(), args.password_stdin) {
        (Some(p), _) => p,
        (None, true) => {
            let mut line = String::new();
            std::io::stdin()
                .lock()
                .read_line(&mut line)
                .map_err(|e| CliError::Input(format!("reading stdin: {e}")))?;
            line.trim_end_matches(['\r', '\n']).to_owned()
        }
        (None, false) => {
            return Err(CliError::Input(
                "no password: pass --password, set RANCHER_PASSWORD, or use --password-stdin".into(),
            ));
        }
    };
    let body = json!({
        "username": username,
        "password": password,
        "description": "rancherctl login",
    });
    let resp = client.call(Method::POST, "/v3-public/localProviders/local?action=login", Some(&body)).await?;
    let token = resp
        .get("token")
        .and_then(Value::as_str)
        .ok_or_else(|| CliError::Http("the login answer carried no token".into()))?;
    Ok((token.to_owned(), username))
}

async fn logout() -> Result<String, CliError> {
    let cfg = CliConfig::load()?;
    let client = ApiClient::from_config(&cfg)?;
    // An already-invalid token is as good as revoked.
    match client.call(Method::POST, "/v3/tokens?action=logout", Some(&json!({}))).await {
        Ok(_) | Err(CliError::SessionInvalid(_)) => {}
        Err(e) => return Err(e),
    }
    CliConfig::remove()?;
    Ok("logged out\n".into())
}

fn data(list: Value) -> Vec<Value> {
    match list.get("data") {
        Some(Value::Array(items)) => items.clone(),
        _ => Vec::new(),
    }
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> &'a str {
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

fn list_output(
    fmt: Format,
    items: Vec<Value>,
    headers: &[&str],
    row: impl Fn(&Value) -> Vec<String>,
) -> Result<String, CliError> {
    match fmt {
        Format::Table => Ok(table(headers, &items.iter().map(row).collect::<Vec<_>>())),
        _ => structured(fmt, &json!({ "data": items })),
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
        _ => structured(fmt, &item),
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

async fn cluster(client: &ApiClient, fmt: Format, cmd: ClusterCommand) -> Result<String, CliError> {
    match cmd {
        ClusterCommand::Ls => {
            let items = data(client.call(Method::GET, "/v3/clusters", None).await?);
            list_output(fmt, items, CLUSTER_COLUMNS, cluster_row)
        }
        ClusterCommand::Create { name, description, import } => {
            let mut body = json!({
                "metadata": { "name": name },
                "spec": { "displayName": name, "description": description },
            });
            if import {
                body["spec"]["importedConfig"] = json!({});
            }
            let created = client.call(Method::POST, "/v3/clusters", Some(&body)).await?;
            if !import {
                return match fmt {
                    Format::Table => Ok(format!("cluster {name} created\n")),
                    _ => structured(fmt, &created),
                };
            }
            let id = created.get("id").and_then(Value::as_str).unwrap_or(&name).to_owned();
            let crt = client
                .call(
                    Method::GET,
                    &format!("/v3/clusterregistrationtokens/{}:default-token", path_segment(&id)?),
                    None,
                )
                .await?;
            match fmt {
                Format::Table => Ok(format!(
                    "cluster {name} created; to import it, run against that cluster:\n  {}\n\
                     or, when kubectl does not trust this server's certificate:\n  {}\n",
                    str_at(&crt, &["status", "command"]),
                    str_at(&crt, &["status", "insecureCommand"]),
                )),
                _ => structured(fmt, &json!({ "cluster": created, "clusterRegistrationToken": crt })),
            }
        }
        ClusterCommand::Get { name } => {
            let c = client.call(Method::GET, &format!("/v3/clusters/{}", path_segment(&name)?), None).await?;
            one_output(fmt, c, CLUSTER_COLUMNS, cluster_row)
        }
        ClusterCommand::Rm { name } => {
            client.call(Method::DELETE, &format!("/v3/clusters/{}", path_segment(&name)?), None).await?;
            Ok(format!("cluster {name} deleted\n"))
        }
    }
}

/// `rancherctl kubeconfig CLUSTER`: the kubeconfig YAML the server generates, as is.
async fn kubeconfig(client: &ApiClient, cluster: &str) -> Result<String, CliError> {
    let path = format!("/v3/clusters/{}?action=generateKubeconfig", path_segment(cluster)?);
    let out = client.call(Method::POST, &path, None).await?;
    let config = out
        .get("config")
        .and_then(Value::as_str)
        .ok_or_else(|| CliError::Http("the server's generateKubeconfig answer has no \"config\"".into()))?;
    let mut config = config.to_owned();
    if !config.ends_with('\n') {
        config.push('\n');
    }
    Ok(config)
}

/// Refuses values that would change the request path.
fn path_segment(s: &str) -> Result<&str, CliError> {
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

async fn project(client: &ApiClient, fmt: Format, cmd: ProjectCommand) -> Result<String, CliError> {
    match cmd {
        ProjectCommand::Ls { cluster } => {
            let items: Vec<Value> = data(client.call(Method::GET, "/v3/projects", None).await?)
                .into_iter()
                .filter(|p| cluster.as_deref().is_none_or(|c| str_at(p, &["spec", "clusterName"]) == c))
                .collect();
            list_output(fmt, items, PROJECT_COLUMNS, project_row)
        }
        ProjectCommand::Create { cluster, name, display_name } => {
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
            match fmt {
                Format::Table => Ok(format!(
                    "project {} created ({})\n",
                    str_at(&created, &["id"]),
                    str_at(&created, &["spec", "displayName"])
                )),
                _ => structured(fmt, &created),
            }
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

const USER_COLUMNS: &[&str] = &["ID", "USERNAME", "DISPLAY NAME", "ENABLED", "AGE"];

fn user_row(v: &Value) -> Vec<String> {
    vec![
        str_at(v, &["id"]).to_owned(),
        str_at(v, &["spec", "username"]).to_owned(),
        str_at(v, &["spec", "displayName"]).to_owned(),
        v.pointer("/spec/enabled").and_then(Value::as_bool).unwrap_or(true).to_string(),
        age(created(v)),
    ]
}

async fn user(client: &ApiClient, fmt: Format, cmd: UserCommand) -> Result<String, CliError> {
    match cmd {
        UserCommand::Ls => {
            let items = data(client.call(Method::GET, "/v3/users", None).await?);
            list_output(fmt, items, USER_COLUMNS, user_row)
        }
        UserCommand::Create { username, password, display_name } => {
            let body = json!({
                "spec": {
                    "username": username,
                    "password": password,
                    "displayName": display_name.as_deref().unwrap_or(&username),
                    "enabled": true,
                },
            });
            let created = client.call(Method::POST, "/v3/users", Some(&body)).await?;
            match fmt {
                Format::Table => Ok(format!("user {username} created ({})\n", str_at(&created, &["id"]))),
                _ => structured(fmt, &created),
            }
        }
        UserCommand::Rm { user } => {
            let users = data(client.call(Method::GET, "/v3/users", None).await?);
            let id = users
                .iter()
                .find(|u| str_at(u, &["spec", "username"]) == user || str_at(u, &["id"]) == user)
                .map(|u| str_at(u, &["id"]).to_owned())
                .ok_or_else(|| {
                    CliError::Api(Box::new(rancher_core::Status::not_found(format!(
                        "user {user:?} not found"
                    ))))
                })?;
            client.call(Method::DELETE, &format!("/v3/users/{}", path_segment(&id)?), None).await?;
            Ok(format!("user {user} deleted\n"))
        }
    }
}
