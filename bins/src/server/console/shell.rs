//! The console's kubectl shell: `GET /v3/clusters/{id}/shell` upgrades to a WebSocket over which the
//! page sends command lines (`{"run":"get nodes -o wide"}`, `{"cancel":true}`) and receives their
//! output (`{"out":…}`, `{"err":…}`, then `{"exit":N}`; `{"error":…}` when a line is refused).
//!
//! Each line runs the real `kubectl` on the server — no shell — against the cluster through the
//! server's own authentication proxy, as the user: with a token minted for this shell (scoped to the
//! cluster, revoked when the socket closes) in a kubeconfig that only this shell's process reads.
//! Because kubectl runs on the server, what it may touch there is closed off: only the verbs of
//! [`VERBS`] run, and no flag that names a file, another server, another identity or a cache
//! ([`check`]); its environment is empty but for `HOME` (its own directory) and `PATH`. One command
//! runs at a time, for at most [`COMMAND_TIME`], with at most [`OUTPUT_CAP`] of output; a shell
//! stays open at most [`SHELL_LIFETIME`]; at most [`MAX_SHELLS`] shells are open on a server.

use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::io::AsyncReadExt;

use crate::server::auth::Caller;
use crate::server::error::ApiError;
use crate::server::services::access::may_reach_cluster;
use crate::server::services::tokens::{self, TokenRequest};
use crate::server::state::AppState;

/// The verbs a shell runs (kubectl's first word).
pub(crate) const VERBS: &[&str] = &[
    "get",
    "describe",
    "logs",
    "top",
    "explain",
    "api-resources",
    "api-versions",
    "version",
    "events",
    "auth",
    "rollout",
    "scale",
    "delete",
    "label",
    "annotate",
    "cordon",
    "uncordon",
    "drain",
    "taint",
    "create",
    "run",
    "expose",
    "set",
    "exec",
    "autoscale",
];
/// Flags that reach outside the cluster the shell is for: files on the server, another server or
/// identity, the cache. Refused in any spelling (`--flag=value`, `--flag value`).
const FORBIDDEN_FLAGS: &[&str] = &[
    "--kubeconfig",
    "--server",
    "-s",
    "--token",
    "--as",
    "--as-group",
    "--as-uid",
    "--certificate-authority",
    "--client-certificate",
    "--client-key",
    "--insecure-skip-tls-verify",
    "--tls-server-name",
    "--cluster",
    "--context",
    "--user",
    "--username",
    "--password",
    "--cache-dir",
    "--profile",
    "--profile-output",
    "--filename",
    "--kustomize",
    "-k",
    "--from-file",
    "--from-env-file",
    "--output-directory",
    "--patch-file",
    "--template",
    "--stdin",
    "-i",
    "--tty",
    "-t",
    "--attach",
    "--kuberc",
    "--log-file",
    "--log-dir",
];
/// The longest one command runs.
pub(crate) const COMMAND_TIME: Duration = Duration::from_secs(300);
/// The most output one command sends.
pub(crate) const OUTPUT_CAP: usize = 4 << 20;
/// The most shells open at once on this server.
pub(crate) const MAX_SHELLS: usize = 16;
/// The longest a shell stays open (its token lives as long).
pub(crate) const SHELL_LIFETIME: Duration = Duration::from_secs(3600);
/// The longest command line taken.
const MAX_LINE: usize = 4096;

static OPEN: AtomicUsize = AtomicUsize::new(0);

/// Splits a command line into words as a shell would quote them ('…', "…", \x), with no expansion
/// of anything; a leading `kubectl` is dropped.
///
/// # Errors
/// An unterminated quote, or nothing to run.
pub(crate) fn words(line: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let (mut cur, mut in_word, mut quote) = (String::new(), false, None::<char>);
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some('"'), '\\') => cur.extend(chars.next()),
            (Some(_), c) => cur.push(c),
            (None, '\'' | '"') => (quote, in_word) = (Some(c), true),
            (None, '\\') => {
                cur.extend(chars.next());
                in_word = true;
            }
            (None, c) if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            (None, c) => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if quote.is_some() {
        return Err("an unterminated quote".into());
    }
    if in_word {
        out.push(cur);
    }
    if out.first().is_some_and(|w| w == "kubectl") {
        out.remove(0);
    }
    if out.is_empty() {
        return Err("nothing to run: type a kubectl command, e.g. get nodes".into());
    }
    Ok(out)
}

