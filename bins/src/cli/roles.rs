//! `rancherctl roletemplate …` and `rancherctl globalrole …`: the role catalogue (what a cluster or
//! project member may do downstream; what a user may do on the server) and who holds which global
//! role. The server applies Kubernetes' escalation rule to every change: a rule you do not hold
//! yourself cannot be written into a role or granted, and its refusal is exit code 4.

use std::path::{Path, PathBuf};

use clap::Subcommand;
use http::Method;
use rancher_core::model::PolicyRule;
use serde_json::{Value, json};

use super::OutputArg;
use super::client::ApiClient;
use super::commands::{data, list_output, path_segment, str_at};
use super::error::CliError;
use super::members::resolve_user;
use super::output::{Format, structured, table};

/// The management API's group: global roles' rules name its resources.
const MGMT: &str = "management.cattle.io";
/// The most a rule file may hold.
const MAX_RULE_FILE: u64 = 1 << 20;

/// `rancherctl roletemplate …`.
#[derive(Debug, Subcommand)]
pub enum RoleTemplateCommand {
    /// List role templates (hidden ones with --all).
    #[command(alias = "list")]
    Ls {
        /// Only `cluster` or `project` templates (the template's `context`).
        #[arg(long, value_parser = ["cluster", "project"])]
        scope: Option<String>,
        /// Hidden templates too (the external ones standing for Kubernetes' own roles).
        #[arg(long)]
        all: bool,
        /// Output format.
        #[command(flatten)]
        out: OutputArg,
    },
    /// Show one role template and its rules.
    Get {
        /// The template's name.
        name: String,
        /// Output format.
        #[command(flatten)]
        out: OutputArg,
    },
    /// Create a role template. Rules come from --verb/--resource (one rule per API group, as
    /// `kubectl create role` makes them: `pods` is the core group, `deployments.apps` the `apps`
    /// group) and from --rules-file; --inherit adds other templates' rules.
    Create {
        /// The template's name (a DNS-1123 label).
        name: String,
        /// Where it applies: `cluster` or `project` (the template's `context`).
        #[arg(long, value_parser = ["cluster", "project"])]
        scope: String,
        /// What the role says.
        #[command(flatten)]
        spec: RoleArgs,
        /// Include this template's rules (repeatable).
        #[arg(long = "inherit", value_name = "TEMPLATE")]
        inherits: Vec<String>,
        /// No new bindings may use it.
        #[arg(long)]
        locked: bool,
        /// Hidden from pickers.
        #[arg(long)]
        hidden: bool,
        /// Output format.
        #[command(flatten)]
        out: OutputArg,
    },
    /// Change a role template: its names, its rules (--rules-file replaces them all), whether it is
    /// locked or hidden. The server checks the new rules as for a new template.
    Edit {
        /// The template's name.
        name: String,
        /// What changes.
        #[command(flatten)]
        edit: RoleEdit,
        /// No new bindings may use it.
        #[arg(long, value_name = "true|false")]
        locked: Option<bool>,
        /// Hidden from pickers.
        #[arg(long, value_name = "true|false")]
        hidden: Option<bool>,
    },
    /// Delete a role template (builtin ones cannot be deleted).
    #[command(alias = "delete")]
    Rm {
        /// The template's name.
        name: String,
    },
}

/// What `edit` may change in any role.
#[derive(Debug, clap::Args)]
pub struct RoleEdit {
    /// The name people see.
    #[arg(long)]
    display_name: Option<String>,
    /// Free text.
    #[arg(long)]
    description: Option<String>,
    /// The new rules, replacing the old ones (a YAML or JSON list; `-` reads standard input).
    #[arg(long, value_name = "FILE")]
    rules_file: Option<PathBuf>,
}

impl RoleEdit {
    /// Applies the edit to `role` (as the API shows it); false when nothing was asked.
    fn apply(&self, role: &mut Value) -> Result<bool, CliError> {
        let mut changed = false;
        if let Some(d) = &self.display_name {
            role["spec"]["displayName"] = Value::String(d.clone());
            changed = true;
        }
        if let Some(d) = &self.description {
            role["spec"]["description"] = Value::String(d.clone());
            changed = true;
        }
        if let Some(f) = &self.rules_file {
            role["spec"]["rules"] =
                serde_json::to_value(rules_file(f)?).map_err(|e| CliError::Http(e.to_string()))?;
            changed = true;
        }
        Ok(changed)
    }
}

