//! `rancherctl` against the real `rancher-server`: login, create, restart, list, and the error messages.

use std::path::Path;
use std::process::{Command, Output};

use crate::common::{ADMIN_PASSWORD, ServerProc, err, ok};

fn ctl(home: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rancherctl"))
        .args(args)
        .env("HOME", home)
        .env_remove("XDG_CONFIG_HOME")
        .env_remove("RANCHER_PASSWORD")
        .output()
        .expect("run rancherctl")
}

#[test]
fn login_create_restart_and_list() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let data = dir.path().join("data");
    let server = ServerProc::start(&data, 0, Some(ADMIN_PASSWORD), &[]);
    let url = server.url.clone();

    // Before login.
    assert!(err(&ctl(&home, &["cluster", "ls"])).contains("not logged in"));

    // Untrusted certificate, then the CA from the data dir.
    let e = err(&ctl(&home, &["login", &url, "--username", "admin", "--password", ADMIN_PASSWORD]));
    assert!(e.contains("the server's certificate is not trusted: pass --cacert FILE or --insecure"), "{e}");
    let ca = data.join("tls/ca.crt");
    let e = err(&ctl(
        &home,
        &[
            "login",
            &url,
            "--username",
            "admin",
            "--password",
            "wrong-password-1",
            "--cacert",
            ca.to_str().unwrap(),
        ],
    ));
    assert!(e.contains("login failed: wrong username or password"), "{e}");
    ok(&ctl(
        &home,
        &[
            "login",
            &url,
            "--username",
            "admin",
            "--password",
            ADMIN_PASSWORD,
            "--cacert",
            ca.to_str().unwrap(),
        ],
    ));
    let cfg = home.join(".config/rancherctl/config.json");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&cfg).unwrap().permissions().mode() & 0o777, 0o600);
    }
    let saved: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&cfg).unwrap()).unwrap();
    let context = format!("admin@127.0.0.1:{}", server.port);
    assert_eq!(saved["currentContext"], context.as_str());
    assert_eq!(saved["contexts"][0]["name"], context.as_str());
    assert!(saved["contexts"][0]["token"].as_str().unwrap().starts_with("token-"));
    assert!(saved["contexts"][0]["cacert"].as_str().unwrap().contains("BEGIN CERTIFICATE"));

    ok(&ctl(&home, &["cluster", "create", "demo"]));
    let e = err(&ctl(&home, &["cluster", "create", "Bad_Name"]));
    assert!(e.contains("metadata.name"), "{e}");
    let out = ok(&ctl(&home, &["cluster", "create", "imp", "--import"]));
    assert!(out.contains("kubectl apply -f https://") && out.contains("_imp.yaml"), "{out}");
    assert!(out.contains("curl --insecure -sfL https://"), "{out}");
    // The server picks the project's id and the CLI prints it; the name given is what people see.
    let made = ok(&ctl(&home, &["project", "create", "demo", "web"]));
    let id = made.split_whitespace().nth(1).unwrap_or_default().to_owned();
    assert!(id.starts_with("demo:p-"), "{made}");
    let listed = ok(&ctl(&home, &["project", "ls"]));
    assert!(listed.contains(&id) && listed.contains("web"), "{listed}");
    // Removed by its display name within the cluster.
    assert!(ok(&ctl(&home, &["project", "rm", "demo:web"])).contains(&id));
    assert!(!ok(&ctl(&home, &["project", "ls"])).contains(&id));

    // Restart on the same port and data dir: the cluster and the login survive.
    let port = server.port;
    server.stop();
    let e = err(&ctl(&home, &["cluster", "ls"]));
    assert!(e.contains(&format!("cannot reach {url}: connection refused")), "{e}");
    let server = ServerProc::start(&data, port, Some(ADMIN_PASSWORD), &[]);
    let table = ok(&ctl(&home, &["cluster", "ls"]));
    let header = table.lines().next().unwrap();
    assert_eq!(
        header.split_whitespace().collect::<Vec<_>>(),
        ["NAME", "STATE", "PROVIDER", "VERSION", "NODES", "AGE"]
    );
    let row =
        table.lines().find(|l| l.starts_with("demo")).unwrap_or_else(|| panic!("demo missing:\n{table}"));
    assert!(row.contains("waiting") || row.contains("pending") || row.contains("provisioning"), "{row}");

    let json: serde_json::Value =
        serde_json::from_str(&ok(&ctl(&home, &["cluster", "ls", "-o", "json"]))).unwrap();
    assert_eq!(json["data"][0]["id"], "demo");
    let yaml = ok(&ctl(&home, &["cluster", "get", "demo", "-o", "yaml"]));
    assert!(yaml.contains("name: demo"), "{yaml}");

    // Users: create, list, remove; a weak password is refused with the reason.
    let e = err(&ctl(&home, &["user", "create", "erin", "--password", "short"]));
    assert!(e.contains("at least 12 characters"), "{e}");
    ok(&ctl(&home, &["user", "create", "erin", "--password", "erin-password-55"]));
    assert!(ok(&ctl(&home, &["user", "ls"])).contains("erin"));
    ok(&ctl(&home, &["user", "rm", "erin"]));
    assert!(!ok(&ctl(&home, &["user", "ls"])).contains("erin"));

    ok(&ctl(&home, &["cluster", "rm", "demo"]));
    assert!(!ok(&ctl(&home, &["cluster", "ls"])).contains("demo"));
    ok(&ctl(&home, &["logout"]));
    assert!(err(&ctl(&home, &["cluster", "ls"])).contains("not logged in"));
    drop(server);
}