/// Whether the words may run here; the refusal says why.
///
/// # Errors
/// The verb is not one of [`VERBS`], or a flag is one of those that reach outside the cluster.
pub(crate) fn check(args: &[String]) -> Result<(), String> {
    let verb = args.iter().find(|a| !a.starts_with('-')).map(String::as_str).unwrap_or_default();
    if !VERBS.contains(&verb) {
        return Err(format!(
            "{verb:?} does not run in this shell (the command comes first: get pods -n NS); it runs: {}",
            VERBS.join(", ")
        ));
    }
    // What follows `--` is the command `exec` runs in the container.
    let ours = args.iter().take_while(|a| *a != "--");
    let mut previous = "";
    for a in ours {
        // `--flag=value`, `-fVALUE` (a short flag with its value glued on), or a word.
        let (flag, glued) = if let Some(long) = a.strip_prefix("--") {
            match long.split_once('=') {
                Some((f, v)) => (&a[..f.len() + 2], Some(v)),
                None => (a.as_str(), None),
            }
        } else if a.starts_with('-') && a.len() > 2 {
            match a.get(..2) {
                Some(f) => (f, Some(a[2..].trim_start_matches('='))),
                None => (a.as_str(), None),
            }
        } else {
            (a.as_str(), None)
        };
        // `logs -f` follows; everywhere else `-f` names a file.
        if FORBIDDEN_FLAGS.contains(&flag) || (flag == "-f" && verb != "logs") {
            return Err(format!("{flag} does not run in this shell: it reaches outside the cluster"));
        }
        // `--raw` asks the server for a path; anything else is not the cluster's.
        let raw = if flag == "--raw" { glued } else { None };
        let raw = raw.or((previous == "--raw").then_some(a.as_str()));
        if raw.is_some_and(|r| !r.starts_with('/')) {
            return Err("--raw takes a path on the cluster's API server (/api/…)".into());
        }
        let output = if matches!(flag, "-o" | "--output") { glued } else { None };
        let output = output.or(matches!(previous, "-o" | "--output").then_some(a.as_str()));
        if output.is_some_and(|o| o.contains("-file")) {
            return Err("an output template from a file reads a file on the server".into());
        }
        previous = a;
    }
    Ok(())
}

/// `GET /v3/clusters/{id}/shell`.
pub(crate) async fn open(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let Some(kubectl) = kubectl_path() else {
        return ApiError::NotImplemented(
            "the kubectl shell needs kubectl on the server (in its PATH, or RANCHER_KUBECTL)".into(),
        )
        .into_response();
    };
    match may_reach_cluster(&state.store, &caller, &id).await {
        Ok(true) => {}
        Ok(false) => return ApiError::NotFound(format!("clusters \"{id}\" not found")).into_response(),
        Err(e) => return ApiError::from(e).into_response(),
    }
    let Ok(ws) = ws else {
        return ApiError::BadRequest(format!(
            "/v3/clusters/{id}/shell is a WebSocket: open it with `Connection: Upgrade` and `Upgrade: websocket`"
        ))
        .into_response();
    };
    if OPEN.fetch_add(1, Ordering::AcqRel) >= MAX_SHELLS {
        OPEN.fetch_sub(1, Ordering::AcqRel);
        return ApiError::Unavailable(format!(
            "{MAX_SHELLS} shells are open on this server: try again later"
        ))
        .into_response();
    }
    let req = TokenRequest {
        cluster_name: id.clone(),
        ..TokenRequest::local(
            "kubeconfig",
            i64::try_from(SHELL_LIFETIME.as_millis()).unwrap_or(i64::MAX),
            format!("console shell for cluster {id}"),
            false,
        )
    };
    let issued = tokens::issue(&state.store, state.max_token_ttl_ms, &caller.user, req).await;
    let (token, secret) = match issued {
        Ok(t) => t,
        Err(e) => {
            OPEN.fetch_sub(1, Ordering::AcqRel);
            return ApiError::from(e).into_response();
        }
    };
    ws.max_message_size(MAX_LINE * 2).on_upgrade(move |socket| async move {
        match PrivateDir::new(&token.metadata.name) {
            Ok(dir) => {
                let config = kubeconfig(&state, &id, &secret.expose());
                match write_private(&dir.0.join("config"), &config) {
                    Ok(()) => {
                        let _ = tokio::time::timeout(SHELL_LIFETIME, session(socket, &kubectl, &dir.0)).await;
                    }
                    Err(e) => tracing::warn!("a console shell could not write its kubeconfig: {e}"),
                }
            }
            Err(e) => tracing::warn!("a console shell could not make its directory: {e}"),
        }
        if let Err(e) = tokens::revoke(&state.store, &token.metadata.name).await {
            tracing::warn!(token = %token.metadata.name, "revoking a closed shell's token: {e}");
        }
        OPEN.fetch_sub(1, Ordering::AcqRel);
    })
}