/// Reads `path`, applies `edit` (and `more`), writes it back.
async fn edit_role(
    client: &ApiClient,
    path: &str,
    edit: &RoleEdit,
    more: impl FnOnce(&mut Value) -> bool,
) -> Result<(), CliError> {
    let mut role = client.call(Method::GET, path, None).await?;
    let changed = edit.apply(&mut role)?;
    if !(more(&mut role) || changed) {
        return Err(CliError::Input("nothing to change: give a flag of what changes".into()));
    }
    client.call(Method::PUT, path, Some(&role)).await?;
    Ok(())
}

/// `rancherctl globalrole …`.
#[derive(Debug, Subcommand)]
pub enum GlobalRoleCommand {
    /// List global roles.
    #[command(alias = "list")]
    Ls(OutputArg),
    /// Show one global role and its rules.
    Get {
        /// The role's name.
        name: String,
        /// Output format.
        #[command(flatten)]
        out: OutputArg,
    },
    /// Create a global role. Rules as for `roletemplate create`, but a resource without a group
    /// names the management API's (`clusters` is `clusters.management.cattle.io`).
    Create {
        /// The role's name (a DNS-1123 label).
        name: String,
        /// What the role says.
        #[command(flatten)]
        spec: RoleArgs,
        /// Give it to every new user.
        #[arg(long)]
        new_user_default: bool,
        /// A cluster-context role template its holders get in every cluster (repeatable).
        #[arg(long = "inherit-cluster-role", value_name = "TEMPLATE")]
        inherited_cluster_roles: Vec<String>,
        /// Output format.
        #[command(flatten)]
        out: OutputArg,
    },
    /// Change a global role: its names, its rules (--rules-file replaces them all), whether new users
    /// get it. The server checks the new rules as for a new role.
    Edit {
        /// The role's name.
        name: String,
        /// What changes.
        #[command(flatten)]
        edit: RoleEdit,
        /// Give it to every new user.
        #[arg(long, value_name = "true|false")]
        new_user_default: Option<bool>,
    },
    /// Delete a global role (builtin ones cannot be deleted).
    #[command(alias = "delete")]
    Rm {
        /// The role's name.
        name: String,
    },
    /// Give a user a global role.
    Bind {
        /// The global role.
        role: String,
        /// A login name or a user id (`u-xxxxx`).
        user: String,
    },
    /// Take a global role from a user.
    Unbind {
        /// The global role.
        role: String,
        /// A login name or a user id (`u-xxxxx`).
        user: String,
    },
    /// Who holds which global role.
    Bindings {
        /// Only this user's (a login name or a user id).
        #[arg(long)]
        user: Option<String>,
        /// Only this role's.
        #[arg(long)]
        role: Option<String>,
        /// Output format.
        #[command(flatten)]
        out: OutputArg,
    },
}

/// What a new role says, shared by role templates and global roles.
#[derive(Debug, clap::Args)]
pub struct RoleArgs {
    /// The name people see.
    #[arg(long, default_value = "")]
    display_name: String,
    /// Free text.
    #[arg(long, default_value = "")]
    description: String,
    /// Verbs of the --resource rule: get, list, watch, create, update, patch, delete, * (repeatable
    /// or comma-separated).
    #[arg(long = "verb", value_delimiter = ',', requires = "resources")]
    verbs: Vec<String>,
    /// Resources of the rule: `pods`, `deployments.apps`, `pods/log`, `*` (repeatable or
    /// comma-separated).
    #[arg(long = "resource", value_delimiter = ',', requires = "verbs")]
    resources: Vec<String>,
    /// Limit the --resource rule to these object names.
    #[arg(long = "resource-name", value_delimiter = ',', requires = "resources")]
    resource_names: Vec<String>,
    /// More rules, as a YAML or JSON list (`- verbs: [get]\n  apiGroups: [""]\n  resources: [pods]`);
    /// `-` reads standard input.
    #[arg(long, value_name = "FILE")]
    rules_file: Option<PathBuf>,
}

