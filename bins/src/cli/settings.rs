//! `rancherctl settings …`: the server's settings (its URL, CA, version, token lifetimes, agent
//! image). They are the server's flags, so they are read here, not set.

use clap::Subcommand;
use http::Method;
use serde_json::Value;

use super::OutputArg;
use super::client::ApiClient;
use super::commands::{data, list_output, path_segment, str_at};
use super::error::CliError;
use super::output::{Format, structured};

/// `rancherctl settings …`.
#[derive(Debug, Subcommand)]
pub enum SettingsCommand {
    /// List the settings: name, value (a CA shows as its first line), and whether it differs from
    /// the default.
    #[command(alias = "list")]
    Ls(OutputArg),
    /// Print one setting's value (bare, for scripts: `rancherctl settings get server-url`).
    Get {
        /// The setting's name.
        name: String,
        /// Output format (table: the bare value).
        #[command(flatten)]
        out: OutputArg,
    },
}

/// A value for a table cell: its first line, and how many more there are.
fn cell(value: &str) -> String {
    let mut lines = value.lines();
    match (lines.next(), lines.count()) {
        (None, _) => "-".into(),
        (Some(first), 0) => first.to_owned(),
        (Some(first), more) => format!("{first} (+{more} lines)"),
    }
}

/// Runs `rancherctl settings …`.
pub(super) async fn run(client: &ApiClient, cmd: SettingsCommand) -> Result<String, CliError> {
    match cmd {
        SettingsCommand::Ls(out) => {
            let items = data(client.call(Method::GET, "/v3/settings", None).await?);
            list_output(out.output, items, &["NAME", "VALUE", "CUSTOMIZED", "SOURCE"], |s| {
                vec![
                    str_at(s, &["name"]).to_owned(),
                    cell(str_at(s, &["value"])),
                    if s["customized"].as_bool() == Some(true) { "yes" } else { "no" }.to_owned(),
                    str_at(s, &["source"]).to_owned(),
                ]
            })
        }
        SettingsCommand::Get { name, out } => {
            let s = client.call(Method::GET, &format!("/v3/settings/{}", path_segment(&name)?), None).await?;
            match &out.output {
                Format::Table => {
                    let value = s.get("value").and_then(Value::as_str).unwrap_or_default();
                    Ok(if value.ends_with('\n') { value.to_owned() } else { format!("{value}\n") })
                }
                fmt => structured(fmt, &s),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_long_value_shows_its_first_line_in_a_table() {
        assert_eq!(super::cell("https://a"), "https://a");
        assert_eq!(super::cell("-----BEGIN\nx\ny\n"), "-----BEGIN (+2 lines)");
        assert_eq!(super::cell(""), "-");
    }
}