/// A directory only the server's user may enter, removed with what is in it when dropped.
struct PrivateDir(std::path::PathBuf);

impl PrivateDir {
    fn new(unique: &str) -> std::io::Result<Self> {
        use std::os::unix::fs::DirBuilderExt;
        let path = std::env::temp_dir().join(format!("rancher-shell-{unique}"));
        std::fs::DirBuilder::new().mode(0o700).create(&path)?;
        Ok(PrivateDir(path))
    }
}

impl Drop for PrivateDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn kubectl_path() -> Option<std::path::PathBuf> {
    if let Some(p) = std::env::var_os("RANCHER_KUBECTL") {
        return Some(p.into());
    }
    std::env::split_paths(&std::env::var_os("PATH")?).map(|d| d.join("kubectl")).find(|p| p.is_file())
}

/// A kubeconfig that reaches the cluster through this server's own listener, verified as the
/// server's external name.
fn kubeconfig(state: &AppState, cluster: &str, token: &str) -> String {
    let server_url = state.registration.server_url();
    let host =
        url::Url::parse(server_url).ok().and_then(|u| u.host_str().map(str::to_owned)).unwrap_or_default();
    let mut cluster_entry = json!({
        "server": format!("{}/k8s/clusters/{cluster}", state.self_url),
        "tls-server-name": host.trim_start_matches('[').trim_end_matches(']'),
    });
    if !state.ca_pem.is_empty() {
        use base64::Engine;
        cluster_entry["certificate-authority-data"] =
            base64::engine::general_purpose::STANDARD.encode(state.ca_pem.as_bytes()).into();
    }
    json!({
        "apiVersion": "v1", "kind": "Config", "current-context": "shell",
        "clusters": [{"name": "shell", "cluster": cluster_entry}],
        "users": [{"name": "shell", "user": {"token": token}}],
        "contexts": [{"name": "shell", "context": {"cluster": "shell", "user": "shell"}}],
    })
    .to_string()
}

fn write_private(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    f.write_all(text.as_bytes())
}

async fn send(socket: &mut WebSocket, v: Value) -> bool {
    socket.send(Message::Text(v.to_string().into())).await.is_ok()
}

/// Reads command lines and runs them one at a time until the socket closes.
async fn session(mut socket: WebSocket, kubectl: &std::path::Path, home: &std::path::Path) {
    while let Some(Ok(msg)) = socket.recv().await {
        let Message::Text(text) = msg else { continue };
        let line =
            serde_json::from_str::<Value>(&text).ok().and_then(|v| v["run"].as_str().map(str::to_owned));
        let Some(line) = line.filter(|l| l.len() <= MAX_LINE) else {
            if !send(&mut socket, json!({"error": "send {\"run\": \"<kubectl command>\"} (at most 4 KiB)"}))
                .await
            {
                return;
            }
            continue;
        };
        let args = match words(&line).and_then(|a| check(&a).map(|()| a)) {
            Ok(a) => a,
            Err(e) => {
                if !send(&mut socket, json!({"error": e})).await {
                    return;
                }
                continue;
            }
        };
        if !run(&mut socket, kubectl, home, &args).await {
            return;
        }
    }
}