impl RoleArgs {
    /// The rules the flags and the file say; `default_group` for a resource named without one.
    fn rules(&self, default_group: &str) -> Result<Vec<PolicyRule>, CliError> {
        let mut rules = verb_rules(&self.verbs, &self.resources, &self.resource_names, default_group)?;
        if let Some(file) = &self.rules_file {
            rules.extend(rules_file(file)?);
        }
        Ok(rules)
    }
}

/// kubectl's `create role --verb --resource`: one rule per API group, the resources' names split as
/// `resource[/subresource].group`.
fn verb_rules(
    verbs: &[String],
    resources: &[String],
    names: &[String],
    default_group: &str,
) -> Result<Vec<PolicyRule>, CliError> {
    let mut by_group: Vec<(String, Vec<String>)> = Vec::new();
    for r in resources {
        if r.is_empty() || r.contains(char::is_whitespace) {
            return Err(CliError::Input(format!("{r:?} is not a resource")));
        }
        // kubectl's spelling: `resource[.group][/subresource]` (`deployments.apps/scale`).
        let (named, sub) = match r.split_once('/') {
            Some((n, s)) => (n, Some(s)),
            None => (r.as_str(), None),
        };
        let (base, group) = match named.split_once('.') {
            Some((res, group)) if named != "*" => (res, group),
            _ => (named, default_group),
        };
        if base.is_empty() || sub.is_some_and(str::is_empty) {
            return Err(CliError::Input(format!("{r:?} is not a resource (resource[.group][/subresource])")));
        }
        let resource = match sub {
            Some(s) => format!("{base}/{s}"),
            None => base.to_owned(),
        };
        let resource = resource.as_str();
        match by_group.iter_mut().find(|(g, _)| g == group) {
            Some((_, list)) => list.push(resource.to_owned()),
            None => by_group.push((group.to_owned(), vec![resource.to_owned()])),
        }
    }
    for v in verbs {
        const VERBS: &[&str] = &[
            "get",
            "list",
            "watch",
            "create",
            "update",
            "patch",
            "delete",
            "deletecollection",
            "use",
            "bind",
            "escalate",
            "impersonate",
            "proxy",
            "*",
        ];
        if !VERBS.contains(&v.as_str()) {
            return Err(CliError::Input(format!("{v:?} is not a verb: use one of {}", VERBS.join(", "))));
        }
    }
    Ok(by_group
        .into_iter()
        .map(|(group, resources)| PolicyRule {
            verbs: verbs.to_vec(),
            api_groups: vec![group],
            resources,
            resource_names: names.to_vec(),
            non_resource_urls: Vec::new(),
        })
        .collect())
}

fn rules_file(path: &Path) -> Result<Vec<PolicyRule>, CliError> {
    let (text, from) = super::input::read_text(path, MAX_RULE_FILE, "--rules-file")?;
    let rules: Vec<PolicyRule> = serde_saphyr::from_str(&text).map_err(|e| {
        CliError::Input(format!("{from}: not a list of rules (verbs, apiGroups, resources): {e}"))
    })?;
    if let Some((i, _)) = rules.iter().enumerate().find(|(_, r)| r.verbs.is_empty()) {
        return Err(CliError::Input(format!("{from}: rule {} has no verbs", i + 1)));
    }
    Ok(rules)
}

const TEMPLATE_COLUMNS: &[&str] = &["NAME", "CONTEXT", "DISPLAY NAME", "RULES", "INHERITS", "FLAGS"];

fn template_row(v: &Value) -> Vec<String> {
    let spec = &v["spec"];
    let flags: Vec<&str> = ["builtin", "locked", "hidden", "external"]
        .into_iter()
        .filter(|f| spec[f].as_bool() == Some(true))
        .collect();
    vec![
        str_at(v, &["metadata", "name"]).to_owned(),
        str_at(spec, &["context"]).to_owned(),
        str_at(spec, &["displayName"]).to_owned(),
        spec["rules"].as_array().map_or(0, Vec::len).to_string(),
        joined(&spec["roleTemplateNames"]),
        if flags.is_empty() { "-".into() } else { flags.join(",") },
    ]
}

