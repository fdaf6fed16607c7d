//! `rancherctl user …`: local users — list, create, edit, delete, reset another's password — and
//! `passwd`, one's own password. Passwords are asked for on the terminal with echo off, or read
//! from stdin (`--password-stdin`), never taken from the command line for an existing user.

use clap::Subcommand;
use http::Method;
use serde_json::{Value, json};

use super::OutputArg;
use super::client::ApiClient;
use super::commands::{data, list_output, path_segment, str_at};
use super::error::CliError;
use super::output::{Format, age, structured};
use super::password;

/// `rancherctl user …`.
#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// List users.
    #[command(alias = "list")]
    Ls(OutputArg),
    /// Show one user (by username or id).
    Get {
        /// Username or `u-xxxxx` id.
        user: String,
        /// Output format.
        #[command(flatten)]
        out: OutputArg,
    },
    /// Create a local user.
    Create {
        /// The login name.
        username: String,
        /// The password (at least 12 characters); or RANCHER_NEW_USER_PASSWORD, or --password-stdin;
        /// without any, it is asked for twice on the terminal.
        #[arg(long, env = "RANCHER_NEW_USER_PASSWORD", hide_env_values = true)]
        password: Option<String>,
        /// Read the password from the first line of stdin (over --password and the variable).
        #[arg(long)]
        password_stdin: bool,
        /// The name people see.
        #[arg(long)]
        display_name: Option<String>,
        /// Output format.
        #[command(flatten)]
        out: OutputArg,
    },
    /// Change a user's login name, display name, or whether they may log in (a disabled user's
    /// tokens stop working).
    Edit {
        /// Username or `u-xxxxx` id.
        user: String,
        /// The new login name.
        #[arg(long)]
        username: Option<String>,
        /// The name people see.
        #[arg(long)]
        display_name: Option<String>,
        /// Whether the user may log in.
        #[arg(long, value_name = "true|false")]
        enabled: Option<bool>,
        /// Output format (JSON/YAML: the user as updated).
        #[command(flatten)]
        out: OutputArg,
    },
    /// Set another user's password (asked twice on the terminal, or the first line of stdin).
    SetPassword {
        /// Username or `u-xxxxx` id.
        user: String,
        /// Read the new password from the first line of stdin.
        #[arg(long)]
        password_stdin: bool,
        /// Make them choose a new one at their next login.
        #[arg(long)]
        must_change: bool,
    },
    /// Change your own password (the current one, then the new one twice, asked on the terminal;
    /// or two lines of stdin, current then new).
    Passwd {
        /// Read the current and the new password from the first two lines of stdin.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Delete a user (by username or id).
    #[command(alias = "delete")]
    Rm {
        /// Username or `u-xxxxx` id.
        user: String,
    },
}

const USER_COLUMNS: &[&str] = &["ID", "USERNAME", "DISPLAY NAME", "ENABLED", "AGE"];

fn user_row(v: &Value) -> Vec<String> {
    let created = str_at(v, &["metadata", "creationTimestamp"]).parse().ok();
    vec![
        str_at(v, &["id"]).to_owned(),
        str_at(v, &["spec", "username"]).to_owned(),
        str_at(v, &["spec", "displayName"]).to_owned(),
        v.pointer("/spec/enabled").and_then(Value::as_bool).unwrap_or(true).to_string(),
        age(created),
    ]
}

