//! `rancherctl login --oidc`: a listener on `127.0.0.1:0` receives the browser's redirect. The server
//! makes the provider's authorize URL for that redirect (and keeps the PKCE verifier and nonce); we
//! print it, wait for `?code=…&state=…` on the listener, check the state and hand both to the server.

use std::collections::HashMap;
use std::time::Duration;

use http::Method;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::client::ApiClient;
use super::error::CliError;

/// How long the browser has to come back.
pub(super) const CALLBACK_TIMEOUT: Duration = Duration::from_secs(5 * 60);
/// The largest request head read from the browser.
const MAX_REQUEST: usize = 16 * 1024;

/// Runs the browser login; returns the session token and the user's id.
pub(super) async fn login(client: &ApiClient, timeout: Duration) -> Result<(String, String), CliError> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| CliError::Input(format!("cannot listen on 127.0.0.1 for the browser: {e}")))?;
    let port = listener.local_addr().map_err(|e| CliError::Input(e.to_string()))?.port();
    let redirect = format!("http://127.0.0.1:{port}/callback");
    let query: String =
        url::form_urlencoded::Serializer::new(String::new()).append_pair("redirectUri", &redirect).finish();
    let answer = client
        .call(Method::GET, &format!("/v3-public/oidcProviders/oidc?action=authorize&{query}"), None)
        .await?;
    let (Some(url), Some(state)) =
        (answer.get("redirectUrl").and_then(Value::as_str), answer.get("state").and_then(Value::as_str))
    else {
        return Err(CliError::Http("the authorize answer carried no redirectUrl or state".into()));
    };
    {
        use std::io::Write as _;
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "open this URL in a browser: {url}");
        let _ = out.flush();
    }
    let code = tokio::time::timeout(timeout, wait_for_code(&listener, state))
        .await
        .map_err(|_| CliError::Input(format!("no browser login within {} s", timeout.as_secs())))??;
    let body = json!({"code": code, "state": state, "description": "rancherctl login --oidc"});
    let resp = client.call(Method::POST, "/v3-public/oidcProviders/oidc?action=login", Some(&body)).await?;
    let token = resp
        .get("token")
        .and_then(Value::as_str)
        .ok_or_else(|| CliError::Http("the login answer carried no token".into()))?;
    let who = resp.pointer("/spec/userId").and_then(Value::as_str).unwrap_or("the OIDC user");
    Ok((token.to_owned(), who.to_owned()))
}

/// Accepts connections until one is the redirect; answers every connection with a small page.
async fn wait_for_code(listener: &TcpListener, state: &str) -> Result<String, CliError> {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else { continue };
        let Some(target) = read_target(&mut stream).await else {
            reply(&mut stream, 400, "bad request").await;
            continue;
        };
        let Ok(url) = url::Url::parse(&format!("http://127.0.0.1{target}")) else {
            reply(&mut stream, 400, "bad request").await;
            continue;
        };
        if url.path() != "/callback" {
            reply(&mut stream, 404, "not found").await;
            continue;
        }
        let q: HashMap<String, String> = url.query_pairs().into_owned().collect();
        if let Some(err) = q.get("error") {
            reply(&mut stream, 200, "login failed: return to the terminal").await;
            let detail = q.get("error_description").map(String::as_str).unwrap_or_default();
            return Err(CliError::Input(format!("the identity provider refused the login: {err} {detail}")));
        }
        if q.get("state").map(String::as_str) != Some(state) {
            // Not our login (a stale tab or another site): keep waiting.
            reply(&mut stream, 400, "this login is not the one rancherctl is waiting for").await;
            continue;
        }
        let Some(code) = q.get("code").filter(|c| !c.is_empty()) else {
            reply(&mut stream, 400, "the redirect carried no code").await;
            continue;
        };
        reply(&mut stream, 200, "rancherctl is logged in: you can close this window").await;
        return Ok(code.clone());
    }
}

/// The request target of a `GET` request head, read with a bound and a timeout.
async fn read_target(stream: &mut TcpStream) -> Option<String> {
    let mut buf = Vec::with_capacity(1024);
    let read = async {
        let mut chunk = [0u8; 1024];
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < MAX_REQUEST {
            let n = stream.read(&mut chunk).await.ok()?;
            if n == 0 {
                return None;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        Some(())
    };
    tokio::time::timeout(Duration::from_secs(10), read).await.ok()??;
    let head = std::str::from_utf8(&buf).ok()?;
    let mut parts = head.lines().next()?.split(' ');
    (parts.next()? == "GET").then_some(())?;
    let target = parts.next()?;
    target.starts_with('/').then(|| target.to_owned())
}

async fn reply(stream: &mut TcpStream, code: u16, text: &str) {
    let reason = if code == 200 { "OK" } else { "Error" };
    let resp = format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{text}\n",
        text.len() + 1
    );
    let _ = stream.write_all(resp.as_bytes()).await;
    let _ = stream.shutdown().await;
}