const GLOBAL_COLUMNS: &[&str] = &["NAME", "DISPLAY NAME", "RULES", "NEW USERS", "CLUSTER ROLES", "BUILTIN"];

fn global_row(v: &Value) -> Vec<String> {
    let spec = &v["spec"];
    let yes = |f: &str| if spec[f].as_bool() == Some(true) { "yes" } else { "no" }.to_owned();
    vec![
        str_at(v, &["metadata", "name"]).to_owned(),
        str_at(spec, &["displayName"]).to_owned(),
        spec["rules"].as_array().map_or(0, Vec::len).to_string(),
        yes("newUserDefault"),
        joined(&spec["inheritedClusterRoles"]),
        yes("builtin"),
    ]
}

fn joined(list: &Value) -> String {
    let names: Vec<&str> =
        list.as_array().map(|a| a.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
    if names.is_empty() { "-".into() } else { names.join(",") }
}

/// A role's rules as a table (`kubectl describe` shows them so).
fn rules_table(role: &Value) -> String {
    let rules = role["spec"]["rules"].as_array().cloned().unwrap_or_default();
    if rules.is_empty() {
        return String::new();
    }
    let list = |r: &Value, key: &str| {
        let items: Vec<String> = r[key]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(|s| if s.is_empty() { "\"\"" } else { s }.to_owned())
                    .collect()
            })
            .unwrap_or_default();
        if items.is_empty() { "-".into() } else { items.join(",") }
    };
    let rows: Vec<Vec<String>> = rules
        .iter()
        .map(|r| {
            let resources = if r["nonResourceURLs"].is_array() {
                list(r, "nonResourceURLs")
            } else {
                list(r, "resources")
            };
            vec![list(r, "verbs"), list(r, "apiGroups"), resources, list(r, "resourceNames")]
        })
        .collect();
    format!("\n{}", table(&["VERBS", "API GROUPS", "RESOURCES", "NAMES"], &rows))
}

fn one(
    fmt: &Format,
    item: &Value,
    columns: &[&str],
    row: fn(&Value) -> Vec<String>,
) -> Result<String, CliError> {
    match fmt {
        Format::Table => Ok(table(columns, &[row(item)]) + &rules_table(item)),
        _ => structured(fmt, item),
    }
}

/// Runs `rancherctl roletemplate …`.
pub(super) async fn role_template(client: &ApiClient, cmd: RoleTemplateCommand) -> Result<String, CliError> {
    match cmd {
        RoleTemplateCommand::Ls { scope, all, out } => {
            let items = data(client.call(Method::GET, "/v3/roletemplates", None).await?)
                .into_iter()
                .filter(|t| all || t["spec"]["hidden"].as_bool() != Some(true))
                .filter(|t| scope.as_deref().is_none_or(|c| str_at(t, &["spec", "context"]) == c))
                .collect();
            list_output(out.output, items, TEMPLATE_COLUMNS, template_row)
        }
        RoleTemplateCommand::Get { name, out } => {
            let t = client
                .call(Method::GET, &format!("/v3/roletemplates/{}", path_segment(&name)?), None)
                .await?;
            one(&out.output, &t, TEMPLATE_COLUMNS, template_row)
        }
        RoleTemplateCommand::Create { name, scope, spec, inherits, locked, hidden, out } => {
            let rules = spec.rules("")?;
            if rules.is_empty() && inherits.is_empty() {
                return Err(CliError::Input(
                    "a role template needs rules (--verb and --resource, or --rules-file) or --inherit"
                        .into(),
                ));
            }
            let body = json!({
                "metadata": { "name": name },
                "spec": {
                    "displayName": spec.display_name, "description": spec.description, "context": scope,
                    "rules": rules, "roleTemplateNames": inherits, "locked": locked, "hidden": hidden,
                },
            });
            let created = client.call(Method::POST, "/v3/roletemplates", Some(&body)).await?;
            created_output(&out.output, &created, "role template", &name)
        }
        RoleTemplateCommand::Edit { name, edit, locked, hidden } => {
            let path = format!("/v3/roletemplates/{}", path_segment(&name)?);
            edit_role(client, &path, &edit, |r| {
                for (key, v) in [("locked", locked), ("hidden", hidden)] {
                    if let Some(v) = v {
                        r["spec"][key] = Value::Bool(v);
                    }
                }
                locked.is_some() || hidden.is_some()
            })
            .await?;
            Ok(format!("role template {name} updated\n"))
        }
        RoleTemplateCommand::Rm { name } => {
            client.call(Method::DELETE, &format!("/v3/roletemplates/{}", path_segment(&name)?), None).await?;
            Ok(format!("role template {name} deleted\n"))
        }
    }
}

