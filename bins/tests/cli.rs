//! `rancherctl` against the real `rancher-server`: login, create, restart, list, and the error messages.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::{ADMIN_PASSWORD, ServerProc};

fn ctl(home: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rancherctl"))
        .args(args)
        .env("HOME", home)
        .env_remove("XDG_CONFIG_HOME")
        .env_remove("RANCHER_PASSWORD")
        .output()
        .expect("run rancherctl")
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "rancherctl failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn err(out: &Output) -> String {
    assert!(!out.status.success(), "rancherctl should have failed: {}", String::from_utf8_lossy(&out.stdout));
    String::from_utf8_lossy(&out.stderr).into_owned()
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
    assert!(saved["token"].as_str().unwrap().starts_with("token-"));
    assert!(saved["cacert"].as_str().unwrap().contains("BEGIN CERTIFICATE"));

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
