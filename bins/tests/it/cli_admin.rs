//! The rest of the API through `rancherctl`, against the real server: role templates and global roles
//! (and the escalation rule, as a standard user meets it), settings, `cluster edit` with the authorized
//! cluster endpoint, `wait`, users' passwords, principal search, `-o jsonpath`, completions, and the
//! exit codes scripts rely on.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use crate::common::{ADMIN_PASSWORD, ServerProc, err, ok};

fn ctl(home: &Path, args: &[&str]) -> Output {
    ctl_stdin(home, args, "")
}

fn ctl_stdin(home: &Path, args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_rancherctl"))
        .args(args)
        .env("HOME", home)
        .env_remove("XDG_CONFIG_HOME")
        .env_remove("RANCHER_PASSWORD")
        .env("RANCHER_NEW_USER_PASSWORD", "colleague-pass-123")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run rancherctl");
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

fn login(home: &Path, server: &ServerProc, user: &str, password: &str) -> Output {
    let ca = server.data_dir.join("tls/ca.crt");
    ctl(home, &["login", &server.url, "-u", user, "--password", password, "--cacert", ca.to_str().unwrap()])
}

/// The exit code of a run that must fail, with its stderr for the message.
fn code(out: &Output) -> (i32, String) {
    let e = err(out);
    (out.status.code().expect("exited"), e)
}

#[test]
fn roles_settings_edits_waits_and_passwords_through_the_cli_with_codes_scripts_rely_on() {
    let dir = tempfile::tempdir().unwrap();
    let (admin, alice) = (dir.path().join("admin"), dir.path().join("alice"));
    let server = ServerProc::start(&dir.path().join("data"), 0, Some(ADMIN_PASSWORD), &[]);

    // Not logged in: 3. Help lists the codes; completions are scripts for the shell.
    assert_eq!(code(&ctl(&admin, &["cluster", "ls"])).0, 3);
    let help = ok(&ctl(&admin, &["--help"]));
    assert!(help.contains("Exit codes:") && help.contains("8  timed out waiting"), "{help}");
    let bash = ok(&ctl(&admin, &["completion", "bash"]));
    assert!(bash.contains("_rancherctl()") && bash.contains("roletemplate"), "{}", &bash[..200]);
    assert!(ok(&ctl(&admin, &["completion", "zsh"])).contains("#compdef rancherctl"));
    ok(&login(&admin, &server, "admin", ADMIN_PASSWORD));

    // Settings: read, bare for scripts, refused to change.
    let url = ok(&ctl(&admin, &["settings", "get", "server-url"]));
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");
    let ca = ok(&ctl(&admin, &["settings", "get", "cacerts"]));
    assert_eq!(ca.trim(), server.ca_pem().trim());
    let table = ok(&ctl(&admin, &["settings", "ls"]));
    assert!(table.contains("kubeconfig-default-token-ttl-minutes  43200"), "{table}");
    assert!(table.contains("cacerts") && table.contains("(+"), "a CA shows as one line: {table}");
    let names = ok(&ctl(&admin, &["settings", "ls", "-o", r#"jsonpath={range .data[*]}{.name}{"\n"}{end}"#]));
    assert!(names.lines().any(|l| l == "server-version"), "{names}");
    assert_eq!(code(&ctl(&admin, &["settings", "get", "no-such-setting"])).0, 5);
    let (c, e) = code(&ctl(&admin, &["-o", "xml", "settings", "ls"]));
    assert_eq!(c, 2, "{e}");
    let (c, e) = code(&ctl(&admin, &["settings", "ls", "-o", "jsonpath={.data"]));
    assert!(c == 2 && e.contains("unclosed {"), "{e}");

    // Users: create, edit, find, reset a password, and the user changes their own.
    ok(&ctl(&admin, &["user", "create", "alice"]));
    ok(&ctl_stdin(&admin, &["user", "create", "erin", "--password-stdin"], "erin-password-123\n"));
    ok(&login(&dir.path().join("erin"), &server, "erin", "erin-password-123"));
    let out = ok(&ctl(&admin, &["user", "edit", "alice", "--display-name", "Alice Example"]));
    assert!(out.contains("user alice (u-"), "{out}");
    let shown = ok(&ctl(&admin, &["user", "get", "alice", "-o", "jsonpath={.spec.displayName}"]));
    assert_eq!(shown, "Alice Example");
    let found = ok(&ctl(&admin, &["principal", "search", "alic", "--type", "user"]));
    assert!(found.contains("alice") && found.contains("local://u-"), "{found}");
    ok(&ctl_stdin(&admin, &["user", "set-password", "alice", "--password-stdin"], "reset-by-admin-1\n"));
    assert_eq!(code(&login(&alice, &server, "alice", "colleague-pass-123")).0, 3, "the old password is gone");
    ok(&login(&alice, &server, "alice", "reset-by-admin-1"));
    let (c, e) = code(&ctl_stdin(
        &alice,
        &["user", "passwd", "--password-stdin"],
        "wrong-current-1\nnew-pass-alice-1\n",
    ));
    assert!(c != 0 && e.to_lowercase().contains("current password"), "{c} {e}");
    ok(&ctl_stdin(&alice, &["user", "passwd", "--password-stdin"], "reset-by-admin-1\nnew-pass-alice-1\n"));
    ok(&login(&alice, &server, "alice", "new-pass-alice-1"));
    // A standard user may not list users, nor edit another: 4.
    assert_eq!(code(&ctl(&alice, &["user", "edit", "admin", "--enabled", "false"])).0, 4);

    // Role templates: made from kubectl-style flags, shown with their rules; a duplicate is 6.
    let out = ok(&ctl(
        &admin,
        &[
            "roletemplate",
            "create",
            "pod-reader",
            "--scope",
            "cluster",
            "--verb",
            "get,list",
            "--resource",
            "pods,deployments.apps",
        ],
    ));
    assert_eq!(out, "role template pod-reader created\n");
    let shown = ok(&ctl(&admin, &["roletemplate", "get", "pod-reader"]));
    assert!(shown.contains("get,list  \"\"          pods"), "{shown}");
    assert!(shown.contains("get,list  apps        deployments"), "{shown}");
    let listed = ok(&ctl(&admin, &["roletemplate", "ls", "--scope", "cluster"]));
    assert!(listed.contains("pod-reader") && listed.contains("cluster-owner"), "{listed}");
    assert!(!listed.contains("project-member"), "only cluster templates: {listed}");
    assert!(!ok(&ctl(&admin, &["roletemplate", "ls"])).contains("\nview "), "hidden ones only with --all");
    assert!(ok(&ctl(&admin, &["roletemplate", "ls", "--all"])).contains("\nview "));
    let (c, e) = code(&ctl(
        &admin,
        &["roletemplate", "create", "pod-reader", "--scope", "cluster", "--inherit", "cluster-member"],
    ));
    assert_eq!(c, 6, "{e}");
    assert_eq!(code(&ctl(&admin, &["roletemplate", "rm", "cluster-owner"])).0, 4, "a builtin stays");
    let rules = dir.path().join("rules.yaml");
    std::fs::write(
        &rules,
        "- verbs: [get, list, watch]\n  apiGroups: [\"\"]\n  resources: [pods, pods/log]\n",
    )
    .unwrap();
    let out = ok(&ctl(
        &admin,
        &["roletemplate", "edit", "pod-reader", "--rules-file", rules.to_str().unwrap(), "--locked", "true"],
    ));
    assert_eq!(out, "role template pod-reader updated\n");
    let shown = ok(&ctl(
        &admin,
        &["roletemplate", "get", "pod-reader", "-o", "jsonpath={.spec.rules[*].resources} {.spec.locked}"],
    ));
    assert_eq!(shown, r#"["pods","pods/log"] true"#, "the rules replaced");
    assert_eq!(code(&ctl(&admin, &["roletemplate", "edit", "pod-reader"])).0, 2, "nothing to change");

    // Global roles: created, bound by login name, listed. Alice, given the right to create global
    // roles, can write only rules she holds into one (Kubernetes' escalation rule): else 4.
    ok(&ctl(
        &admin,
        &["globalrole", "create", "cluster-viewer", "--verb", "get,list,watch", "--resource", "clusters"],
    ));
    let rules = ok(&ctl(
        &admin,
        &["globalrole", "get", "cluster-viewer", "-o", "jsonpath={.spec.rules[0].apiGroups[0]}"],
    ));
    assert_eq!(rules, "management.cattle.io", "a bare resource is the management API's");
    let out = ok(&ctl(&admin, &["globalrole", "bind", "cluster-viewer", "alice"]));
    assert!(out.contains("now holds the global role cluster-viewer"), "{out}");
    assert!(ok(&ctl(&admin, &["globalrole", "bind", "cluster-viewer", "alice"])).contains("already"));
    let held = ok(&ctl(
        &admin,
        &["globalrole", "bindings", "--user", "alice", "-o", "jsonpath={.data[*].spec.globalRoleName}"],
    ));
    let mut held: Vec<&str> = held.split(' ').collect();
    held.sort_unstable();
    assert_eq!(held, ["cluster-viewer", "user"]);
    let (c, e) =
        code(&ctl(&alice, &["globalrole", "create", "mine", "--verb", "get", "--resource", "globalroles"]));
    assert_eq!(c, 4, "a standard user creates no global role: {e}");
    ok(&ctl(
        &admin,
        &["globalrole", "create", "role-maker", "--verb", "create", "--resource", "globalroles"],
    ));
    ok(&ctl(&admin, &["globalrole", "bind", "role-maker", "alice"]));
    let (c, e) = code(&ctl(&alice, &["globalrole", "create", "mine", "--verb", "*", "--resource", "*"]));
    assert_eq!(c, 4, "a rule alice does not hold: {e}");
    let out = ok(&ctl(
        &alice,
        &["globalrole", "create", "mine", "--verb", "get,list", "--resource", "globalroles"],
    ));
    assert_eq!(out, "global role mine created\n", "rules alice holds (the user role reads the catalogue)");
    ok(&ctl(&admin, &["globalrole", "edit", "cluster-viewer", "--display-name", "Cluster Viewer"]));
    let shown =
        ok(&ctl(&admin, &["globalrole", "get", "cluster-viewer", "-o", "jsonpath={.spec.displayName}"]));
    assert_eq!(shown, "Cluster Viewer");
    ok(&ctl(&admin, &["globalrole", "unbind", "cluster-viewer", "alice"]));
    assert_eq!(code(&ctl(&admin, &["globalrole", "unbind", "cluster-viewer", "alice"])).0, 5);

    // cluster edit: the authorized cluster endpoint goes into the kubeconfig; bad values are refused
    // by the server and change nothing.
    ok(&ctl(&admin, &["cluster", "create", "demo"]));
    let out = ok(&ctl(
        &admin,
        &[
            "cluster",
            "edit",
            "demo",
            "--ace",
            "true",
            "--ace-fqdn",
            "lb.example.com:6443",
            "--description",
            "edge",
        ],
    ));
    assert!(out.contains("cluster demo updated: description, localClusterAuthEndpoint.enabled, localClusterAuthEndpoint.fqdn"), "{out}");
    let ace = ok(&ctl(
        &admin,
        &[
            "cluster",
            "get",
            "demo",
            "-o",
            "jsonpath={.spec.localClusterAuthEndpoint.enabled} {.spec.localClusterAuthEndpoint.fqdn}",
        ],
    ));
    assert_eq!(ace, "true lb.example.com:6443");
    let kubeconfig = ok(&ctl(&admin, &["kubeconfig", "demo"]));
    assert!(
        kubeconfig.contains("demo-fqdn") && kubeconfig.contains("https://lb.example.com:6443"),
        "{kubeconfig}"
    );
    let (c, e) = code(&ctl(&admin, &["cluster", "edit", "demo", "--ace-fqdn", "lb.example.com/path"]));
    assert!(c == 2 && e.contains("must be host[:port]"), "{c} {e}");
    let bad_ca = dir.path().join("ca.pem");
    std::fs::write(&bad_ca, "-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n").unwrap();
    let (c, e) = code(&ctl(&admin, &["cluster", "edit", "demo", "--ace-ca-certs", bad_ca.to_str().unwrap()]));
    assert!(c == 2 && e.contains("caCerts"), "{c} {e}");
    let kept =
        ok(&ctl(&admin, &["cluster", "get", "demo", "-o", "jsonpath={.spec.localClusterAuthEndpoint.fqdn}"]));
    assert_eq!(kept, "lb.example.com:6443", "a refused edit changes nothing");
    assert_eq!(code(&ctl(&admin, &["cluster", "edit", "demo"])).0, 2, "nothing to change");
    let made = ok(&ctl(&admin, &["project", "create", "demo", "Web Team"]));
    let id = made.split_whitespace().nth(1).unwrap_or_default().to_owned();
    let out = ok(&ctl(&admin, &["project", "edit", "demo:Web Team", "--display-name", "Web"]));
    assert_eq!(
        out,
        format!(
            "project {id} updated
"
        )
    );
    let names = ok(&ctl(
        &admin,
        &["project", "ls", "--cluster", "demo", "-o", "jsonpath={.data[*].spec.displayName}"],
    ));
    assert!(names.split(' ').any(|n| n == "Web"), "{names}");

    // wait: a condition that does not come times out with 8; a deletion is waited for; a cluster
    // that is not there is 5.
    let (c, e) = code(&ctl(&admin, &["wait", "demo", "--for", "condition=Ready", "--timeout", "2s"]));
    assert!(
        c == 8 && e.contains("timed out after 2s waiting for cluster demo to reach condition Ready=True"),
        "{c} {e}"
    );
    assert!(e.contains("it is: state "), "says what the cluster is: {e}");
    assert_eq!(code(&ctl(&admin, &["wait", "nope", "--for", "state=active", "--timeout", "5s"])).0, 5);
    // The drivers clusters are built with; the audit log needs a file (this server keeps none: 1).
    let drivers = ok(&ctl(&admin, &["provisioner", "ls"]));
    assert!(
        drivers.contains("rke       spec.rkeConfig  yes") && drivers.contains("imported  -"),
        "{drivers}"
    );
    let (c, e) = code(&ctl(&admin, &["audit"]));
    assert!(c == 1 && e.contains("--audit-log FILE"), "{c} {e}");
    assert_eq!(code(&ctl(&alice, &["audit"])).0, 4, "admins only");
    let ready = ok(&ctl(&admin, &["cluster", "ls", "-o", r#"jsonpath={.data[?(@.state!="active")].id}"#]));
    assert_eq!(ready, "demo", "a filter on the state");

    ok(&ctl(&admin, &["cluster", "rm", "demo"]));
    let out = ok(&ctl(&admin, &["wait", "demo", "--for", "delete", "--timeout", "60s"]));
    assert_eq!(out, "cluster/demo deleted\n");
    assert_eq!(code(&ctl(&admin, &["cluster", "get", "demo"])).0, 5);
}