fn created_output(fmt: &Format, created: &Value, what: &str, name: &str) -> Result<String, CliError> {
    match fmt {
        Format::Table => Ok(format!("{what} {name} created\n")),
        _ => structured(fmt, created),
    }
}

/// Runs `rancherctl globalrole …`.
pub(super) async fn global_role(client: &ApiClient, cmd: GlobalRoleCommand) -> Result<String, CliError> {
    match cmd {
        GlobalRoleCommand::Ls(out) => {
            let items = data(client.call(Method::GET, "/v3/globalroles", None).await?);
            list_output(out.output, items, GLOBAL_COLUMNS, global_row)
        }
        GlobalRoleCommand::Get { name, out } => {
            let r =
                client.call(Method::GET, &format!("/v3/globalroles/{}", path_segment(&name)?), None).await?;
            one(&out.output, &r, GLOBAL_COLUMNS, global_row)
        }
        GlobalRoleCommand::Create { name, spec, new_user_default, inherited_cluster_roles, out } => {
            let rules = spec.rules(MGMT)?;
            if rules.is_empty() && inherited_cluster_roles.is_empty() {
                return Err(CliError::Input(
                    "a global role needs rules (--verb and --resource, or --rules-file) or --inherit-cluster-role"
                        .into(),
                ));
            }
            let body = json!({
                "metadata": { "name": name },
                "spec": {
                    "displayName": spec.display_name, "description": spec.description, "rules": rules,
                    "newUserDefault": new_user_default, "inheritedClusterRoles": inherited_cluster_roles,
                },
            });
            let created = client.call(Method::POST, "/v3/globalroles", Some(&body)).await?;
            created_output(&out.output, &created, "global role", &name)
        }
        GlobalRoleCommand::Edit { name, edit, new_user_default } => {
            let path = format!("/v3/globalroles/{}", path_segment(&name)?);
            edit_role(client, &path, &edit, |r| {
                if let Some(v) = new_user_default {
                    r["spec"]["newUserDefault"] = Value::Bool(v);
                }
                new_user_default.is_some()
            })
            .await?;
            Ok(format!("global role {name} updated\n"))
        }
        GlobalRoleCommand::Rm { name } => {
            client.call(Method::DELETE, &format!("/v3/globalroles/{}", path_segment(&name)?), None).await?;
            Ok(format!("global role {name} deleted\n"))
        }
        GlobalRoleCommand::Bind { role, user } => {
            path_segment(&role)?;
            let id = resolve_user(client, &user).await?;
            if !bindings(client, Some(&id), Some(&role)).await?.is_empty() {
                return Ok(format!("{user} holds the global role {role} already\n"));
            }
            let body = json!({ "spec": { "userName": id, "globalRoleName": role } });
            let created = client.call(Method::POST, "/v3/globalrolebindings", Some(&body)).await?;
            Ok(format!(
                "{user} ({id}) now holds the global role {role} (binding {})\n",
                str_at(&created, &["id"])
            ))
        }
        GlobalRoleCommand::Unbind { role, user } => {
            let id = resolve_user(client, &user).await?;
            let held = bindings(client, Some(&id), Some(&role)).await?;
            if held.is_empty() {
                return Err(CliError::Api(Box::new(rancher_core::Status::not_found(format!(
                    "{user} does not hold the global role {role}"
                )))));
            }
            for b in &held {
                let path = format!("/v3/globalrolebindings/{}", path_segment(str_at(b, &["id"]))?);
                client.call(Method::DELETE, &path, None).await?;
            }
            Ok(format!("{user} ({id}) no longer holds the global role {role}\n"))
        }
        GlobalRoleCommand::Bindings { user, role, out } => {
            let id = match &user {
                Some(u) => Some(resolve_user(client, u).await?),
                None => None,
            };
            let items = bindings(client, id.as_deref(), role.as_deref()).await?;
            list_output(out.output, items, &["ID", "USER", "GROUP", "ROLE"], |b| {
                let dash = |s: &str| if s.is_empty() { "-".to_owned() } else { s.to_owned() };
                vec![
                    str_at(b, &["id"]).to_owned(),
                    dash(str_at(b, &["spec", "userName"])),
                    dash(str_at(b, &["spec", "groupPrincipalName"])),
                    str_at(b, &["spec", "globalRoleName"]).to_owned(),
                ]
            })
        }
    }
}

