//! `rancherctl audit` (the newest records of the proxy's audit log, for admins) and `rancherctl
//! provisioner ls` (the drivers the server builds clusters with, and where their settings go).

use http::Method;

use super::OutputArg;
use super::client::ApiClient;
use super::commands::{data, list_output, str_at};
use super::error::CliError;

/// `rancherctl audit`.
#[derive(Debug, clap::Args)]
pub struct AuditArgs {
    /// How many records, newest first (1 to 1000).
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u16).range(1..=1000))]
    limit: u16,
    /// Output format.
    #[command(flatten)]
    out: OutputArg,
}

/// Runs `rancherctl audit`.
pub(super) async fn audit(client: &ApiClient, args: AuditArgs) -> Result<String, CliError> {
    let log = client.call(Method::GET, &format!("/v3/auditlog?limit={}", args.limit), None).await?;
    list_output(
        args.out.output,
        data(log),
        &["TIME", "USER", "CLUSTER", "VERB", "RESOURCE", "NAMESPACE", "NAME", "STATUS"],
        |e| {
            let resource = match str_at(e, &["resource"]) {
                "" => str_at(e, &["path"]),
                r => r,
            };
            vec![
                str_at(e, &["time"]).to_owned(),
                str_at(e, &["user"]).to_owned(),
                str_at(e, &["cluster"]).to_owned(),
                str_at(e, &["verb"]).to_owned(),
                resource.to_owned(),
                str_at(e, &["namespace"]).to_owned(),
                str_at(e, &["name"]).to_owned(),
                e["status"].as_u64().map_or_else(String::new, |s| s.to_string()),
            ]
        },
    )
}

/// `rancherctl provisioner …`.
#[derive(Debug, clap::Subcommand)]
pub enum ProvisionerCommand {
    /// List the drivers clusters are built with, and the spec field their settings go in
    /// (`-o json` shows each one's settings schema).
    #[command(alias = "list")]
    Ls(OutputArg),
}

/// Runs `rancherctl provisioner …`.
pub(super) async fn provisioner(client: &ApiClient, cmd: ProvisionerCommand) -> Result<String, CliError> {
    let ProvisionerCommand::Ls(out) = cmd;
    let list = data(client.call(Method::GET, "/v3/provisioners", None).await?);
    list_output(out.output, list, &["DRIVER", "SETTINGS FIELD", "SCHEMA"], |p| {
        let field = match str_at(p, &["field"]) {
            "" => "-".to_owned(),
            f => format!("spec.{f}"),
        };
        vec![
            str_at(p, &["id"]).to_owned(),
            field,
            if p["schema"].is_object() { "yes" } else { "no" }.to_owned(),
        ]
    })
}
