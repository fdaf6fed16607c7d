//! LDAP users through the proxy: a real `slapd` (the rancher-auth fixtures), `rancher-server
//! --auth-config`, an imported sim with its agent. An OpenLDAP login makes a local user whose
//! directory groups ride on the token into `Impersonate-Group`, so a binding to a directory group —
//! ours for reaching the cluster, the sim's RBAC for what may be done — applies to its members.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use crate::import_support::*;
use crate::proxy_support::*;
use reqwest::Method;
use serde_json::{Value, json};

const DEVS: &str = "openldap_group://cn=devs,ou=groups,dc=example,dc=org";

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../crates/rancher-auth/tests/fixtures/ldap")
}

/// slapd on a free loopback port with the fixture directory loaded; killed on drop.
struct Slapd {
    _child: tokio::process::Child,
    _dir: tempfile::TempDir,
    port: u16,
}

fn write_certificates(dir: &Path) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(rcgen::DnType::CommonName, "proxy_ldap test CA");
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(vec!["127.0.0.1".into()]).unwrap();
    let cert = params.signed_by(&key, &ca).unwrap();
    std::fs::write(dir.join("ca.crt"), ca.pem()).unwrap();
    std::fs::write(dir.join("server.crt"), cert.pem()).unwrap();
    std::fs::write(dir.join("server.key"), key.serialize_pem()).unwrap();
}

async fn ldap_tool(tool: &str, args: &[&str]) -> std::process::Output {
    tokio::process::Command::new(tool)
        .args(args)
        .output()
        .await
        .unwrap_or_else(|e| panic!("{tool}: {e}: run scripts/install-auth-deps.sh (ldap-utils)"))
}