/// The global role bindings the caller sees, of one user and one role when given.
async fn bindings(
    client: &ApiClient,
    user: Option<&str>,
    role: Option<&str>,
) -> Result<Vec<Value>, CliError> {
    Ok(data(client.call(Method::GET, "/v3/globalrolebindings", None).await?)
        .into_iter()
        .filter(|b| user.is_none_or(|u| str_at(b, &["spec", "userName"]) == u))
        .filter(|b| role.is_none_or(|r| str_at(b, &["spec", "globalRoleName"]) == r))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(s: &[&str]) -> Vec<String> {
        s.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn verbs_and_resources_make_one_rule_per_group_as_kubectl_does() {
        let rules = verb_rules(
            &strings(&["get", "list"]),
            &strings(&["pods", "deployments.apps", "pods/log"]),
            &[],
            "",
        )
        .unwrap();
        assert_eq!(rules.len(), 2);
        assert_eq!(
            (rules[0].api_groups.clone(), rules[0].resources.clone()),
            (strings(&[""]), strings(&["pods", "pods/log"]))
        );
        assert_eq!(
            (rules[1].api_groups.clone(), rules[1].resources.clone()),
            (strings(&["apps"]), strings(&["deployments"]))
        );
        let global = verb_rules(&strings(&["*"]), &strings(&["clusters", "*"]), &[], MGMT).unwrap();
        assert_eq!(global[0].api_groups, strings(&[MGMT]));
        assert_eq!(global[0].resources, strings(&["clusters", "*"]));
        let scale =
            verb_rules(&strings(&["update"]), &strings(&["deployments.apps/scale"]), &[], "").unwrap();
        assert_eq!(
            (scale[0].api_groups.clone(), scale[0].resources.clone()),
            (strings(&["apps"]), strings(&["deployments/scale"]))
        );
        assert!(verb_rules(&strings(&["get"]), &strings(&[".apps"]), &[], "").is_err());
        let e = verb_rules(&strings(&["read"]), &strings(&["pods"]), &[], "").unwrap_err();
        assert!(e.to_string().contains("\"read\" is not a verb"), "{e}");
    }

    #[test]
    fn a_rules_file_is_a_list_of_rules_each_with_verbs() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("rules.yaml");
        std::fs::write(&file, "- verbs: [get]\n  apiGroups: [\"\"]\n  resources: [pods]\n").unwrap();
        let rules = rules_file(&file).unwrap();
        assert_eq!(rules[0].resources, strings(&["pods"]));
        std::fs::write(&file, "- apiGroups: [\"\"]\n  resources: [pods]\n").unwrap();
        assert!(rules_file(&file).unwrap_err().to_string().contains("rule 1 has no verbs"));
        std::fs::write(&file, "verbs: [get]\n").unwrap();
        assert!(rules_file(&file).unwrap_err().to_string().contains("not a list of rules"));
    }
}