#[test]
fn generated_admin_password_is_printed_once_and_works_with_insecure() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let data = dir.path().join("data");
    let server = ServerProc::start(&data, 0, None, &[]);
    let line =
        server.stdout_lines.iter().find(|l| l.contains("Bootstrap password")).expect("password printed");
    let password = line.rsplit(' ').next().unwrap().to_owned();
    let out = Command::new(env!("CARGO_BIN_EXE_rancherctl"))
        .args(["login", &server.url, "--username", "admin", "--insecure", "--password-stdin"])
        .env("HOME", &home)
        .env_remove("XDG_CONFIG_HOME")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(format!("{password}\n").as_bytes())?;
            c.wait_with_output()
        })
        .unwrap();
    ok(&out);
    let port = server.port;
    server.stop();
    let again = ServerProc::start(&data, port, None, &[]);
    assert!(!again.stdout_lines.iter().any(|l| l.contains("Bootstrap password")), "{:?}", again.stdout_lines);
    assert!(ok(&ctl(&home, &["cluster", "ls"])).starts_with("NAME"));
}

/// `rancherctl` with `stdin` written to its standard input.
fn ctl_stdin(home: &Path, args: &[&str], stdin: &str) -> Output {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_rancherctl"))
        .args(args)
        .env("HOME", home)
        .env_remove("XDG_CONFIG_HOME")
        .env_remove("RANCHER_PASSWORD")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run rancherctl");
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

fn config(home: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(home.join(".config/rancherctl/config.json")).unwrap())
        .unwrap()
}

fn context_token(home: &Path, name: &str) -> String {
    let cfg = config(home);
    let ctx = cfg["contexts"].as_array().unwrap().iter().find(|c| c["name"] == name).unwrap().clone();
    ctx["token"].as_str().unwrap_or_default().to_owned()
}

