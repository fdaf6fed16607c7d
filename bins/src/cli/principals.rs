//! `rancherctl principal search`: find users and groups in every identity provider the server has
//! (local, LDAP, GitHub, OIDC) by name — the ids members and bindings are given with.

use http::Method;
use serde_json::json;

use super::OutputArg;
use super::client::ApiClient;
use super::commands::{data, list_output, str_at};
use super::error::CliError;

/// `rancherctl principal …`.
#[derive(Debug, clap::Subcommand)]
pub enum PrincipalCommand {
    /// Search users and groups by name (non-admins see exact matches only).
    Search {
        /// The name, or its beginning.
        name: String,
        /// Only users or only groups.
        #[arg(long = "type", value_parser = ["user", "group"])]
        kind: Option<String>,
        /// Output format.
        #[command(flatten)]
        out: OutputArg,
    },
}

/// Runs `rancherctl principal …`.
pub(super) async fn run(client: &ApiClient, cmd: PrincipalCommand) -> Result<String, CliError> {
    let PrincipalCommand::Search { name, kind, out } = cmd;
    if name.trim().is_empty() {
        return Err(CliError::Input("search for a name that is not empty".into()));
    }
    let mut body = json!({ "name": name });
    if let Some(k) = &kind {
        body["principalType"] = json!(k);
    }
    let found = data(client.call(Method::POST, "/v3/principals?action=search", Some(&body)).await?);
    list_output(out.output, found, &["ID", "LOGIN NAME", "NAME", "TYPE", "PROVIDER"], |p| {
        ["id", "loginName", "name", "principalType", "provider"].map(|k| str_at(p, &[k]).to_owned()).to_vec()
    })
}
