//! `rancherctl token ls|rm`: the caller's own tokens. The server never returns a token's secret after
//! its creation (nor its hash), so nothing printed here can be used to log in.

use http::Method;
use serde_json::Value;

use super::client::ApiClient;
use super::commands::{data, list_output, path_segment, str_at};
use super::config::{CliConfig, Context};
use super::error::CliError;
use super::output::Format;
use super::session::forget_token;

const COLUMNS: &[&str] = &["CURRENT", "ID", "KIND", "DESCRIPTION", "CLUSTER", "EXPIRES"];
/// The label the server puts on every token with its user's id.
const USER_ID_LABEL: &str = "authn.management.cattle.io/token-userId";

/// When a token expires, as the server computes it (`status.expiresAt`, else creation + `spec.ttl`).
fn expires(v: &Value) -> String {
    if let Some(at) = v.pointer("/status/expiresAt").and_then(Value::as_str) {
        return at.to_owned();
    }
    let ttl = v.pointer("/spec/ttl").and_then(Value::as_i64).unwrap_or(0);
    if ttl <= 0 {
        return "never".into();
    }
    str_at(v, &["metadata", "creationTimestamp"])
        .parse::<jiff::Timestamp>()
        .ok()
        .and_then(|c| c.checked_add(jiff::SignedDuration::from_millis(ttl)).ok())
        .map_or_else(
            || "-".into(),
            |t| t.round(jiff::Unit::Second).map_or_else(|_| t.to_string(), |t| t.to_string()),
        )
}

fn dash(s: &str) -> String {
    if s.is_empty() { "-".into() } else { s.to_owned() }
}

pub(super) async fn ls(client: &ApiClient, ctx: &Context, out: Format) -> Result<String, CliError> {
    let current = ctx.token_id().unwrap_or_default().to_owned();
    // Whose tokens: the user of this context's token (an admin may list everyone's; this lists one's own).
    let mine = client.call(Method::GET, &format!("/v3/tokens/{}", path_segment(&current)?), None).await?;
    let user = str_at(&mine, &["spec", "userId"]).to_owned();
    if user.is_empty() {
        return Err(CliError::Http("the server's answer for this context's token names no user".into()));
    }
    let selector: String = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("labelSelector", &format!("{USER_ID_LABEL}={user}"))
        .finish();
    let items: Vec<Value> = data(client.call(Method::GET, &format!("/v3/tokens?{selector}"), None).await?)
        .into_iter()
        .filter(|t| str_at(t, &["spec", "userId"]) == user)
        .collect();
    list_output(out, items, COLUMNS, |t| {
        let id = str_at(t, &["id"]);
        vec![
            if id == current { "*".into() } else { String::new() },
            id.to_owned(),
            dash(str_at(t, &["spec", "kind"])),
            dash(str_at(t, &["spec", "description"])),
            dash(str_at(t, &["spec", "clusterName"])),
            expires(t),
        ]
    })
}

pub(super) async fn rm(client: &ApiClient, ctx: &Context, id: &str) -> Result<String, CliError> {
    let id = id.split_once(':').map_or(id, |(name, _)| name);
    client.call(Method::DELETE, &format!("/v3/tokens/{}", path_segment(id)?), None).await?;
    if ctx.token_id() == Some(id) {
        forget_token(&mut CliConfig::load()?, &ctx.name)?;
        return Ok(format!(
            "token {id} revoked; it was context {}'s own, which is now logged out\n",
            ctx.name
        ));
    }
    Ok(format!("token {id} revoked\n"))
}