impl Slapd {
    async fn start() -> Slapd {
        let mut last_log = String::new();
        for _attempt in 0..3 {
            let dir = tempfile::tempdir().unwrap();
            let d = dir.path();
            std::fs::create_dir(d.join("data")).unwrap();
            std::fs::copy(fixtures().join("ad-lite.schema"), d.join("ad-lite.schema")).unwrap();
            let conf = std::fs::read_to_string(fixtures().join("slapd.conf.in")).unwrap();
            std::fs::write(d.join("slapd.conf"), conf.replace("@DIR@", d.to_str().unwrap())).unwrap();
            write_certificates(d);
            let port = free_port();
            let log = std::fs::File::create(d.join("slapd.log")).unwrap();
            let mut child = tokio::process::Command::new("/usr/sbin/slapd")
                .arg("-f")
                .arg(d.join("slapd.conf"))
                .arg("-h")
                .arg(format!("ldap://127.0.0.1:{port}/"))
                .args(["-d", "0"])
                .stdout(Stdio::null())
                .stderr(log)
                .kill_on_drop(true)
                .spawn()
                .expect("start slapd (scripts/install-auth-deps.sh installs it)");
            let url = format!("ldap://127.0.0.1:{port}");
            let admin = ["-x", "-H", &url, "-D", "cn=admin,dc=example,dc=org", "-w", "adminpass"];
            let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
            let mut up = false;
            while tokio::time::Instant::now() < deadline && child.try_wait().unwrap().is_none() {
                if ldap_tool("ldapwhoami", &admin).await.status.success() {
                    up = true;
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            if !up {
                last_log = std::fs::read_to_string(d.join("slapd.log")).unwrap_or_default();
                continue;
            }
            let data = fixtures().join("data.ldif");
            let mut args = vec!["-a"];
            args.extend(admin);
            args.extend(["-f", data.to_str().unwrap()]);
            let out = ldap_tool("ldapmodify", &args).await;
            assert!(out.status.success(), "loading data.ldif: {}", String::from_utf8_lossy(&out.stderr));
            return Slapd { _child: child, _dir: dir, port };
        }
        panic!("slapd did not start; its log:\n{last_log}");
    }
}

/// An `--auth-config` file naming `slapd` as the OpenLDAP provider (its directory kept while the
/// first value lives).
fn auth_config(slapd: &Slapd) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("auth.yaml");
    std::fs::write(
        &conf,
        format!(
            "openldap:\n  servers: [127.0.0.1]\n  port: {}\n  tls: plain\n  \
             serviceAccountDn: cn=rancher-svc,dc=example,dc=org\n  serviceAccountPassword: svcpass\n  \
             userSearchBase: ou=people,dc=example,dc=org\n  groupSearchBase: ou=groups,dc=example,dc=org\n",
            slapd.port
        ),
    )
    .unwrap();
    (dir, conf)
}

async fn ldap_login(env: &Env, user: &str, password: &str) -> (u16, Value) {
    let resp = env
        .http
        .post(format!("{}/v3-public/openLdapProviders/openldap?action=login", env.server.url))
        .json(&json!({"username": user, "password": password}))
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ldap_groups_reach_the_impersonation_headers() {
    install_crypto();
    let slapd = Slapd::start().await;
    let (_conf_dir, conf) = auth_config(&slapd);
    let env = Env::start(&["--auth-config", conf.to_str().unwrap()]).await;

    // Wrong password and unknown user: the local provider's answer, word for word.
    let (code, wrong) = ldap_login(&env, "alice", "not-her-password").await;
    assert_eq!(code, 401, "{wrong}");
    let (code, unknown) = ldap_login(&env, "nobody-here", "whatever").await;
    assert_eq!((code, &unknown["message"]), (401, &wrong["message"]));
    let local = env
        .http
        .post(format!("{}/v3-public/localProviders/local?action=login", env.server.url))
        .json(&json!({"username": "nobody-here", "password": "whatever"}))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(local["message"], wrong["message"]);

    // alice logs in: a local user is made, the token carries her directory groups.
    let (code, session) = ldap_login(&env, "alice", "alicepass").await;
    assert_eq!(code, 201, "{session}");
    let alice = session["token"].as_str().unwrap().to_owned();
    assert_eq!(session["spec"]["authProvider"], "openldap", "{session}");
    let groups = session["spec"]["groupPrincipals"].as_array().unwrap();
    assert!(groups.iter().any(|g| g == DEVS), "{session}");
    let alice_id = session["spec"]["userId"].as_str().unwrap().to_owned();
    // Logging in again finds the same user.
    let (_, again) = ldap_login(&env, "alice", "alicepass").await;
    assert_eq!(again["spec"]["userId"], alice_id.as_str());

    // No binding yet: the proxy refuses.
    let pods = format!("/k8s/clusters/{}/api/v1/namespaces/default/pods", env.cluster);
    let (code, body) = env.call(Method::GET, &pods, &alice, None).await;
    assert_eq!((code, body["reason"].as_str()), (403, Some("Forbidden")), "{body}");

    // A cluster binding for the directory group lets alice through; the sim's RBAC, bound to the
    // same group, lets her read pods but not secrets.
    let crtb = json!({"spec": {"clusterName": env.cluster, "roleTemplateName": "cluster-member", "groupPrincipalName": DEVS}});
    let (code, body) =
        env.call(Method::POST, "/v3/clusterroletemplatebindings", &env.admin_token, Some(&crtb)).await;
    assert_eq!(code, 201, "{body}");
    let sim_kc = env.dir.path().join("sim.kubeconfig");
    let crb = env.dir.path().join("devs-view.yaml");
    std::fs::write(
        &crb,
        format!(
            "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata: {{name: devs-view}}\n\
             roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: view}}\n\
             subjects:\n- {{apiGroup: rbac.authorization.k8s.io, kind: Group, name: \"{DEVS}\"}}\n"
        ),
    )
    .unwrap();
    let out = std::process::Command::new(kubectl())
        .arg("--kubeconfig")
        .arg(&sim_kc)
        .args(["apply", "-f"])
        .arg(&crb)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (code, body) = env.call(Method::GET, &pods, &alice, None).await;
    assert_eq!((code, body["kind"].as_str()), (200, Some("PodList")), "{body}");
    let secrets = format!("/k8s/clusters/{}/api/v1/namespaces/default/secrets", env.cluster);
    let (code, body) = env.call(Method::GET, &secrets, &alice, None).await;
    assert_eq!(code, 403, "{body}");
    assert!(body["message"].as_str().unwrap().contains(&alice_id), "the sim names alice's user id: {body}");
    assert!(!env.server_log().contains(secret_of(&alice)), "a token secret is in the server log");
    assert!(!env.server_log().contains("alicepass"), "a password is in the server log");
}

/// The console's login page offers the directory beside local accounts; a directory user logs in
/// through it (headless Chromium) and the page knows who they are.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ldap_user_logs_in_to_the_console() {
    use rancher_test_support::browser::{Browser, WAIT};
    install_crypto();
    let slapd = Slapd::start().await;
    let (_conf_dir, conf) = auth_config(&slapd);
    let env = Env::start(&["--auth-config", conf.to_str().unwrap()]).await;
    let browser = Browser::start().await;
    browser.goto(&format!("{}/", env.server.url)).await;
    browser
        .click(&browser.wait_for("#provider option[value='openLdapProviders/openldap']", WAIT).await)
        .await;
    browser.type_into(&browser.wait_for("#username", WAIT).await, "alice").await;
    browser.type_into(&browser.wait_for("#password", WAIT).await, "alicepass").await;
    browser.click(&browser.wait_for("#login", WAIT).await).await;
    browser.wait_for("#clusters", WAIT).await;
    let nav = browser.wait_text("#nav", WAIT, |t| t.contains("Log out")).await;
    assert!(nav.to_lowercase().contains("alice"), "the page shows who logged in: {nav}");
}
