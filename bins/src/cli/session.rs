//! Logging in and out, and the saved contexts: `login` adds or updates a context and makes it
//! current, `logout` revokes the context's token, `context ls|use|rm` manage the list.

use http::Method;
use serde_json::{Value, json};

use super::client::ApiClient;
use super::config::{CliConfig, Context, host_port};
use super::error::CliError;
use super::output::table;
use super::{ContextCommand, LoginArgs, password};

pub(super) async fn login(args: LoginArgs) -> Result<String, CliError> {
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
    let server = client.base().to_owned();
    let name = match args.name {
        Some(n) if n.trim().is_empty() => return Err(CliError::Input("--name must not be empty".into())),
        Some(n) => n,
        None => format!("{who}@{}", host_port(&server)),
    };
    let mut cfg = CliConfig::load()?;
    let ctx = Context {
        name: name.clone(),
        server: server.clone(),
        user: who.clone(),
        token,
        cacert,
        insecure: args.insecure,
    };
    let replaced = cfg.upsert(ctx);
    cfg.current_context = name.clone();
    let path = cfg.save()?;
    // The token the context held before is no longer anyone's to use: revoke it (best effort).
    if let Some(old) = replaced
        && !old.token.is_empty()
        && let Ok(c) = ApiClient::from_context(&old)
    {
        let _ = c.call(Method::POST, "/v3/tokens?action=logout", Some(&json!({}))).await;
    }
    Ok(format!("logged in to {server} as {who} (context {name}, saved to {})\n", path.display()))
}

/// Username and password login: the token and the username.
async fn password_login(client: &ApiClient, args: &LoginArgs) -> Result<(String, String), CliError> {
    let username = args.username.clone().ok_or_else(|| CliError::Input("--username is required".into()))?;
    let password = match (args.password.clone(), args.password_stdin) {
        (Some(p), _) => p,
        (None, true) => password::from_stdin()?,
        (None, false) => password::prompt(&format!("{username} at {}", client.base()))?,
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

/// Revokes the context's token on the server (an already-invalid one is as good as revoked) and
/// forgets it; the context keeps its server, user and CA for the next login.
pub(super) async fn logout(wanted: Option<&str>) -> Result<String, CliError> {
    let mut cfg = CliConfig::load()?;
    let ctx = cfg.select(wanted)?.clone();
    let client = ApiClient::from_context(&ctx)?;
    match client.call(Method::POST, "/v3/tokens?action=logout", Some(&json!({}))).await {
        Ok(_) | Err(CliError::SessionInvalid(_)) => {}
        Err(e) => return Err(e),
    }
    forget_token(&mut cfg, &ctx.name)?;
    Ok(format!("logged out of {} (context {})\n", ctx.server, ctx.name))
}

/// Clears the token of context `name` and saves.
pub(super) fn forget_token(cfg: &mut CliConfig, name: &str) -> Result<(), CliError> {
    if let Some(c) = cfg.contexts.iter_mut().find(|c| c.name == name) {
        c.token.clear();
    }
    cfg.save().map(|_| ())
}

pub(super) async fn context(cmd: ContextCommand) -> Result<String, CliError> {
    let mut cfg = CliConfig::load()?;
    match cmd {
        ContextCommand::Ls => {
            let rows: Vec<Vec<String>> = cfg
                .contexts
                .iter()
                .map(|c| {
                    vec![
                        if c.name == cfg.current_context { "*".into() } else { String::new() },
                        c.name.clone(),
                        c.server.clone(),
                        if c.user.is_empty() { "-".into() } else { c.user.clone() },
                        if c.token.is_empty() { "logged out".into() } else { "logged in".into() },
                    ]
                })
                .collect();
            Ok(table(&["CURRENT", "NAME", "SERVER", "USER", "SESSION"], &rows))
        }
        ContextCommand::Use { name } => {
            if cfg.get(&name).is_none() {
                return Err(cfg.unknown(&name));
            }
            cfg.current_context = name.clone();
            cfg.save()?;
            Ok(format!("switched to context {name}\n"))
        }
        ContextCommand::Rm { name } => {
            let removed = cfg.get(&name).cloned().ok_or_else(|| cfg.unknown(&name))?;
            // Its token is revoked first when the server answers soon; a context of a server that is
            // gone can still be removed.
            let revoked = match ApiClient::from_context(&removed) {
                Ok(c) => {
                    let empty = json!({});
                    let call = c.call(Method::POST, "/v3/tokens?action=logout", Some(&empty));
                    match tokio::time::timeout(std::time::Duration::from_secs(10), call).await {
                        Ok(Ok(_) | Err(CliError::SessionInvalid(_))) => "its token is revoked".to_owned(),
                        Ok(Err(e)) => format!("its token could not be revoked ({e})"),
                        Err(_) => "its token could not be revoked (the server did not answer)".to_owned(),
                    }
                }
                Err(_) => "it held no token".to_owned(),
            };
            cfg.remove(&name);
            cfg.save()?;
            Ok(format!("context {name} removed; {revoked}\n"))
        }
    }
}