/// Runs one command, streaming its output; false when the socket is gone.
async fn run(
    socket: &mut WebSocket,
    kubectl: &std::path::Path,
    home: &std::path::Path,
    args: &[String],
) -> bool {
    let child = tokio::process::Command::new(kubectl)
        .args(args)
        .env_clear()
        .env("HOME", home)
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("KUBECONFIG", home.join("config"))
        .current_dir(home)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => return send(socket, json!({"error": format!("kubectl does not start: {e}")})).await,
    };
    let (mut out, mut err) = (child.stdout.take().expect("piped"), child.stderr.take().expect("piped"));
    let (mut obuf, mut ebuf) = (vec![0u8; 16 << 10], vec![0u8; 16 << 10]);
    let (mut out_open, mut err_open, mut sent) = (true, true, 0usize);
    let deadline = tokio::time::sleep(COMMAND_TIME);
    tokio::pin!(deadline);
    let ended = loop {
        if !out_open && !err_open {
            break None;
        }
        tokio::select! {
            n = out.read(&mut obuf), if out_open => match n {
                Ok(0) | Err(_) => out_open = false,
                Ok(n) => {
                    sent += n;
                    if !send(socket, json!({"out": String::from_utf8_lossy(&obuf[..n])})).await { return false; }
                }
            },
            n = err.read(&mut ebuf), if err_open => match n {
                Ok(0) | Err(_) => err_open = false,
                Ok(n) => {
                    sent += n;
                    if !send(socket, json!({"err": String::from_utf8_lossy(&ebuf[..n])})).await { return false; }
                }
            },
            msg = socket.recv() => match msg {
                Some(Ok(Message::Text(t))) if serde_json::from_str::<Value>(&t).is_ok_and(|v| v["cancel"] == true) => {
                    break Some("cancelled");
                }
                Some(Ok(_)) => {}
                _ => return false,
            },
            () = &mut deadline => break Some("stopped: a command runs for at most 5 minutes here"),
        }
        if sent > OUTPUT_CAP {
            break Some("stopped: a command sends at most 4 MiB here");
        }
    };
    if let Some(why) = ended {
        let _ = child.kill().await;
        if !send(socket, json!({"err": format!("\n{why}\n")})).await {
            return false;
        }
    }
    let code = child.wait().await.ok().and_then(|s| s.code()).unwrap_or(-1);
    send(socket, json!({"exit": code})).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(s: &str) -> Vec<String> {
        words(s).unwrap()
    }

    #[test]
    fn lines_split_as_a_shell_quotes_them_without_expanding_anything() {
        assert_eq!(w("kubectl get nodes -o wide"), ["get", "nodes", "-o", "wide"]);
        assert_eq!(
            w(r#"get pods -l 'app in (a, b)' -o "jsonpath={.items[*].metadata.name}""#),
            ["get", "pods", "-l", "app in (a, b)", "-o", "jsonpath={.items[*].metadata.name}"]
        );
        assert_eq!(w("get $HOME `id` ;rm"), ["get", "$HOME", "`id`", ";rm"]);
        assert!(words("get 'x").is_err());
        assert!(words("   ").is_err());
    }

    #[test]
    fn only_the_cluster_is_reachable_from_a_line() {
        for ok in [
            "get nodes",
            "logs -f web-1 -n shop",
            "describe pod x",
            "exec web -- ls -f /x",
            "delete pod x -n a",
            "get pods -nkube-system -ojson",
        ] {
            assert_eq!(check(&w(ok)), Ok(()), "{ok}");
        }
        for (bad, says) in [
            ("cp a:/etc/passwd /tmp/x", "does not run"),
            ("proxy", "does not run"),
            ("get nodes --server=http://169.254.169.254", "--server"),
            ("get nodes -s http://x", "-s"),
            ("get nodes --kubeconfig /etc/rancher", "--kubeconfig"),
            ("apply -f /etc/passwd", "does not run"),
            ("create -f /etc/passwd", "-f"),
            ("create secret generic x --from-file=/root/.ssh/id_rsa", "--from-file"),
            ("get pods -o go-template-file=/etc/shadow", "file"),
            ("get pods -o=jsonpath-file=/x", "file"),
            ("exec -it web -- sh", "-i"),
            ("get pods -f/etc/passwd", "-f"),
            ("get nodes -shttp://x", "-s"),
            ("get pods -o go-template-file=/x", "file"),
            ("get pods --as=admin", "--as"),
            ("plugin list", "does not run"),
            ("get --raw=http://169.254.169.254/", "--raw"),
            ("get --kuberc /etc/passwd pods", "--kuberc"),
        ] {
            let e = check(&w(bad)).expect_err(bad);
            assert!(e.contains(says), "{bad}: {e}");
        }
    }
}