/// The user named by login name or id, as the server shows it.
async fn find(client: &ApiClient, user: &str) -> Result<Value, CliError> {
    if user.starts_with("u-") {
        match client.call(Method::GET, &format!("/v3/users/{}", path_segment(user)?), None).await {
            Ok(found) => return Ok(found),
            // A login name that looks like an id: look it up among the users.
            Err(CliError::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    data(client.call(Method::GET, "/v3/users", None).await?)
        .into_iter()
        .find(|u| str_at(u, &["spec", "username"]) == user || str_at(u, &["id"]) == user)
        .ok_or_else(|| {
            CliError::Api(Box::new(rancher_core::Status::not_found(format!("user {user:?} not found"))))
        })
}

/// A new password, asked twice on the terminal (they must match) or the first line of stdin.
fn new_password(from_stdin: bool, whose: &str) -> Result<String, CliError> {
    if from_stdin {
        return password::from_stdin();
    }
    let first = password::ask(&format!("New password for {whose}: "))?;
    let again = password::ask("Again: ")?;
    if first != again {
        return Err(CliError::Input("the two passwords differ; nothing was changed".into()));
    }
    Ok(first)
}

/// Runs `rancherctl user …`.
pub(super) async fn run(client: &ApiClient, cmd: UserCommand) -> Result<String, CliError> {
    match cmd {
        UserCommand::Ls(o) => {
            let items = data(client.call(Method::GET, "/v3/users", None).await?);
            list_output(o.output, items, USER_COLUMNS, user_row)
        }
        UserCommand::Get { user, out } => {
            let found = find(client, &user).await?;
            match &out.output {
                Format::Table => Ok(super::output::table(USER_COLUMNS, &[user_row(&found)])),
                fmt => structured(fmt, &found),
            }
        }
        UserCommand::Create { username, password, password_stdin, display_name, out } => {
            let password = match password {
                Some(p) if !password_stdin => p,
                _ => new_password(password_stdin, &username)?,
            };
            let body = json!({
                "spec": {
                    "username": username,
                    "password": password,
                    "displayName": display_name.as_deref().unwrap_or(&username),
                    "enabled": true,
                },
            });
            let created = client.call(Method::POST, "/v3/users", Some(&body)).await?;
            match &out.output {
                Format::Table => Ok(format!("user {username} created ({})\n", str_at(&created, &["id"]))),
                fmt => structured(fmt, &created),
            }
        }
        UserCommand::Edit { user, username, display_name, enabled, out } => {
            if username.is_none() && display_name.is_none() && enabled.is_none() {
                return Err(CliError::Input(
                    "nothing to change: give --username, --display-name or --enabled".into(),
                ));
            }
            let mut found = find(client, &user).await?;
            let id = str_at(&found, &["id"]).to_owned();
            if let Some(u) = username {
                found["spec"]["username"] = Value::String(u);
            }
            if let Some(d) = display_name {
                found["spec"]["displayName"] = Value::String(d);
            }
            if let Some(e) = enabled {
                found["spec"]["enabled"] = Value::Bool(e);
            }
            let updated =
                client.call(Method::PUT, &format!("/v3/users/{}", path_segment(&id)?), Some(&found)).await?;
            match &out.output {
                Format::Table => Ok(format!("user {user} ({id}) updated\n")),
                fmt => structured(fmt, &updated),
            }
        }
        UserCommand::SetPassword { user, password_stdin, must_change } => {
            let mut found = find(client, &user).await?;
            let id = str_at(&found, &["id"]).to_owned();
            found["spec"]["password"] = Value::String(new_password(password_stdin, &user)?);
            if must_change {
                found["spec"]["mustChangePassword"] = Value::Bool(true);
            }
            client.call(Method::PUT, &format!("/v3/users/{}", path_segment(&id)?), Some(&found)).await?;
            Ok(format!("the password of {user} ({id}) is changed\n"))
        }
        UserCommand::Passwd { password_stdin } => {
            let (current, new) = if password_stdin {
                let mut lines = password::lines_from_stdin(2, "the current and the new password")?;
                let new = lines.pop().expect("two lines read");
                (lines.pop().expect("two lines read"), new)
            } else {
                (password::ask("Current password: ")?, new_password(false, "you")?)
            };
            let body = json!({ "currentPassword": current, "newPassword": new });
            client.call(Method::POST, "/v3/users?action=changepassword", Some(&body)).await?;
            Ok("your password is changed\n".to_owned())
        }
        UserCommand::Rm { user } => {
            let found = find(client, &user).await?;
            let id = str_at(&found, &["id"]);
            client.call(Method::DELETE, &format!("/v3/users/{}", path_segment(id)?), None).await?;
            Ok(format!("user {user} deleted\n"))
        }
    }
}