#[test]
fn help_opens_with_what_the_tool_does_and_output_is_only_where_honoured() {
    let home = tempfile::tempdir().unwrap();
    let help = ok(&ctl(home.path(), &["--help"]));
    assert!(help.starts_with("Manage a rancher-rs server from the terminal"), "{help}");
    assert!(!help.contains("composition of the crates"), "{help}");
    // `-o` is refused where nothing would honour it, instead of being ignored.
    for args in [
        &["logout", "-o", "json"][..],
        &["cluster", "rm", "x", "-o", "json"],
        &["context", "ls", "-o", "json"],
    ] {
        let e = err(&ctl(home.path(), args));
        assert!(e.contains("unexpected argument '-o'"), "{args:?}: {e}");
    }
    let e = err(&ctl(home.path(), &["kubeconfig", "demo", "-o", "table"]));
    assert!(e.contains("invalid value 'table'"), "{e}");
    assert!(!ok(&ctl(home.path(), &["cluster", "ls", "--help"])).is_empty());
    assert!(ok(&ctl(home.path(), &["cluster", "ls", "--help"])).contains("--output"));
    assert!(!ok(&ctl(home.path(), &["cluster", "rm", "--help"])).contains("--output"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contexts_across_two_servers_own_tokens_and_logout() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let a = ServerProc::start(&dir.path().join("a"), 0, Some(ADMIN_PASSWORD), &[]);
    let b = ServerProc::start(&dir.path().join("b"), 0, Some(ADMIN_PASSWORD), &[]);
    let ca_a = a.data_dir.join("tls/ca.crt");
    let ca_b = b.data_dir.join("tls/ca.crt");
    let (ca_a, ca_b) = (ca_a.to_str().unwrap(), ca_b.to_str().unwrap());

    // http:// against the TLS listener says what to do.
    let plain = a.url.replace("https://", "http://");
    let e = err(&ctl(&home, &["login", &plain, "-u", "admin", "--password", ADMIN_PASSWORD, "--insecure"]));
    assert!(e.contains(&format!("the server speaks HTTPS: use {}", a.url)), "{e}");

    // Two logins, the password from stdin; the later one is current.
    let pw = format!("{ADMIN_PASSWORD}\n");
    let out = ok(&ctl_stdin(
        &home,
        &["login", &a.url, "-u", "admin", "--password-stdin", "--cacert", ca_a, "--name", "site-a"],
        &pw,
    ));
    assert!(out.contains("context site-a"), "{out}");
    ok(&ctl_stdin(&home, &["login", &b.url, "-u", "admin", "--password-stdin", "--cacert", ca_b], &pw));
    let ctx_b = format!("admin@127.0.0.1:{}", b.port);
    let ls = ok(&ctl(&home, &["context", "ls"]));
    let current: Vec<&str> = ls.lines().filter(|l| l.starts_with('*')).collect();
    assert_eq!(current.len(), 1, "{ls}");
    assert!(current[0].contains(&ctx_b) && current[0].contains(&b.url), "{ls}");
    assert!(ls.lines().any(|l| l.contains("site-a") && l.contains(&a.url)), "{ls}");

    ok(&ctl(&home, &["cluster", "create", "only-b"]));
    assert!(ok(&ctl(&home, &["cluster", "ls"])).contains("only-b"));
    assert!(!ok(&ctl(&home, &["--context", "site-a", "cluster", "ls"])).contains("only-b"));
    let e = err(&ctl(&home, &["--context", "nowhere", "cluster", "ls"]));
    assert!(e.contains("no context \"nowhere\"") && e.contains("site-a"), "{e}");
    ok(&ctl(&home, &["context", "use", "site-a"]));
    assert!(!ok(&ctl(&home, &["cluster", "ls"])).contains("only-b"));

    // Own tokens: the session marked current, no secret printed; a kubeconfig's token listed and revoked.
    ok(&ctl(&home, &["cluster", "create", "kc"]));
    let kc: serde_json::Value =
        serde_json::from_str(&ok(&ctl(&home, &["kubeconfig", "kc", "-o", "json"]))).unwrap();
    assert_eq!(kc["kind"], "Config", "{kc}");
    let kc_token = kc["users"][0]["user"]["token"].as_str().unwrap().to_owned();
    let kc_id = kc_token.split(':').next().unwrap().to_owned();
    let session = context_token(&home, "site-a");
    let session_id = session.split(':').next().unwrap().to_owned();
    let tl = ok(&ctl(&home, &["token", "ls"]));
    assert!(!tl.contains(session.split(':').nth(1).unwrap()), "a secret was printed: {tl}");
    let row = |id: &str| tl.lines().find(|l| l.split_whitespace().any(|w| w == id)).map(str::to_owned);
    assert!(row(&session_id).unwrap_or_else(|| panic!("{tl}")).starts_with('*'), "{tl}");
    let kc_row = row(&kc_id).unwrap_or_else(|| panic!("{tl}"));
    assert!(!kc_row.starts_with('*') && kc_row.contains("kubeconfig"), "{kc_row}");
    // An admin sees only their own tokens here, not everyone's.
    let api_a = crate::common::Api::new(&a);
    let admin_a = api_a.with_token(&session);
    let made = admin_a.post("/v3/users", &serde_json::json!({"spec": {"username": "bob", "password": "bob-password-123", "enabled": true}})).await;
    assert_eq!(made.code, 201, "{}", made.body);
    let bob_login = api_a.login("bob", "bob-password-123").await;
    let bob_id = bob_login.body["token"].as_str().unwrap().split(':').next().unwrap().to_owned();
    let tl = ok(&ctl(&home, &["token", "ls"]));
    assert!(!tl.contains(&bob_id), "{tl}");
    let out = ok(&ctl(&home, &["token", "rm", &kc_id]));
    assert!(out.contains(&format!("token {kc_id} revoked")), "{out}");
    assert!(!ok(&ctl(&home, &["token", "ls"])).contains(&kc_id));
    assert_eq!(api_a.with_token(&kc_token).get("/v3/clusters").await.code, 401);
    // Revoking the context's own token logs it out.
    let out = ok(&ctl(&home, &["token", "rm", &session_id]));
    assert!(out.contains("now logged out"), "{out}");
    assert!(err(&ctl(&home, &["cluster", "ls"])).contains("not logged in"));

    // logout revokes the token on the server and keeps the context, logged out.
    let token_b = context_token(&home, &ctx_b);
    ok(&ctl(&home, &["--context", &ctx_b, "logout"]));
    assert_eq!(crate::common::Api::new(&b).with_token(&token_b).get("/v3/clusters").await.code, 401);
    assert_eq!(context_token(&home, &ctx_b), "");
    let ls = ok(&ctl(&home, &["context", "ls"]));
    assert!(ls.lines().any(|l| l.contains(&ctx_b) && l.contains("logged out")), "{ls}");
    ok(&ctl(&home, &["context", "rm", "site-a"]));
    assert!(!ok(&ctl(&home, &["context", "ls"])).contains("site-a"));

    // A config file of the single-login form keeps working, as one context.
    let fresh = api_a.login("admin", ADMIN_PASSWORD).await.body["token"].as_str().unwrap().to_owned();
    let old = serde_json::json!({"server": a.url, "token": fresh, "cacert": a.ca_pem()});
    std::fs::write(home.join(".config/rancherctl/config.json"), old.to_string()).unwrap();
    assert!(ok(&ctl(&home, &["cluster", "ls"])).contains("kc"));
    let ls = ok(&ctl(&home, &["context", "ls"]));
    assert!(ls.lines().any(|l| l.starts_with('*') && l.contains(&format!("127.0.0.1:{}", a.port))), "{ls}");
    // The next login writes the file in the new form, the migrated context kept.
    ok(&ctl_stdin(&home, &["login", &b.url, "-u", "admin", "--password-stdin", "--cacert", ca_b], &pw));
    assert_eq!(config(&home)["contexts"].as_array().unwrap().len(), 2, "{}", config(&home));
}

#[test]
fn password_is_asked_for_on_the_terminal_without_echo() {
    use std::io::{BufRead, Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let server = ServerProc::start(&dir.path().join("data"), 0, Some(ADMIN_PASSWORD), &[]);
    let ca = server.data_dir.join("tls/ca.crt");
    // `script` gives rancherctl a terminal; the password is typed once the prompt shows.
    let cmd = format!(
        "{} login {} -u admin --cacert {}",
        env!("CARGO_BIN_EXE_rancherctl"),
        server.url,
        ca.display()
    );
    let mut child = Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .env("HOME", &home)
        .env_remove("XDG_CONFIG_HOME")
        .env_remove("RANCHER_PASSWORD")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("run script");
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut seen = Vec::new();
    let mut byte = [0u8; 1];
    while !String::from_utf8_lossy(&seen).contains("Password for admin") {
        assert_eq!(stdout.read(&mut byte).unwrap(), 1, "no prompt: {}", String::from_utf8_lossy(&seen));
        seen.push(byte[0]);
    }
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(format!("{ADMIN_PASSWORD}\n").as_bytes()).unwrap();
    let mut rest = String::new();
    for line in stdout.by_ref().lines() {
        let line = line.unwrap();
        rest.push_str(&line);
        rest.push('\n');
        if line.contains("logged in") || line.contains("error") {
            break;
        }
    }
    drop(stdin);
    let _ = child.wait();
    assert!(rest.contains("logged in to"), "{rest}");
    assert!(!rest.contains(ADMIN_PASSWORD), "the password was echoed: {rest}");
    assert!(ok(&ctl(&home, &["cluster", "ls"])).starts_with("NAME"));
}
